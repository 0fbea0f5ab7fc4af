"""Faults a user meets: bad inputs, refused outputs, signals, kills and their leftovers.

Adding a case is a few lines: a ``Case`` in CASES (see faultcase.py for the fields).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from faultcase import Case

TINY = ["--n-filters", "4", "--depth", "2", "--batch-size", "2", "--patch-size", "32", "--steps-per-epoch", "3"]
TRAIN = ["train", "--image", "{image}", "--labels", "{labels}"]
LONG_TRAIN = [*TRAIN, "--out", "{dir}/new_model", *TINY, "--epochs", "100000"]
PREDICT = ["predict", "--model", "{model}", "--image", "{image}"]
FIRST_EPOCH = r"^epoch\s+1/"
FIRST_SLICE = r"Segmenting:.*\b[1-9]\d*/\d+"


def _dead_pid() -> int:
    """The id of a process that has ended (a reused id would only make a case not clean)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def _corrupt_tiff(folder):
    data = (folder / "vol.tif").read_bytes()
    (folder / "broken.tif").write_bytes(data[: len(data) // 2])


def _wrong_shape_labels(folder):
    import numpy as np
    import tifffile

    tifffile.imwrite(folder / "small_labels.tif", np.ones((24, 40, 40), np.uint8), photometric="minisblack")


def _existing_json(folder):
    (folder / "scores.json").write_text('{"kept": true}')


def _stale_save_and_partial(folder):
    owner = f"{_dead_pid()}@{socket.gethostname()}"
    (folder / f".model.saving-{owner}-0123abcd").mkdir()
    partial = folder / "mask.tif.partial.zarr"
    partial.mkdir()
    (partial / ".napari_unet_owner").write_text(owner)


def _model_moved_aside(folder):
    owner = f"{_dead_pid()}@{socket.gethostname()}"
    aside = folder / f".model.old-{owner}-0123abcd"
    aside.mkdir()
    (folder / "model").rename(aside / "model")


def _image_variants(folder):
    """The case's volume with a NaN, as a constant, as 16-bit, and as a 5-D TZCYX stack."""
    import numpy as np
    import tifffile

    image = tifffile.imread(folder / "vol.tif")
    with_nan = image.astype(np.float32)
    with_nan[1, 2, 3] = np.nan
    tifffile.imwrite(folder / "nan.tif", with_nan, photometric="minisblack")
    tifffile.imwrite(folder / "constant.tif", np.full_like(image, 7), photometric="minisblack")
    tifffile.imwrite(folder / "vol16.tif", image.astype(np.uint16) * 257, photometric="minisblack")
    tifffile.imwrite(folder / "tzcyx.tif", np.zeros((2, 3, 2, 16, 16), np.uint8), imagej=True,
                     metadata={"axes": "TZCYX"})


def _earlier_demo(folder):
    (folder / "demo").mkdir()
    (folder / "demo" / "masks.tif").write_bytes(b"an earlier result")


def _mount_tmpfs(folder, name: str, options: str) -> None:
    """A real small or read-only disk at ``folder/name`` (root only: skipped elsewhere)."""
    (folder / name).mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder / name)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the case needs root")


def _read_only_disk(folder):
    _mount_tmpfs(folder, "ro", "ro,size=64k")


def _full_disk(folder):
    _mount_tmpfs(folder, "full", "size=16k")  # less than any output or model of the cases


def _full_disk_and_a_temporary_folder(folder):
    (folder / "rescue").mkdir()  # TMPDIR: where a model that does not fit is rescued to
    _full_disk(folder)


def _few_inodes(folder):
    _mount_tmpfs(folder, "few", "size=1m,nr_inodes=16")  # room for bytes, not for a zarr's files


def _broken_normalization(folder):
    import json

    meta = json.loads((folder / "model" / "bundle.json").read_text())
    meta["normalization"]["high"] = list(meta["normalization"]["low"])
    (folder / "model" / "bundle.json").write_text(json.dumps(meta))


def _hot_pixels(folder):
    """The 8-bit volume as 16-bit, with one saturated (65535) pixel per slice."""
    import numpy as np
    import tifffile

    image = tifffile.imread(folder / "vol.tif").astype(np.uint16)
    image[:, 5, 7] = 65535
    tifffile.imwrite(folder / "hot16.tif", image, photometric="minisblack")


def _unmount(folder):
    for name in ("ro", "full", "few"):
        if (folder / name).is_mount():
            subprocess.run(["umount", str(folder / name)], check=True)


def _predict_on(image: str) -> list[str]:
    return [*PREDICT[:4], image, "--out", "{dir}/mask.tif"]


def _voxel_size(*values: str) -> Case:
    return Case(f"--voxel-size {' '.join(values)}", [*_predict_on("{image}"), "--output", "instances",
                                                     "--voxel-size", *values],
                rc=2, message=r"--voxel-size: each value must be a positive, finite number")


ENTRY = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]["napari-unet"]
# An audit hook: the same moment on every machine (a delay's kill also waits for the GIL, <= 5 ms).
CTRL_C_AFTER_MAIN = """import os, sys, threading
def _arm(event, args, armed=[]):
    if event == "import" and args[0] == "napari_unet.cli.main" and not armed:
        armed.append(threading.Timer({delay}, os.kill, (os.getpid(), 2)))
        armed[0].daemon = True
        armed[0].start() if {delay} else os.kill(os.getpid(), 2)
sys.addaudithook(_arm)
"""


def _ctrl_c_while_starting(ms: int) -> Case:
    """The console script as pip writes it (pyproject.toml's entry), sent SIGINT ``ms`` after
    ``napari_unet.cli.main`` began to import (0: at that moment), as the imports, the parser and the
    command start. Earlier only Python, its import system and ``cli.console`` run:
    benchmarks/startup_signals.py measures that window."""
    module, function = ENTRY.split(":")
    program = CTRL_C_AFTER_MAIN.format(delay=ms / 1000) + f"from {module} import {function}\nsys.exit({function}())\n"
    return Case(f"Ctrl-C {ms} ms after the CLI's main module began to import", [*PREDICT, "--out", "{dir}/mask.tif"],
                rc=130, message=r"stopped by Ctrl-C|interrupted \(Ctrl-C\)", launcher=("-c", program))


WRITTEN = r"^Labels written to "
ONLY_BLOCK_DONE = r"Blocks:.*\b0/1"  # the bar starts when a block ends (its 1/1 shows only once it closes)
LONG = "n" * 240  # fits a file name (255 bytes), not the temporary names made from it
CLUSTER = [*PREDICT, "--out", "{dir}/mask.tif", "--prob", "{dir}/p.tif", "--workers", "2"]
FIRST_BLOCK = r"Blocks:.*\b[1-9]\d*/\d+"


CASES = [
    # -- checks that existed before the suite
    Case("corrupt tiff", [*TRAIN[:2], "{dir}/broken.tif", "--labels", "{labels}", "--out", "{dir}/m"],
         rc=2, message=r"broken\.tif", setup=_corrupt_tiff),
    Case("labels of another shape", [*TRAIN[:4], "{dir}/small_labels.tif", "--out", "{dir}/m", *TINY],
         message=r"shape", setup=_wrong_shape_labels),
    Case("bad parameter", [*TRAIN, "--out", "{dir}/m", "--patch-size", "0"], rc=2, message=r"patch_size"),
    Case("pretraining without a time limit", [*TRAIN, "--out", "{dir}/m", "--pretrain-share", "0.25",
                                              "--max-seconds", "0"], rc=2, message=r"Pretraining needs a time limit"),
    Case("existing model without --overwrite", [*TRAIN, "--out", "{model}", *TINY, "--epochs", "1"],
         rc=2, message=r"already exists"),
    Case("predict --out is the input image", [*PREDICT, "--out", "{image}"], rc=2, message=r"one of the inputs"),
    Case("--prob with a bad suffix", [*PREDICT, "--out", "{dir}/mask.tif", "--prob", "{dir}/p.png"],
         rc=2, message=r"must end in"),
    Case("evaluate --json on an existing file", ["evaluate", "--model", "{model}", "--image", "{image}",
                                                 "--labels", "{truth}", "--json", "{dir}/scores.json"],
         rc=2, message=r"exists", setup=_existing_json),
    # -- outputs, inputs and messages (each refused before any work, or in one line)
    Case("demo over an earlier demo's outputs", ["demo", "--out", "{dir}/demo"], rc=2,
         message=r"masks\.tif exists; rerun with --overwrite", setup=_earlier_demo),
    Case("--model is a file", ["predict", "--model", "{model}/bundle.json", "--image", "{image}",
                               "--out", "{dir}/mask.tif"], rc=2, message=r"is a file, not a model folder"),
    Case("--tile-size too small", [*_predict_on("{image}"), "--tile-size", "16"], rc=2,
         message=r"--tile-size 16 is too small"),
    Case("a 5-D TZCYX image", _predict_on("{dir}/tzcyx.tif"), rc=2,
         message=r"save each time point", setup=_image_variants),
    Case("NaN pixels in predict", _predict_on("{dir}/nan.tif"), rc=1,
         message=r"NaN or infinite pixels", setup=_image_variants),
    Case("a constant image in predict", _predict_on("{dir}/constant.tif"),
         rc=1, message=r"is constant", setup=_image_variants),
    Case("16-bit volume on an 8-bit model, stored normalisation",
         [*_predict_on("{dir}/vol16.tif"), "--normalize", "model"], rc=0,
         message=r"differ strongly", setup=_image_variants, expect=("mask.tif",)),
    Case("Ctrl-C before the first epoch, --overwrite on a good model",
         [*TRAIN, "--out", "{model}", "--overwrite", *TINY[:8], "--steps-per-epoch", "100000"], rc=130,
         message=r"stopped by Ctrl-C", signal=signal.SIGINT, after=r"^Device:"),
    # -- disks that refuse: real tmpfs mounts (read-only, 16 KiB), checked before any work
    Case("model folder on a read-only disk", [*TRAIN, "--out", "{dir}/ro/m", *TINY], rc=2,
         message=r"the folder .*/ro is not writable", setup=_read_only_disk, teardown=_unmount),
    Case("predict outputs on a full disk", [*PREDICT, "--out", "{dir}/full/mask.tif", "--prob", "{dir}/full/p.tif"],
         rc=2, message=r"Not enough disk space .*/full", setup=_full_disk, teardown=_unmount),
    Case("a model that does not fit on the disk", [*TRAIN, "--out", "{dir}/full/m", *TINY, "--epochs", "1"],
         rc=0, message=r"could not be saved to .*/full/m .*saved to .*/rescue/m-rescued-.* instead",
         setup=_full_disk_and_a_temporary_folder, teardown=_unmount, env={"TMPDIR": "{dir}/rescue"}),
    # -- a failure in the worker: one line, the traceback in the log
    Case("worker check fails", [*TRAIN, "--out", "{dir}/m", *TINY[:6], "--patch-size", "512"],
         rc=1, message=r"^napari-unet train: Training failed: patch_size 512 .*\(details: .*\.log\)$"),
    # -- signals: a graceful stop that keeps the best model
    Case("SIGTERM to the group while training", LONG_TRAIN, rc=143, message=r"stopped by SIGTERM",
         signal=signal.SIGTERM, after=FIRST_EPOCH, expect=("new_model/bundle.json",)),
    Case("SIGHUP to the group while training", LONG_TRAIN, rc=129, message=r"stopped by SIGHUP",
         signal=signal.SIGHUP, after=FIRST_EPOCH, expect=("new_model/bundle.json",)),
    Case("Ctrl-C to the group while training", LONG_TRAIN, rc=130, message=r"stopped by Ctrl-C",
         signal=signal.SIGINT, after=FIRST_EPOCH, expect=("new_model/bundle.json",)),
    Case("the terminal closes while training", LONG_TRAIN, rc=129, terminal=True, after=FIRST_EPOCH,
         expect=("new_model/bundle.json",)),
    # Every slice is predicted when the signal comes: the output is whole, the run a success.
    Case("SIGTERM to the process after the last slice", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
         signal=signal.SIGTERM, after=r"Segmenting:.*\b24/24", to_group=False, expect=("mask.tif",)),
    # -- kills: nothing can run in the parent; the worker and the next run tidy up
    Case("SIGKILL to the process while training", LONG_TRAIN, rc=-signal.SIGKILL, any_stderr=True,
         signal=signal.SIGKILL, after=FIRST_EPOCH, to_group=False, expect=("new_model/bundle.json",)),
    Case("SIGKILL to the group while training", LONG_TRAIN, rc=-signal.SIGKILL, any_stderr=True,
         signal=signal.SIGKILL, after=FIRST_EPOCH, expect=("new_model/bundle.json",),
         then=Case("the next run", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0)),
    # -- leftovers of killed runs: removed or put back by the next run, which says so
    Case("stale save and partial output", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
         setup=_stale_save_and_partial, expect=("mask.tif",)),
    Case("model moved aside by a killed save", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
         setup=_model_moved_aside, expect=("mask.tif", "model/bundle.json")),
    # -- issue 27: names too long, refused before any work (a model is never trained to be lost)
    Case("a model name too long for its save's temporary folder", [*TRAIN, "--out", "{dir}/" + LONG, *TINY],
         rc=2, message=r"--out name .* is too long .*use a name of at most \d+ bytes"),
    Case("a model name over 255 bytes", [*TRAIN, "--out", "{dir}/" + "n" * 256, *TINY], rc=2,
         message=r"--out name .* is too long"),
    Case("--out of 245 characters (.tif)", [*PREDICT, "--out", "{dir}/" + "o" * 241 + ".tif"], rc=2,
         message=r"--out name .* is too long .*first writes it under a name"),
    Case("--out of 244 characters (.zarr)", [*PREDICT, "--out", "{dir}/" + "o" * 239 + ".zarr"], rc=2,
         message=r"--out name .* is too long"),
    # -- resources refused before any work
    Case("--workers 1000", [*CLUSTER[:-1], "1000"], rc=2, message=r"--workers 1000 is more than this machine"),
    Case("zarr outputs on a disk out of inodes", [*PREDICT, "--out", "{dir}/few/m.zarr", "--prob", "{dir}/few/p.zarr"],
         rc=2, message=r"Not enough free files \(inodes\) .*/few", setup=_few_inodes, teardown=_unmount),
    Case("predict outputs on a read-only disk", [*PREDICT, "--out", "{dir}/ro/mask.tif"], rc=2,
         message=r"the folder .*/ro is on a read-only disk", setup=_read_only_disk, teardown=_unmount),
    Case("stored normalisation with low == high", [*_predict_on("{image}"), "--normalize", "model"], rc=2,
         message=r"stored normalization is broken .*--normalize volume", setup=_broken_normalization),
    # -- options: range-checked, one line, naming the option
    Case("suggest --top -1", ["suggest", "--model", "{model}", "--image", "{image}", "--labels", "{labels}",
                              "--top", "-1"], rc=2, message=r"^napari-unet suggest: error: argument --top"),
    _voxel_size("-1", "1", "1"), _voxel_size("0", "1", "1"), _voxel_size("nan", "1", "1"),
    _voxel_size("inf", "1", "1"),
    Case("--voxel-size with two values", [*_predict_on("{image}"), "--voxel-size", "1", "1"], rc=2,
         message=r"^napari-unet predict: error: argument --voxel-size: expected 3 arguments"),
    Case("evaluate --slices 30:10", ["evaluate", "--model", "{model}", "--image", "{image}", "--labels", "{truth}",
                                     "--slices", "30:10"], rc=2, message=r"--slices 30:10 selects no slice"),
    # -- signals: at any moment one line, the truth about what was written
    Case("Ctrl-C during the imports", [*PREDICT, "--out", "{dir}/mask.tif"], rc=130,
         message=r"stopped by Ctrl-C while starting|interrupted \(Ctrl-C\)", signal=signal.SIGINT,
         after=r"^import time:.*\|\s+argparse$", env={"PYTHONPROFILEIMPORTTIME": "1"}, noise=r"^import time:"),
    *(_ctrl_c_while_starting(ms) for ms in (0, 1, 2, 5, 10, 30, 100, 200, 400, 800)),
    Case("SIGHUP to the process while training", LONG_TRAIN, rc=129, message=r"stopped by SIGHUP",
         signal=signal.SIGHUP, after=FIRST_EPOCH, to_group=False, expect=("new_model/bundle.json",)),
    # Issue case 9: once the output is written, a signal while the cluster closes changes nothing (exit 0).
    Case("Ctrl-C to the group once the cluster wrote the output", CLUSTER, rc=0, signal=signal.SIGINT, after=WRITTEN,
         expect=("mask.tif", "p.tif")),
    Case("SIGTERM to the group as the cluster's only block ends", CLUSTER, rc=0, signal=signal.SIGTERM,
         after=ONLY_BLOCK_DONE, expect=("mask.tif", "p.tif")),
    # One slice a block: blocks are still waiting when the signals come, however fast the machine.
    Case("Ctrl-C twice on the cluster", [*CLUSTER, "--block-slices", "1"], rc=130,
         message=r"interrupted \(Ctrl-C\)|stopped by Ctrl-C", signal=signal.SIGINT, after=FIRST_BLOCK,
         again=r"stopping once the running blocks finish", to_group=False),
    # -- borderline (README): hot pixels warn; a killed parent's semaphores are freed quietly
    Case("one saturated pixel per slice", _predict_on("{dir}/hot16.tif"), rc=0, message=r"far brighter",
         setup=_hot_pixels, expect=("mask.tif",)),
    Case("SIGKILL to the process while predicting: no tracker warning", [*PREDICT, "--out", "{dir}/mask.tif"],
         rc=-signal.SIGKILL, signal=signal.SIGKILL, after=FIRST_SLICE, to_group=False, partial=True),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault(case, run_case, tmp_path):
    outcomes = run_case(case)
    if case.setup is _stale_save_and_partial:
        assert "the unfinished save of a killed run" in outcomes[0].stdout
        assert "the unfinished output of a killed run" in outcomes[0].stdout
    if case.setup is _model_moved_aside:
        assert "Restored the model" in outcomes[0].stdout
    if case.signal in (signal.SIGTERM, signal.SIGHUP):  # only a second Ctrl-C kills
        assert "Ctrl-C again" not in outcomes[0].stdout
    if case.rc == 0 and case.signal is not None and case.after != WRITTEN:
        assert "came too late to stop it: the output is whole" in outcomes[0].stdout
    if case.again is not None and "nothing was written" in outcomes[0].stdout:  # then truly nothing
        assert not list((tmp_path / "case").glob("*.incomplete*"))

"""Faults a user meets: bad inputs, refused outputs, signals, kills and their leftovers.

Adding a case is a few lines: a ``Case`` in CASES (see faultcase.py for the fields).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

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


CASES = [
    # -- checks that existed before the suite
    Case("corrupt tiff", [*TRAIN[:2], "{dir}/broken.tif", "--labels", "{labels}", "--out", "{dir}/m"],
         rc=2, message=r"broken\.tif", setup=_corrupt_tiff),
    Case("labels of another shape", [*TRAIN[:4], "{dir}/small_labels.tif", "--out", "{dir}/m", *TINY],
         message=r"shape", setup=_wrong_shape_labels),
    Case("bad parameter", [*TRAIN, "--out", "{dir}/m", "--patch-size", "0"], rc=2, message=r"patch_size"),
    Case("existing model without --overwrite", [*TRAIN, "--out", "{model}", *TINY, "--epochs", "1"],
         rc=2, message=r"already exists"),
    Case("predict --out is the input image", [*PREDICT, "--out", "{image}"], rc=2, message=r"one of the inputs"),
    Case("--prob with a bad suffix", [*PREDICT, "--out", "{dir}/mask.tif", "--prob", "{dir}/p.png"],
         rc=2, message=r"must end in"),
    Case("evaluate --json on an existing file", ["evaluate", "--model", "{model}", "--image", "{image}",
                                                 "--labels", "{truth}", "--json", "{dir}/scores.json"],
         rc=2, message=r"exists", setup=_existing_json),
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
    Case("SIGTERM to the process while predicting", [*PREDICT, "--out", "{dir}/mask.tif"], rc=143,
         message=r"stopped by SIGTERM", signal=signal.SIGTERM, after=FIRST_SLICE, to_group=False),
    # -- kills: nothing can run in the parent; the worker and the next run tidy up
    Case("SIGKILL to the process while training", LONG_TRAIN, rc=-signal.SIGKILL, any_stderr=True,
         signal=signal.SIGKILL, after=FIRST_EPOCH, to_group=False, expect=("new_model/bundle.json",)),
    Case("SIGKILL to the group while training", LONG_TRAIN, rc=-signal.SIGKILL, any_stderr=True,
         signal=signal.SIGKILL, after=FIRST_EPOCH, expect=("new_model/bundle.json",),
         then=Case("the next run", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
                   # multiprocessing's resource tracker died too, and its semaphores carry no owner
                   semaphores_may_leak="the resource tracker was killed with the group")),
    # -- leftovers of killed runs: removed or put back by the next run, which says so
    Case("stale save and partial output", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
         setup=_stale_save_and_partial, expect=("mask.tif",)),
    Case("model moved aside by a killed save", [*PREDICT, "--out", "{dir}/mask.tif"], rc=0,
         setup=_model_moved_aside, expect=("mask.tif", "model/bundle.json")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_fault(case, run_case):
    outcomes = run_case(case)
    if case.setup is _stale_save_and_partial:
        assert "the unfinished save of a killed run" in outcomes[0].stdout
        assert "the unfinished output of a killed run" in outcomes[0].stdout
    if case.setup is _model_moved_aside:
        assert "Restored the model" in outcomes[0].stdout

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.cli.main import main
from napari_unet.core.events import Slice
from napari_unet.io import tiff

from volumes import ONE_DISC, disc_volume, model_folder_without_weights


def _volume(tmp_path):
    image, labels, truth = disc_volume((4, 48, 48), annotated=(0, 3), discs=ONE_DISC)
    tifffile.imwrite(tmp_path / "vol.tif", image, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "vol_labels.tif", labels, photometric="minisblack")
    tifffile.imwrite(tmp_path / "truth_labels.tif", truth, photometric="minisblack")
    return image, truth


TINY = ["--n-filters", "4", "--depth", "2", "--epochs", "2", "--steps-per-epoch", "3",
        "--batch-size", "2", "--patch-size", "32"]


@pytest.mark.slow
def test_train_predict_evaluate_round_trip(tmp_path, capsys):
    image, truth = _volume(tmp_path)
    model = tmp_path / "model"
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels",
                 str(tmp_path / "vol_labels.tif"), "--out", str(model), *TINY]) == 0
    out = capsys.readouterr().out
    assert "Validation Dice" in out and (model / "bundle.json").is_file()

    # An existing model folder is not replaced unasked.
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels",
                 str(tmp_path / "vol_labels.tif"), "--out", str(model), *TINY]) == 2
    assert "exists" in capsys.readouterr().err

    mask = tmp_path / "mask.tif"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(mask), "--prob", str(tmp_path / "prob.tif")]) == 0
    pred, meta = tiff.read_array(mask)
    assert pred.shape == image.shape and pred.dtype == np.uint8
    np.testing.assert_allclose(meta.scale, (3.0, 0.5, 0.5))
    prob, _ = tiff.read_array(tmp_path / "prob.tif")
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    np.testing.assert_array_equal(pred, (prob > 0.5).astype(np.uint8))
    assert not list(tmp_path.glob("*.partial.zarr")), "temporary outputs left behind"

    # Three-axis: the bar follows each pass, then the writing.
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "mask3.tif"), "--three-axis"]) == 0
    err = capsys.readouterr().err
    assert all(f"Pass {a} of 3" in err for a in (1, 2, 3)) and "Writing" in err, err[-500:]

    # The output is never overwritten.
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(mask)]) == 2

    zarr_out = tmp_path / "mask.zarr"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(zarr_out)]) == 0
    import zarr

    np.testing.assert_array_equal(zarr.open_array(str(zarr_out), mode="r")[:], pred)

    report = tmp_path / "scores.json"
    # The training percentiles, which are those of the whole volume: 2 slices by their own would differ.
    assert main(["evaluate", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--labels", str(tmp_path / "truth_labels.tif"), "--slices", "1:3",
                 "--json", str(report), "--normalize", "model"]) == 0
    scores = json.loads(report.read_text())
    expected = 2 * np.sum(pred[1:3] & truth[1:3]) / (pred[1:3].sum() + truth[1:3].sum())
    assert scores["dice"] == pytest.approx(expected, abs=1e-6)
    assert scores["slices"] == "1:3"

    # Objects from the same class model: 3-D ids, with the voxel size read from the TIFF.
    objects_path = tmp_path / "objects.tif"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(objects_path), "--output", "instances", "--min-size", "5"]) == 0
    assert "No voxel size" not in capsys.readouterr().out
    objects, _ = tiff.read_array(objects_path)
    assert objects.dtype == np.uint32 and objects.shape == image.shape
    assert ((objects > 0) == (pred > 0)).mean() > 0.95  # same foreground, now with ids
    per_slice_ids = sum(len(np.unique(plane[plane > 0])) for plane in objects)
    assert 1 <= len(np.unique(objects[objects > 0])) < per_slice_ids  # ids continue across slices
    assert main(["evaluate", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--labels", str(tmp_path / "truth_labels.tif"), "--output", "instances",
                 "--json", str(tmp_path / "objects.json")]) == 0
    scores = json.loads((tmp_path / "objects.json").read_text())
    assert scores["mode"] == "3d" and 0 <= scores["adapted_rand_error"] <= 1 and 0 <= scores["f1"] <= 1
    assert scores["n_true"] == 1  # the one disc through the 4 slices


@pytest.mark.slow
def test_train_time_limit_ends_a_long_run(tmp_path, capsys, monkeypatch):
    from napari_unet.cli import train

    finals, real = [], train.train_with_progress  # what each training ended with

    def train_with_progress(*args, **kwargs):
        finals.append(real(*args, **kwargs))
        return finals[-1]

    monkeypatch.setattr(train, "train_with_progress", train_with_progress)
    _volume(tmp_path)
    model = tmp_path / "model"
    args = TINY[:4] + ["--epochs", "100000"] + TINY[6:]
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
                 "--out", str(model), *args, "--max-seconds", "4"]) == 0
    meta = json.loads((model / "bundle.json").read_text())
    assert meta["train_config"]["max_seconds"] == 4.0
    assert 1 <= len(meta["history"]["epoch"]) < 100000
    assert [final.finish_reason for final in finals] == ["time_limit"]  # the cap ended it, not the epochs


@pytest.mark.slow
def test_train_on_one_annotated_slice_says_more_slices_help_and_which_to_paint_next(tmp_path, capsys):
    image, labels, _ = disc_volume((4, 48, 48), annotated=(2,), discs=ONE_DISC)
    tifffile.imwrite(tmp_path / "vol.tif", image, photometric="minisblack")  # a bare stack: no voxel size
    tifffile.imwrite(tmp_path / "ann.tif", labels, photometric="minisblack")
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "ann.tif"),
                 "--out", str(tmp_path / "model"), *TINY]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Only slice")]
    assert len(said) == 1 and said[0].startswith("Only slice 2 is annotated"), said
    assert said[0].endswith("Slice 1, for example, spreads the annotations through the stack."), said


def test_outputs_are_checked_before_any_work(tmp_path, capsys):
    _volume(tmp_path)
    image = str(tmp_path / "vol.tif")
    before = (tmp_path / "vol.tif").read_bytes()
    cases = [
        (["--out", str(tmp_path / "m.tif"), "--prob", image], "is one of the inputs"),
        (["--out", str(tmp_path / "m.tif"), "--prob", str(tmp_path / "m.tif")], "is one of the inputs"),
        (["--out", str(tmp_path / "m.png")], "must end in .tif"),
        (["--out", str(tmp_path / "m.tif"), "--prob", str(tmp_path / "p.png")], "must end in .tif"),
        (["--out", str(tmp_path / "m.tif"), "--prob", str(tmp_path / "truth_labels.tif")], "exists"),
    ]
    for extra, message in cases:
        # The model does not even exist: the outputs are refused first.
        assert main(["predict", "--model", str(tmp_path / "missing"), "--image", image, *extra]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "vol.tif").read_bytes() == before
    assert main(["evaluate", "--model", str(tmp_path / "missing"), "--image", image, "--labels",
                 str(tmp_path / "truth_labels.tif"), "--json", str(tmp_path / "vol_labels.tif")]) == 2
    assert "exists" in capsys.readouterr().err


def test_bad_inputs_give_clear_messages(tmp_path, capsys):
    _volume(tmp_path)
    missing = tmp_path / "missing_model"
    assert main(["predict", "--model", str(missing), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "m.tif")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and not (tmp_path / "m.tif").exists()
    with pytest.raises(SystemExit):
        main(["train", "--image", "x.tif"])  # --labels and --out missing


def test_bad_option_values_fail_with_the_config_s_one_line_message(tmp_path, capsys):
    _volume(tmp_path)
    args = ["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
            "--out", str(tmp_path / "model")]
    assert main(args + ["--learning-rate", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "napari-unet train: error: learning_rate must be between 1e-07 and 1.0, got 0.0"]
    assert not (tmp_path / "model").exists()


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "napari_unet.cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "{train,predict,suggest,evaluate,export,demo}" in out.splitlines()[0]  # the usage line names the subcommands


def test_only_the_console_entry_changes_the_signal_handlers():
    """napari and scripts import the package and keep their handlers; the console script's entry
    installs the one-line stop before it imports anything else."""
    check = ("import signal, sys\n"
             "before = signal.getsignal(signal.SIGINT)\n"
             "import napari_unet.cli.console, napari_unet.cli.main\n"
             "assert signal.getsignal(signal.SIGINT) is before\n"
             "def spy(*a, **k):\n"
             "    print(signal.getsignal(signal.SIGINT).__name__)\n"
             "    raise SystemExit(0)\n"
             "sys.modules['napari_unet.cli.main'].main = spy\n"
             "napari_unet.cli.console.main()\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "stop_while_starting"), done.stderr


def test_a_signal_once_the_output_is_whole_is_said_late_and_one_after_the_command_is_ignored():
    import os
    import signal

    from napari_unet.runtime import interrupts

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with interrupts.handled(ignore_after=True):
            assert interrupts.output_whole() is None
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this thread
            assert (interrupts.output_whole(), interrupts.last_signal()) == (signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("existing", ["masks.tif", "metrics.json", "overview.png", "model"])
def test_demo_refuses_to_replace_its_outputs_unasked(tmp_path, capsys, existing):
    out = tmp_path / "demo"
    out.mkdir()
    (out / existing).write_text("keep me") if "." in existing else (out / existing).mkdir()
    assert main(["demo", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert str(out / existing) in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [existing]  # refused before any work
    if "." in existing:
        assert (out / existing).read_text() == "keep me"


def _stop_as_soon_as_started(monkeypatch, start_name):
    """Make the next engine job ask to stop the moment its worker starts, as an early Ctrl-C would."""
    from napari_unet.cli import progress

    real = getattr(progress, start_name)

    def start_then_stop(*args, **kwargs):
        job = real(*args, **kwargs)
        start = job.start

        def started():
            start()
            job.stop(timeout=300)  # a slow worker start on a busy machine must not turn into a kill
            return job

        job.start = started
        return job

    monkeypatch.setattr(progress, start_name, start_then_stop)


@pytest.mark.slow
def test_a_stop_before_the_first_epoch_keeps_the_old_model(tmp_path, capsys, monkeypatch):
    _volume(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "bundle.json").write_text('{"a": "good model"}')
    _stop_as_soon_as_started(monkeypatch, "start_training")
    rc = main(["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
               "--out", str(model), "--overwrite", *TINY])
    captured = capsys.readouterr()
    assert rc == 130, captured
    assert "no model was saved" in captured.err and "Model saved" not in captured.out
    assert (model / "bundle.json").read_text() == '{"a": "good model"}'
    assert [p.name for p in model.iterdir()] == ["bundle.json"]


def test_an_unwritable_model_folder_is_refused_before_training(tmp_path, capsys, read_only_folder):
    from napari_unet.core.config import TrainConfig
    from napari_unet.runtime.jobs.train import start_training

    _volume(tmp_path)
    for out in (read_only_folder / "model", read_only_folder / "new" / "model"):
        assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels",
                     str(tmp_path / "vol_labels.tif"), "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{read_only_folder} is not writable" in err and len(err.splitlines()) == 1
        with pytest.raises(ValueError, match="not writable"):
            start_training(np.zeros((2, 32, 32)), np.zeros((2, 32, 32), np.uint8), model_cfg=None,
                           train_cfg=TrainConfig(), out_dir=out)
    assert list(read_only_folder.iterdir()) == []


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    """A tiny model trained on a (Z, Y, X, 3) RGB stack: (folder, image (Z, Y, X, 3))."""
    folder = tmp_path_factory.mktemp("rgb")
    _, y, x = np.mgrid[0:4, 0:48, 0:48]
    truth = (((y - 20) ** 2 + (x - 24) ** 2) < 120).astype(np.uint8)
    image = np.stack([truth * 150 + 40, truth * 90 + 60, 80 - truth * 30], axis=-1).astype(np.uint8)
    tifffile.imwrite(folder / "rgb.tif", image, photometric="rgb")
    tifffile.imwrite(folder / "rgb_labels.tif", truth, photometric="minisblack")
    assert main(["train", "--image", str(folder / "rgb.tif"), "--labels", str(folder / "rgb_labels.tif"),
                 "--out", str(folder / "model"), *TINY]) == 0
    return folder / "model", image


@pytest.mark.slow
def test_predict_writes_the_spatial_scale_of_multichannel_images(rgb_model, tmp_path):
    model, image = rgb_model
    tifffile.imwrite(tmp_path / "rgb.tif", image, photometric="rgb")
    tifffile.imwrite(tmp_path / "zcyx.tif", np.moveaxis(image, -1, 1), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZCYX"})
    for name, scale in (("rgb.tif", (1.0, 1.0, 1.0)), ("zcyx.tif", (3.0, 0.5, 0.5))):
        out = tmp_path / f"{name}-mask.tif"
        assert main(["predict", "--model", str(model), "--image", str(tmp_path / name), "--out", str(out)]) == 0
        labels, meta = tiff.read_array(out)
        assert labels.shape == image.shape[:3]
        np.testing.assert_allclose(meta.scale, scale)



def test_a_cancelled_prediction_keeps_its_slices_in_a_file_marked_incomplete(tmp_path, capsys, monkeypatch):
    from napari_unet.cli import progress

    image, _ = _volume(tmp_path)
    model = model_folder_without_weights(tmp_path / "model")
    real = progress.start_prediction

    def cancelled_after_two_slices(*args, **kwargs):
        job = real(*args, **kwargs)
        job.target = "engine_jobs:predict_some_then_wait"
        poll = job.poll

        def poll_and_cancel():  # what Ctrl-C does once two slices are in
            events = poll()
            if any(isinstance(e, Slice) for e in events):
                job.stop()
            return events

        job.poll = poll_and_cancel
        return job

    monkeypatch.setattr(progress, "start_prediction", cancelled_after_two_slices)
    mask, prob = tmp_path / "mask.tif", tmp_path / "prob.tif"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(mask), "--prob", str(prob)]) == 130
    err = capsys.readouterr().err
    assert "2 of 4 slices" in err and "mask.incomplete.tif" in err and "not written" in err
    assert not mask.exists() and not prob.exists()
    kept, meta = tiff.read_array(tmp_path / "mask.incomplete.tif")
    np.testing.assert_array_equal(kept[:, 0, 0], [1, 2, 0, 0])
    np.testing.assert_allclose(meta.scale, (3.0, 0.5, 0.5))
    assert tiff.read_array(tmp_path / "prob.incomplete.tif")[0][:2].min() == 0.5
    assert not list(tmp_path.glob("*.partial.zarr"))

    # A second cancelled run never replaces the first one's incomplete file.
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(mask)]) == 130
    assert (tmp_path / "mask.incomplete-2.tif").is_file()


def test_outputs_that_cannot_fit_on_the_disk_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import shutil

    from napari_unet.core.config import PredictConfig
    from napari_unet.runtime.jobs.predict import start_prediction

    _volume(tmp_path)
    model = model_folder_without_weights(tmp_path / "model")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10_000))
    # 4 x 48 x 48 labels: 9,216 bytes, written once as a temporary zarr and once as the TIFF.
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "mask.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Not enough disk space" in err and "18.0 KiB" in err and len(err.splitlines()) == 1
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "mask.zarr"), "--prob", str(tmp_path / "prob.zarr")]) == 2
    assert "Not enough disk space" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Not enough disk space"):
        start_prediction(np.zeros((4, 48, 48)), model, predict_cfg=PredictConfig(return_probabilities=True),
                                prob_path=tmp_path / "p.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "truth_labels.tif", "vol.tif", "vol_labels.tif"]
    monkeypatch.undo()
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "mask.zarr"), "--tile-size", "16"]) == 2  # room enough, other problem
    assert "Not enough" not in capsys.readouterr().err


def test_unclear_inputs_get_messages_in_the_cli_s_own_terms(tmp_path, capsys):
    _volume(tmp_path)
    model = model_folder_without_weights(tmp_path / "model")
    image = str(tmp_path / "vol.tif")

    def predict_error(*extra, image=image, model=model):
        assert main(["predict", "--model", str(model), "--image", image, "--out", str(tmp_path / "m.tif"),
                     *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "is a file, not a model folder" in predict_error(model=tmp_path / "vol.tif")
    err = predict_error("--tile-size", "16")
    assert "--tile-size 16" in err and "tile_overlap" not in err
    tifffile.imwrite(tmp_path / "tzcyx.tif", np.zeros((2, 3, 2, 32, 32), np.uint8), imagej=True,
                     metadata={"axes": "TZCYX"})
    err = predict_error(image=str(tmp_path / "tzcyx.tif"))
    assert "TZCYX" in err and "time point" in err and "channel_axis" not in err
    assert not (tmp_path / "m.tif").exists()


def _corrupt_compressed_tiff(path):
    """A zlib-compressed stack whose third page holds garbage: its header is fine, its pixels are not."""
    image = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    tifffile.imwrite(path, image, compression="zlib", imagej=True, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        offset, size = tif.pages[2].dataoffsets[0], tif.pages[2].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset + 5:offset + size - 5] = bytes(size - 10)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    """A tiny model trained on the single-channel test volume."""
    folder = tmp_path_factory.mktemp("gray")
    _volume(folder)
    assert main(["train", "--image", str(folder / "vol.tif"), "--labels", str(folder / "vol_labels.tif"),
                 "--out", str(folder / "model"), *TINY]) == 0
    return folder / "model"


@pytest.mark.slow
def test_a_corrupt_compressed_tiff_is_named_when_predicting(gray_model, tmp_path, capsys):
    _corrupt_compressed_tiff(tmp_path / "broken.tif")
    assert main(["predict", "--model", str(gray_model), "--image", str(tmp_path / "broken.tif"),
                 "--out", str(tmp_path / "m.tif")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'broken.tif'} is truncated or corrupt" in err
    assert not (tmp_path / "m.tif").exists()


# -- export and packages (parent-side checks: no worker starts) ---------------------------------
def test_export_checks_its_inputs_before_any_work(tmp_path, capsys):
    pytest.importorskip("bioimageio.core", reason="needs the bioimageio extra (in the testing extra)")
    _volume(tmp_path)
    model = model_folder_without_weights(tmp_path / "model")
    image = str(tmp_path / "vol.tif")
    (tmp_path / "taken.zip").write_bytes(b"keep me")

    def export(*extra, model=model, out=tmp_path / "new.zip"):
        status = main(["export", "--model", str(model), "--image", image, "--out", str(out), *extra])
        return status, capsys.readouterr().err.strip()

    status, err = export()  # bundle.json but no weights
    assert status == 2 and "incomplete" in err and len(err.splitlines()) == 1
    (model / "model.weights.h5").write_bytes(b"")
    status, err = export(out=tmp_path / "taken.zip")
    assert status == 2 and "--overwrite" in err and (tmp_path / "taken.zip").read_bytes() == b"keep me"
    status, err = export(out=tmp_path / "new.tif")
    assert status == 2 and "must end in .zip" in err
    (model / "bundle.json").write_text("{broken")
    status, err = export()
    assert status == 2 and "corrupt" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*new*"))


def test_export_names_the_extra_when_bioimageio_is_missing(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("bioimageio") else real(name, *a))
    status = main(["export", "--model", str(tmp_path), "--image", "x.tif", "--out", str(tmp_path / "m.zip")])
    err = capsys.readouterr().err
    assert status == 2 and "napari-slice-unet[bioimageio]" in err


def test_predict_refuses_zips_it_cannot_run(tmp_path, capsys):
    import zipfile

    _volume(tmp_path)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("notes.txt", "hello")
    torch = tmp_path / "torch.zip"
    with zipfile.ZipFile(torch, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\nformat_version: 0.5.4\nweights:\n  pytorch_state_dict:\n"
                                     "    source: weights.pt\n")
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    for path, words in ((plain, "not a bioimage.io package"), (torch, "pytorch_state_dict"),
                        (damaged, "damaged")):
        status = main(["predict", "--model", str(path), "--image", str(tmp_path / "vol.tif"),
                       "--out", str(tmp_path / "mask.tif")])
        err = capsys.readouterr().err.strip()
        assert status == 2 and words in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "mask.tif").exists()


@pytest.mark.slow
def test_train_on_two_pairs_of_different_sizes_then_suggest_slices(tmp_path, capsys):
    _volume(tmp_path)
    wide, _, truth = disc_volume((3, 40, 64), seed=1, annotated=(), discs=((20, 40, 90),))
    tifffile.imwrite(tmp_path / "wide.tif", wide, photometric="minisblack")
    tifffile.imwrite(tmp_path / "wide_labels.tif", truth, photometric="minisblack")
    model = tmp_path / "model"
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
                 "--image", str(tmp_path / "wide.tif"), "--labels", str(tmp_path / "wide_labels.tif"),
                 "--out", str(model), *TINY]) == 0
    counts = re.search(r"(\d+) training and (\d+) validation slice", capsys.readouterr().out)
    assert int(counts[1]) + int(counts[2]) == 5  # 2 annotated slices of vol.tif, 3 of wide.tif
    meta = json.loads((model / "bundle.json").read_text())
    assert meta["training_data"]["extra_pairs"][0]["image_shape"] == [3, 40, 64]

    assert main(["suggest", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--labels", str(tmp_path / "vol_labels.tif")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Slices the model is least sure of")
    ranked = [int(line.split()[1]) for line in lines[1:]]
    assert sorted(ranked) == [1, 2]  # the unannotated slices of vol_labels.tif
    scores = [float(line.split()[-1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_pairs_whose_channels_differ_are_refused_in_one_line(tmp_path, capsys):
    _volume(tmp_path)
    image = tifffile.imread(tmp_path / "vol.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.repeat(image[..., None], 3, axis=-1), photometric="rgb")
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
                 "--image", str(tmp_path / "rgb.tif"), "--labels", str(tmp_path / "vol_labels.tif"),
                 "--out", str(tmp_path / "m"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pair 2" in err and "rgb.tif" in err
    assert "3 channel(s) but the first image has 1" in err and not (tmp_path / "m").exists()
    assert main(["train", "--image", str(tmp_path / "vol.tif"), "--image", str(tmp_path / "rgb.tif"),
                 "--labels", str(tmp_path / "vol_labels.tif"), "--out", str(tmp_path / "m")]) == 2
    assert "one --labels per --image" in capsys.readouterr().err


def test_values_derived_from_the_data_are_not_options():
    from napari_unet.cli.args import build_parser
    from napari_unet.core.config import ModelConfig

    train = next(a for a in build_parser()._actions if a.choices and "train" in a.choices).choices["train"]
    flags = {flag for action in train._actions for flag in action.option_strings}
    assert "--n-filters" in flags and "--depth" in flags  # the user's choices are
    assert not {"--" + name.replace("_", "-") for name in ModelConfig.DERIVED} & flags


@pytest.mark.slow
def test_predict_reads_and_writes_ome_zarr_with_the_scale(gray_model, tmp_path, capsys):
    from napari_unet.io import omezarr

    image, _ = _volume(tmp_path)
    assert main(["predict", "--model", str(gray_model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "first.ome.zarr")]) == 0
    # An OME-Zarr image in, OME-Zarr and plain zarr out: the voxel size goes all the way through.
    omezarr.write_ome_zarr(tmp_path / "vol.ome.zarr", image, axes="ZYX", scale=(3.0, 0.5, 0.5), labels=False)
    for name in ("again.ome.zarr", "plain.zarr"):
        assert main(["predict", "--model", str(gray_model), "--image", str(tmp_path / "vol.ome.zarr"),
                     "--out", str(tmp_path / name)]) == 0
    first = omezarr.open_lazy(tmp_path / "first.ome.zarr")
    for name in ("again.ome.zarr", "plain.zarr"):
        labels, meta = omezarr.open_lazy(tmp_path / name)
        assert meta.scale == (3.0, 0.5, 0.5) and meta.axes == "ZYX"
        np.testing.assert_array_equal(np.asarray(labels), np.asarray(first[0]))
    assert first[1].scale == (3.0, 0.5, 0.5) and first[1].labels_marked
    assert not list(tmp_path.glob("*.partial.zarr"))
    # Never replaced.
    assert main(["predict", "--model", str(gray_model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(tmp_path / "plain.zarr")]) == 2
    assert "exists" in capsys.readouterr().err


def _bare_instances(folder):
    """A bare TIFF (no voxel size) of two touching discs that grow with z, and their 3-D ids
    painted on slices 0, 3 and 6."""
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[0:8, 0:48, 0:48]
    ids = np.where((y - 24) ** 2 + (x - 16) ** 2 < (6 + z) ** 2, 1, 0)
    ids = np.where(((y - 24) ** 2 + (x - 34) ** 2 < (6 + z) ** 2) & (x > 25), 2, ids).astype(np.uint8)
    edge = (ids > 0) & (np.abs(x - 25) < 1)
    image = ((ids > 0) * 120 - edge * 80 + 40 + rng.normal(0, 10, ids.shape)).clip(0, 255).astype(np.uint8)
    labels = np.zeros_like(ids)
    labels[[0, 3, 6]] = ids[[0, 3, 6]]
    tifffile.imwrite(folder / "bare.tif", image)
    tifffile.imwrite(folder / "bare_labels.tif", labels)


@pytest.mark.slow
def test_predict_on_a_bare_tiff_says_the_tuned_and_estimated_values_once_each(tmp_path, capsys):
    _bare_instances(tmp_path)
    model = tmp_path / "model"
    assert main(["train", "--image", str(tmp_path / "bare.tif"), "--labels", str(tmp_path / "bare_labels.tif"),
                 "--instances", "--out", str(model), *TINY]) == 0
    assert capsys.readouterr().out.count("objects tuned on your annotations: ") == 1
    assert json.loads((model / "bundle.json").read_text())["object_tuning"]["n_slices"] == 3

    out_path = tmp_path / "objects.tif"
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "bare.tif"), "--out", str(out_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("objects tuned on your annotations: ") for line in lines) == 1
    voxel_lines = [line for line in lines if line.startswith("No voxel size")]
    assert len(voxel_lines) == 1 and "--voxel-size" in voxel_lines[0], lines
    said = re.search(r"z, y, x = ([0-9.e+-]+), 1, 1", voxel_lines[0])
    scale = tiff.read_array(out_path)[1].scale
    if said:  # the output carries the voxel size it was found with
        assert scale == pytest.approx((float(said.group(1)), 1.0, 1.0), rel=1e-2)

    # Given options win: per-slice objects need no voxel size, and none is said.
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "bare.tif"),
                 "--out", str(tmp_path / "o2.tif"), "--objects", "2d", "--voxel-size", "2", "1", "1"]) == 0
    assert "No voxel size" not in capsys.readouterr().out


@pytest.mark.parametrize("option, message", [
    (["--threshold", "1"], "threshold must be strictly between 0 and 1 for objects, got 1.0"),
    (["--threshold", "0"], "threshold must be strictly between 0 and 1 for objects, got 0.0"),
    (["--seed-distance", "0.25"], "seed_distance must be between 0.5 and 1000.0, got 0.25"),
    (["--min-size", "-1"], "min_object_size must be between 0 and 1000000000, got -1"),
])
def test_bounds_of_objects_are_refused_in_one_line_before_any_work(tmp_path, capsys, option, message):
    """The bounds of ObjectsConfig, which the dock and the worker share: never a failure in the worker."""
    _volume(tmp_path)
    out = tmp_path / "objects.tif"
    model = model_folder_without_weights(tmp_path / "model")
    assert main(["predict", "--model", str(model), "--image", str(tmp_path / "vol.tif"),
                 "--out", str(out), "--output", "instances", *option]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"napari-unet predict: error: {message}"]
    assert not out.exists() and not list(tmp_path.glob("*.partial.zarr"))

"""The rules the command line shares with the Train dock (tests/plugin/widgets/test_shared_rules.py
checks the dock against the same values): the device text, and the channels and classes of the data."""

import pytest
import tifffile

from napari_unet.cli import progress
from napari_unet.cli.main import main
from napari_unet.core import events

from volumes import rgb_pair

# The dock's Device line for this Start event is exactly DEVICE_TEXT too.
START = events.Start(device="GPU: NVIDIA H200, 0.5 of 141 GiB used", n_train_slices=4, n_val_slices=1,
                     n_classes=1, epochs=5, steps_per_epoch=10, params=1000, mixed_precision=True,
                     precision="mixed_bfloat16", replicas=2, batch_size=32, patch_size=256)
DEVICE_TEXT = "GPU: NVIDIA H200, 0.5 of 141 GiB used, mixed_bfloat16, batch split over 2"


class _Bar:
    """What ``train_with_progress``'s callback uses of a tqdm bar."""

    def __init__(self):
        self.total, self.lines = 1, []

    def write(self, text, file=None):
        self.lines.append(text)


class _Job:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def fake_training(monkeypatch):
    """The train command with its job replaced: records what it was started with and shows START."""
    seen = {}

    def start_training(image, labels, **kwargs):
        seen.update(kwargs)
        return _Job()

    def follow(job, on_event=None, desc="", unit=""):
        bar = _Bar()
        on_event(START, bar)
        seen["lines"] = bar.lines
        return events.Stopped(message="Stopped before the first epoch: no model was saved.")

    monkeypatch.setattr(progress, "start_training", start_training)
    monkeypatch.setattr(progress, "follow", follow)
    return seen


def _train(tmp_path, image, labels) -> int:
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="rgb")
    tifffile.imwrite(tmp_path / "ann.tif", labels, photometric="minisblack")
    return main(["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "ann.tif"),
                 "--out", str(tmp_path / "model")])


def test_the_train_command_says_the_device_as_the_dock_does(tmp_path, fake_training):
    assert _train(tmp_path, *rgb_pair((2, 32, 32))) == 130
    assert fake_training["lines"][0] == (f"Device: {DEVICE_TEXT}; 4 training and 1 validation slice(s); "
                                         "1,000 weights; batches of 32 x 256 px")


@pytest.mark.parametrize("shape", [(2, 32, 32), (32, 32)])
def test_the_train_command_takes_channels_and_classes_from_the_data_as_the_dock_does(tmp_path, fake_training,
                                                                                     shape):
    assert _train(tmp_path, *rgb_pair(shape)) == 130
    model_cfg = fake_training["model_cfg"]
    assert (model_cfg.in_channels, model_cfg.n_classes) == (3, 5)  # a 2-D RGB image too (was 1 channel)

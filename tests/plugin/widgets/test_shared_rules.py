"""The rules the Train dock shares with the command line (tests/cli/test_shared_rules.py checks the
command line against the same values): the device text, and the channels and classes of the data."""

import pytest

from napari_unet.core import events
from napari_unet.plugin.widgets import train_widget
from napari_unet.plugin.widgets.train_widget import TrainWidget

from volumes import rgb_pair

# As in tests/cli/test_shared_rules.py: the command line's first line says "Device: " + DEVICE_TEXT.
START = events.Start(device="GPU: NVIDIA H200, 0.5 of 141 GiB used", n_train_slices=4, n_val_slices=1,
                     n_classes=1, epochs=5, steps_per_epoch=10, params=1000, mixed_precision=True,
                     precision="mixed_bfloat16", replicas=2, batch_size=32, patch_size=256)
DEVICE_TEXT = "GPU: NVIDIA H200, 0.5 of 141 GiB used, mixed_bfloat16, batch split over 2"


class _Started(Exception):
    """Raised instead of starting the job: the test only needs what it was started with."""


def test_the_dock_says_the_device_as_the_command_line_does(make_napari_viewer):
    dock = TrainWidget(make_napari_viewer())
    dock._on_event(START)
    assert dock.device.value == DEVICE_TEXT
    assert dock.status.value == "4 training and 1 validation slice(s); 1,000 weights; batches of 32 x 256 px"


@pytest.mark.parametrize("shape", [(2, 32, 32), (32, 32)])
def test_the_dock_takes_channels_and_classes_from_the_data_as_the_command_line_does(make_napari_viewer,
                                                                                  tmp_path, monkeypatch, shape):
    viewer = make_napari_viewer()
    image, labels = rgb_pair(shape)
    viewer.add_image(image, name="img", rgb=True)
    viewer.add_labels(labels, name="ann")
    dock = TrainWidget(viewer)
    dock.model_dir.value = tmp_path / "model"
    assert not dock._check_inputs(), dock.status.value
    seen = {}

    def start_training(image, labels, **kwargs):
        seen.update(kwargs)
        raise _Started

    monkeypatch.setattr(train_widget, "start_training", start_training)
    with pytest.raises(_Started):
        dock.start_training()
    assert (seen["model_cfg"].in_channels, seen["model_cfg"].n_classes) == (3, 5)

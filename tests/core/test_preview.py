"""Live preview during training: the trainer predicts the slice it is asked for, and only that."""

import numpy as np
import pytest

from napari_unet.core import events
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.train import preview
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2)
TINY_TRAIN = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=2, patch_size=32, augment=False)


@pytest.fixture(scope="module")
def volume():
    """5 x 48 x 40 discs; slices 1 and 3 annotated."""
    image, labels, _ = disc_volume((5, 48, 40), annotated=(1, 3), discs=((20, 20, 100),))
    return image, labels


def previews_of(volume, tmp_path, requests):
    """Train with the request moving through ``requests`` (one per call); the Preview events."""
    asked = iter(requests)
    last = [None]

    def request():
        last[0] = next(asked, last[0])
        return last[0]

    run = list(train(*volume, model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, out_dir=tmp_path / "model",
                     preview_request=request))
    assert isinstance(run[-1], events.Done), run[-1]
    return [event for event in run if isinstance(event, events.Preview)]


def test_previews_carry_the_requested_slice_along_any_axis(volume, tmp_path):
    found = previews_of(volume, tmp_path, [(0, 2), (1, 7), (2, 39)])
    assert len(found) >= 2  # one per epoch end at least
    for event in found:
        expected = {0: (48, 40), 1: (5, 40), 2: (5, 48)}[event.axis]
        assert event.labels.shape == event.probability.shape == expected
        assert event.labels.dtype == event.probability.dtype == np.uint8
    # The last request stays in force: the epoch-end previews show it.
    assert (found[-1].axis, found[-1].index) == (2, 39)
    assert {(e.axis, e.index) for e in found} <= {(0, 2), (1, 7), (2, 39)}


def test_a_slice_outside_the_volume_is_skipped_and_training_goes_on(volume, tmp_path):
    assert previews_of(volume, tmp_path, [(0, 5), (1, 48), (2, 400)]) == []


def test_requests_survive_the_trip_through_one_integer():
    for axis, index in [(0, 0), (1, 7), (2, 12345)]:
        assert preview.decode_request(preview.encode_request(axis, index)) == (axis, index)
    assert preview.decode_request(preview.NO_REQUEST) is None
    assert preview.encode_request(3, 1) == preview.encode_request(0, -1) == preview.NO_REQUEST


def test_foreground_probability_is_scaled_to_bytes():
    sigmoid = np.array([[[0.0], [1.0]]], np.float32)
    softmax = np.array([[[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]]], np.float32)
    np.testing.assert_array_equal(preview.foreground(sigmoid), [[0, 255]])
    np.testing.assert_array_equal(preview.foreground(softmax), [[0, 204]])

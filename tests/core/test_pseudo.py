"""Self-training on unannotated slices (``TrainConfig(unannotated="pseudo")``, core/train/pseudo.py)."""

import threading

import numpy as np
import pytest

from napari_unet.core import data
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.train import preview, pseudo
from napari_unet.core.train.loop import Trainer
from napari_unet.core.train.preview import central_window

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2)
TINY_TRAIN = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, patch_size=32, augment=False)
LINE = "unannotated slices too"


# ---------------------------------------------------------------- numpy


def test_pseudo_targets_keep_only_confident_pixels_of_the_predicted_class():
    probs = np.array([[[0.95, 0.03, 0.02], [0.5, 0.3, 0.2]],
                      [[0.02, 0.08, 0.9], [0.1, 0.85, 0.05]]], np.float32)
    target, mask = pseudo.pseudo_targets(probs, confidence=0.9, weight=0.5)
    assert target.shape == (2, 2, 3) and target.dtype == np.float32
    np.testing.assert_array_equal(target.argmax(-1), [[0, 0], [2, 1]])
    assert set(np.unique(target)) == {0.0, 1.0} and (target.sum(-1) == 1).all()
    np.testing.assert_array_equal(mask, [[0.5, 0.0], [0.5, 0.0]])  # 0.9 itself is confident, 0.85 is not


def test_pseudo_targets_of_one_sigmoid_channel():
    probs = np.array([[0.97, 0.02, 0.7, 0.4]], np.float32)[..., None]
    target, mask = pseudo.pseudo_targets(probs, confidence=0.9, weight=0.25)
    np.testing.assert_array_equal(target[..., 0], [[1, 0, 1, 0]])
    np.testing.assert_array_equal(mask, [[0.25, 0.25, 0.0, 0.0]])


def test_candidates_are_the_unannotated_slices_nearest_the_annotated_ones():
    assert pseudo.unannotated_candidates(10, [3, 7], 4) == [2, 4, 6, 8]
    assert pseudo.unannotated_candidates(10, [7, 3], 6) == [2, 4, 6, 8, 1, 5]
    assert pseudo.unannotated_candidates(10, np.array([0]), 3) == [1, 2, 3]
    assert pseudo.unannotated_candidates(3, [0, 1, 2], 8) == []
    assert pseudo.unannotated_candidates(5, [], 8) == []


def test_central_window_keeps_the_pixel_budget_and_small_slices_whole():
    y, x = central_window((512, 600), 8, max_pixels=pseudo.MAX_PIXELS)
    side = int((pseudo.MAX_PIXELS / 8) ** 0.5)
    assert (y.stop - y.start, x.stop - x.start) == (side, side) and 8 * side * side <= pseudo.MAX_PIXELS
    assert y.start == (512 - side) // 2 and x.start == (600 - side) // 2
    assert central_window((48, 40), 8, max_pixels=pseudo.MAX_PIXELS) == (slice(0, 48), slice(0, 40))
    y, x = central_window((4096, 4096), 8, max_pixels=pseudo.MAX_PIXELS, min_side=300)
    assert y.stop - y.start == max(300, side)


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def volume():
    """6 x 48 x 48 discs, slices 1 and 4 annotated (binary): slices 0, 2, 3 and 5 are not."""
    image, labels, _ = disc_volume()
    return image, labels


def trained(volume, out, cfg, stop_event=None):
    image, labels = volume
    trainer = Trainer(image, labels, model_cfg=TINY_MODEL, train_cfg=cfg, out_dir=out, stop_event=stop_event)
    return trainer, list(trainer.run())


def test_pseudo_adds_the_unannotated_slices_halfway_to_training_only(volume, tmp_path, monkeypatch):
    # The tiny model is not sure of much after 3 steps: any predicted class counts here.
    monkeypatch.setattr(pseudo, "CONFIDENCE", 0.5)
    trainer, events = trained(volume, tmp_path / "model", TINY_TRAIN.replace(unannotated="pseudo"))
    kinds = [e.kind for e in events]
    lines = [i for i, e in enumerate(events) if e.kind == "warning" and LINE in e.message]
    assert len(lines) == 1 and "4 unannotated slices" in events[lines[0]].message
    assert kinds.index("epoch") < lines[0] < len(kinds) - 1 - kinds[::-1].index("epoch")  # halfway
    assert kinds[-1] == "done"
    # The annotated slices' regions (whatever the split) come first, then the 4 whole new slices.
    annotated = [item for item in trainer.train_items if item[0] < 2]
    assert trainer.train_items[len(annotated):] == [(i, (0, 48, 0, 48)) for i in range(2, 6)]
    assert len(trainer.image_norm) == 2 + 4 and trainer.val_items and all(i < 2 for i, _ in trainer.val_items)
    assert len(trainer.sampler._crops) == len(trainer.train_items)  # the sampler was rebuilt with them
    for i, z in enumerate([0, 2, 3, 5], start=2):
        np.testing.assert_allclose(trainer.image_norm[i], data.normalize(trainer.image_zyxc[z], trainer.norm))
        assert set(np.unique(trainer.masks[i])) == {pseudo.WEIGHT}
        assert trainer.targets[i].shape == (48, 48, 1) and set(np.unique(trainer.targets[i])) <= {0.0, 1.0}


def test_off_changes_nothing(volume, tmp_path):
    assert TrainConfig().unannotated == "off"
    trainer, events = trained(volume, tmp_path / "model", TINY_TRAIN)
    assert not [e for e in events if e.kind == "warning"]
    assert len(trainer.image_norm) == 2 and all(i < 2 for i, _ in trainer.train_items)
    assert len(trainer.sampler._crops) == len(trainer.train_items)
    assert events[-1].kind == "done"


def test_a_stop_during_the_pseudo_phase_ends_the_run(volume, tmp_path, monkeypatch):
    stop, calls = threading.Event(), []
    predict = preview.predict_slice

    def predict_then_stop(*args, **kwargs):
        calls.append(1)
        stop.set()
        return predict(*args, **kwargs)

    monkeypatch.setattr(preview, "predict_slice", predict_then_stop)
    trainer, events = trained(volume, tmp_path / "model", TINY_TRAIN.replace(unannotated="pseudo"), stop)
    assert len(calls) == 1  # the stop is seen before the next slice
    assert events[-1].kind == "stopped" and events[-1].training.model_saved  # epoch 1 finished
    assert not [e for e in events if e.kind == "warning"] and all(i < 2 for i, _ in trainer.train_items)


def test_a_volume_without_unannotated_slices_says_so(tmp_path):
    image, labels, _ = disc_volume(shape=(2, 48, 48), annotated=(0, 1))
    _, events = trained((image, labels), tmp_path / "model", TINY_TRAIN.replace(unannotated="pseudo"))
    lines = [e.message for e in events if e.kind == "warning"]
    assert len(lines) == 1 and lines[0].startswith("No unannotated slices") and events[-1].kind == "done"

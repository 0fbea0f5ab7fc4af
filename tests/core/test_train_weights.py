"""Per-pixel loss weights in training (``train(..., weights=...)``)."""

import numpy as np
import pytest

from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2)
TINY_TRAIN = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, patch_size=32, augment=False, val_fraction=0.0)
SLICES, ROWS = [1, 4], slice(10, 38)  # annotated slices, and the rows that count on them


@pytest.fixture(scope="module")
def discs():
    image, _, truth = disc_volume()
    full = np.zeros_like(truth)
    full[SLICES] = truth[SLICES]
    painted = np.zeros(truth.shape, bool)
    painted[SLICES, ROWS] = True
    return image, full, painted


def batch_losses(image, labels, out_dir, train_cfg=TINY_TRAIN, **kwargs):
    events = list(train(image, labels, model_cfg=TINY_MODEL, train_cfg=train_cfg, out_dir=out_dir, **kwargs))
    assert events[-1].kind == "done"
    return [e.loss for e in events if e.kind == "batch"]


def test_weight_zero_is_the_same_as_unannotated(discs, tmp_path):
    """Full slices weighted 0 outside some rows train exactly as scribbles painted on those rows."""
    image, full, painted = discs
    scribbles = np.where(painted, full + 1, 0).astype(np.uint8)  # background 1, discs 2
    unpainted = batch_losses(image, scribbles, tmp_path / "s", TINY_TRAIN.replace(annotation_mode="scribbles"))
    weighted = batch_losses(image, full, tmp_path / "w", weights=painted.astype(np.float32))
    np.testing.assert_allclose(weighted, unpainted, rtol=1e-5)
    assert not np.allclose(batch_losses(image, full, tmp_path / "u"), unpainted, rtol=1e-5)


@pytest.mark.parametrize("weights, problem", [
    (np.ones((6, 48, 40), np.float32), r"got shape \(6, 48, 40\)"),
    (np.full((6, 48, 48), np.nan, np.float32), "got 13824 NaN or infinite values"),
    (-np.ones((6, 48, 48), np.float32), r"got a negative value \(-1\)"),
])
def test_bad_weights_are_refused_before_training(discs, tmp_path, weights, problem):
    image, full, _ = discs
    with pytest.raises(ValueError, match=r"one finite, non-negative number per label pixel, shape \(6, 48, 48\); "
                                         + problem):
        next(train(image, full, model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, out_dir=tmp_path / "m", weights=weights))
    assert not (tmp_path / "m").exists()

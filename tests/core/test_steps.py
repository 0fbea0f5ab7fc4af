"""The loss stays on the device between progress events: same steps, same values, same events."""

import math

import numpy as np
import pytest

from napari_unet.core.nn.steps import StepLosses, train_step_loss
from napari_unet.core.train import loop as train_module
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY = dict(n_filters=4, depth=2)


def _model(seed: int):
    import keras

    from napari_unet.core.config import ModelConfig
    from napari_unet.core.nn.losses import get_loss
    from napari_unet.core.nn.model import build_unet

    keras.utils.set_random_seed(seed)
    model = build_unet(ModelConfig(**TINY))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("bce_dice", 1))
    return model


def test_a_lazy_step_is_train_on_batch_with_the_loss_left_unread():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2, 16, 16, 1)).astype(np.float32)
    y = np.concatenate([x > 0, np.ones_like(x, bool)], -1).astype(np.float32)  # target, mask
    eager, lazy = _model(3), _model(3)
    expected = [float(eager.train_on_batch(x, y)) for _ in range(3)]
    kept = StepLosses()
    for _ in range(3):
        loss = train_step_loss(lazy, x, y)
        assert not isinstance(loss, float)  # left on the device: nothing was read yet
        kept.add(loss)
    assert kept.count == 3 and kept.read(epoch=1) == pytest.approx(expected, rel=1e-6)
    assert len(set(expected)) == 3  # the steps did change the weights
    for a, b in zip(eager.get_weights(), lazy.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_diverged_loss_names_its_batch():
    losses = StepLosses()
    for value in (0.5, 0.4, math.nan, 0.3):
        losses.add(value)
    with pytest.raises(ValueError, match="loss is nan at epoch 2, batch 3.*Lower the learning rate"):
        losses.read(epoch=2)


def _volume():
    image, labels, _ = disc_volume(discs=((20, 24, 100),))
    return image, labels


def _events(tmp_path, name, interval, monkeypatch):
    from napari_unet.core.config import ModelConfig, TrainConfig

    monkeypatch.setattr(train_module, "BATCH_EVENT_INTERVAL_S", interval)
    cfg = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, patch_size=32, augment=False)
    return list(train(*_volume(), model_cfg=ModelConfig(**TINY), train_cfg=cfg, out_dir=tmp_path / name))


def test_spaced_batch_events_carry_the_losses_of_every_step_events(tmp_path, monkeypatch):
    every = _events(tmp_path, "every", 0.0, monkeypatch)
    spaced = _events(tmp_path, "spaced", math.inf, monkeypatch)
    batches = {(e.epoch, e.batch): e for e in every if e.kind == "batch"}
    assert len(batches) == 8
    kept = [e for e in spaced if e.kind == "batch"]
    # The first batch of the run and the last of each epoch; their losses as when read every step.
    assert [(e.epoch, e.batch) for e in kept] == [(1, 1), (1, 4), (2, 4)]
    for e in kept:
        assert e.loss == pytest.approx(batches[e.epoch, e.batch].loss, rel=1e-5)
    epochs = [[e for e in run if e.kind == "epoch"] for run in (every, spaced)]
    for a, b in zip(*epochs):
        assert b.loss == pytest.approx(a.loss, rel=1e-5) and b.val_loss == pytest.approx(a.val_loss, rel=1e-5)
        assert a.loss == pytest.approx(np.mean([batches[a.epoch, k].loss for k in range(1, 5)]))
    assert [e.kind for e in spaced if e.kind != "batch"] == [e.kind for e in every if e.kind != "batch"]

"""Self-supervised pretraining on every slice of the volume, painted or not (``TrainConfig.pretrain_share``).

Masked reconstruction, as in masked autoencoders: the network sees a patch with some of its
``BLOCK`` x ``BLOCK`` blocks blanked and learns to fill them in from what surrounds them, so its
filters learn the stack's textures and shapes from slices nobody painted. A copy of the U-Net
with a one-channel head does it; then every layer but the head hands its weights to the
supervised model. It runs inside the training's time cap, before the supervised phase, and a
stop request ends it like any other step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from napari_unet.core import data, events
from napari_unet.core.nn import fitting
from napari_unet.core.nn.losses import masked_mse
from napari_unet.core.nn.steps import train_step_loss
from napari_unet.core.train.augment import flip_rotate

BLOCK = 8  # px: side of a blanked block
MASKED_SHARE = 0.4  # of a patch's blocks blanked
MAX_SLICES = 64  # slices spread through the stack, loaded once
MIN_UNPAINTED = 4  # fewer unpainted slices than this and there is little to learn that painting did not give
HEAD = "logits"  # the only layer whose weights are not handed over


@dataclass(frozen=True)
class Plan:
    """Which slices to learn from, or why not (``skip``: one line for the user)."""

    slices: tuple[int, ...]
    skip: str | None = None


def plan(n_slices: int, annotated, share: float, *, resuming: bool = False) -> Plan:
    """The slices to pretrain on (every slice, up to ``MAX_SLICES`` spread evenly), or why not."""
    if share <= 0:
        return Plan(())
    if resuming:
        return Plan((), skip="Pretraining skipped: fine-tuning starts from the model's own weights.")
    unpainted = n_slices - len(set(int(z) for z in annotated))
    if unpainted < MIN_UNPAINTED:
        return Plan((), skip=f"Pretraining skipped: the stack has {unpainted} unannotated slice(s), too few to "
                             f"learn from (it needs {MIN_UNPAINTED}); all the time went to the annotations.")
    chosen = np.unique(np.linspace(0, n_slices - 1, min(n_slices, MAX_SLICES)).round().astype(int))
    return Plan(tuple(int(z) for z in chosen))


class MaskedPatches:
    """Batches ``(x, y)`` for reconstruction: ``x`` a patch with blocks blanked to its mean, ``y``
    the patch's channel mean (clipped to 0..1) and, as the last channel, the blanked blocks."""

    def __init__(self, slices_norm, patch_size: int, batch_size: int, seed: int):
        self.slices, self.patch, self.batch = slices_norm, patch_size, batch_size
        self.rng = np.random.default_rng(seed)

    def _one(self):
        image = self.slices[int(self.rng.integers(len(self.slices)))]
        p = self.patch
        y0 = int(self.rng.integers(image.shape[0] - p + 1))
        x0 = int(self.rng.integers(image.shape[1] - p + 1))
        crop = image[y0:y0 + p, x0:x0 + p]
        blocks = self.rng.random((-(-p // BLOCK),) * 2) < MASKED_SHARE
        hidden = np.kron(blocks, np.ones((BLOCK, BLOCK), np.float32))[:p, :p]
        crop, hidden, _ = flip_rotate(crop, hidden[..., None], hidden, self.rng)
        target = np.clip(crop.mean(axis=-1, keepdims=True), 0.0, 1.0)
        x = np.where(hidden > 0, crop.mean(axis=(0, 1)), crop)
        return x, np.concatenate([target, hidden], axis=-1)

    def sample_batch(self):
        pairs = [self._one() for _ in range(self.batch)]
        return (np.stack([x for x, _ in pairs]).astype(np.float32),
                np.stack([y for _, y in pairs]).astype(np.float32))


def load_slices(image_zyxc, slices, norm) -> list[np.ndarray]:
    return [data.normalize(np.asarray(image_zyxc[z]), norm) for z in slices]


def reconstruction_model(model_cfg, policy: str, learning_rate: float, xla: str):
    """The U-Net's twin with one sigmoid channel, compiled for ``masked_mse``."""
    from napari_unet.core.nn.model import build_unet

    with fitting.dtype_policy(policy):
        model = build_unet(model_cfg.replace(n_classes=1, dropout=0.0))
    fitting.compile_model(model, masked_mse, learning_rate, xla)
    return model


def hand_over(source, target) -> int:
    """Copy every layer's weights but the head's from ``source`` to ``target``; the count copied."""
    copied = 0
    for layer in target.layers:
        if layer.name == HEAD or not layer.weights:
            continue
        layer.set_weights(source.get_layer(layer.name).get_weights())
        copied += 1
    return copied


def pretrain(model, batches: MaskedPatches, *, started: float, cap_s: float, share: float, stop_event,
             event_interval_s: float) -> Iterator[events.Event]:
    """Train ``model`` on ``batches`` for ``share`` of the time cap ``cap_s`` counted from ``started``
    (``time.monotonic()``), or until ``stop_event`` is set. Yields a ``Stage`` event, then ``Batch``
    events of epoch 0 (the step count as their batch) at most every ``event_interval_s``."""
    until = started + share * cap_s
    yield events.Stage(message=f"Pretraining on {len(batches.slices)} slices (self-supervised) for "
                               f"{max(0.0, until - time.monotonic()):.0f} s", index=1, total=2)
    steps, last_event = 0, -math.inf
    while time.monotonic() < until and not (stop_event is not None and stop_event.is_set()):
        loss = train_step_loss(model, *batches.sample_batch())
        steps += 1
        now = time.monotonic()
        if now - last_event >= event_interval_s:
            last_event = now
            yield events.Batch(epoch=0, batch=steps, steps=steps, loss=fitting.to_float(loss),
                               progress=min(1.0, (now - started) / cap_s), seconds_left=max(0.0, started + cap_s - now))

"""Consistency on unannotated slices (``TrainConfig.consistency_weight``).

Each step, part of the batch is patches of slices nobody painted. The model's own prediction of
such a patch becomes its target, soft, after the patch and the target are warped the same way
and the patch's intensities are changed: the model learns to give the same answer whatever the
augmentation, on the whole volume rather than on the painted slices alone (the Pi-model and
FixMatch idea, with soft targets so no class is cut off by a confidence threshold). The batch
keeps its size, so a step costs what it did, plus one prediction of the unannotated patches.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core.nn import fitting
from napari_unet.core.train.augment import elastic_deform, flip_rotate, jitter_intensity
from napari_unet.core.train.pretrain import Plan, spread_evenly, too_few_unpainted

RAMP_SHARE = 0.3  # of the run, over which the weight rises: early targets are a barely trained model's
UNANNOTATED_SHARE = 0.5  # of each batch, at least one patch
NOISE_SD = 0.05  # of the normalised intensities, added to the student's view


def plan(n_slices: int, annotated, weight: float, *, resuming: bool = False) -> Plan:
    """The unannotated slices to learn from (up to ``MAX_SLICES`` spread evenly), or why not."""
    if weight <= 0:
        return Plan(())
    if resuming:
        return Plan((), skip="Consistency skipped: fine-tuning starts from the model's own weights.")
    painted = {int(z) for z in annotated}
    skip = too_few_unpainted(n_slices, painted, "Consistency")
    if skip:
        return Plan((), skip=skip)
    return Plan(spread_evenly(z for z in range(n_slices) if z not in painted))


class UnannotatedPatches:
    """Random crops of unannotated slices (already normalised), flipped or turned at random."""

    def __init__(self, slices_norm, patch_size: int, seed: int):
        self.slices, self.patch = slices_norm, patch_size
        self.rng = np.random.default_rng(seed)

    def _one(self) -> np.ndarray:
        image = self.slices[int(self.rng.integers(len(self.slices)))]
        p = self.patch
        y0 = int(self.rng.integers(image.shape[0] - p + 1))
        x0 = int(self.rng.integers(image.shape[1] - p + 1))
        crop = image[y0:y0 + p, x0:x0 + p]
        return flip_rotate(crop, crop[..., :1], crop[..., 0], self.rng)[0]

    def sample(self, n: int) -> np.ndarray:
        return np.stack([self._one() for _ in range(n)]).astype(np.float32)


def student_view(patch, target, weight: float, rng: np.random.Generator):
    """The patch warped and its intensities changed, and the target warped the same way, with the
    loss mask (``weight`` everywhere) as its last channel."""
    mask = np.ones(patch.shape[:2], np.float32)
    patch, target, mask = elastic_deform(patch, target, mask, rng)
    patch = jitter_intensity(patch, rng) + rng.normal(0.0, NOISE_SD, patch.shape).astype(np.float32)
    return patch, np.concatenate([target, weight * mask[..., None]], axis=-1)


def ramp_up(progress: float) -> float:
    """0 to 1 over the first ``RAMP_SHARE`` of the run, as ``exp(-5 (1 - t)^2)`` (Laine and Aila, 2017)."""
    t = min(max(progress / RAMP_SHARE, 0.0), 1.0)
    return float(np.exp(-5.0 * (1.0 - t) ** 2))


class Consistency:
    """Swaps part of each training batch for unannotated patches with the model's own targets."""

    def __init__(self, patches: UnannotatedPatches, weight: float, seed: int):
        self.patches, self.weight = patches, weight
        self.rng = np.random.default_rng(seed + 1)

    def mix(self, model, x: np.ndarray, y: np.ndarray, progress: float):
        """``(x, y)`` with its last patches replaced by unannotated ones and their targets, weighted
        by ``ramp_up(progress)`` (``progress``: the share of the run done, 0 to 1)."""
        n = max(1, int(round(UNANNOTATED_SHARE * len(x))))
        keep = max(1, len(x) - n)  # a batch of one keeps its painted patch and grows by one
        clean = self.patches.sample(n)
        teacher = fitting.predict_on_batch(model, clean).astype(np.float32)
        weight = self.weight * ramp_up(progress)
        views = [student_view(clean[i], teacher[i], weight, self.rng) for i in range(n)]
        x_u = np.stack([v[0] for v in views]).astype(x.dtype)
        y_u = np.stack([v[1] for v in views]).astype(y.dtype)
        return np.concatenate([x[:keep], x_u]), np.concatenate([y[:keep], y_u])

"""Self-training: the model's own confident predictions on unannotated slices as extra targets.

With ``TrainConfig(unannotated="pseudo")`` the trainer, once, halfway through its time cap (or its
epochs), predicts the unannotated slices of the first image nearest the annotated ones and adds
them to the training regions (never to validation): the target is the predicted class, and only
the pixels predicted with at least ``CONFIDENCE`` enter the loss, at ``WEIGHT``. Numpy only; the
trainer (``core/train/loop.py``) does the predicting. Off by default until
``benchmarks/unannotated.py`` shows it helps.
"""

from __future__ import annotations

import numpy as np

# Below this the few-slice model's mistakes (thin boundaries, dim cells) would be learnt as truth.
CONFIDENCE = 0.9
# Half a painted pixel: the user's annotations keep the last word where the two disagree.
WEIGHT = 0.5
# Neighbours of the annotated slices look like them (so the model predicts them well) yet add new
# structures; a few of them keep the pseudo phase short on 2 CPU cores.
MAX_SLICES = 8
# Pixels predicted (and added to the training regions) in all, at most: a central crop of larger
# slices, so the pseudo phase costs a few predictions of 256 x 256 whatever the slice size.
MAX_PIXELS = 8 * 256 * 256


def pseudo_targets(probs, *, confidence: float, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """``(target, mask)`` of one predicted slice, in ``data.make_targets``' format.

    ``probs`` is ``(Y, X, K)``: K >= 2 softmax classes give the one-hot of the most likely one; K == 1
    (a sigmoid) gives 0/1 at 0.5. ``mask`` is ``weight`` where that class's probability is at
    least ``confidence``, else 0 (out of the loss).
    """
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 3:
        raise ValueError(f"pseudo_targets needs (Y, X, K) probabilities, got shape {probs.shape}.")
    if probs.shape[-1] == 1:
        target = (probs >= 0.5).astype(np.float32)
        sure = np.maximum(probs[..., 0], 1.0 - probs[..., 0])
    else:
        best = probs.argmax(-1)
        target = (best[..., None] == np.arange(probs.shape[-1])).astype(np.float32)
        sure = probs.max(-1)
    return target, np.where(sure >= confidence, np.float32(weight), np.float32(0.0))


def unannotated_candidates(n_slices: int, annotated_z, max_slices: int) -> list[int]:
    """The unannotated slices of ``range(n_slices)`` nearest the ``annotated_z`` ones, at most
    ``max_slices``, in that order: both neighbours of each annotated slice first (the lower one
    first on a tie), then the next ones out."""
    annotated = sorted({int(z) for z in annotated_z})
    if not annotated:
        return []
    free = [z for z in range(n_slices) if z not in set(annotated)]
    distance = {z: min(abs(z - a) for a in annotated) for z in free}
    return sorted(free, key=lambda z: (distance[z], z))[:max(0, max_slices)]

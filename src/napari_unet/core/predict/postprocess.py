"""From per-pixel probabilities to class labels (objects: ``core.objects``)."""

from __future__ import annotations

import numpy as np


def labels_from_probs(probs, threshold: float = 0.5):
    """Class labels (uint8) from probabilities ``(..., K)``.

    ``K == 1`` (sigmoid): 1 where the probability is above ``threshold``.
    ``K > 1`` (softmax): the most probable class (0 = background).
    """
    probs = np.asarray(probs)
    if probs.shape[-1] == 1:
        return (probs[..., 0] > threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)

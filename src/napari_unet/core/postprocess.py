"""From per-pixel probabilities to class labels or 2-D object instances."""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components
from skimage.segmentation import relabel_sequential, watershed


def labels_from_probs(probs, threshold: float = 0.5):
    """Class labels (uint8) from probabilities ``(..., K)``.

    ``K == 1`` (sigmoid): 1 where the probability is above ``threshold``.
    ``K > 1`` (softmax): the most probable class (0 = background).
    """
    probs = np.asarray(probs)
    if probs.shape[-1] == 1:
        return (probs[..., 0] > threshold).astype(np.uint8)
    return np.argmax(probs, axis=-1).astype(np.uint8)


def _drop_small(instances, min_size: int):
    """Remove objects of fewer than ``min_size`` pixels and number the rest 1..n."""
    if min_size > 1:
        sizes = np.bincount(instances.ravel())
        small = sizes < min_size
        small[0] = False
        instances = np.where(small[instances], 0, instances)
    return relabel_sequential(instances)[0].astype(np.uint32)


def instances_from_mask(mask, min_size: int = 0):
    """Objects = 4-connected components of a 2-D foreground mask (uint32, 0 = background).

    4-connectivity so that objects touching only at a corner stay apart.
    """
    mask = np.asarray(mask, dtype=bool)
    return _drop_small(connected_components(mask, connectivity=1), min_size)


def instances_from_boundaries(probs_3class, min_size: int = 0):
    """Objects from a (background, interior, boundary) softmax ``(Y, X, 3)``.

    Seeds are the connected components of the interior class; a watershed on
    the boundary probability grows them over interior + boundary pixels, so
    touching objects separated by a predicted boundary stay apart.
    """
    probs = np.asarray(probs_3class)
    if probs.ndim != 3 or probs.shape[-1] != 3:
        raise ValueError(
            f"instances_from_boundaries needs (Y, X, 3) probabilities (background, interior, boundary), "
            f"got shape {probs.shape}."
        )
    classes = np.argmax(probs, axis=-1)
    seeds = connected_components(classes == 1, connectivity=1)
    objects = watershed(probs[..., 2], markers=seeds, mask=classes != 0)
    return _drop_small(objects, min_size)

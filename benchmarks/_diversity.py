"""A candidate ranking of the slice to annotate next, measured and not kept: by how unlike the
annotated slices a slice looks, from the image alone (no model). ``annotation_efficiency.py
--strategies random,diversity`` found it no better than random picks (it favours outliers).

A slice's look is two histograms of it, normalised with the whole stack's percentiles (as
training normalises it): its intensities, and its gradient magnitudes (edges and texture). Both
are blind to where things lie in the slice, so a slice of the same tissue shifted in-plane looks
alike. A slice's score is the total-variation distance of its look to the nearest annotated
slice's, in [0, 1]: a copy of an annotated slice scores 0.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core import data

BINS = 32
MAX_SIDE = 256  # slices are block-averaged to about this side: faster, and less noise in the looks
# Gradient magnitudes per (reduced) pixel of the normalised image, histogrammed on [0, this]:
# a fixed range, so a slice's look never depends on which other slices are compared.
GRADIENT_RANGE = 0.5


def _small(plane) -> np.ndarray:
    """``plane`` ``(Y, X)`` averaged over blocks to about ``MAX_SIDE``."""
    step = max(1, int(np.ceil(max(plane.shape) / MAX_SIDE)))
    h, w = (plane.shape[0] // step) * step, (plane.shape[1] // step) * step
    if step == 1 or h == 0 or w == 0:
        return plane
    return plane[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def _gradient(plane) -> np.ndarray:
    gy, gx = np.gradient(plane) if min(plane.shape) > 1 else (np.zeros_like(plane),) * 2
    return np.hypot(gy, gx)


def slice_looks(image, slices) -> dict[int, np.ndarray]:
    """``{slice: look}`` for ``slices`` of ``image`` ``(Z, Y, X[, C])``: the two histograms
    (``2 * BINS`` values, each half summing to 1)."""
    volume = data.as_zyxc(image)
    norm = data.compute_normalization(volume, max_samples=10**6)
    looks = {}
    for z in slices:
        plane = _small(np.clip(data.normalize(volume[int(z)], norm), 0.0, 1.0).mean(axis=-1))
        gradient = np.clip(_gradient(plane) / GRADIENT_RANGE, 0.0, 1.0)
        looks[int(z)] = np.concatenate([_histogram(plane), _histogram(gradient)])
    return looks


def _histogram(values) -> np.ndarray:
    counts, _ = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    return counts / max(counts.sum(), 1)


def look_distance(a, b) -> float:
    """Total-variation distance of two looks, averaged over their two histograms: 0 to 1."""
    return float(0.25 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def rank_unlike_annotated(image, candidates, annotated) -> list[tuple[int, float]]:
    """``[(slice, distance), ...]`` of ``candidates``, least like any of ``annotated`` first
    (ties: the slice farther from the annotated ones, then the lower one). With nothing
    annotated every distance is 1."""
    candidates, annotated = [int(z) for z in candidates], sorted({int(z) for z in annotated})
    if not candidates:
        return []
    looks = slice_looks(image, set(candidates) | set(annotated))
    scores = {z: min((look_distance(looks[z], looks[a]) for a in annotated), default=1.0) for z in candidates}
    gap = {z: min((abs(z - a) for a in annotated), default=0) for z in candidates}
    return sorted(scores.items(), key=lambda item: (-round(item[1], 9), -gap[item[0]], item[0]))


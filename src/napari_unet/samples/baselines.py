"""Classical baselines (numpy, scipy and scikit-image only): what a few lines
of scikit-image give on the data a U-Net is benchmarked on.

- ``otsu_foreground``: Gaussian smoothing, then one global Otsu threshold.
- ``watershed_objects``: that foreground cut into objects by a seeded
  watershed of its distance transform.
- ``choose_polarity``: whether objects are brighter or darker than their
  surroundings, read from the user's annotations (the U-Net sees the same).

Images are 2-D ``(Y, X)`` or stacks ``(Z, Y, X)``. Smoothing is done within
each slice only (sigma 0 along z): slices are often much further apart than
pixels, so blurring across them would mix unrelated structures.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label as connected_components
from skimage.segmentation import watershed

from napari_unet.core.metrics import dice
from napari_unet.core.objects.checks import check_sampling
from napari_unet.core.objects.watershed import drop_small_objects

POLARITIES = ("bright", "dark")


# ------------------------------------------------------------------ checks


# Chosen like the U-Net's object settings: the pair with the lowest mean adapted Rand error
# over the synthetic cells, the synthetic nuclei and ISBI 2012 (sigma 1 or 2, seeds 3, 6 or 10 px).
SIGMA = 2.0
SEED_DISTANCE = 10.0


def _check_image(image):
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D (Y, X) or 3-D (Z, Y, X), got shape {image.shape}.")
    if image.size == 0:
        raise ValueError("image is empty (size 0).")
    return image


def _check_polarity(polarity):
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}.")


def _check_sigma(sigma):
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 (pixels; 0 = no smoothing), got {sigma}.")


# -------------------------------------------------------------- foreground


def _smooth(image, sigma):
    """Gaussian within each slice: sigma 0 along z for a stack."""
    image = image.astype(np.float64)
    if sigma == 0:
        return image
    sigmas = (sigma, sigma) if image.ndim == 2 else (0.0, sigma, sigma)
    return gaussian(image, sigma=sigmas, preserve_range=True)


def otsu_foreground(image, *, sigma=SIGMA, polarity="bright") -> np.ndarray:
    """1 where the smoothed image is on the object side of one Otsu threshold
    computed over the whole image or stack, 0 elsewhere (uint8).

    ``polarity="bright"``: objects are above the threshold; ``"dark"``: at or
    below it (the exact complement). A constant image has no foreground.
    """
    image = _check_image(image)
    _check_polarity(polarity)
    _check_sigma(sigma)
    smoothed = _smooth(image, sigma)
    if smoothed.min() == smoothed.max():
        return np.zeros(image.shape, np.uint8)
    above = smoothed > threshold_otsu(smoothed)
    return (above if polarity == "bright" else ~above).astype(np.uint8)


# ---------------------------------------------------------------- objects


def _seeds(distance, components, seed_distance):
    """Seed ids at the distance maxima, at least ``seed_distance`` pixels
    apart (rounded up to whole pixels, as peak_local_max needs)."""
    peaks = peak_local_max(
        distance, min_distance=max(1, math.ceil(seed_distance)), labels=components, exclude_border=False
    )
    seeds = np.zeros(distance.shape, np.int64)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return seeds


def _split_foreground(foreground, seed_distance, sampling):
    """Watershed of the inverted distance transform inside the foreground."""
    components = connected_components(foreground, connectivity=1)
    distance = ndimage.distance_transform_edt(foreground, sampling=sampling)
    objects = watershed(-distance, _seeds(distance, components, seed_distance), mask=foreground)
    # A component without a peak (e.g. a flat one-pixel-wide line) gets no
    # seed and stays 0: keep it as one object rather than lose it.
    unseeded = connected_components(foreground & (objects == 0), connectivity=1)
    return np.where(unseeded > 0, unseeded + objects.max(), objects)


def _split_slices(foreground, seed_distance, sampling):
    """Each slice on its own, ids unique across slices."""
    objects = np.zeros(foreground.shape, np.int64)
    next_id = 0
    for z, plane in enumerate(foreground):
        ids = _split_foreground(plane, seed_distance, sampling[-2:])
        objects[z] = np.where(ids > 0, ids + next_id, 0)
        next_id += int(ids.max())
    return objects


def watershed_objects(
    image, *, sigma=SIGMA, polarity="bright", seed_distance=SEED_DISTANCE, min_size=0, sampling=None, per_slice=False
) -> np.ndarray:
    """Object ids (uint32, 0 = background) from ``otsu_foreground`` cut by a
    seeded watershed of its distance transform.

    ``sampling``: pixel spacing per axis, so the distance transform is right
    for anisotropic stacks; seeds are spaced in pixels. ``per_slice=True``:
    each 2-D slice is segmented separately (ids unique across slices);
    ``False``: objects are 3-D, one id through the volume. Objects smaller
    than ``min_size`` pixels are dropped, and the ids renumbered 1..n.
    """
    image = _check_image(image)
    if not seed_distance > 0:
        raise ValueError(f"seed_distance must be > 0 (pixels), got {seed_distance}.")
    if not min_size >= 0:
        raise ValueError(f"min_size must be >= 0 (pixels), got {min_size}.")
    sampling = check_sampling(sampling, image.ndim) or (1.0,) * image.ndim
    foreground = otsu_foreground(image, sigma=sigma, polarity=polarity).astype(bool)
    if per_slice and image.ndim == 3:
        objects = _split_slices(foreground, seed_distance, sampling)
    else:
        objects = _split_foreground(foreground, seed_distance, sampling)
    return drop_small_objects(objects, min_size)


# --------------------------------------------------------------- polarity


def _annotated_slices(labels, annotated_slices):
    if annotated_slices is None:
        annotated_slices = [z for z, plane in enumerate(labels) if (plane != 0).any()]
    annotated_slices = list(annotated_slices)
    if not annotated_slices:
        raise ValueError("labels has no annotated slice (all 0): annotate objects in at least one slice.")
    return annotated_slices


def choose_polarity(image, labels, annotated_slices=None, *, sigma=SIGMA) -> str:
    """``"bright"`` or ``"dark"``: the polarity whose Otsu foreground has the
    higher Dice with the annotated objects (``labels != 0``) on the annotated
    slices (those with a non-zero label, or ``annotated_slices``). Labels
    follow the full-slice convention: 0 on an annotated slice is background.
    A tie gives ``"bright"``.
    """
    image = _check_image(image)
    labels = np.asarray(labels)
    if labels.shape != image.shape:
        raise ValueError(f"labels shape {labels.shape} and image shape {image.shape} differ.")
    if image.ndim == 2:
        image, labels = image[None], labels[None]
        annotated_slices = None if annotated_slices is None else [0]
    slices = _annotated_slices(labels, annotated_slices)
    objects = labels[slices] != 0
    scores = {
        polarity: dice(otsu_foreground(image, sigma=sigma, polarity=polarity)[slices], objects)
        for polarity in POLARITIES
    }
    return "bright" if scores["bright"] >= scores["dark"] else "dark"

"""Argument checks of the object step: one clear ``ValueError`` naming the bad argument.

The object settings (threshold, seeds, seed distance, minimum size) are checked against the
bounds of ``core.config.ObjectsConfig``, which the command line, the Segment dock, the worker and
the cluster refuse before any work starts: a value they accept is never refused here.
"""

from __future__ import annotations

import typing
from numbers import Integral, Real

import numpy as np

from napari_unet.core.config import ObjectsConfig, SeedMode, limits

SEED_MODES = typing.get_args(SeedMode)  # ("interior", "distance")


def check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def check_threshold(threshold):
    lo, hi = ObjectsConfig.THRESHOLD_BETWEEN
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not lo < threshold < hi:
        raise ValueError(f"threshold must be a number between {lo:g} and {hi:g} (exclusive); got {threshold!r}.")


def check_int(name, value, minimum, *, maximum=None):
    too_big = maximum is not None and isinstance(value, Integral) and value > maximum
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum or too_big:
        within = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be an integer {within}; got {value!r}.")


def check_labelling(threshold, seeds, seed_distance, min_size):
    check_threshold(threshold)
    check_choice("seeds", seeds, SEED_MODES)
    lo, hi = limits(ObjectsConfig, "seed_distance")
    if isinstance(seed_distance, bool) or not isinstance(seed_distance, Real) or not lo <= seed_distance <= hi:
        raise ValueError(f"seed_distance must be a number from {lo:g} to {hi:g} (voxels of the finest axis); "
                         f"got {seed_distance!r}.")
    smallest, largest = limits(ObjectsConfig, "min_object_size")
    check_int("min_size", min_size, smallest, maximum=largest)


def check_sampling(sampling, ndim):
    if sampling is None:
        return None
    try:
        values = tuple(float(v) for v in sampling)
    except (TypeError, ValueError):
        values = ()
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"sampling must be None (isotropic) or {ndim} positive voxel sizes, one per spatial axis; "
            f"got {sampling!r}."
        )
    return values


def check_slice_shape(slice_shape):
    try:
        shape = tuple(int(n) for n in slice_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"slice_shape must be (height, width), two integers >= 1; got {slice_shape!r}.")
    return shape


def check_channels(kind, probs, ok, expected):
    if not ok:
        raise ValueError(
            f"A {kind!r} model gives {expected} in the last axis; got probabilities of shape {probs.shape}."
        )


def check_maps(maps, spatial_ndims):
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim - 1 not in spatial_ndims or maps.shape[-1] != 2:
        expected = " or ".join("(" + ", ".join("ZYX"[3 - n :]) + ", 2)" for n in spatial_ndims)
        raise ValueError(
            f"maps must be {expected}: foreground and interior maps from object_maps; got shape {maps.shape}."
        )
    return maps

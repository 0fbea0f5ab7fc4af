"""Prediction, reading: one normalised slice at a time from a volume of any array type
(numpy, dask, zarr), and the checks and intensity mapping made before the first slice is read.

Another reader (a remote store, a dask executor) plugs in by offering ``reader(axis, i)``.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core import events
from napari_unet.core.bundle import check_stored_normalization
from napari_unet.core.data import (
    check_image_values,
    intensity_mismatch,
    intensity_sample,
    nonfinite_message,
    normalization_from_sample,
    normalize,
)


def slice_shape(spatial_shape, axis):
    if axis is None:
        return spatial_shape
    return tuple(n for ax, n in enumerate(spatial_shape) if ax != axis)


def n_slices_along(spatial_shape, axis):
    return 1 if axis is None else spatial_shape[axis]


def slice_index(axis, i):
    """Index of slice ``i`` along ``axis`` of an output (``...`` for a 2-D image)."""
    return Ellipsis if axis is None else (slice(None),) * axis + (i,)


class SliceReader:
    """Reads one normalised ``(H, W, C)`` slice at a time, never the whole volume."""

    def __init__(self, volume, channel_axis, normalization):
        self.volume = volume
        self.channel_axis = channel_axis
        self.spatial_axes = [ax for ax in range(len(volume.shape)) if ax != channel_axis]
        self.normalization = normalization

    def __call__(self, axis, i):
        index = [slice(None)] * len(self.volume.shape)
        channel_axis = self.channel_axis
        if axis is not None:
            real_axis = self.spatial_axes[axis]
            index[real_axis] = i
            if channel_axis is not None and channel_axis > real_axis:
                channel_axis -= 1
        image = np.asarray(self.volume[tuple(index)])
        image = image[..., np.newaxis] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
        if self.normalization is None:  # raw intensities, for the checks
            return image
        if image.dtype.kind in "fc" and not np.isfinite(image).all():  # a sample may have missed it
            raise ValueError(nonfinite_message(int(image.size - np.count_nonzero(np.isfinite(image))),
                                               f"Slice {i} of the image"))
        return normalize(image, self.normalization)



def check_channel_axis(volume, channel_axis):
    if channel_axis is None:
        return None
    ndim = len(volume.shape)
    is_index = isinstance(channel_axis, (int, np.integer)) and not isinstance(channel_axis, bool)
    if not is_index or not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"channel_axis={channel_axis!r} is not an axis of a volume of shape {tuple(volume.shape)}: "
            f"use an index from {-ndim} to {ndim - 1}, or None for a single channel."
        )
    return int(channel_axis) % ndim


def check_volume(volume, spatial_shape, channel_axis, normalization):
    shape = tuple(volume.shape)
    if len(spatial_shape) not in (2, 3):
        hint = " (pass channel_axis for a multi-channel image)" if channel_axis is None else ""
        raise ValueError(
            f"Volume must be 2-D (Y, X) or 3-D (Z, Y, X) besides its channel axis, got shape {shape}{hint}."
        )
    if 0 in shape:
        raise ValueError(f"Volume is empty: shape {shape} has an axis of length 0; pick a non-empty image layer.")
    try:
        n_norm = len(normalization["low"])
        if len(normalization["high"]) != n_norm:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"normalization must be a dict with equally long 'low' and 'high' lists (one value per channel), "
            f"got {normalization!r}."
        ) from None
    n_channels = 1 if channel_axis is None else shape[channel_axis]
    if n_channels != n_norm:
        raise ValueError(
            f"The volume has {n_channels} channel(s) but the model was trained on {n_norm} "
            f"(its normalization has {n_norm} values): pick an image with {n_norm} channel(s)"
            f"{' and set channel_axis' if n_norm > 1 else ' or check channel_axis'}."
        )



# A pixel this many percentile ranges above the high percentile is an outlier (hot, saturated):
# the percentiles ignore it, but it stays extreme after normalisation and sways its neighbours.
OUTLIER_RANGES = 10


def outlier_message(sample, own: dict) -> str:
    """A warning naming the sampled pixels far above the volume's percentiles; "" if there are none."""
    for ch, (low, high) in enumerate(zip(own["low"], own["high"])):
        values = sample[:, ch]
        outliers = values[values > high + OUTLIER_RANGES * (high - low)]
        if outliers.size:
            which = "" if len(own["low"]) == 1 else f" (channel {ch})"
            return (f"{outliers.size} pixel(s){which} are far brighter than the rest (up to {outliers.max():g}, the "
                    f"1st-99.8th percentiles run from {low:g} to {high:g}): hot or saturated pixels change the "
                    "labels around them; remove them first (e.g. Fiji: Process > Noise > Remove Outliers).")
    return ""


def choose_normalization(volume, spatial_shape, channel_axis, stored: dict, cfg):
    """``(normalization, warning events)``: the volume's own percentiles or the stored training
    ones (``cfg.normalize``), after refusing NaN/inf and constant images as training does. A
    volume far from the training intensities, mapped by the stored values, gets a warning."""
    read = SliceReader(volume, channel_axis, None)
    first_axis = 0 if len(spatial_shape) == 3 else None
    n_slices = spatial_shape[0] if first_axis == 0 else 1
    shape = slice_shape(spatial_shape, first_axis) + (1 if channel_axis is None else volume.shape[channel_axis],)
    sample = intensity_sample(lambda k: read(first_axis, k), n_slices, shape)
    check_image_values([sample])
    own = normalization_from_sample(sample, stored.get("percentiles", (1.0, 99.8)))
    outliers = [events.Warn(text)] if (text := outlier_message(sample, own)) else []
    if cfg.normalize == "volume":
        return own, outliers
    check_stored_normalization(stored, "the model")
    mismatch = intensity_mismatch(own, stored)
    if not mismatch:
        return stored, outliers
    return stored, outliers + [events.Warn(
        f"The intensities differ strongly from the training data: {mismatch}, so the labels may be all "
        "foreground or all background. Normalise by the volume's own percentiles (normalize='volume'; "
        "--normalize volume on the command line; 'Intensities' in the Segment dock).")]

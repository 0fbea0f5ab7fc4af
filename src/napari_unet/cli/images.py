"""Images as the sub-commands read them: channels last, the spatial axes, their voxel size and units."""

from __future__ import annotations

import numpy as np

from napari_unet.io import tiff
from napari_unet.io.meta import ImageMeta


def channels_last(array, meta: ImageMeta):
    """Move a channel ('C') or RGB sample ('S') axis last; returns (array, has_channels)."""
    axes = meta.axes
    for name in ("S", "C"):
        if name in axes and array.ndim == len(axes):
            return np.moveaxis(array, axes.index(name), -1), True
    return array, False


def spatial_units(meta: ImageMeta):
    """The units of the spatial axes (None when the file has none)."""
    units, axes = meta.units, meta.axes
    if not units or len(axes) != len(units):
        return None
    return tuple(u for u, name in zip(units, axes) if name not in "SC")


def spatial_scale(meta: ImageMeta):
    """The voxel size of the spatial axes: a channel ('C') or RGB sample ('S') axis has none."""
    scale, axes = meta.scale, meta.axes
    if scale is None or len(axes) != len(scale):
        return scale
    return tuple(s for s, name in zip(scale, axes) if name not in "SC")


def load_image(path) -> tuple[np.ndarray, ImageMeta, bool]:
    array, meta = tiff.read_array(path)
    array, has_channels = channels_last(array, meta)
    return np.asarray(array), meta, has_channels


def spatial_axes(meta: ImageMeta, ndim: int) -> str:
    axes = "".join(a for a in meta.axes if a not in "SC")
    return axes if len(axes) == ndim else "ZYX"[-ndim:]


def check_image_axes(shape, meta: ImageMeta, channel_axis, path) -> tuple:
    """The spatial shape; refuses what is not one 2-D or 3-D image (time series, positions)."""
    spatial = tuple(n for axis, n in enumerate(shape) if axis != channel_axis)
    if len(spatial) not in (2, 3):
        raise ValueError(
            f"--image {path} has axes {meta.axes} (shape {tuple(shape)}), but one 2-D or 3-D image "
            "is segmented at a time (YX or ZYX, plus at most one channel or RGB axis): save each time point "
            "or position as its own TIFF (e.g. in Fiji: Image > Duplicate)."
        )
    return spatial

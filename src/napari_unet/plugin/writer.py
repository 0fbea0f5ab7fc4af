"""npe2 writers: save a Labels layer as TIFF via :mod:`napari_unet.io.tiff`, or as OME-Zarr via
:mod:`napari_unet.io.omezarr` (atomic; an existing path is never replaced)."""

from __future__ import annotations

from napari_unet.io.omezarr import write_ome_zarr
from napari_unet.io.tiff import axes_fit, write_labels_tiff


def _scale(meta: dict):
    """The layer's scale, or, where it says nothing (all 1), the voxel size its objects were
    found with (the Segment dock keeps the image's scale on the layer so that the two overlay)."""
    scale, found_with = meta.get("scale"), (meta.get("metadata") or {}).get("voxel_size")
    if found_with and scale is not None and len(scale) == len(found_with) and all(float(s) == 1 for s in scale):
        return tuple(found_with)
    return scale


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Single-layer npe2 writer; keeps the layer's scale (``_scale``), units and axes."""
    layer_meta = meta.get("metadata") or {}
    axes = layer_meta.get("axes")
    if axes is not None and not axes_fit(axes, len(data.shape)):
        axes = None  # e.g. the layer was reshaped since it was read; use the defaults
    units = meta.get("units")
    if units is not None:
        units = [str(u) for u in units]  # napari gives pint units
    return [write_labels_tiff(path, data, scale=_scale(meta), axes=axes, units=units)]


def write_labels_ome_zarr(path: str, data, meta: dict) -> list[str]:
    """Single-layer npe2 writer to OME-Zarr; keeps the layer's scale, units and (when they fit) axes."""
    axes = (meta.get("metadata") or {}).get("axes")
    ndim = len(data.shape)
    if not axes or len(axes) != ndim or not set(axes) <= set("TZYX"):
        axes = "TZYX"[-ndim:]
    units = meta.get("units")
    units = [None if str(u) == "pixel" else str(u) for u in units] if units is not None else None
    return [write_ome_zarr(path, data, axes=axes, scale=_scale(meta), units=units, labels=True)]

"""npe2 writer: save a Labels layer as TIFF via :mod:`napari_unet.io.tiff`."""

from __future__ import annotations

from napari_unet.io.tiff import axes_fit, write_labels_tiff


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Single-layer npe2 writer; keeps the layer's scale, units and axes."""
    layer_meta = meta.get("metadata") or {}
    axes = layer_meta.get("axes")
    if axes is not None and not axes_fit(axes, len(data.shape)):
        axes = None  # e.g. the layer was reshaped since it was read; use the defaults
    units = meta.get("units")
    if units is not None:
        units = [str(u) for u in units]  # napari gives pint units
    return [write_labels_tiff(path, data, scale=meta.get("scale"), axes=axes, units=units)]

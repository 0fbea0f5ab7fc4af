"""Opening an image by its path, whatever the format: TIFF (``io.tiff``) or zarr / OME-Zarr
(``io.omezarr``); both give a lazy array and an ``io.meta.ImageMeta``."""

from __future__ import annotations

from napari_unet.io import omezarr, tiff


def open_lazy(path) -> tuple:
    """``(lazy array, ImageMeta)``: a zarr folder by its ``.zarr`` suffix, else a TIFF."""
    if omezarr.is_zarr_path(path):
        return omezarr.open_lazy(path)
    return tiff.open_lazy(path)

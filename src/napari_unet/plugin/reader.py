"""npe2 readers: TIFF stacks via :mod:`napari_unet.io.tiff`, zarr and OME-Zarr folders via
:mod:`napari_unet.io.omezarr` (lazily). Never raises into napari."""

from __future__ import annotations

import logging
import os

from napari_unet.io import omezarr, tiff

logger = logging.getLogger(__name__)

# napari's "read fine, nothing to add" value: with it napari neither raises nor
# tries another reader (an empty list would make napari raise "returned no data").
NO_LAYERS = [(None,)]


def get_reader(path):
    """Return :func:`read_tiff_layers` for a TIFF path, else None."""
    try:
        if isinstance(path, (list, tuple)):
            if not path:
                return None
            path = path[0]
        name = os.fspath(path).lower()
        if not name.endswith(tiff.TIFF_SUFFIXES) or not tiff.is_tiff_file(path):
            return None
    except Exception:  # a reader lookup must never break napari's open dialog
        return None
    return read_tiff_layers


def read_tiff_layers(path, **_):
    """Read one TIFF (or the first of a list); report problems instead of raising."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        return tiff.read_tiff(path)
    except tiff.TiffReadError as exc:
        _show_error(str(exc))
    except Exception as exc:  # an unexpected failure still must not take napari down
        logger.exception("Reading %s failed", path)
        _show_error(f"Could not read {path}: {exc}")
    return NO_LAYERS


def get_zarr_reader(path):
    """Return :func:`read_zarr_layers` for a ``.zarr`` / ``.ome.zarr`` folder, else None."""
    try:
        if isinstance(path, (list, tuple)):
            path = path[0] if len(path) == 1 else None
        if path is None or not omezarr.is_zarr_path(path) or not os.path.isdir(path):
            return None
    except Exception:  # a reader lookup must never break napari's open dialog
        return None
    return read_zarr_layers


def read_zarr_layers(path, **_):
    """One layer, opened lazily with its scale and axes: Labels for a labels image (OME-Zarr
    ``image-label``, a ``labels`` group, or an integer array named like labels)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        data, meta = omezarr.open_lazy(path)
    except omezarr.ZarrReadError as exc:
        _show_error(str(exc))
        return NO_LAYERS
    except Exception as exc:  # an unexpected failure still must not take napari down
        logger.exception("Reading %s failed", path)
        _show_error(f"Could not read {path}: {exc}")
        return NO_LAYERS
    return [_zarr_layer(data, meta, path)]


def _zarr_layer(data, meta, path) -> tuple:
    axes, kind = meta["axes"], "labels" if meta["labels_marked"] else "image"
    keep = [i for i, a in enumerate(axes) if not (a == "C" and kind == "image")]
    name = os.path.basename(os.fspath(path).rstrip("/\\"))
    for suffix in (omezarr.OME_ZARR_SUFFIX, omezarr.ZARR_SUFFIX):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    spatial = "".join(axes[i] for i in keep)
    layer_meta = {"axes": spatial, "file_axes": axes, "source_path": meta["source_path"],
                  "voxel_size": {a: meta["scale"][i] for i, a in enumerate(axes) if a in "ZYX"}}
    kwargs = {"name": name, "scale": tuple(meta["scale"][i] for i in keep), "metadata": layer_meta,
              "axis_labels": tuple(a.lower() for a in spatial)}
    if meta["units"]:
        kwargs["units"] = tuple(meta["units"][i] or "pixel" for i in keep)
    if len(keep) < len(axes):
        kwargs["channel_axis"] = axes.index("C")
    return data, kwargs, kind


def _show_error(message: str):
    from napari.utils.notifications import show_error

    show_error(message)

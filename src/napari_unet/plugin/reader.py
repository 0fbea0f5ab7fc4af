"""npe2 readers: TIFF stacks via :mod:`napari_unet.io.tiff`, zarr and OME-Zarr folders via
:mod:`napari_unet.io.omezarr` (lazily), made into napari layer data ``(data, kwargs, layer_type)``
here. Never raises into napari.

Image or Labels
---------------
A TIFF opens as a **Labels** layer when its pixels have an integer dtype AND either

- the file name has a word starting with ``label``, ``mask``, ``seg`` or
  ``annotation`` (case-insensitive; words are split at non-letters and at
  camelCase: ``cells_labels.tif``, ``nucleiMask.tif``, ``seg-01.tif``,
  ``Segmentation.ome.tiff``; but not ``unmasked.tif``), or
- the metadata marks it (``ImageMeta.labels_marked``: an ImageJ property ``layer_type=labels``,
  ``"layer_type": "labels"`` in tifffile's JSON description), or an OME channel whose name
  contains ``label`` (then only that channel opens as Labels).

Everything else opens as an **Image**; float data never opens as Labels. RGB(A) pages always
open as an RGB image. A channel axis ``C`` becomes napari's ``channel_axis`` (one layer per
channel, named after the OME channel names when there are any). Each layer's ``metadata``
holds ``axes``, ``file_axes``, ``source_path``, ``voxel_size``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from napari_unet.io import omezarr, tiff
from napari_unet.io.meta import ImageMeta

logger = logging.getLogger(__name__)
LABEL_NAME_WORDS = ("label", "mask", "seg", "annotation")

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
        return tiff_layers(path)
    except tiff.TiffReadError as exc:
        _show_error(str(exc))
    except Exception as exc:  # an unexpected failure still must not take napari down
        logger.exception("Reading %s failed", path)
        _show_error(f"Could not read {path}: {exc}")
    return NO_LAYERS


def tiff_layers(path, lazy=None) -> list[tuple]:
    """A TIFF file as napari LayerData tuples ``(data, kwargs, layer_type)``.

    ``lazy=None`` opens lazily (dask) only above ``tiff.LAZY_THRESHOLD_BYTES``;
    True/False forces it. Raises ``tiff.TiffReadError`` for unreadable files.
    """
    return _layer_data(*tiff.read_image(path, lazy))


def labels_by_name(path) -> bool:
    """True if the file name has a word starting with one of ``LABEL_NAME_WORDS``."""
    name = Path(path).name
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)
    return any(w.lower().startswith(LABEL_NAME_WORDS) for w in words)


def _layer_data(data, meta: ImageMeta) -> list[tuple]:
    path = Path(meta.source_path)
    stem = re.sub(r"(\.ome)?\.tiff?$", "", path.name, flags=re.IGNORECASE)
    axes = meta.axes
    integer = np.issubdtype(data.dtype, np.integer) and not meta.rgb
    by_name = labels_by_name(path)

    if "C" not in axes:
        is_labels = integer and (by_name or meta.labels_marked)
        kwargs = _layer_kwargs(meta, axes, stem, channel=None)
        if meta.rgb:
            kwargs["rgb"] = True
        return [(data, kwargs, "labels" if is_labels else "image")]

    c = axes.index("C")
    n = data.shape[c]
    names = meta.channel_names or [f"ch{i}" for i in range(n)]
    marked = meta.label_channels or [meta.labels_marked] * n
    kinds = ["labels" if integer and (by_name or m) else "image" for m in marked]
    layer_axes = axes.replace("C", "")
    per_channel = [_layer_kwargs(meta, layer_axes, f"{stem} [{names[i]}]", channel=(i, names[i])) for i in range(n)]
    if all(k == "image" for k in kinds):
        # napari splits the channels itself (default colormaps and blending).
        kwargs = {key: [kw[key] for kw in per_channel] for key in per_channel[0]}
        kwargs["channel_axis"] = c
        return [(data, kwargs, "image")]
    layers = []
    for i, (kind, kwargs) in enumerate(zip(kinds, per_channel)):
        channel = data[(slice(None),) * c + (i,)]
        if kind == "image" and i > 0:
            kwargs["blending"] = "additive"
        layers.append((channel, kwargs, kind))
    return layers


def _layer_kwargs(meta: ImageMeta, layer_axes, name, channel) -> dict:
    file_axes = meta.axes
    # RGB samples are not a napari dimension; every other axis is.
    keep = [i for i, a in enumerate(file_axes) if a in layer_axes and not (meta.rgb and a == "S")]
    spatial = [file_axes[i] for i in keep]
    scale = tuple(meta.scale[i] for i in keep)
    labels = [a.lower() for a in spatial]
    if len(set(labels)) < len(labels):  # napari needs distinct axis labels
        labels = [f"{a}{i}" if labels.count(a) > 1 else a for i, a in enumerate(labels)]
    layer_meta = {
        "axes": layer_axes, "file_axes": meta.file_axes, "source_path": meta.source_path,
        "voxel_size": {a: s for a, s in zip(spatial, scale) if a in "ZYX"},
    }
    if channel is not None:
        layer_meta["channel"], layer_meta["channel_name"] = channel
    kwargs = {"name": name, "scale": scale, "axis_labels": tuple(labels), "metadata": layer_meta}
    if meta.units:
        units = tuple(meta.units[i] or "pixel" for i in keep)
        kwargs["units"] = units
        layer_meta["units"] = units
    return kwargs


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


def _zarr_layer(data, meta: ImageMeta, path) -> tuple:
    axes, kind = meta.axes, "labels" if meta.labels_marked else "image"
    keep = [i for i, a in enumerate(axes) if not (a == "C" and kind == "image")]
    name = os.path.basename(os.fspath(path).rstrip("/\\"))
    for suffix in (omezarr.OME_ZARR_SUFFIX, omezarr.ZARR_SUFFIX):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    spatial = "".join(axes[i] for i in keep)
    layer_meta = {"axes": spatial, "file_axes": axes, "source_path": meta.source_path,
                  "voxel_size": {a: meta.scale[i] for i, a in enumerate(axes) if a in "ZYX"}}
    kwargs = {"name": name, "scale": tuple(meta.scale[i] for i in keep), "metadata": layer_meta,
              "axis_labels": tuple(a.lower() for a in spatial)}
    if meta.units:
        kwargs["units"] = tuple(meta.units[i] or "pixel" for i in keep)
    if len(keep) < len(axes):
        kwargs["channel_axis"] = axes.index("C")
    return data, kwargs, kind


def _show_error(message: str):
    from napari.utils.notifications import show_error

    show_error(message)

"""zarr and OME-Zarr images: lazy reading with axes and scale, writing with multiscales metadata.

No napari, Qt or Keras here. OME-Zarr metadata is small JSON, written here with zarr itself
(version 0.5: zarr format 3, under the ``ome`` attribute); 0.4 files (zarr format 2,
``multiscales`` at the top) are read too. Only the first (full-resolution) dataset of the
first multiscale is read. A plain zarr array is an image of its own; its ``axes``, ``scale``
and ``units`` attributes (what this module writes) are honoured.

The metadata is an ``io.meta.ImageMeta``, as ``io.tiff`` returns: ``axes`` (e.g. "ZYX", "CZYX"),
``scale``, ``units`` (tuple or None), ``source_path``, ``labels_marked``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from napari_unet.io.meta import ImageMeta

OME_VERSION = "0.5"
ZARR_SUFFIX = ".zarr"
OME_ZARR_SUFFIX = ".ome.zarr"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
_LABEL_NAMES = ("label", "mask", "seg", "annotation")


class ZarrReadError(ValueError):
    """A zarr folder that is missing or holds no image this module can read."""


def is_zarr_path(path) -> bool:
    return os.fspath(path).rstrip("/\\").lower().endswith(ZARR_SUFFIX)


def is_ome_zarr_path(path) -> bool:
    return os.fspath(path).rstrip("/\\").lower().endswith(OME_ZARR_SUFFIX)


def open_lazy(path):
    """``(dask array, metadata)`` of the image in the zarr folder ``path``; reads no pixels."""
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise ZarrReadError(f"{path} is not a zarr folder (no such folder).")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for folders that are not zarr
        raise ZarrReadError(f"{path} is not a readable zarr folder: {exc}") from None
    if isinstance(node, zarr.Array):
        return da.from_zarr(node), _plain_metadata(node, path)
    array, meta = _first_multiscale(node, path)
    return da.from_zarr(array), meta


def _plain_metadata(array, path: Path) -> ImageMeta:
    attrs = dict(array.attrs)
    axes = str(attrs.get("axes") or _default_axes(array.ndim))
    scale = attrs.get("scale")
    units = attrs.get("units")
    return _metadata(path, axes if len(axes) == array.ndim else _default_axes(array.ndim),
                     scale if scale and len(scale) == array.ndim else None,
                     units if units and len(units) == array.ndim else None,
                     labels=bool(attrs.get("labels")) or _label_name(path), dtype=array.dtype)


def _first_multiscale(group, path: Path):
    """The full-resolution array of the group's (or its first label's) first multiscale."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # 0.5 keeps it under "ome", 0.4 at the top
    multiscales = ome.get("multiscales")
    if not multiscales:
        names = _label_group_names(group)
        if names:
            array, meta = _first_multiscale(group["labels"][names[0]], path)
            return array, dataclasses.replace(meta, labels_marked=bool(np.issubdtype(array.dtype, np.integer)))
        raise ZarrReadError(f"{path} is a zarr group without OME-Zarr multiscales metadata: "
                            "open one of its arrays (e.g. path/0) instead.")
    first = multiscales[0]
    dataset = first["datasets"][0]
    array = group[dataset["path"]]
    axes = "".join(a if isinstance(a, str) else a["name"] for a in first.get("axes", [])).upper()
    axes = axes if len(axes) == array.ndim else _default_axes(array.ndim)
    scale = _scale_of(dataset.get("coordinateTransformations", []), array.ndim)
    units = tuple(a.get("unit") for a in first.get("axes", []) if isinstance(a, dict)) or None
    labels = "image-label" in ome or _label_name(path)
    return array, _metadata(path, axes, scale, units if units and any(units) else None, labels, array.dtype)


def _label_group_names(group) -> list:
    try:
        labels = group["labels"]
    except KeyError:
        return []
    return list(dict(labels.attrs).get("ome", dict(labels.attrs)).get("labels", []))


def _scale_of(transforms, ndim):
    for transform in transforms:
        if transform.get("type") == "scale" and len(transform.get("scale", ())) == ndim:
            return tuple(float(s) for s in transform["scale"])
    return None


def _metadata(path, axes, scale, units, labels, dtype) -> ImageMeta:
    return ImageMeta(axes=axes, file_axes=axes, source_path=str(Path(path).resolve()),
                     scale=tuple(float(s) for s in scale) if scale else (1.0,) * len(axes),
                     units=tuple(units) if units else None,
                     labels_marked=bool(labels) and bool(np.issubdtype(dtype, np.integer)))


def _default_axes(ndim: int) -> str:
    return "TCZYX"[-ndim:] if ndim <= 5 else "?" * ndim


def _label_name(path) -> bool:
    stem = Path(path).name.lower()
    return any(word in stem for word in _LABEL_NAMES)


# --------------------------------------------------------------------- writing


def multiscales(axes: str, scale, *, units=None, name: str = "image") -> list:
    """OME-Zarr multiscales metadata for one full-resolution dataset ``0``."""
    axes_meta = []
    for i, axis in enumerate(axes):
        entry = {"name": axis.lower(), "type": _AXIS_TYPES.get(axis, "space")}
        if units and units[i] and entry["type"] == "space":
            entry["unit"] = str(units[i])
        axes_meta.append(entry)
    scale = [float(s) for s in (scale or (1.0,) * len(axes))]
    return [{"version": OME_VERSION, "name": name, "axes": axes_meta,
             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]


def create_group(path, *, axes: str, scale=None, units=None, labels=False, name=None):
    """A new OME-Zarr group at ``path`` (refused if it exists): fill its array with ``create_array``."""
    import zarr

    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    ome: dict[str, Any] = {"version": OME_VERSION,  # JSON
                           "multiscales": multiscales(axes, scale, units=units, name=name or Path(path).name)}
    if labels:
        ome["image-label"] = {"version": OME_VERSION}
    group.attrs["ome"] = ome
    return group


def create_array(path, shape, dtype, chunks, *, axes=None, scale=None, labels=False):
    """A new zero-filled zarr array at ``path`` (refused if it exists), with axes/scale attributes."""
    import zarr

    array = zarr.open_array(str(path), mode="w-", shape=tuple(shape), dtype=np.dtype(dtype), chunks=tuple(chunks),
                            fill_value=0, zarr_format=3)
    attrs = {"labels": bool(labels)}
    if axes:
        attrs["axes"] = axes
    if scale:
        attrs["scale"] = [float(s) for s in scale]
    array.attrs.update(attrs)
    return array


def write_ome_zarr(path, data, *, axes: str, scale=None, units=None, labels=True) -> str:
    """Write ``data`` as a new OME-Zarr at ``path``, atomically: into a hidden temporary folder
    beside it, then renamed. An existing ``path`` is never replaced (FileExistsError)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; pick another name or delete it first.")
    tmp = path.with_name(f".{path.name}.writing-{uuid.uuid4().hex[:8]}")
    try:
        create_group(tmp, axes=axes, scale=scale, units=units, labels=labels)
        chunks = tuple(min(n, 1 if i < len(data.shape) - 2 else 1024) for i, n in enumerate(data.shape))
        array = create_array(tmp / "0", data.shape, data.dtype, chunks)
        for index in np.ndindex(*data.shape[:-2]):  # one plane at a time: lazy layers stay lazy
            array[index] = np.asarray(data[index])
        if not data.shape[:-2]:
            array[...] = np.asarray(data)
        _rename_new(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def _rename_new(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, which must not exist (a folder made meanwhile is kept)."""
    if dst.exists():
        raise FileExistsError(f"{dst} exists; pick another name or delete it first.")
    os.rename(src, dst)


# ------------------------------------------------- outputs written through a temporary group


def start_output(tmp, *, axes: str, scale=None, units=None, labels=False, name=None):
    """The temporary OME-Zarr group an output is written into (its array: ``tmp/0``), owned by
    this process (``io.leftovers``), so that a later run can tell one a killed run left."""
    from napari_unet.io import leftovers

    group = create_group(tmp, axes=axes, scale=scale, units=units, labels=labels, name=name)
    leftovers.mark_owner(tmp)
    return group


def finish_outputs(outputs, *, scale=None, axes=None) -> None:
    """``finish_output`` for each ``(tmp, out, labels)``, all or nothing: when one fails (or a
    signal stops it), those already in place are removed, so no output stands without the others."""
    done = []
    try:
        for tmp, out, labels in outputs:
            finish_output(tmp, out, scale=scale, axes=axes, labels=labels)
            done.append(Path(out))
    except BaseException:
        for out in done:
            if out.is_dir():
                shutil.rmtree(out, ignore_errors=True)
            else:
                out.unlink(missing_ok=True)
        raise


def finish_output(tmp, out, *, scale=None, axes=None, labels=True) -> None:
    """Put the finished array ``tmp/0`` in place at ``out``: the whole group for ``.ome.zarr``,
    the array alone for ``.zarr`` (with ``axes``/``scale`` attributes), else streamed into a TIFF.
    Scratch arrays (names starting with ``_``) are dropped; ``tmp`` is gone afterwards."""
    from napari_unet.io import leftovers, tiff

    tmp, out = Path(tmp), Path(out)
    for scratch in tmp.glob("_*"):  # folders, and files such as a cluster run's stop mark
        if scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            scratch.unlink(missing_ok=True)
    for folder in (tmp, tmp / "0"):
        leftovers.unmark(folder)
    if is_ome_zarr_path(out):
        _rename_new(tmp, out)
        return
    if is_zarr_path(out):
        import zarr

        array = zarr.open_array(str(tmp / "0"), mode="r+")
        array.attrs.update({"labels": bool(labels), **({"axes": axes} if axes else {}),
                            **({"scale": [float(s) for s in scale]} if scale else {})})
        _rename_new(tmp / "0", out)
    else:
        import zarr

        array = zarr.open_array(str(tmp / "0"), mode="r")
        write = tiff.write_labels_tiff if labels else tiff.write_image_tiff
        write(out, array, scale=scale)
    shutil.rmtree(tmp, ignore_errors=True)

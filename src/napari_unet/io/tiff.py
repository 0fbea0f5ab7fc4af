"""Read and write TIFF stacks with tifffile.

No napari, Qt or Keras here: the worker process and the command line use this too. Reading
gives the pixels and an ``io.meta.ImageMeta``; the napari layers made of them (Image or Labels,
one per channel, ...) are ``plugin.reader``'s.

Supported files: ``.tif``, ``.tiff``, ``.ome.tif``, ``.ome.tiff`` -- single 2-D pages,
multi-page stacks, ImageJ hyperstacks (any subset of TZCYX), OME-TIFF and RGB(A)
pages. Only the first series (first OME image) of a file is read, at full resolution.

Axes, scale and units
---------------------
Axes come from tifffile (``series.axes``): T time, Z depth, C channel, Y, X, S
samples. One unnamed stack axis (``I`` or ``Q``, as in a plain multi-page file)
is taken as Z. RGB(A) samples go last (``rgb``); other samples become a channel axis C,
whose OME channel names, if any, are kept (``channel_names``).
The pixel size comes from ImageJ ``spacing`` (Z) and X/YResolution (rounded to
10 significant digits, the precision of a TIFF rational), from OME
``PhysicalSizeX/Y/Z`` (+ units), or from the ``scale``/``units`` lists in
tifffile's JSON description (what :func:`write_labels_tiff` writes). Other axes
(T, ...) and files without any of these get scale 1.

Labels markers
--------------
``labels_marked``: an ImageJ property ``layer_type=labels`` (in ``Properties`` or as a
line of ``Info``), or ``"layer_type": "labels"`` in tifffile's JSON description.
``label_channels``: per OME channel, whether its name contains ``label``. ImageJ slice
labels (the ``Labels`` list of slice names) are not a marker: Fiji writes them for
ordinary images.

Large files
-----------
A series larger than ``LAZY_THRESHOLD_BYTES`` opens as a dask array over
tifffile's zarr store: no pixels are read until a slice is shown or computed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_unet.io.meta import ImageMeta

LAZY_THRESHOLD_BYTES = 512 * 2**20
TIFF_SUFFIXES = (".tif", ".tiff")  # also covers .ome.tif / .ome.tiff
LAYER_TYPE_KEY = "layer_type"

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_KNOWN_AXES = "TZCYXS"
# Unit names as napari (pint) understands them; None means "pixel" (uncalibrated).
_UNITS = {
    "micron": "micrometer", "microns": "micrometer", "micrometer": "micrometer",
    "micrometre": "micrometer", "um": "micrometer", "\u00b5m": "micrometer",
    "\u03bcm": "micrometer", "\\u00b5m": "micrometer",
    "nm": "nanometer", "nanometer": "nanometer", "nanometre": "nanometer",
    "mm": "millimeter", "millimeter": "millimeter", "millimetre": "millimeter",
    "cm": "centimeter", "centimeter": "centimeter", "m": "meter", "meter": "meter",
    "pm": "picometer", "picometer": "picometer", "\u00e5": "angstrom", "angstrom": "angstrom",
    "pixel": None, "pixels": None, "px": None, "": None,
}
_IMAGEJ_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm",
                 "centimeter": "cm", "meter": "m", "picometer": "pm", "angstrom": "angstrom"}
# A TIFF file whose structure tifffile had to patch up is truncated or corrupt.
_CORRUPTION_HINTS = ("offset", "tag list", "bytecounts", "circular reference", "corrupt")

logger = logging.getLogger(__name__)


class TiffReadError(ValueError):
    """A file is missing, not a TIFF, or a truncated/corrupt TIFF."""


def is_tiff_file(path) -> bool:
    """True if ``path`` is a file that starts with a TIFF or BigTIFF header."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def normalize_unit(unit) -> str | None:
    """Map a unit name (ImageJ, OME, pint) to a napari unit name; None if unknown."""
    if unit is None:
        return None
    return _UNITS.get(str(unit).strip().lower())


def read_image(path, lazy=None) -> tuple:
    """The file's first series plus its ``ImageMeta``.

    ``lazy=None`` opens lazily (dask) only above ``LAZY_THRESHOLD_BYTES``;
    True/False forces it. Raises :class:`TiffReadError` for unreadable files.
    """
    return _load(path, lazy)


def open_lazy(path) -> tuple:
    """A dask array over the file's first series plus its ``ImageMeta``; reads no pixels."""
    return _load(path, lazy=True)


class NamedReads:
    """A lazily opened array whose read errors name its file: a corrupt compressed page of a TIFF
    fails only when it is read, with a decoder's message that says nothing of which file."""

    def __init__(self, array, path):
        self.array, self.path = array, Path(path)

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)

    def reshape(self, *shape):
        return NamedReads(self.array.reshape(*shape), self.path)

    def __getitem__(self, index):
        try:
            return np.asarray(self.array[index])
        except Exception as exc:  # decoders raise many types
            raise _corrupt(self.path, f"{type(exc).__name__}: {exc}") from exc

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[...], dtype=dtype)


def read_array(path) -> tuple:
    """The file's first series as a numpy array plus its ``ImageMeta``."""
    return _load(path, lazy=False)


# --------------------------------------------------------------------- reading


class _ErrorRecords(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _corrupt(path, problem) -> TiffReadError:
    return TiffReadError(
        f"{path} is truncated or corrupt: {problem}. Re-export it from the source software."
    )


@contextlib.contextmanager
def _tifffile_errors():
    """Collect tifffile's logged errors (it logs, then patches up, broken structures)."""
    handler = _ErrorRecords()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        tiff_logger.removeHandler(handler)


def _check_readable(path: Path):
    if not path.is_file():
        raise TiffReadError(f"{path} does not exist or is not a file. Check the path.")
    if path.stat().st_size == 0:
        raise TiffReadError(f"{path} is empty (0 bytes). Re-export it from the source software.")
    if not is_tiff_file(path):
        raise TiffReadError(
            f"{path} is not a TIFF file (it does not start with a TIFF header). "
            "Convert it to TIFF, or open it with a reader for its real format."
        )


def _check_data_inside_file(series, path: Path):
    size = path.stat().st_size
    if series.dataoffset is not None:  # contiguous, uncompressed
        end = series.dataoffset + series.nbytes
    else:
        end = 0
        for page in series.pages:
            if page is None:
                raise _corrupt(path, "a page of the image series is missing")
            end = max([end] + [o + n for o, n in zip(page.dataoffsets, page.databytecounts)])
    if end > size:
        raise _corrupt(path, f"pixel data ends at byte {end} but the file has only {size} bytes")


def _load(path, lazy):
    path = Path(path)
    _check_readable(path)
    with _tifffile_errors() as errors:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types on broken files
            raise _corrupt(path, exc) from exc
        try:
            series = tif.series[0]
            len(tif.pages)  # walk the whole IFD chain (ImageJ series skip it) to find breaks
            structural = [m for m in errors if any(h in m.lower() for h in _CORRUPTION_HINTS)]
            if structural:
                raise _corrupt(path, structural[0])
            for message in errors:  # e.g. unusual metadata tifffile fell back from
                logger.warning("%s: %s", path, message)
            _check_data_inside_file(series, path)
            meta = _metadata(tif, series, path)
            if lazy is None:
                lazy = series.nbytes > LAZY_THRESHOLD_BYTES
            if lazy:
                import dask.array as da

                # The store reopens the file on demand, so closing tif below is safe.
                data = da.from_zarr(series.aszarr(level=0))
            else:
                data = series.asarray(level=0)
            if len(meta["axes"]) != data.ndim:  # tifffile squeezed after all
                meta["axes"] = meta["file_axes"] = series.axes
        except TiffReadError:
            raise
        except Exception as exc:
            raise _corrupt(path, exc) from exc
        finally:
            tif.close()
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return _normalize_layout(data, meta)


def _round_sig(value: float, digits: int = 10) -> float:
    return float(f"{value:.{digits}g}")


def _metadata(tif, series, path: Path) -> dict:
    """What the file says, as ``ImageMeta``'s fields (scale and units by axis letter until
    ``_normalize_layout``)."""
    shaped = series.kind == "shaped"
    # Shaped (tifffile JSON) files keep singleton axes exactly as they were written.
    axes = series.get_axes(False) if shaped else series.axes
    meta = {
        "axes": axes, "file_axes": axes, "source_path": str(path.resolve()),
        "dtype": str(series.dtype), "scale": {}, "units": {}, "channel_names": None,
        "labels_marked": False, "label_channels": None, "n_series": len(tif.series),
        "rgb": series.keyframe.photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR),
    }
    if tif.is_imagej:
        _imagej_metadata(tif, series, meta)
    elif tif.is_ome:
        _ome_metadata(tif, meta)
    elif shaped and tif.shaped_metadata:
        _shaped_metadata(tif.shaped_metadata[0], meta)
    return meta


def _imagej_metadata(tif, series, meta):
    ij = tif.imagej_metadata or {}
    unit = normalize_unit(ij.get("unit"))
    xres, yres = series.keyframe.get_resolution()
    for axis, res in (("X", xres), ("Y", yres)):
        if res and res > 0 and res != 1:
            meta["scale"][axis] = _round_sig(1.0 / res)
    if ij.get("spacing"):
        meta["scale"]["Z"] = float(ij["spacing"])
    if unit:
        meta["units"] = {a: unit for a in "ZYX"}
    props = {str(k).strip().lower(): str(v).strip().lower() for k, v in (ij.get("Properties") or {}).items()}
    for line in str(ij.get("Info", "")).splitlines():
        key, _, value = line.partition("=")
        props.setdefault(key.strip().lower(), value.strip().lower())
    meta["labels_marked"] = props.get(LAYER_TYPE_KEY) == "labels"


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ome_metadata(tif, meta):
    image = _as_list(tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image"))
    if not image:
        return
    pixels = image[0].get("Pixels", {})
    for axis in "XYZ":
        size = pixels.get(f"PhysicalSize{axis}")
        if size:
            meta["scale"][axis] = float(size)
            # OME's default unit is micrometer.
            unit = normalize_unit(pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m"))
            if unit:
                meta["units"][axis] = unit
    names = [str(c.get("Name", "")) for c in _as_list(pixels.get("Channel"))]
    if any(names):
        meta["channel_names"] = names
        meta["label_channels"] = ["label" in n.lower() for n in names]


def _shaped_metadata(shaped, meta):
    axes = shaped.get("axes", meta["axes"])
    scale, units = shaped.get("scale"), shaped.get("units")
    if scale and len(scale) == len(axes):
        meta["scale"] = {a: float(s) for a, s in zip(axes, scale) if s}
    if units and len(units) == len(axes):
        meta["units"] = {a: normalize_unit(u) for a, u in zip(axes, units) if normalize_unit(u)}
    meta["labels_marked"] = str(shaped.get(LAYER_TYPE_KEY, "")).lower() == "labels"


def _normalize_layout(data, meta: dict) -> tuple:
    """RGB samples last, a lone unnamed stack axis as Z, non-RGB samples as C; the metadata
    becomes an ``ImageMeta``."""
    axes = meta["axes"]
    if "S" in axes and meta["rgb"] and data.shape[axes.index("S")] in (3, 4):
        data = np.moveaxis(data, axes.index("S"), -1) if axes[-1] != "S" else data
        axes = axes.replace("S", "") + "S"
    else:
        meta["rgb"] = False
        if "S" in axes and "C" not in axes:
            axes = axes.replace("S", "C")
    unnamed = [a for a in axes if a not in _KNOWN_AXES]
    if "Z" not in axes and len(unnamed) == 1 and "Y" in axes and axes.index(unnamed[0]) < axes.index("Y"):
        axes = axes.replace(unnamed[0], "Z")
    meta["axes"] = axes
    meta["scale"] = tuple(meta["scale"].get(a, 1.0) if a != "S" else 1.0 for a in axes)
    units = meta["units"]
    meta["units"] = tuple(units.get(a) for a in axes) if units else None
    meta["shape"] = tuple(data.shape)
    if meta["channel_names"] and ("C" not in axes or len(meta["channel_names"]) != data.shape[axes.index("C")]):
        meta["channel_names"] = meta["label_channels"] = None
    for key in ("channel_names", "label_channels"):
        meta[key] = None if meta[key] is None else tuple(meta[key])
    return data, ImageMeta(**meta)


# --------------------------------------------------------------------- writing


def write_labels_tiff(path, data, *, scale=None, axes=None, units=None) -> str:
    """Write a labels array to a zlib-compressed TIFF, atomically; return the path.

    uint8/uint16 labels whose axes are an ordered subset of TZCYX (no singleton
    axes) are written as an ImageJ hyperstack with ``spacing``, resolution and
    unit, so Fiji opens them calibrated. Other integer dtypes (int32, uint32,
    int64, ...), singleton axes or scales ImageJ cannot hold go to a plain TIFF
    with scale/units in tifffile's JSON description (Fiji opens it as an
    uncalibrated stack). Both are marked ``layer_type=labels`` so
    the reader (``plugin.reader``) opens them as Labels with the same values, dtype, shape
    and scale. Boolean masks are written as uint8. A path without a suffix
    gets ``.tif``.
    """
    return _write_tiff(path, data, scale, axes, units, "labels")


def write_image_tiff(path, data, *, scale=None, axes=None, units=None) -> str:
    """Write an image (e.g. float32 probabilities) like :func:`write_labels_tiff`, as an Image."""
    return _write_tiff(path, data, scale, axes, units, "image")


def _write_tiff(path, data, scale, axes, units, layer_type) -> str:
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".tif")
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"Cannot save {layer_type} to {path.name}: use a .tif or .tiff file name.")
    folder = path.parent.resolve()
    if not folder.is_dir():
        raise ValueError(
            f"Cannot save {path.name}: the folder {folder} does not exist. Create it first or pick another folder."
        )
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    dtype = _writer_dtype(data, layer_type)
    ndim = len(data.shape)
    axes = _writer_axes(axes, ndim)
    scale = _writer_scale(scale, ndim)
    units = _writer_units(units, ndim)

    options: dict[str, Any] = {"compression": "zlib", "photometric": "minisblack"}
    spatial_units = {u for a, u in zip(axes, units) if a in "ZYX" and u}
    imagej = (
        dtype in (np.uint8, np.uint16, np.float32)
        and _is_imagej_order(axes)
        and min(data.shape) > 1  # ImageJ files read back without singleton axes
        and all(s == 1.0 for a, s in zip(axes, scale) if a not in "ZYX")
        and len(spatial_units) <= 1
        and all(u is None for a, u in zip(axes, units) if a not in "ZYX")
        and math.prod(data.shape) * dtype.itemsize < 2**32 - 2**25  # ImageJ TIFFs are not BigTIFF
    )
    if imagej:
        axis_scale = dict(zip(axes, scale))
        ij_meta = {"axes": axes, "Properties": {LAYER_TYPE_KEY: layer_type}}
        if "Z" in axis_scale:
            ij_meta["spacing"] = axis_scale["Z"]
        if spatial_units:
            ij_meta["unit"] = _IMAGEJ_UNITS.get(spatial_units.pop(), "pixel")
        options.update(imagej=True, metadata=ij_meta,
                       resolution=(1.0 / axis_scale["X"], 1.0 / axis_scale["Y"]))
    else:
        options["metadata"] = {
            "axes": axes, "scale": list(scale), "units": [u or "pixel" for u in units],
            LAYER_TYPE_KEY: layer_type,
        }
        options["bigtiff"] = math.prod(data.shape) * dtype.itemsize > 2**32 - 2**25

    payload: np.ndarray | Iterator[np.ndarray]
    if isinstance(data, np.ndarray):
        payload = data.astype(dtype, copy=False)
    else:  # dask/zarr: write plane by plane so the volume never sits in memory
        payload = (np.asarray(data[idx], dtype=dtype) for idx in np.ndindex(*data.shape[:-2]))
        options.update(shape=tuple(data.shape), dtype=dtype)
    _atomic_imwrite(path, payload, options)
    return str(path)


def _writer_dtype(data, layer_type) -> np.dtype:
    """The dtype ``data`` is written with (bool as uint8), once it is known to be writable at all."""
    dtype = np.dtype(data.dtype)
    if layer_type == "labels" and dtype.kind != "b" and not np.issubdtype(dtype, np.integer):
        raise ValueError(
            f"Labels must have an integer dtype, got {dtype}. Round and cast them, e.g. data.astype('uint16').")
    if len(data.shape) < 2:
        raise ValueError(
            f"{layer_type.capitalize()} must have at least 2 dimensions (Y, X), got shape {tuple(data.shape)}.")
    return np.dtype(np.uint8) if dtype.kind == "b" else dtype


def _writer_axes(axes, ndim) -> str:
    default = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}.get(ndim, "Q" * (ndim - 4) + "TZYX")
    if axes is None:
        return default
    axes = str(axes).upper()
    if not axes_fit(axes, ndim):
        raise ValueError(
            f"axes {axes!r} do not fit labels with {ndim} dimensions: give {ndim} distinct letters ending in YX "
            f"(e.g. {default!r}) or None."
        )
    return axes


def axes_fit(axes, ndim) -> bool:
    """True if ``axes`` can name the axes of ``ndim``-D labels: distinct letters ending in YX."""
    axes = str(axes).upper()
    return len(axes) == ndim and axes.endswith("YX") and len(set(axes)) == ndim and axes.isalpha()


def _writer_scale(scale, ndim) -> tuple:
    if scale is None:
        return (1.0,) * ndim
    scale = tuple(float(s) for s in scale)
    if len(scale) != ndim or not all(math.isfinite(s) and s > 0 for s in scale):
        raise ValueError(f"scale must be {ndim} positive numbers, one per axis, got {scale!r}.")
    return scale


def _writer_units(units, ndim) -> tuple:
    if units is None:
        return (None,) * ndim
    if isinstance(units, str):
        units = (units,) * ndim
    units = tuple(units)
    if len(units) != ndim:
        raise ValueError(f"units must have one entry per axis ({ndim}), got {units!r}.")
    return tuple(normalize_unit(u) for u in units)


def _is_imagej_order(axes: str) -> bool:
    order = "TZCYX"
    return set(axes) <= set(order) and list(axes) == sorted(axes, key=order.index)


def _atomic_imwrite(path: Path, payload, options):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        tifffile.imwrite(tmp, payload, **options)
        # mkstemp makes the file private; give it the usual permissions of a saved file.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

"""npe2 reader: TIFF stacks via :mod:`napari_unet.io.tiff`. Never raises into napari."""

from __future__ import annotations

import logging
import os

from napari_unet.io import tiff

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


def _show_error(message: str):
    from napari.utils.notifications import show_error

    show_error(message)

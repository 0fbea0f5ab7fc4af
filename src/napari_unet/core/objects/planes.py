"""Where "3d" objects keep the planes of their slabs: the buffered maps of coming slices and
the labels of the slab being labelled and of the slices just returned.

``MemoryPlanes`` holds them as arrays. ``DiskPlanes`` keeps them in a temporary folder, one
``.npy`` file per plane, and reads or writes only the Y/X window a tile needs: slices too
large to buffer in memory can then still be labelled in deep slabs, so each slice is labelled
about once instead of once per slab it falls in (2048 x 2048 slices: 9 times with one-slice
slabs and a 4-slice halo). The folder carries its owner, so a killed run's folder is removed
by the next run (``io.leftovers``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_unet.io.leftovers import mark_owner, remove_stale_folder

FOLDER_PREFIX = "napari-unet-objects-"


class MemoryPlanes:
    """Planes as numpy arrays, keyed by ``(kind, slice index)``."""

    def __init__(self):
        self._planes = {}

    def put(self, key, plane):
        self._planes[key] = plane

    def create(self, key, shape, dtype):
        self._planes[key] = np.zeros(shape, dtype)

    def read(self, key, window):
        return self._planes[key][window]

    def write(self, key, window, values):
        self._planes[key][window] = values

    def take(self, key):
        """The plane itself, for a caller that only reads it."""
        return self._planes[key]

    def drop(self, key):
        self._planes.pop(key, None)

    def close(self):
        self._planes.clear()


class DiskPlanes(MemoryPlanes):
    """Planes in ``.npy`` files of a temporary folder; only windows are read into memory."""

    def __init__(self, folder=None):
        super().__init__()
        reclaim_stale_folders(folder)
        self.folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=folder))
        mark_owner(self.folder)

    def _path(self, key):
        kind, index = key
        return self.folder / f"{kind}-{index}.npy"

    def put(self, key, plane):
        np.save(self._path(key), plane)

    def create(self, key, shape, dtype):
        # A sparse file of zeros: nothing is written until tiles fill it.
        np.lib.format.open_memmap(self._path(key), mode="w+", dtype=dtype, shape=shape).flush()

    def read(self, key, window):
        mapped = np.load(self._path(key), mmap_mode="r")
        # A copy, so that the mapping (and its resident pages) ends here.
        return np.array(mapped[window])

    def write(self, key, window, values):
        mapped = np.load(self._path(key), mmap_mode="r+")
        mapped[window] = values
        del mapped

    def take(self, key):
        """A read-only mapping of the plane: its pages are read as the caller reads them,
        and released when the caller drops it (it stays valid after ``drop``)."""
        return np.load(self._path(key), mmap_mode="r")

    def drop(self, key):
        self._path(key).unlink(missing_ok=True)

    def close(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def reclaim_stale_folders(folder=None):
    """Remove the plane folders of runs that were killed."""
    parent = Path(folder or tempfile.gettempdir())
    for candidate in parent.glob(FOLDER_PREFIX + "*"):
        remove_stale_folder(candidate)


def disk_room(folder=None) -> int:
    """Free bytes where ``DiskPlanes`` would write."""
    try:
        return shutil.disk_usage(folder or tempfile.gettempdir()).free
    except OSError:
        return 0

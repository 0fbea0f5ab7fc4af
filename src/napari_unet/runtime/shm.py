"""Arrays between the parent and its worker: shared-memory segments and the wire form of each
input and output.

The parent copies an input into a segment it creates (``SharedArray``), or names a file the
worker opens itself (``LazyFile``); an output is a zero-filled segment the worker writes
(``SharedArray``) or a new zarr array on disk (``ZarrOutput``). These small frozen records are
all that is pickled to the worker; ``open_input`` and ``open_output`` turn them into arrays there.

Segment names carry the owner's process id: napari_unet_<pid>_<random>. Normally the owner
unlinks them (close, exit, and the graceful stop on Ctrl-C, SIGTERM and SIGHUP), and after a
SIGKILL of the owner alone multiprocessing's resource tracker does, once the worker has
ended. When the tracker was killed too (SIGKILL to the whole process group), the names stay
in /dev/shm; the next job removes those whose owner is gone (``reclaim_stale_segments``). A
shared-memory name is local to the machine, so the process id is enough; a reused id keeps a
leak, never removes a live one.

Standard library and numpy only: the worker imports this before any job.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from napari_unet.io import leftovers

SEGMENT_PREFIX = "napari_unet_"
_SEGMENT_NAME = re.compile(rf"{SEGMENT_PREFIX}(\d+)_[0-9a-f]+")
_SHM_DIR = Path("/dev/shm")  # where POSIX shared memory is listed, on Linux


# -- the wire form ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedArray:
    """An array in the shared-memory segment ``name`` (made and unlinked by the parent)."""

    name: str
    shape: tuple
    dtype: str

    def open(self, segments: list) -> np.ndarray:
        """A zero-copy view in this process; the segment is appended to ``segments`` to close later."""
        shm = attach_segment(self.name)
        segments.append(shm)
        return segment_view(shm, self.shape, self.dtype)


@dataclass(frozen=True)
class LazyFile:
    """An image file the worker opens lazily itself (``napari_unet.io.images.open_lazy``: TIFF or zarr)."""

    path: str


@dataclass(frozen=True)
class ZarrOutput:
    """An output written into a new zarr array on disk, for volumes larger than memory."""

    path: str
    shape: tuple
    dtype: str
    chunks: tuple | None = None


def open_input(spec: SharedArray | LazyFile, segments: list):
    """The worker's array for an input: a read-only view of shared memory, or the lazily opened file."""
    if isinstance(spec, SharedArray):
        view = spec.open(segments)
        view.flags.writeable = False  # an input; results go to the outputs
        return view
    if isinstance(spec, LazyFile):
        from napari_unet.io.images import open_lazy

        array, _meta = open_lazy(spec.path)
        return array
    raise ValueError(f"Unknown input {spec!r}.")


def open_output(spec: SharedArray | ZarrOutput, segments: list):
    """The worker's array for an output: a writable view of shared memory, or the zarr array."""
    if isinstance(spec, SharedArray):
        return spec.open(segments)
    if isinstance(spec, ZarrOutput):
        import zarr

        return zarr.open_array(spec.path, mode="r+")
    raise ValueError(f"Unknown output {spec!r}.")


# -- segments -----------------------------------------------------------------------------------
def segment_name() -> str:
    # Short: macOS allows 31 characters.
    return f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


def new_segment(nbytes: int) -> SharedMemory:
    """A new segment of this process, named by ``segment_name``."""
    return SharedMemory(name=segment_name(), create=True, size=max(nbytes, 1))


def attach_segment(name: str) -> SharedMemory:
    """Open a segment the parent created, without making this process its owner.

    Before Python 3.13 attaching registers the segment with the resource tracker, which may
    then unlink it or warn about a "leak" that is not one: the parent owns and unlinks it.
    """
    try:
        return SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def segment_view(shm: SharedMemory, shape, dtype) -> np.ndarray:
    """A zero-copy array over the segment.

    ``np.frombuffer`` keeps a buffer export on the mapping, so closing the segment while a
    view is alive raises BufferError (handled in ``close_segment``) instead of unmapping the
    memory under the view, which would crash the process on the next access.
    """
    count = math.prod(shape)
    if count == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(shm.buf, dtype=dtype, count=count).reshape(shape)


def close_segment(shm: SharedMemory) -> None:
    """Close this process's mapping; if views still use it, leave it to them."""
    try:
        shm.close()
    except BufferError:
        # The views keep the mapping alive and it is unmapped when the last one goes; drop
        # our handle so that SharedMemory.__del__ does not try (and complain) again.
        shm._mmap = None
        shm.close()


def reclaim_stale_segments() -> list[str]:
    """Unlink the segments of napari-unet processes that have ended; returns their names."""
    reclaimed = []
    try:
        names = [entry.name for entry in _SHM_DIR.iterdir()]
    except OSError:  # not Linux: nothing to list
        return reclaimed
    for name in names:
        match = _SEGMENT_NAME.fullmatch(name)
        if match and not leftovers.process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                shm = SharedMemory(name=name)  # attach, then unlink: the tracker sees both
                shm.close()
                shm.unlink()
                reclaimed.append(name)
    return reclaimed

"""Disk checks made before any work starts: room, inodes, writable folders, name lengths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_NAME_MAX = 255  # bytes; when the file system does not say


def check_free_space(folder, nbytes: int, what: str) -> None:
    """Refuse, before any work, an output of up to ``nbytes`` that the disk of ``folder`` cannot hold."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise ValueError(
            f"Not enough disk space for {what} in {folder}: it needs up to {format_bytes(nbytes)} and "
            f"{format_bytes(free)} are free. Free some space or write to another disk."
        )


def check_free_files(folder, n_files: int, what: str) -> None:
    """Refuse, before any work, ``n_files`` new files (a zarr has one per chunk) on a disk that
    has fewer free inodes (it fails with ENOSPC however much space is free)."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return
    free = stats.f_favail
    if stats.f_files and n_files > free:  # f_files 0: no inode limit (e.g. btrfs)
        raise ValueError(
            f"Not enough free files (inodes) for {what} in {folder}: it writes up to {n_files} files and "
            f"the disk can hold {free} more. Delete files there, write to another disk, or write a .tif.")


def check_writable(folder, what: str) -> None:
    """Refuse, before any work, a folder this process cannot write (read-only disk, permissions)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "is on a read-only disk" if _read_only(folder) else "is not writable"
        raise ValueError(f"Cannot write {what}: the folder {folder} {why}. Pick a folder you can write to.")


def _read_only(folder) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def name_max(folder) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAME_MAX


def check_name_length(name: str, internal: list[str], folder, option: str) -> None:
    """Refuse, before any work, a file name ``name`` in ``folder`` that is too long for its file
    system, or whose ``internal`` names (temporary names napari-unet derives from it) are."""
    limit, size = name_max(folder), len(os.fsencode(name))
    longest = max([name, *internal], key=lambda n: len(os.fsencode(n)))
    over = len(os.fsencode(longest)) - limit
    if over <= 0:
        return
    shown = name if len(name) <= 40 else f"{name[:20]}...{name[-12:]}"
    via = "" if longest == name else (
        f", and napari-unet first writes it under a name {over + limit - size} bytes longer")
    raise ValueError(f"{option} name {shown!r} is too long for the disk of {folder} ({size} bytes{via}; the disk "
                     f"takes {limit}): use a name of at most {size - over} bytes.")


def format_bytes(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"

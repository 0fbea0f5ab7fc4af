"""Disk checks made before any work starts."""

from __future__ import annotations

import shutil


def check_free_space(folder, nbytes: int, what: str) -> None:
    """Refuse, before any work, an output of up to ``nbytes`` that the disk of ``folder`` cannot hold."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise ValueError(
            f"Not enough disk space for {what} in {folder}: it needs up to {format_bytes(nbytes)} and "
            f"{format_bytes(free)} are free. Free some space or write to another disk."
        )


def format_bytes(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024

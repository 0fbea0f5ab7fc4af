"""Temporary files of a run that was killed: tell them from those of a live run, and tidy them.

Every temporary thing napari-unet leaves on disk while it works carries its owner: the process
id and the host name (a folder on a network drive may belong to a process on another machine,
whose ids mean nothing here). A leftover is *stale* when its owner ran on this host and is
gone. A reused process id makes a stale leftover look alive: it is then kept, never a live one
removed. Leftovers without an owner (older versions, or a kill in the instant before the owner
was written) are never touched; the messages that refuse them say what to delete.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

OWNER_FILE = ".napari_unet_owner"


def owner_tag() -> str:
    """``pid@host`` of this process."""
    return f"{os.getpid()}@{socket.gethostname()}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return True  # cannot tell: keep what it owns
    return True


def owner_gone(tag: str) -> bool:
    """Whether the owner ``pid@host`` ran on this host and has ended."""
    pid, _, host = tag.partition("@")
    if not pid.isdigit() or host != socket.gethostname():
        return False
    return not process_alive(int(pid))


def mark_owner(folder) -> None:
    """Write this process as the owner of the temporary ``folder``."""
    Path(folder, OWNER_FILE).write_text(owner_tag(), encoding="utf-8")


def unmark(folder) -> None:
    """Remove the owner file, once the folder is a finished output."""
    Path(folder, OWNER_FILE).unlink(missing_ok=True)


def stale_folder(folder) -> bool:
    """A temporary folder (with an owner file) whose owner has ended."""
    try:
        tag = Path(folder, OWNER_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return owner_gone(tag)


def remove_stale_folder(folder) -> bool:
    """Remove ``folder`` if it is stale; returns whether it was."""
    if not stale_folder(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not Path(folder).exists()

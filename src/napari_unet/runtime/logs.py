"""Where the details of a failure go: one log file per failed run, the user sees one line.

The folder is ``$NAPARI_UNET_LOG_DIR`` when set, else ``$XDG_CACHE_HOME/napari-unet/logs``
(``~/.cache/napari-unet/logs``); when neither can be written, a folder in the temporary
directory. Standard library only: the GUI, the command line and the worker all use it.
"""

from __future__ import annotations

import datetime
import itertools
import os
import tempfile
import traceback
from pathlib import Path

LOG_DIR_ENV = "NAPARI_UNET_LOG_DIR"
_numbers = itertools.count(1)  # two jobs started in the same second get two files


def log_dir() -> Path | None:
    """The log folder, created if needed; None when no folder can be written."""
    for folder in _candidates():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def _candidates():
    if os.environ.get(LOG_DIR_ENV):
        yield Path(os.environ[LOG_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    yield Path(cache) / "napari-unet" / "logs"
    yield Path(tempfile.gettempdir()) / "napari-unet-logs"


def new_log_path(kind: str) -> Path | None:
    """A fresh file name for one job's log (``kind-YYYYmmdd-HHMMSS-pid-n.log``), not created."""
    folder = log_dir()
    if folder is None:
        return None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{kind}-{stamp}-{os.getpid()}-{next(_numbers)}.log"


def write_exception(exc: BaseException, context: str) -> Path | None:
    """Write ``exc``'s traceback to a new log file; returns its path (None if none could be written)."""
    path = new_log_path("napari-unet")
    if path is None:
        return None
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{context}\n")
            log.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return path


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (messages shown to the user are one line)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""

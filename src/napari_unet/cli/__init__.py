"""The ``napari-unet`` command line; here, what its first moments need.

A signal while the command starts ends in one line and exits at once. Importing the package
changes nothing: ``console.main`` (the console script) installs the handlers first of all, and
``main.main`` again. They live here because Python loads the package before any of its modules:
installing them reads no other file, and imports only what Python's start-up has loaded.
"""

import os  # no __future__ import: one more file to read before the handlers

try:  # the C module: ``signal`` first imports enum (~3 ms), in which a signal gives a traceback
    import _signal
except ImportError:  # not CPython
    import signal as _signal

_SAID = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP"}
SIGNALS = {getattr(_signal, name): said for name, said in _SAID.items() if hasattr(_signal, name)}


def stop_while_starting(signum, _frame):
    """Until ``interrupts.handled`` takes over: nothing has been done yet, so stop at once."""
    os.write(2, f"napari-unet: stopped by {SIGNALS[signum]} while starting; nothing was done.\n".encode())
    os._exit(128 + signum)


def handle_signals_while_starting() -> dict:
    """Install ``stop_while_starting`` (not over an ignored signal, e.g. under nohup); returns the
    handlers it replaced."""
    previous = {signum: _signal.getsignal(signum) for signum in SIGNALS}
    for signum, handler in previous.items():
        if handler != _signal.SIG_IGN:
            _signal.signal(signum, stop_while_starting)
    return previous


def ignore_late_signals() -> None:
    """Once the command has ended: a signal can no longer stop anything, so it changes nothing."""
    for signum in SIGNALS:
        if _signal.getsignal(signum) is stop_while_starting:
            _signal.signal(signum, _signal.SIG_IGN)


def restore_signals(previous: dict) -> None:
    """Put back the handlers ``handle_signals_while_starting`` replaced."""
    for signum, handler in previous.items():
        _signal.signal(signum, handler)

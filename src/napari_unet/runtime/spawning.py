"""Starting worker processes: the spawn context and what the parent holds back while one starts.

Shared by one-job workers (``engine.Job``) and the warm worker (``warm.WarmWorker``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import types
from multiprocessing import resource_tracker

from napari_unet.runtime import worker

CONTEXT = multiprocessing.get_context("spawn")
# Seconds a finished worker gets to exit by itself, then after SIGTERM, before SIGKILL.
EXIT_GRACE_S = 3.0


def ensure_tracker() -> None:
    """Start multiprocessing's resource tracker, if it is not running, with the terminal's signals
    held back: it inherits the block and so outlives a closing terminal (SIGHUP to the group).

    Call it before the first shared-memory segment: creating one starts the tracker otherwise,
    unprotected. (``ensure_running`` itself unblocks SIGINT/SIGTERM, hence a block of its own.)"""
    with terminal_signals_blocked():
        resource_tracker.ensure_running()


def start_process(target, args: tuple, name: str):
    """A started ``spawn`` process running ``target(*args)``, with the terminal's signals held back."""
    # The worker inherits this block and unblocks the signals only once it has left the
    # terminal's process group (see worker.leave_terminal_signals).
    ensure_tracker()
    with terminal_signals_blocked():
        process = CONTEXT.Process(target=target, args=args, name=name)
        with main_module_hidden():
            process.start()
    return process


def end_process(process, finished: bool) -> int | None:
    """Wait for (``finished``) or end ``process``: SIGTERM, then SIGKILL; returns its exit code.

    The ``Process`` object stays usable (``is_alive``, ``exitcode``) for whoever still holds it."""
    if process.is_alive() and finished:
        process.join(EXIT_GRACE_S)  # it is only flushing and exiting
    if process.is_alive():
        process.terminate()
        process.join(EXIT_GRACE_S)
    if process.is_alive():
        process.kill()
    process.join()
    return process.exitcode


@contextlib.contextmanager
def terminal_signals_blocked():
    """Hold back Ctrl-C, SIGTERM and SIGHUP (delivered on exit) while child processes start."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, worker.TERMINAL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def main_module_hidden():
    """Keep ``spawn`` from re-running the caller's main script in the worker.

    The worker needs only ``napari_unet.runtime.worker``. Re-running ``__main__`` there would start a
    second napari, or fail for a script without an ``if __name__ == "__main__"`` guard.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main



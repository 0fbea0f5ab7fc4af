"""Starting worker processes: the spawn context and what the parent holds back while one starts.

Shared by one-job workers (``engine.Job``) and the warm worker (``warm.WarmWorker``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import types
from multiprocessing import resource_tracker

from napari_unet.runtime import logs, worker

CONTEXT = multiprocessing.get_context("spawn")
# Seconds a finished worker gets to exit by itself, then after SIGTERM, before SIGKILL.
EXIT_GRACE_S = 3.0


def worker_env() -> dict:
    """The environment variables a job's worker sets before its job is imported (``engine.Job(env=...)``)."""
    # Quiet TensorFlow's C++ logging unless the user asked for it. TensorFlow is the default
    # backend; KERAS_BACKEND=jax (e.g. where only JAX sees the GPU) is passed on.
    return {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")}


def ensure_tracker() -> None:
    """Start multiprocessing's resource tracker, if it is not running, with the terminal's signals
    held back: it inherits the block and so outlives a closing terminal (SIGHUP to the group).

    Call it before the first shared-memory segment: creating one starts the tracker otherwise,
    unprotected. (``ensure_running`` itself unblocks SIGINT/SIGTERM, hence a block of its own.)

    Its stderr goes to ``TRACKER_LOG`` in the log folder: after a SIGKILL of this process it frees
    what was left and says so ("leaked semaphore objects"), which is no news for the terminal."""
    with terminal_signals_blocked(), _stderr_to(_tracker_log()):
        resource_tracker.ensure_running()


TRACKER_LOG = "resource-tracker.log"


def _tracker_log():
    folder = logs.log_dir()
    return None if folder is None else folder / TRACKER_LOG


@contextlib.contextmanager
def _stderr_to(path):
    """File descriptor 2 appends to ``path`` while the block runs (what a child started then inherits)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path is not None else None
    except OSError:
        fd = None
    if fd is None:  # no log folder: the terminal it is
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


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



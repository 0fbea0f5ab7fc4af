"""What runs inside the spawned worker process: the entry of a one-job worker (``run_job``), the
warm worker's loop (``serve``), one job run (``run_one``) and the models kept between jobs.

The worker imports this module and then the job's own module (``runtime.jobs``), so this file
imports only the standard library and numpy at module level: never napari, Qt, keras or
tensorflow. The job functions import the core (and through it keras) inside their bodies.
"""

from __future__ import annotations

import faulthandler
import importlib
import multiprocessing
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from napari_unet.core.events import Done, Error, Event, Final, WorkerStarted
from napari_unet.runtime.logs import first_line
from napari_unet.runtime.shm import LazyFile, SharedArray, ZarrOutput, close_segment, open_input, open_output

OOM_HINT = "Reduce the batch size or the patch/tile size."
# Events are progress messages; bulk data goes through shared memory or files.
MAX_EVENT_BYTES = 16 << 20
# How long a worker whose parent died may take to stop before it exits anyway.
ORPHAN_GRACE_S = 10.0
# What a terminal or a service manager sends to stop the command line.
TERMINAL_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# Added to the worker's nice value: on a machine with few cores, napari's event loop must get
# the CPU at once when it needs it; an otherwise idle machine still gives the worker every core.
WORKER_NICENESS = 10


@dataclass(frozen=True)
class JobCommand:
    """One job as the worker gets it: ``target`` (``"module:function"``) called with ``params``
    once ``env`` is set, its stderr appended to ``log``, its arrays opened from their wire form."""

    target: str
    params: dict
    inputs: dict[str, SharedArray | LazyFile]
    outputs: dict[str, SharedArray | ZarrOutput]
    env: dict = field(default_factory=dict)
    log: str | os.PathLike | None = None


# -- the job wrapper ------------------------------------------------------------------------
def run_job(command: JobCommand, events, stop_event):
    """Entry point of a one-job worker process: run ``command`` and forward its events to ``events``."""
    _enter_worker(stop_event)
    events.only_send()
    try:
        run_one(command, _unless_orphaned(events.put), stop_event)
    finally:
        _exit_worker(events)


def serve(commands, events, stop_event):
    """Entry point of a warm worker: run the jobs that arrive on ``commands``, one after another.

    A command is ``(seq, JobCommand)``; each event goes out as
    ``(seq, event)`` so the parent can drop what a job it gave up on still sends. ``None`` (or
    the parent's end) ends the loop. Imported modules and ``MODEL_CACHE`` stay between jobs:
    that is what makes the second job start fast.
    """
    _enter_worker(stop_event)
    commands.only_receive()
    events.only_send()
    send = _unless_orphaned(events.put)
    try:
        while True:
            command = commands.get()
            if command is None:
                break
            seq, job = command
            run_one(job, lambda event, seq=seq: send((seq, event)), stop_event)
    finally:
        _exit_worker(events)


def _unless_orphaned(put):
    """``put``, but once the parent is gone (its end of the pipe closed) events are dropped: the
    job still runs to its end, so a stopped training saves its best model."""
    def send(event) -> None:
        try:
            put(event)
        except OSError:  # BrokenPipeError: nobody reads any more
            pass

    return send


def _enter_worker(stop_event) -> None:
    leave_terminal_signals()
    _lower_priority()
    _stop_when_orphaned(stop_event)
    faulthandler.enable(file=sys.stderr)


def _exit_worker(events) -> None:
    events.close()  # every event has reached the pipe: a put returns once it has
    # Everything is reported and written; skip the interpreter teardown, which takes
    # seconds once TensorFlow is loaded and would keep the parent waiting in close().
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def run_one(command: JobCommand, put, stop_event) -> None:
    """Run one job: open its arrays, hand each event it yields to ``put``, end with one ``Final``."""
    segments = []
    arrays = outputs = job = None
    _stderr_to_log(command.log)
    try:
        put(WorkerStarted(os.getpid()))
        # Before the job's import, so that e.g. KERAS_BACKEND is seen when keras loads.
        os.environ.update({str(k): str(v) for k, v in command.env.items()})
        # As TensorFlow's memory growth (core.train): JAX then takes GPU memory as needed,
        # not 75 % of it up front, so a second process (napari's, a preview) still fits.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        arrays = {name: open_input(spec, segments) for name, spec in command.inputs.items()}
        outputs = {name: open_output(spec, segments) for name, spec in command.outputs.items()}
        job = resolve_target(command.target)(arrays=arrays, outputs=outputs, stop_event=stop_event,
                                             **command.params)
        _forward(job, put)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)  # into the log
        put(error_event(exc, command.log))
    finally:
        if job is not None and hasattr(job, "close"):
            try:
                job.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)
        del arrays, outputs, job
        for shm in segments:
            close_segment(shm)


def _forward(job, put) -> None:
    for event in job:
        _check_event(event)
        put(event)
        if isinstance(event, Final):
            return
    put(Done())


def leave_terminal_signals() -> None:
    """Let the parent alone decide what Ctrl-C, SIGTERM and SIGHUP mean.

    They reach the whole process group (Ctrl-C, a closing terminal, ``kill -- -PGID``); the
    parent answers them with a graceful stop, which the worker must live through to save the
    model. So the worker moves to its own process group, and only then unblocks the signals the
    parent blocked while starting it (``spawning.terminal_signals_blocked``). Its own SIGTERM
    stays the default: it is how the parent ends a worker that does not stop.
    """
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # sent to this process alone: still the parent's call
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)


def _stderr_to_log(path) -> None:
    """Send everything the worker writes to stderr into its log file.

    Tracebacks, TensorFlow's messages and, through faulthandler, the Python stack of a crash
    all land there; the user sees one line, and the parent removes the file when the job ends
    well. Without a log file (none could be created) stderr stays where it was.
    """
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(fd, 2)  # fd 2 is what faulthandler writes to: each job's crash lands in its own log
    os.close(fd)


def _lower_priority() -> None:
    if hasattr(os, "nice"):  # POSIX; on Windows the worker keeps the normal priority
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass


def target_of(function) -> str:
    """``"module:function"``: how a job's function is named to the worker (``resolve_target``)."""
    return f"{function.__module__}:{function.__qualname__}"


def resolve_target(target: str):
    module_name, _, function_name = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise ValueError(f"Job target {target!r}: module {module_name} has no {function_name!r}.") from None


def error_event(exc: BaseException, log_path=None) -> Error:
    """The event that reports a failed job: a one-line message, a hint the user can act on,
    and the log file that holds the traceback."""
    message = first_line(str(exc)) or type(exc).__name__
    if _is_out_of_memory(exc):
        hint = OOM_HINT
    elif isinstance(exc, ValueError):
        hint = message  # already written for the user
    else:
        message = f"{type(exc).__name__}: {message}"  # unexpected: the type says what broke
        hint = "This is a bug in napari-unet or a library; please report it with the log."
    return Error(
        message=message,
        error_type=type(exc).__name__,
        hint=hint,
        log=None if log_path is None else str(log_path),
        traceback="".join(traceback.format_exception(exc)),
    )


def failure_line(final: Error, what: str = "The job") -> str:
    """The one line a user sees for an ``Error``, in the CLI and in the docks alike."""
    message = first_line(final.message or "") or f"{what} failed."
    hint = first_line(final.hint or "")
    line = message if not hint or hint in message else f"{message} {hint}"
    if final.log:
        line += f" (details: {final.log})"
    return line


def _is_out_of_memory(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:  # keras may wrap the original error
        seen.add(id(exc))
        text = str(exc)
        if (
            isinstance(exc, MemoryError)
            or type(exc).__name__ == "ResourceExhaustedError"
            or re.search(r"\bOOM\b", text)
            or "out of memory" in text.lower()
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _check_event(event) -> None:
    if not isinstance(event, Event):
        raise TypeError(f"A job must yield napari_unet.core.events.Event objects, got {event!r}.")
    try:
        size = len(pickle.dumps(event))
    except Exception as exc:
        # The queue would drop it silently in its feeder thread; fail loudly instead.
        raise TypeError(f"Event {event.kind!r} cannot be sent to the parent: {exc}") from exc
    if size > MAX_EVENT_BYTES:
        raise TypeError(
            f"Event {event.kind!r} is {size} bytes; events must stay small: write arrays into the job's outputs."
        )


def _stop_when_orphaned(stop_event) -> None:
    """If the parent dies without stopping us, stop the job, then exit: never run on alone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()
        stop_event.set()
        time.sleep(ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="napari-unet-parent-watch", daemon=True).start()


# -- models kept between the jobs of a warm worker -------------------------------------------
MODEL_CACHE_SIZE = 2  # models kept loaded: a few megabytes each, plus their compiled functions
MODEL_CACHE: dict = {}  # (folder, its bundle file's identity) -> (model, meta), oldest first


def load_model_cached(model_dir):
    """``core.bundle.load_bundle(model_dir)``, kept in memory while the model folder is unchanged.

    The key holds the inode and modification time of what the folder's save replaced, so a
    model written again under the same name (atomic save: a new folder) is loaded again.
    """
    from napari_unet.core.bundle import load_bundle

    key = _model_key(model_dir)
    if key not in MODEL_CACHE:
        while len(MODEL_CACHE) >= MODEL_CACHE_SIZE:
            MODEL_CACHE.pop(next(iter(MODEL_CACHE)))
        MODEL_CACHE[key] = load_bundle(model_dir)
    return MODEL_CACHE[key]


def _model_key(model_dir) -> tuple:
    path = os.path.abspath(model_dir)
    marker = os.path.join(path, "bundle.json")
    try:
        info = os.stat(marker if os.path.isdir(path) else path)
    except OSError:
        return (path, None)  # load_bundle says what is wrong
    return (path, info.st_ino, info.st_mtime_ns, info.st_size)

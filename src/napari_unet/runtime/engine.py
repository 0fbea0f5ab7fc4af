"""Run core jobs in a spawned worker process; the parent side streams events, stops and kills.

TensorFlow must never be loaded into the napari process (it crashes next to Mesa's OpenGL),
so every TensorFlow job runs in a fresh interpreter started with ``spawn``. Big arrays go
through shared memory (or a file the worker opens itself; ``shm``), small typed events through
a pipe (``channels``). Nothing here blocks the caller except ``wait``, and nothing is left
running or allocated after ``close`` (or at interpreter exit). The jobs themselves, each a
factory beside its worker function, are in ``runtime.jobs``.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util  # noqa: F401  registers its exit hook now, so ours runs before it
import os
import queue
import signal
import time
import weakref
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from napari_unet.core.events import Error, Event, Final, Stopped
from napari_unet.io import leftovers
from napari_unet.runtime import logs, spawning, worker
from napari_unet.runtime.channels import Channel, StopFlag
from napari_unet.runtime.runner import drain, run_to_end
from napari_unet.runtime.shm import (
    LazyFile,
    SharedArray,
    ZarrOutput,
    close_segment,
    new_segment,
    reclaim_stale_segments,
    segment_view,
)
from napari_unet.runtime.warm import WarmWorker
from napari_unet.runtime.worker import OOM_HINT, JobCommand, failure_line, target_of

__all__ = ["Job", "WarmWorker", "failure_line", "drain", "run_to_end"]

_EXIT_GRACE_S = spawning.EXIT_GRACE_S


class _Resources:
    """Everything a job must give back: its process, queue and shared memory.

    Kept apart from ``Job`` so that a finalizer can release it when a job is dropped unclosed.
    """

    def __init__(self):
        self.process = None
        self.queue = None
        self.segments: list[SharedMemory] = []
        self.exitcode = None
        self.log_path = None  # the worker's stderr: kept only when the job failed
        self.lease = None  # the job's hold on a warm worker, if it runs on one

    def job_finished(self) -> None:
        """The final event arrived: a warm worker is free for the next job from now on."""
        if self.lease is not None:
            self.lease.finished()

    def release(self, finished: bool) -> None:
        if self.lease is not None:  # the process is the warm worker's: it stays unless the job is given up
            self.lease.finished() if finished else self.lease.abandon()
            self.exitcode = self.process.exitcode
        elif self.process is not None:
            self.exitcode = spawning.end_process(self.process, finished)
            self.process.close()
        if self.queue is not None:
            self.queue.close()
        for shm in self.segments:
            close_segment(shm)
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
        self.segments.clear()


_open_jobs: weakref.WeakSet[Job] = weakref.WeakSet()


@atexit.register
def _close_open_jobs():
    # Runs before multiprocessing's own exit hook, which would wait forever for a live worker.
    for job in list(_open_jobs):
        job.close()


class Job:
    """A generator function run in a spawned worker process.

    ``target`` is the function (module level) or ``"package.module:function"``; the worker calls
    ``function(arrays=..., outputs=..., stop_event=..., **params)`` and forwards every
    ``core.events.Event`` it yields. ``arrays`` maps names to numpy arrays (copied once into shared memory;
    the worker gets read-only zero-copy views) or ``shm.LazyFile`` (opened by the worker).
    ``outputs`` maps names to ``(shape, dtype)`` (zero-filled shared memory the worker writes
    and ``output(name)`` reads while the job runs) or ``shm.ZarrOutput``. ``params`` must be
    small and picklable; ``env`` sets environment variables in the worker before the job's
    module is imported. A job dropped without ``close`` ends its worker when it is
    garbage-collected; jobs still open at interpreter exit are closed then.

    ``worker``: a ``WarmWorker`` to run on when it is free (else a one-job process, as without).
    ``live_inputs``: names of ``arrays`` the parent may still write while the job runs
    (``live_input(name)``), e.g. a small request the job reads now and then.
    """

    def __init__(self, target: str | Callable, params: dict, *, arrays: dict | None = None, outputs: dict | None = None,
                 worker: WarmWorker | None = None, live_inputs: tuple = (), env: dict | None = None):
        target = target if isinstance(target, str) else target_of(target)
        module, sep, function = target.partition(":")
        if not (module and sep and function):
            raise ValueError(f"Job target must look like 'package.module:function', got {target!r}.")
        self.target = target
        self.params = dict(params)
        self.env = dict(env or {})
        self._arrays = dict(arrays or {})
        self._output_specs = dict(outputs or {})
        for name, value in self._arrays.items():
            _check_input(name, value)
        for name, spec in self._output_specs.items():
            _check_output(name, spec)
        self._warm = worker
        self._live_names = frozenset(live_inputs)
        self._resources = _Resources()
        self._views: dict[str, np.ndarray] = {}
        self._live_views: dict[str, np.ndarray] = {}
        self._stop_event = None
        self._stop_deadline = None
        self._stop_timeout = None
        self._kill_deadline = None
        self._forced = None  # why the parent ended the process, if it did
        self._final = None
        self._closed = False
        self._finalizer = weakref.finalize(self, self._resources.release, False)
        self._finalizer.atexit = False  # _close_open_jobs handles exit, in the right order

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Job:
        if self._closed:
            raise RuntimeError("This job is closed; create a new one.")
        if self._resources.process is not None:
            raise RuntimeError("This job was already started.")
        spawning.ensure_tracker()  # before any shared-memory segment is opened or made
        reclaim_stale_segments()
        _open_jobs.add(self)
        try:
            self._spawn()
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self) -> None:
        inputs = {name: self._share_input(name, value) for name, value in self._arrays.items()}
        outputs = {name: self._make_output(name, spec) for name, spec in self._output_specs.items()}
        self._arrays = {}  # the shared copies are all the worker needs
        self._resources.log_path = logs.new_log_path("worker")
        command = JobCommand(self.target, self.params, inputs, outputs, env=self.env, log=self._resources.log_path)
        lease = None if self._warm is None else self._warm.submit(command)
        if lease is not None:
            self._resources.lease = lease
            self._resources.process, self._resources.queue = lease.process, lease.queue
            self._stop_event = lease.stop_event
            return
        self._resources.queue = Channel(spawning.CONTEXT)
        self._stop_event = StopFlag(spawning.CONTEXT)
        self._resources.process = spawning.start_process(
            worker.run_job, (command, self._resources.queue, self._stop_event),
            name=f"napari-unet {self.target}")
        self._resources.queue.only_receive()  # the worker's end is in the worker now

    def poll(self, max_events: int = 1000) -> list[Event]:
        """The events that arrived since the last call; never blocks.

        Once the job has ended this includes exactly one ``Final`` event (``Done``, ``Stopped`` or
        ``Error``), synthesised here when the worker died without sending one.
        """
        process = self._resources.process
        if process is None or self._final is not None or self._closed:
            return []
        alive = process.is_alive()  # before draining: once it is dead, its events are all queued
        events = []
        while len(events) < max_events:
            try:
                event = self._resources.queue.get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError):  # a worker killed mid-message
                break
            events.append(event)
            if isinstance(event, Final):
                self._set_final(event)
                return events
        if len(events) >= max_events:
            return events
        if alive:
            self._enforce_deadlines(process)
        else:
            self._set_final(self._ended_event(process.exitcode))
            events.append(self._final)
        return events

    def _set_final(self, event: Final) -> None:
        self._final = event
        self._resources.job_finished()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the job to stop after its current batch; end the process if it has not within
        ``timeout`` seconds (checked by ``poll``, so this returns at once)."""
        if self._stop_event is None or self._final is not None:
            return
        self._stop_event.set()
        deadline = time.monotonic() + timeout
        if self._stop_deadline is None or deadline < self._stop_deadline:
            self._stop_deadline = deadline
            self._stop_timeout = timeout

    def kill(self) -> None:
        """End the worker now; ``poll`` then reports "stopped" with ``forced=True``."""
        process = self._resources.process
        if process is not None and self._final is None and process.is_alive():
            self._forced = "The worker process was ended on request"
            process.kill()
            process.join(_EXIT_GRACE_S)

    def wait(self, timeout: float | None = None) -> list[Event]:
        """Block until the job ends and return all its remaining events (for scripts and tests)."""
        if self._resources.process is None:
            raise RuntimeError("Start the job before waiting for it.")
        events = []
        run_to_end(self, on_event=events.append, timeout=timeout)
        return events

    def close(self) -> None:
        """End the worker if it still runs and free all shared memory. Safe to call twice.

        Arrays obtained from ``output`` stay readable afterwards; copy what you keep anyway.
        """
        if self._closed:
            return
        self._closed = True
        _open_jobs.discard(self)
        self._views.clear()
        self._live_views.clear()
        self._finalizer.detach()
        self._resources.release(finished=self._final is not None)
        if self._resources.log_path is not None and not self._failed:
            with contextlib.suppress(OSError):
                os.unlink(self._resources.log_path)  # a job that ended well needs no log

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- state ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Started and its final event not yet returned by ``poll``."""
        return self._resources.process is not None and self._final is None and not self._closed

    @property
    def finished(self) -> bool:
        return self._final is not None

    @property
    def _failed(self) -> bool:
        # Ended by an error, or closed while running (the log may say why it did not end).
        return self._final is None or isinstance(self._final, Error)

    @property
    def log_path(self) -> str | None:
        """The file that receives the worker's stderr (tracebacks, crash stacks)."""
        path = self._resources.log_path
        return None if path is None else str(path)

    @property
    def final_event(self) -> Final | None:
        return self._final

    @property
    def exitcode(self) -> int | None:
        process = self._resources.process
        if process is None or self._closed:
            return self._resources.exitcode
        return process.exitcode

    @property
    def pid(self) -> int | None:
        """The worker's process id, once started."""
        process = self._resources.process
        return None if process is None or self._closed else process.pid

    @property
    def on_warm_worker(self) -> bool:
        """True when the job runs (or ran) on a warm worker rather than in its own process."""
        return self._resources.lease is not None

    @property
    def shared_memory_names(self) -> tuple[str, ...]:
        """Names of this job's shared-memory segments (``/dev/shm`` on Linux)."""
        return tuple(shm.name for shm in self._resources.segments)

    def output(self, name: str):
        """The live output array ``name`` (read-only); zarr outputs come back as zarr arrays."""
        if self._closed:
            raise RuntimeError("This job is closed; copy outputs before closing it.")
        if name not in self._output_specs:
            raise KeyError(f"No output {name!r}; this job has {sorted(self._output_specs)}.")
        spec = self._output_specs[name]
        if isinstance(spec, ZarrOutput):
            import zarr

            return zarr.open_array(spec.path, mode="r")
        if name not in self._views:
            raise RuntimeError("Start the job before reading its outputs.")
        return self._views[name]

    def live_input(self, name: str) -> np.ndarray:
        """The writable parent view of a live input: the worker sees what is written into it."""
        if name not in self._live_views:
            raise KeyError(f"No live input {name!r}; start the job with live_inputs=({name!r},) first.")
        return self._live_views[name]

    # -- internals --------------------------------------------------------------------------
    def _new_segment(self, nbytes: int) -> SharedMemory:
        shm = new_segment(nbytes)
        self._resources.segments.append(shm)
        return shm

    def _share_input(self, name, value) -> SharedArray | LazyFile:
        if isinstance(value, LazyFile):
            return LazyFile(str(value.path))
        array = np.asarray(value)
        shm = self._new_segment(array.nbytes)
        view = segment_view(shm, array.shape, array.dtype)
        np.copyto(view, array)
        if name in self._live_names:
            self._live_views[name] = view
        del view
        return SharedArray(shm.name, array.shape, array.dtype.str)

    def _make_output(self, name, spec) -> SharedArray | ZarrOutput:
        if isinstance(spec, ZarrOutput):
            import zarr

            zarr.open_array(spec.path, mode="w-", shape=spec.shape, dtype=spec.dtype,
                            chunks=spec.chunks or spec.shape, fill_value=0)
            leftovers.mark_owner(spec.path)  # so that a later run can tell it was left by a killed one
            return spec
        shape, dtype = tuple(spec[0]), np.dtype(spec[1])
        shm = self._new_segment(int(np.prod(shape)) * dtype.itemsize)
        view = segment_view(shm, shape, dtype)
        view.fill(0)
        view.flags.writeable = False  # the worker writes; the parent only reads
        self._views[name] = view
        return SharedArray(shm.name, shape, dtype.str)

    def _enforce_deadlines(self, process) -> None:
        now = time.monotonic()
        if self._stop_deadline is not None and now >= self._stop_deadline:
            self._forced = f"The job did not stop within {self._stop_timeout:g} s, so its worker process was ended"
            self._stop_deadline = None
            self._kill_deadline = now + _EXIT_GRACE_S
            process.terminate()
        elif self._kill_deadline is not None and now >= self._kill_deadline:
            self._kill_deadline = None
            process.kill()

    def _ended_event(self, exitcode) -> Final:
        if self._forced:
            return Stopped(forced=True, exitcode=exitcode, message=f"{self._forced}; anything not yet saved is lost.")
        return Error(
            message=f"The worker process ended unexpectedly ({_describe_exit(exitcode)}).",
            error_type="WorkerDied",
            exitcode=exitcode,
            hint=_crash_hint(exitcode),
            log=self.log_path,
        )


def _describe_exit(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"exit code {exitcode}, killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


def _crash_hint(exitcode) -> str:
    if exitcode == -signal.SIGKILL:
        return "The system may have run out of memory and killed it. " + OOM_HINT
    return "Its last messages are in the log; your data is unaffected."


def _check_input(name, value):
    if isinstance(value, LazyFile):
        if not Path(value.path).exists():
            raise ValueError(f"Input {name!r}: file {value.path} does not exist; check the path.")
        return
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    if np.dtype(dtype) == object:
        raise ValueError(f"Input {name!r} must be a numeric array or a LazyFile, got {type(value).__name__}.")


def _check_output(name, spec):
    if isinstance(spec, ZarrOutput):
        if Path(spec.path).exists():
            raise ValueError(f"Output {name!r}: {spec.path} already exists; pick a new path or delete it.")
        return
    try:
        shape, dtype = spec
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"Output {name!r} must be (shape, dtype) or a ZarrOutput, got {spec!r}.") from None
    if any(n < 0 for n in shape) or dtype.kind == "O":
        raise ValueError(f"Output {name!r}: shape {shape} / dtype {dtype} cannot be shared.")

"""A worker process that stays alive between jobs, with Keras imported and recent models loaded.

A one-job worker pays for a fresh interpreter, the TensorFlow import and the model load every
time (seconds to tens of seconds). A napari session shares one ``WarmWorker``: ``engine.Job``
runs on it when it is free (else in a one-job process, as the command line always does). The
parent still owns each job's shared memory; the worker runs each job exactly as a one-job
worker would (``worker.run_one``). GPU memory is handed back by ending the process: after
``IDLE_TIMEOUT_S`` without a job, on ``release()``, on ``close()`` and at interpreter exit. A
worker that died (killed, crashed) is replaced by a fresh one at the next job.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util  # noqa: F401  registers its exit hook now, so ours runs before it
import os
import threading
import weakref
from dataclasses import dataclass

from napari_unet.runtime import logs, spawning, worker
from napari_unet.runtime.channels import Channel, StopFlag
from napari_unet.runtime.jobs.warm_up import warm_up_job
from napari_unet.runtime.worker import JobCommand

# Without a job for this long, the worker ends and frees its (GPU) memory.
IDLE_TIMEOUT_S = 600.0
WARM_UP_TARGET = worker.target_of(warm_up_job)

_workers: weakref.WeakSet[WarmWorker] = weakref.WeakSet()


@atexit.register
def _close_warm_workers():
    # Before multiprocessing's own exit hook, which would wait forever for a live worker.
    for warm in list(_workers):
        warm.close()


class _Channel:
    """The events of one job (``seq``) on the worker's shared queue; a queue to ``engine.Job``.

    Events of an earlier job that was given up on are dropped, never handed to this one.
    """

    def __init__(self, events, seq: int):
        self._events, self._seq = events, seq

    def get_nowait(self):
        while True:
            seq, event = self._events.get_nowait()
            if seq == self._seq:
                return event

    def close(self) -> None:
        pass  # the queue is the worker's: it outlives the job


@dataclass
class Lease:
    """One job's hold on the warm worker: what ``engine.Job`` reads and signals."""

    warm: WarmWorker
    seq: int
    process: object
    queue: _Channel
    stop_event: object

    def finished(self) -> None:
        """The job's final event arrived: the worker is free for the next job."""
        self.warm._job_ended(self.seq, keep=True)

    def abandon(self) -> None:
        """The job is closed while it runs: end the worker (the next job gets a fresh one)."""
        self.warm._job_ended(self.seq, keep=False)


class WarmWorker:
    """One long-lived worker process; ``submit`` hands it a job, or says it is busy."""

    def __init__(self, idle_timeout_s: float = IDLE_TIMEOUT_S):
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.RLock()
        self._process = self._commands = self._events = self._stop_event = None
        self._env: dict | None = None
        self._seq = 0
        self._running: int | None = None  # the seq of the job it runs
        self._idle_timer: threading.Timer | None = None
        self._warm_up_log = None
        self.starts = 0  # processes started so far (tests and benchmarks read it)
        _workers.add(self)

    # -- the parent's side of a job ----------------------------------------------------------
    def submit(self, command: JobCommand) -> Lease | None:
        """Run a job on the worker (starting one if none is alive); None when it is busy."""
        with self._lock:
            if self._running is not None:
                return None
            self._ensure_process(command.env)
            self._cancel_idle_timer()
            self._seq += 1
            self._running = self._seq
            self._stop_event.clear()  # the job before has ended: its stop must not end this one
            self._commands.put((self._seq, command))
            return Lease(self, self._seq, self._process, _Channel(self._events, self._seq), self._stop_event)

    def prewarm(self, env: dict) -> threading.Thread:
        """Start the worker and import Keras in it, off the calling (GUI) thread."""

        def warm_up():
            with self._lock:
                if self._running is not None or self.alive:
                    return
                self._warm_up_log = self._warm_up_log or logs.new_log_path("warm-up")
                lease = self.submit(JobCommand(WARM_UP_TARGET, {}, {}, {}, env=env, log=self._warm_up_log))
                # A real job queues behind the warm-up and may take the worker at once.
                if lease is not None:
                    lease.finished()

        thread = threading.Thread(target=warm_up, name="napari-unet warm-up", daemon=True)
        thread.start()
        return thread

    def release(self) -> bool:
        """End the worker now to free its memory, unless a job runs; True if it was ended."""
        with self._lock:
            if self._running is not None:
                return False
            ended = self.alive
            self._end_process(graceful=True)
            return ended

    def close(self) -> None:
        """End the worker, even mid-job (that job then reports that its worker ended)."""
        with self._lock:
            self._end_process(graceful=self._running is None)
            self._running = None
            if self._warm_up_log is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._warm_up_log)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def busy(self) -> bool:
        return self._running is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    # -- internals ----------------------------------------------------------------------------
    def _ensure_process(self, env: dict) -> None:
        if self.alive and env == self._env:
            return
        self._end_process(graceful=True)  # dead, or set up for another backend
        self._commands, self._events = Channel(spawning.CONTEXT), Channel(spawning.CONTEXT)
        self._stop_event = StopFlag(spawning.CONTEXT)
        self._process = spawning.start_process(worker.serve, (self._commands, self._events, self._stop_event),
                                               name="napari-unet warm worker")
        self._commands.only_send()  # the worker holds the other ends now
        self._events.only_receive()
        self._env = dict(env)
        self.starts += 1

    def _end_process(self, graceful: bool) -> None:
        """``graceful``: let an idle worker leave its loop; else (mid-job) end it at once."""
        self._cancel_idle_timer()
        process, self._process = self._process, None
        if process is not None:
            if graceful and process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    self._commands.put(None)  # ends its loop; TensorFlow's teardown is skipped
            spawning.end_process(process, finished=graceful)
        for channel in (self._commands, self._events):
            if channel is not None:
                channel.close()
        self._commands = self._events = self._stop_event = None

    def _job_ended(self, seq: int, keep: bool) -> None:
        with self._lock:
            if self._running != seq:
                return  # already handed back (the final event came, then the job was closed)
            self._running = None
            if not keep:
                self._end_process(graceful=False)
            elif self.alive:
                self._start_idle_timer()

    def _start_idle_timer(self) -> None:
        self._cancel_idle_timer()
        self._idle_timer = threading.Timer(self.idle_timeout_s, self.release)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


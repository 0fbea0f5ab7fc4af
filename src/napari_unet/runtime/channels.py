"""The parent's and the worker's channels, made so that nothing of them outlives the processes.

multiprocessing's ``Queue`` and ``Event`` rest on named POSIX semaphores (``/dev/shm/sem.mp-*``)
that only the resource tracker removes: when the parent, its worker and the tracker are killed
together (SIGKILL to the process group), they stay. A pipe and a byte of anonymous shared memory
have no name, so the kernel frees them with the last process that holds them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time


class Channel:
    """One-way messages, used as a ``Queue``: ``put`` on one side, ``get``/``get_nowait`` on the other.

    A ``put`` is synchronous: a slow reader slows the writer instead of piling messages up.
    Each side closes the end it does not use (``only_send``/``only_receive``), so a writer
    whose reader has gone gets an error instead of waiting forever, and the reader gets EOF.
    """

    def __init__(self, context):
        self._reader, self._writer = context.Pipe(duplex=False)
        self._lock = threading.Lock()

    def __getstate__(self):
        return self._reader, self._writer

    def __setstate__(self, state):
        self._reader, self._writer = state
        self._lock = threading.Lock()

    def put(self, message) -> None:
        with self._lock:  # one message at a time, whichever thread sends it
            self._writer.send(message)

    def get(self, timeout: float | None = None):
        if not self._reader.poll(timeout):
            raise queue.Empty
        return self._reader.recv()

    def get_nowait(self):
        return self.get(0)

    def only_send(self) -> Channel:
        _close(self._reader)
        return self

    def only_receive(self) -> Channel:
        _close(self._writer)
        return self

    def close(self) -> None:
        _close(self._reader)
        _close(self._writer)


def _close(connection) -> None:
    with contextlib.suppress(OSError):
        connection.close()


class StopFlag:
    """A stop request, used as an ``Event`` (set, clear, is_set, wait), on one shared byte."""

    POLL_S = 0.01  # how soon ``wait`` sees the flag; a stop is answered per batch anyway

    def __init__(self, context):
        self._flag = context.RawValue("b", 0)

    def set(self) -> None:
        self._flag.value = 1

    def clear(self) -> None:
        self._flag.value = 0

    def is_set(self) -> bool:
        return self._flag.value != 0

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL_S)
        return True

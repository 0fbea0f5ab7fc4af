"""Drains a job's events and hands them on: one non-blocking step, and a loop to the end.

Every caller (``Job.wait``, the command line, the docks' Qt timer, the benchmarks) goes through
these two, so that "which event ends a job" and "what happens between polls" are decided once.
A job here is an ``engine.Job`` or anything with its ``poll()``, ``running`` and ``target``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from napari_unet.core.events import Event, Final

EventHandler = Callable[[Event], None]


def drain(job, on_event: EventHandler | None = None) -> Final | None:
    """Hand on, in order, the events ``job`` has sent so far; never blocks.

    Returns the final event (``Done``, ``Stopped`` or ``Error``) if it was among them, else None.
    """
    return _dispatch(job.poll(), on_event)


def run_to_end(job, *, on_event: EventHandler | None = None, after_poll: Callable[[], None] | None = None,
               timeout: float | None = None, idle_s: float = 0.02) -> Final | None:
    """Drain a started ``job`` until it ends; returns its final event.

    ``after_poll`` runs after every poll (the command line answers signals there). When a poll
    brings nothing, the loop sleeps ``idle_s`` first, and raises ``TimeoutError`` once
    ``timeout`` seconds have passed. Returns None for a job that stops running without sending
    its final event here (closed, or its final event already taken).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        events = job.poll()
        final = _dispatch(events, on_event)
        if after_poll is not None:
            after_poll()
        if final is not None or not job.running:
            return final
        if not events:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Job {job.target} still running after {timeout} s.")
            time.sleep(idle_s)  # an empty queue: give the worker time instead of spinning


def _dispatch(events: list[Event], on_event: EventHandler | None) -> Final | None:
    final = None
    for event in events:
        if final is None and isinstance(event, Final):
            final = event
        if on_event is not None:
            on_event(event)
    return final

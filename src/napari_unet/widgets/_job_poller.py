"""Polls an engine Job from the Qt event loop, so the GUI never blocks on the worker."""

from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QObject, QTimer

FINAL_EVENTS = {"done", "stopped", "error"}


class JobPoller(QObject):
    """Calls ``on_event`` for every event of ``job`` and ``on_finished`` once at the end.

    A QTimer drains the job's queue every ``interval_ms``; each tick is non-blocking,
    so napari stays responsive whatever the worker does.
    """

    def __init__(
        self,
        job,
        on_event: Callable[[dict], None],
        on_finished: Callable[[dict], None],
        on_tick: Callable[[], None] | None = None,
        interval_ms: int = 50,
    ):
        super().__init__()
        self.job = job
        self._on_event = on_event
        self._on_finished = on_finished
        self._on_tick = on_tick
        self._final: dict | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> "JobPoller":
        self.job.start()
        self._timer.start()
        return self

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def _tick(self):
        for event in self.job.poll():
            if event.get("type") in FINAL_EVENTS and self._final is None:
                self._final = event
            self._on_event(event)
        if self._on_tick is not None:
            self._on_tick()
        if self._final is not None or not self.job.running:
            self._finish()

    def _finish(self):
        self._timer.stop()
        # Drain what is left, then free shared memory and the process.
        for event in self.job.poll():
            if event.get("type") in FINAL_EVENTS and self._final is None:
                self._final = event
            self._on_event(event)
        final = self._final or {"type": "error", "message": "The worker ended without a result."}
        try:
            self._on_finished(final)
        finally:
            self.job.close()

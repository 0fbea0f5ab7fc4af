"""Polls an engine Job from the Qt event loop, so the GUI never blocks on the worker."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer

from napari_unet.core.events import Error, Event, Final, Stopped
from napari_unet.runtime.engine import drain


class JobPoller(QObject):
    """Calls ``on_event`` for every event of ``job`` and ``on_finished`` once at the end.

    A QTimer drains the job's queue every ``interval_ms``; each tick is one ``engine.drain``,
    which never blocks, so napari stays responsive whatever the worker does.
    """

    def __init__(
        self,
        job,
        on_event: Callable[[Event], None],
        on_finished: Callable[[Final], None],
        on_tick: Callable[[], None] | None = None,
        interval_ms: int = 50,
    ):
        super().__init__()
        self.job = job
        self._on_event = on_event
        self._on_finished = on_finished
        self._on_tick = on_tick
        self._final: Final | None = None
        self._started = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> JobPoller:
        """Start polling; the job itself starts on the first tick.

        Starting the worker holds the event loop ~0.1 s: in its own turn, not in the click
        that also adds layers, so napari redraws in between.
        """
        self._timer.start()
        return self

    def stop(self) -> None:
        """Ask the job to stop after its current step (or not to start at all)."""
        if self._started:
            self.job.stop()
        elif self.active:
            self._timer.stop()
            self.job.close()
            self._on_finished(Stopped(message="Stopped before it started."))

    def close(self) -> None:
        """Stop polling and end the job now, with no more callbacks (their widgets are gone)."""
        self._timer.stop()
        self.job.close()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def _tick(self):
        if not self._started:
            self._start_job()
            return
        self._drain()
        if self._on_tick is not None:
            self._on_tick()
        if self._final is not None or not self.job.running:
            self._finish()

    def _start_job(self):
        self._started = True
        try:
            self.job.start()
        except Exception as exc:  # noqa: BLE001  shown as the job's failure, like any other
            self._timer.stop()  # Job.start has closed the job already
            self._on_finished(Error(message=f"The worker could not start: {exc}",
                                    hint="Close other programs or restart napari."))

    def _finish(self):
        self._timer.stop()
        self._drain()  # what is left; then free shared memory and the process
        final = self._final or Error(message="The worker ended without a result.")
        try:
            self._on_finished(final)
        finally:
            self.job.close()

    def _drain(self):
        final = drain(self.job, self._on_event)
        if self._final is None:
            self._final = final

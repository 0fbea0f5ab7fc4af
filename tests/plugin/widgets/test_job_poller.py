"""JobPoller: the job starts in the poller's first tick, not in the click that made it."""

from napari_unet.core.events import Done, Error, Slice, Stopped
from napari_unet.plugin.widgets._job_poller import JobPoller


class FakeJob:
    def __init__(self, fail_start=False, events=()):
        self.fail_start, self.events = fail_start, list(events)
        self.started = self.closed = self.stopped = False
        self.running = True

    def start(self):
        if self.fail_start:
            self.closed = True
            raise OSError("no space left for shared memory")
        self.started = True

    def poll(self):
        events, self.events = self.events, []
        return events

    def stop(self):
        self.stopped = True

    def close(self):
        self.closed = True


def make_poller(job, finals):
    return JobPoller(job, on_event=lambda e: None, on_finished=finals.append, interval_ms=5)


def test_the_job_starts_in_the_first_tick_and_finishes(qtbot):
    job, finals = FakeJob(events=[Slice(index=0, n_slices=1), Done(n_slices=1)]), []
    poller = make_poller(job, finals).start()
    assert poller.active and not job.started  # start() itself returns at once
    qtbot.waitUntil(lambda: not poller.active, timeout=5000)
    assert job.started and job.closed and finals == [Done(n_slices=1)]


def test_stop_before_the_first_tick_never_starts_the_worker(qtbot):
    job, finals = FakeJob(), []
    poller = make_poller(job, finals).start()
    poller.stop()
    assert not poller.active and not job.started and job.closed
    assert len(finals) == 1 and isinstance(finals[0], Stopped) and finals[0].done_slices == ()


def test_a_worker_that_cannot_start_is_reported_once(qtbot):
    job, finals = FakeJob(fail_start=True), []
    poller = make_poller(job, finals).start()
    qtbot.waitUntil(lambda: not poller.active, timeout=5000)
    assert len(finals) == 1 and isinstance(finals[0], Error)
    assert "could not start" in finals[0].message and "shared memory" in finals[0].message

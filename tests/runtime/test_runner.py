"""The job runner: every event handed on once and in order, the final one returned, timeouts."""

import pytest

from napari_unet.core.events import Done, Error, Final, Stopped, Warn
from napari_unet.runtime.runner import drain, run_to_end


class ScriptedJob:
    """Stands in for ``engine.Job``: each ``poll()`` returns the next scripted batch.

    Like a Job, it stops running once its final event has been returned; after the script it
    returns nothing, so a script without a final event never ends.
    """

    target = "tests:scripted"

    def __init__(self, *batches):
        self._batches = [list(batch) for batch in batches]
        self.polls = 0
        self.running, self.finished = True, False

    def poll(self):
        self.polls += 1
        batch = self._batches.pop(0) if self._batches else []
        if any(isinstance(event, Final) for event in batch):
            self.running, self.finished = False, True
        return batch


FINALS = {"done": lambda n: Done(n_slices=n), "stopped": lambda n: Stopped(message=str(n)),
          "error": lambda n: Error(message=str(n))}


def events(*kinds):
    """One event per kind named, each distinct (numbered); the others stand in as warnings."""
    return [FINALS.get(kind, lambda n, kind=kind: Warn(f"{kind} {n}"))(n) for n, kind in enumerate(kinds)]


def test_drain_hands_on_one_poll_and_returns_no_final_while_running():
    first, second = events("start", "batch"), events("batch", "done")
    job, seen = ScriptedJob(first, second), []
    assert drain(job, seen.append) is None
    assert seen == first and job.polls == 1


def test_drain_returns_the_final_event_with_the_batch_that_holds_it():
    batch = events("slice", "done")
    job, seen = ScriptedJob(batch), []
    assert drain(job, seen.append) is batch[-1]
    assert seen == batch


def test_drain_without_a_handler_still_finds_the_final_event():
    batch = events("batch", "error")
    assert drain(ScriptedJob(batch)) is batch[-1]


def test_run_to_end_hands_on_every_event_once_in_order_and_returns_the_final_one():
    batches = [events("start"), [], events("batch", "batch"), [], [], events("epoch", "stopped")]
    job, seen = ScriptedJob(*batches), []
    final = run_to_end(job, on_event=seen.append, idle_s=0)
    assert seen == [event for batch in batches for event in batch]
    assert final is batches[-1][-1] and isinstance(final, Stopped)
    assert job.polls == len(batches)  # nothing polled after the end


def test_after_poll_runs_after_every_poll_empty_ones_included():
    job, calls = ScriptedJob([], events("batch"), [], events("done")), []
    run_to_end(job, after_poll=lambda: calls.append(job.polls), idle_s=0)
    assert calls == [1, 2, 3, 4]


def test_a_job_that_stops_running_without_a_final_event_here_ends_the_loop():
    job = ScriptedJob(events("batch"))
    job.running = False  # e.g. closed, or its final event was taken by an earlier poll
    assert run_to_end(job, idle_s=0) is None
    assert job.polls == 1


def test_a_job_that_never_ends_raises_timeout_error():
    job = ScriptedJob(events("start"))  # then nothing, for ever
    with pytest.raises(TimeoutError, match="tests:scripted still running"):
        run_to_end(job, timeout=0.001, idle_s=0.001)
    assert job.polls >= 2

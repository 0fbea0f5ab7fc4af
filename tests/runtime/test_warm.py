"""The warm worker: one process runs job after job, and is replaced when it dies (no TensorFlow here)."""

import os
import signal
import time

import numpy as np
import pytest

from napari_unet.core.events import Batch, Done, Error, Progress, Stopped
from napari_unet.runtime.engine import Job
from napari_unet.runtime.warm import WarmWorker

from test_engine import JOBS, WAIT_S, poll_until, segment_exists

IMAGE = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)


@pytest.fixture
def warm():
    worker = WarmWorker()
    yield worker
    worker.close()


def fill_job(warm):
    return Job(f"{JOBS}:fill_slices", {}, arrays={"image": IMAGE}, outputs={"out": (IMAGE.shape, "int32")},
               worker=warm)


def run_fill(warm):
    """Run ``fill_slices`` on ``warm``; returns (its worker's pid, its final event, its output)."""
    with fill_job(warm).start() as job:
        assert job.on_warm_worker
        events = job.wait(timeout=WAIT_S)
        return events[0].pid, events[-1], np.array(job.output("out"))


def test_two_jobs_run_back_to_back_in_the_same_process(warm):
    first_pid, first_final, first_out = run_fill(warm)
    second_pid, second_final, second_out = run_fill(warm)
    assert isinstance(first_final, Done) and isinstance(second_final, Done)
    assert first_pid == second_pid == warm.pid and warm.starts == 1
    np.testing.assert_array_equal(second_out, 2 * IMAGE.astype(np.int32) + 1)


def test_a_killed_warm_worker_fails_its_job_and_the_next_job_gets_a_fresh_one(warm):
    with Job(f"{JOBS}:batches_until_stopped", {}, worker=warm).start() as job:
        poll_until(job, lambda seen: any(isinstance(e, Batch) for e in seen))
        killed = warm.pid
        os.kill(killed, signal.SIGKILL)
        events = job.wait(timeout=WAIT_S)
    final = events[-1]
    assert isinstance(final, Error) and "SIGKILL" in final.message and "\n" not in final.message
    pid, final, _ = run_fill(warm)
    assert isinstance(final, Done) and pid != killed and warm.starts == 2


def test_a_stop_of_one_job_does_not_reach_the_next(warm):
    for _ in range(2):
        with Job(f"{JOBS}:batches_until_stopped", {}, worker=warm).start() as job:
            poll_until(job, lambda seen: any(isinstance(e, Batch) for e in seen))
            job.stop()
            events = job.wait(timeout=WAIT_S)
        assert isinstance(events[-1], Stopped) and events[-1].message != "stopped after 0 batches"
    assert warm.starts == 1


def test_a_second_job_while_the_warm_worker_is_busy_gets_its_own_process(warm):
    with Job(f"{JOBS}:batches_until_stopped", {}, worker=warm).start() as busy:
        with fill_job(warm).start() as other:
            events = other.wait(timeout=WAIT_S)
            assert not other.on_warm_worker and isinstance(events[-1], Done)
            assert events[0].pid != warm.pid
        busy.stop()
        busy.wait(timeout=WAIT_S)


def test_closing_a_running_job_ends_the_warm_worker_and_frees_its_memory(warm):
    job = Job(f"{JOBS}:fill_slices", {"hold": True}, arrays={"image": IMAGE},
              outputs={"out": (IMAGE.shape, "int32")}, worker=warm).start()
    poll_until(job, lambda seen: len(seen) >= 1 + 1 + IMAGE.shape[0])  # started, input, slices
    names, process = job.shared_memory_names, warm._process
    job.close()
    assert not process.is_alive() and not warm.alive
    assert not any(segment_exists(name) for name in names)
    assert isinstance(run_fill(warm)[1], Done) and warm.starts == 2


def wait_until_ended(process) -> bool:
    """Poll ``is_alive`` until it says False. Not ``process.join``: the timer's thread joins the
    process too, and when two threads join one process CPython's ``is_alive`` can say True for a
    dead one (the one that loses the ``waitpid`` race returns before the winner records the
    exit code)."""
    deadline = time.monotonic() + WAIT_S
    while process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process.is_alive()


def test_release_and_the_idle_timeout_end_the_process(warm):
    run_fill(warm)
    process = warm._process
    assert warm.release() and not process.is_alive() and not warm.alive
    idle = WarmWorker(idle_timeout_s=0.1)
    try:
        run_fill(idle)
        process = idle._process
        assert wait_until_ended(process)  # by the idle timer, not by us
        assert isinstance(run_fill(idle)[1], Done) and idle.starts == 2
    finally:
        idle.close()


def test_release_refuses_while_a_job_runs(warm):
    with Job(f"{JOBS}:batches_until_stopped", {}, worker=warm).start() as job:
        poll_until(job, lambda seen: any(isinstance(e, Batch) for e in seen))
        assert not warm.release() and warm.alive
        job.stop()
        job.wait(timeout=WAIT_S)


def test_a_live_input_written_by_the_parent_reaches_the_running_job(warm):
    with Job(f"{JOBS}:echo_request", {}, arrays={"request": np.array([7], np.int64)},
             live_inputs=("request",), worker=warm).start() as job:
        poll_until(job, lambda seen: any(isinstance(e, Progress) and e.index == 7 for e in seen))
        job.live_input("request")[0] = 42
        poll_until(job, lambda seen: any(isinstance(e, Progress) and e.index == 42 for e in seen))
        job.stop()
        job.wait(timeout=WAIT_S)

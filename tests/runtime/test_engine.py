"""The worker-process engine, with the small jobs of ``engine_jobs.py`` (no Qt, no TensorFlow)."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.config import PredictConfig
from napari_unet.core.events import Done
from napari_unet.runtime import worker
from napari_unet.runtime.engine import Job
from napari_unet.runtime.jobs.predict import start_prediction
from napari_unet.runtime.shm import LazyFile, ZarrOutput

JOBS = "engine_jobs"
TESTS_DIR = Path(__file__).parent
WAIT_S = 60  # generous: spawning is slow on a busy machine


def poll_until(job, predicate, timeout=WAIT_S):
    """Poll (never blocking) until ``predicate(all_events)``; return the events seen."""
    events, deadline = [], time.monotonic() + timeout
    while not predicate(events):
        assert time.monotonic() < deadline, f"timed out; events so far: {events}"
        events += job.poll()
        time.sleep(0.01)
    return events


def types(events):
    return [event.kind for event in events]


def segment_exists(name):
    return Path("/dev/shm", name).exists()


def test_shared_arrays_stream_into_the_parent_while_the_job_runs():
    image = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    job = Job(f"{JOBS}:fill_slices", {"hold": True}, arrays={"image": image},
              outputs={"out": (image.shape, np.int32)}).start()
    with job:
        events = poll_until(job, lambda ev: types(ev).count("slice") == 4)
        # The worker is still alive and waiting, so the parent sees its writes through shared memory.
        assert job.running and job.exitcode is None
        np.testing.assert_array_equal(job.output("out"), 2 * image.astype(np.int32) + 1)
        job.stop()
        events += job.wait(timeout=WAIT_S)
        names, job_pid = job.shared_memory_names, job.pid
    assert types(events) == ["worker_started", "input"] + ["slice"] * 4 + ["done"]
    assert events[0].pid == job_pid != os.getpid()
    assert [e.index for e in events if e.kind == "slice"] == [0, 1, 2, 3]
    info = events[1]
    assert info.module == "numpy" and info.sum == int(image.sum())
    # A read-only view onto the segment, not an unpickled copy.
    assert (info.owndata, info.writeable) == (False, False)
    assert job.final_event == Done() and job.finished and not job.running
    assert job.exitcode == 0
    assert len(names) == 2 and not any(segment_exists(name) for name in names)


def test_stop_ends_a_cooperative_job_with_its_own_stopped_event():
    with Job(f"{JOBS}:batches_until_stopped", {}).start() as job:
        events = poll_until(job, lambda ev: types(ev).count("batch") >= 3)
        job.stop(timeout=WAIT_S)
        events += job.wait(timeout=WAIT_S)
    assert events[-1].kind == "stopped" and not events[-1].forced
    assert int(events[-1].message.split()[2]) >= 3
    assert set(types(events[1:-1])) == {"batch"}


def test_a_job_that_ignores_stop_is_ended_after_the_timeout():
    with Job(f"{JOBS}:ignore_stop", {}).start() as job:
        poll_until(job, lambda ev: "batch" in types(ev))
        job.stop(timeout=0.5)
        assert job.running  # stop() itself never waits for the worker
        events = job.wait(timeout=WAIT_S)
    final = events[-1]
    assert final.kind == "stopped" and final.forced is True
    assert final.exitcode == -signal.SIGTERM and "within 0.5 s" in final.message
    assert job.poll() == []


def test_kill_ends_the_worker_at_once_and_reports_stopped():
    with Job(f"{JOBS}:ignore_stop", {}).start() as job:
        poll_until(job, lambda ev: "batch" in types(ev))
        job.kill()
        final = job.wait(timeout=5)[-1]
    assert final.kind == "stopped" and final.forced and "on request" in final.message
    assert job.exitcode == -signal.SIGKILL


@pytest.mark.parametrize(
    "error, message, hint",
    [
        ("ValueError", "patch_size 512 is larger than the image (64 px); lower it", None),
        ("MemoryError", "", "Reduce the batch size or the patch/tile size."),
        ("RuntimeError", "CUDA_ERROR_OUT_OF_MEMORY: out of memory", "Reduce the batch size or the patch/tile size."),
    ],
)
def test_job_exceptions_reach_the_caller_as_error_events(error, message, hint):
    with Job(f"{JOBS}:fail", {"error": error, "message": message}).start() as job:
        events = job.wait(timeout=WAIT_S)
    assert types(events) == ["worker_started", "progress", "error"]
    final = events[-1]
    assert final.error_type == error
    assert final.message == (message or error)
    assert final.hint == (hint or message)  # a ValueError's message is already user-facing
    assert "engine_jobs.py" in final.traceback and "in fail" in final.traceback


def test_a_killed_worker_is_reported_exactly_once_without_hanging():
    with Job(f"{JOBS}:batches_until_stopped", {}).start() as job:
        events = poll_until(job, lambda ev: "batch" in types(ev))
        os.kill(events[0].pid, signal.SIGKILL)
        events += poll_until(job, lambda ev: "error" in types(ev))
        later = [job.poll() for _ in range(5)]
    assert types(events).count("error") == 1 and later == [[]] * 5
    final = job.final_event
    assert "ended unexpectedly" in final.message and "-9" in final.message
    assert "Reduce the batch size" in final.hint
    assert job.exitcode == -signal.SIGKILL


def test_a_worker_that_exits_abruptly_is_reported_after_its_last_events():
    with Job(f"{JOBS}:exit_abruptly", {"code": 3}).start() as job:
        events = poll_until(job, lambda ev: "progress" in types(ev))
        job.stop()  # the job's cue to die
        events += job.wait(timeout=WAIT_S)
    assert types(events) == ["worker_started", "progress", "error"]
    assert "exit code 3" in events[-1].message


def test_close_ends_a_running_worker_and_frees_shared_memory():
    image = np.ones((2, 16, 16), np.float32)
    job = Job(f"{JOBS}:batches_until_stopped", {}, arrays={"image": image},
              outputs={"out": ((2, 16, 16), np.uint8)}).start()
    poll_until(job, lambda ev: "batch" in types(ev))
    kept = job.output("out")
    names = job.shared_memory_names
    assert all(segment_exists(name) for name in names)
    job.close()
    job.close()  # idempotent
    assert multiprocessing.active_children() == []
    assert not any(segment_exists(name) for name in names)
    assert kept.sum() == 0  # a view kept by the caller stays valid (no crash) after close
    with pytest.raises(RuntimeError, match="closed"):
        job.output("out")


def test_a_lazy_file_goes_in_and_a_zarr_array_comes_out(tmp_path):
    import tifffile
    import zarr

    image = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    tifffile.imwrite(tmp_path / "stack.tif", image, photometric="minisblack")
    out = ZarrOutput(str(tmp_path / "out.zarr"), image.shape, "int32", chunks=(1, 16, 16))
    with Job(f"{JOBS}:fill_slices", {}, arrays={"image": LazyFile(str(tmp_path / "stack.tif"))},
             outputs={"out": out}).start() as job:
        events = job.wait(timeout=WAIT_S)
        assert isinstance(job.output("out"), zarr.Array)
    assert types(events)[-1] == "done", events[-1]
    assert events[1].module == "dask" and events[1].sum == int(image.sum())  # opened by the worker
    np.testing.assert_array_equal(zarr.open_array(out.path, mode="r")[:], 2 * image.astype(np.int32) + 1)
    with pytest.raises(ValueError, match="already exists"):
        Job(f"{JOBS}:fill_slices", {}, outputs={"out": out})


def model_folder(folder, in_channels=1, n_classes=1):
    """A model folder as far as the parent reads it (bundle.json; the worker would need weights)."""
    (folder / "bundle.json").write_text(json.dumps({
        "format_version": 1, "model_config": {"in_channels": in_channels, "n_classes": n_classes},
        "normalization": {"low": [0.0] * in_channels, "high": [255.0] * in_channels}}))
    return folder


def test_bad_jobs_are_refused_before_spawning(tmp_path):
    with pytest.raises(ValueError, match="package.module:function"):
        Job("engine_jobs.fill_slices", {})
    with pytest.raises(ValueError, match="'out'.*shape, dtype"):
        Job(f"{JOBS}:fill_slices", {}, outputs={"out": "big"})
    with pytest.raises(ValueError, match="does not exist"):
        start_prediction(np.zeros((4, 32, 32)), tmp_path / "missing", predict_cfg=PredictConfig())
    with pytest.raises(ValueError, match="is a file, not a model folder"):
        start_prediction(np.zeros((4, 32, 32)), Path(__file__), predict_cfg=PredictConfig())
    with pytest.raises(ValueError, match="2-D or 3-D"):
        start_prediction(np.zeros((2, 4, 32, 32)), model_folder(tmp_path), predict_cfg=PredictConfig())


def test_start_prediction_allocates_outputs_of_the_spatial_shape(tmp_path):
    cfg = PredictConfig(output="instances", return_probabilities=True, axis=1)
    job = start_prediction(np.zeros((5, 6, 32, 3), np.uint8), model_folder(tmp_path, 3), predict_cfg=cfg,
                           channel_axis=-1, prob_path=tmp_path / "probs.zarr")
    assert job.target == "napari_unet.runtime.jobs.predict:predict_job"
    assert job._output_specs["labels"] == ((5, 6, 32), np.uint32)
    probs = job._output_specs["probs"]
    assert isinstance(probs, ZarrOutput) and probs.shape == (5, 6, 32) and probs.chunks == (5, 1, 32)
    assert job.params["predict_cfg"] == cfg.to_dict()
    assert job.env["KERAS_BACKEND"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    job.close()


SCRIPT = """
import sys, time
import numpy as np
from napari_unet.runtime import engine

image = np.ones((2, 8, 8), np.uint8)
job = engine.Job("engine_jobs:report_environment", {"names": ["KERAS_BACKEND"]}, env={"KERAS_BACKEND": "tensorflow"},
                 arrays={"image": image}, outputs={"out": ((2, 8, 8), np.uint8)})
with job.start():
    events = job.wait(timeout=60)
print("ENV", events[1].values, events[1].heavy_modules)
print("PARENT_HEAVY", sorted({"tensorflow", "keras"} & set(sys.modules)))
# Left running on purpose: interpreter exit must end it and free its memory.
forgotten = engine.Job("engine_jobs:ignore_stop", {}, arrays={"image": image}).start()
while not forgotten.poll():
    time.sleep(0.01)
print("FORGOTTEN", forgotten.pid, *forgotten.shared_memory_names)
"""


@pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX process priorities")
def test_the_worker_runs_at_a_lower_priority_than_the_gui():
    with Job("engine_jobs:report_environment", {}).start() as job:
        events = job.wait(timeout=WAIT_S)
    env = next(e for e in events if e.kind == "env")
    assert env.niceness == min(19, os.nice(0) + worker.WORKER_NICENESS)


def test_parent_stays_free_of_tensorflow_and_exit_leaves_nothing_behind():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in result.stdout.splitlines()}
    assert lines["ENV"] == "{'KERAS_BACKEND': 'tensorflow'} []"  # the worker saw env; imported nothing heavy
    assert lines["PARENT_HEAVY"] == "[]"
    pid, *names = lines["FORGOTTEN"].split()
    assert not Path(f"/proc/{pid}").exists()
    assert names and not any(segment_exists(name) for name in names)
    # resource_tracker would warn here about leaked or doubly-registered segments.
    assert "resource_tracker" not in result.stderr and "leaked" not in result.stderr, result.stderr


ORPHAN_SCRIPT = """
import os, signal, time
from napari_unet.runtime import engine

job = engine.Job("engine_jobs:batches_until_stopped", {}).start()
while not job.poll():
    time.sleep(0.01)
print(job.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no close: the worker must notice by itself
"""


def test_a_worker_whose_parent_dies_stops_by_itself(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "out.txt"
    with open(log, "w") as out:  # a file, not a pipe: the worker inherits it and may outlive the parent
        result = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT], stdout=out, stderr=subprocess.STDOUT,
                                timeout=120, env=env)
    assert result.returncode == -signal.SIGKILL, log.read_text()
    pid = int(log.read_text().split()[0])
    deadline = time.monotonic() + 20
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"orphaned worker {pid} was still running")
        time.sleep(0.1)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_training_then_prediction_run_in_the_worker(tmp_path):
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.runtime.jobs.train import start_training
    from napari_unet.samples.synthetic import make_cells_volume

    data = make_cells_volume(shape=(6, 64, 64), annotated_slices=(1, 4))
    model_cfg = ModelConfig(n_filters=4, depth=2, batch_norm=False)
    train_cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, patch_size=32, threads=1, augment=False)
    with start_training(data["image"], data["labels"], model_cfg=model_cfg, train_cfg=train_cfg,
                        out_dir=tmp_path / "model").start() as job:
        events = job.wait(timeout=300)
    assert events[-1].kind == "done", events[-1]
    assert {"start", "batch", "epoch"} <= set(types(events))
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules

    cfg = PredictConfig(tile_size=32, tile_overlap=0, return_probabilities=True)
    with start_prediction(data["image"], events[-1].training.model_dir, predict_cfg=cfg).start() as job:
        events = job.wait(timeout=300)
        labels, probs = np.array(job.output("labels")), np.array(job.output("probs"))
    assert types(events)[-1] == "done", events[-1]
    assert [e.index for e in events if e.kind == "slice"] == list(range(6))
    assert events[-1].outputs is None  # the arrays stay in shared memory
    assert labels.shape == (6, 64, 64) and set(np.unique(labels)) <= {0, 1}
    assert probs.dtype == np.float32 and probs.max() > 0
    np.testing.assert_array_equal(labels, (probs > 0.5).astype(np.uint8))

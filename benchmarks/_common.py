"""Shared pieces of the benchmark scripts: running engine jobs while sampling memory,
machine facts, a matmul reference, tables and output files.

This process plays the part of the napari process: it never imports keras or tensorflow.
Keras work that is not an engine job runs in a spawned helper (``keras_helper``).
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

from napari_unet.core.events import record as record_of
from napari_unet.runtime.engine import run_to_end

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "isbi2012"
MB = 1024**2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ memory sampling


class RssSampler:
    """Samples the resident memory of this process and of one worker every ``interval`` s.

    The worker's pid is set once the job reports it (its "worker_started" event).
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.worker_pid = None
        self.peak_worker = 0
        self.peak_parent = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._me = psutil.Process()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self):
        self.samples += 1
        self.peak_parent = max(self.peak_parent, self._me.memory_info().rss)
        if self.worker_pid is not None:
            try:
                self.peak_worker = max(self.peak_worker, psutil.Process(self.worker_pid).memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()


def run_engine_job(job, on_event=None, keep_outputs=(), poll_interval: float = 0.02) -> dict:
    """Start ``job``, poll it to the end and return its timed events and memory peaks.

    Events are kept as JSON-ready records (``core.events.record``) with ``"t"``: seconds since
    ``job.start()`` was called, as received here.
    ``keep_outputs`` names shared-memory outputs copied out before the job is closed.
    Raises ``RuntimeError`` if the job ends with an error.
    """
    events = []
    outputs = {}
    with RssSampler() as rss:

        def record(event):
            event = record_of(event, t=time.perf_counter() - t0)
            if event["type"] == "worker_started":
                rss.worker_pid = event["pid"]
            events.append(event)
            if on_event is not None:
                on_event(event)

        t0 = time.perf_counter()
        job.start()
        try:
            run_to_end(job, on_event=record, idle_s=poll_interval)
            wall = time.perf_counter() - t0
            outputs = {name: np.array(job.output(name)) for name in keep_outputs}
        finally:
            job.close()
    final = events[-1]
    if final["type"] == "error":
        raise RuntimeError(f"{job.target} failed: {final.get('message')}\n{final.get('traceback', '')}")
    return {
        "events": events,
        "final": final,
        "outputs": outputs,
        "wall_s": wall,
        "peak_rss_worker_mb": rss.peak_worker / MB,
        "peak_rss_parent_mb": rss.peak_parent / MB,
        "rss_samples": rss.samples,
    }


# ------------------------------------------------------------------ keras helper process


@contextmanager
def keras_helper():
    """A spawned process for Keras work (FLOP counts, raw prediction, checkpoint scoring).

    Spawned, not forked, and only while no engine job runs, so it neither shares state with
    this process nor competes with a measured job for the CPU.
    """
    benchmarks_dir = str(Path(__file__).resolve().parent)
    if benchmarks_dir not in sys.path:
        sys.path.insert(0, benchmarks_dir)  # the helper imports _keras_tasks by name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown()


# ------------------------------------------------------------------ machine facts


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best of ``repeats`` float32 ``n x n`` matrix products with numpy, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_at_start": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def parent_lifetime_peak_rss_mb() -> float:
    """This process's peak resident memory over its whole life (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ output


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def markdown_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(data), indent=2), encoding="utf-8")
    return path


def write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ resizing (the 256 x 256 recipe)


def resize_stack(stack, size_yx, order: int = 1) -> np.ndarray:
    """Resize every slice of a ``(Z, Y, X)`` stack to ``size_yx`` (float32, original value range)."""
    from skimage.transform import resize

    stack = np.asarray(stack, np.float32)
    shape = (stack.shape[0],) + tuple(size_yx)
    if stack.shape == shape:
        return stack
    # Anti-aliasing only when shrinking: it is a low-pass filter against aliasing.
    shrink = any(new < old for new, old in zip(size_yx, stack.shape[1:]))
    return resize(stack, shape, order=order, preserve_range=True, anti_aliasing=shrink).astype(np.float32)


def cell_mask(cell_probs, size_yx, threshold: float = 0.5) -> np.ndarray:
    """Cell pixels of a ``(Z, Y, X)`` cell-probability stack, resized to ``size_yx`` first."""
    return resize_stack(cell_probs, size_yx) > threshold

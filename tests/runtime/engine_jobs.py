"""Small job generators for the engine tests; they run in the spawned worker process."""

import os
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from napari_unet.core.events import Batch, Event, Progress, Slice, Stopped


@dataclass(frozen=True)
class Input(Event):
    """How the job's input arrived in the worker."""

    kind: ClassVar[str] = "input"
    module: str
    sum: int
    owndata: bool | None
    writeable: bool | None


@dataclass(frozen=True)
class Environment(Event):
    kind: ClassVar[str] = "env"
    values: dict
    heavy_modules: list
    niceness: int | None


def _batch(n: int) -> Batch:
    return Batch(epoch=1, batch=n, steps=0, loss=0.0, progress=0.0, seconds_left=None)


def fill_slices(arrays, outputs, stop_event, hold=False):
    """Write ``2 * image + 1`` into ``outputs["out"]`` slice by slice; report how the input arrived.

    With ``hold``, wait for the parent's stop request before returning, so the parent can
    look at the output while the worker is still alive.
    """
    image, out = arrays["image"], outputs["out"]
    flags = getattr(image, "flags", None)  # None for a lazily opened (dask) file
    yield Input(
        module=type(image).__module__.split(".")[0],
        sum=int(image.sum()),
        owndata=None if flags is None else bool(flags.owndata),
        writeable=None if flags is None else bool(flags.writeable),
    )
    for i in range(image.shape[0]):
        out[i] = 2 * np.asarray(image[i]).astype(out.dtype) + 1
        yield Slice(index=i, n_slices=image.shape[0])
    if hold:
        stop_event.wait(30)


def batches_until_stopped(arrays, outputs, stop_event, period=0.01):
    """A training-like loop: one "batch" event per period until asked to stop."""
    batch = 0
    while not stop_event.is_set():
        batch += 1
        yield _batch(batch)
        time.sleep(period)
    yield Stopped(message=f"stopped after {batch} batches")


def ignore_stop(arrays, outputs, stop_event):
    """A job stuck in a long step: it never looks at the stop event."""
    while True:
        yield _batch(0)
        time.sleep(0.01)


def fail(arrays, outputs, stop_event, error="ValueError", message="bad input"):
    yield Progress(axis=0, index=0, n_slices=1)
    raise {"ValueError": ValueError, "MemoryError": MemoryError, "RuntimeError": RuntimeError}[error](message)


def exit_abruptly(arrays, outputs, stop_event, code=3):
    """Die without a word, as a crash or the out-of-memory killer would.

    It dies once told to (the stop event), so its last event has surely left the process.
    """
    yield Progress(axis=0, index=0, n_slices=1)
    stop_event.wait()
    os._exit(code)


def report_environment(arrays, outputs, stop_event, names=()):
    yield Environment(values={name: os.environ.get(name) for name in names},
                      heavy_modules=sorted({"napari", "qtpy", "PyQt6", "tensorflow", "keras"} & set(sys.modules)),
                      niceness=os.nice(0) if hasattr(os, "nice") else None)


def predict_some_then_wait(arrays, outputs, stop_event, model_dir, predict_cfg, channel_axis=None,
                           source_path=None, slices=2):
    """Stands in for the prediction job: finishes ``slices`` slices (slice i holds i + 1), then
    waits for the stop request, as a run cancelled part way does."""
    labels, probs = outputs["labels"], outputs.get("probs")
    n = labels.shape[0]
    for i in range(slices):
        labels[i] = i + 1
        if probs is not None:
            probs[i] = 0.5
        yield Slice(index=i, n_slices=n)
    stop_event.wait(60)
    yield Stopped(done_slices=tuple(range(slices)), n_slices=n)


def echo_request(arrays, outputs, stop_event):
    """Report the live input "request" each time the parent changes it, until stopped."""
    request, seen = arrays["request"], None
    while not stop_event.is_set():
        if int(request[0]) != seen:
            seen = int(request[0])
            yield Progress(axis=0, index=seen, n_slices=0)
        time.sleep(0.005)
    yield Stopped(message="stopped")

"""What a job tells its caller: one class per kind of event, sent as such across the queue.

Producers (``core.train``, ``core.predict``, the worker and the engine) build these; consumers
(the command line, the docks, the benchmarks) handle them by type. A job ends with exactly one
``Final`` event: ``Done``, ``Stopped`` or ``Error``. Events stay small: arrays go through the
job's outputs, never through the queue (a ``Preview`` carries one bounded 2-D slice).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"  # the name in records (benchmarks' JSON) and messages


@dataclass(frozen=True)
class WorkerStarted(Event):
    kind: ClassVar[str] = "worker_started"
    pid: int


@dataclass(frozen=True)
class Start(Event):
    """Training is set up: the data is split and the model is built."""

    kind: ClassVar[str] = "start"
    device: str
    n_train_slices: int
    n_val_slices: int
    n_classes: int
    epochs: int
    steps_per_epoch: int
    params: int
    mixed_precision: bool
    precision: str = "float32"  # the Keras dtype policy: "float32", "mixed_float16" or "mixed_bfloat16"
    xla: bool = False  # the train step is compiled by XLA (Keras' jit_compile as resolved)
    replicas: int = 1  # devices the batch is split over (MirroredStrategy on several GPUs)
    batch_size: int = 0  # the batch and patch size trained with ("auto" resolved for the device)
    patch_size: int = 0
    val_strips: bool = False  # validation is a strip of each annotated slice, not whole slices


@dataclass(frozen=True)
class Batch(Event):
    kind: ClassVar[str] = "batch"
    epoch: int
    batch: int
    steps: int
    loss: float
    progress: float  # 0..1: of the steps, or of the time cap when that ends training first
    seconds_left: float | None  # until the time cap; None without one


@dataclass(frozen=True)
class Epoch(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int
    epochs: int
    loss: float
    val_loss: float | None
    val_dice: float | None
    val_iou: float | None
    seconds: float
    best_epoch: int | None
    learning_rate: float
    data_wait_share: float  # of the epoch spent waiting for batches: high means the device starves
    gpu_peak_bytes: int | None = None  # the most GPU memory the backend has held so far; None on a CPU


@dataclass(frozen=True)
class Slice(Event):
    """Slice ``index`` of the output is written and final."""

    kind: ClassVar[str] = "slice"
    index: int
    n_slices: int


@dataclass(frozen=True)
class Progress(Event):
    """A three-axis pass predicted slice ``index`` along ``axis`` (nothing is written yet)."""

    kind: ClassVar[str] = "progress"
    axis: int
    index: int
    n_slices: int


@dataclass(frozen=True)
class Preview(Event):
    """Slice ``index`` along ``axis`` of the training image, predicted with the weights of the
    current ``epoch``: class labels (uint8) and the foreground probability (uint8, 0..255)."""

    kind: ClassVar[str] = "preview"
    axis: int
    index: int
    epoch: int
    labels: Any = field(compare=False, repr=False)
    probability: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class Warn(Event):
    kind: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class Stage(Event):
    """A job moved on to step ``index`` (1-based) of ``total``, e.g. an export's packaging."""

    kind: ClassVar[str] = "stage"
    message: str
    index: int
    total: int


@dataclass(frozen=True)
class Final(Event):
    """The last event of a job."""


@dataclass(frozen=True)
class TrainingResult:
    """What a training run leaves, whether it finished or was stopped."""

    model_dir: str | None
    model_saved: bool
    best_epoch: int | None
    best_val_dice: float | None
    best_val_iou: float | None
    best_val_loss: float | None
    history: dict
    seconds: float
    message: str | None = None  # why nothing was saved, or where the model went instead
    objects: str | None = None  # instance models: the object step tuned on the annotations, in one line
    cut_short: str | None = None  # the time cap ended a run still improving: one line, with the way out
    more_slices: str | None = None  # one annotated slice: more help, and which to paint next (one line)


@dataclass(frozen=True)
class Done(Final):
    kind: ClassVar[str] = "done"
    training: TrainingResult | None = None
    finish_reason: str | None = None  # training: "epochs", "time_limit" or "early_stopping"
    n_slices: int | None = None  # prediction
    # In-process callers of core.predict get the output arrays here; the worker drops them.
    outputs: dict | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Exported(Done):
    """A bioimage.io package was written (it passed bioimageio.core's test)."""

    path: str = ""
    weights: tuple = ()  # the weight formats in the package


@dataclass(frozen=True)
class Ranked(Done):
    """Slices ranked by the model's uncertainty, most uncertain first: ``((slice, score), ...)``."""

    ranking: tuple = ()


@dataclass(frozen=True)
class Stopped(Final):
    kind: ClassVar[str] = "stopped"
    message: str = ""
    training: TrainingResult | None = None
    done_slices: tuple = ()  # prediction: the slices written before the stop
    n_slices: int | None = None
    forced: bool = False  # the worker did not stop in time and was ended
    exitcode: int | None = None


@dataclass(frozen=True)
class Error(Final):
    kind: ClassVar[str] = "error"
    message: str
    hint: str = ""  # what the user can do about it
    error_type: str = ""
    log: str | None = None  # the log file with the traceback
    traceback: str = ""
    exitcode: int | None = None


def record(event: Event, **extra: Any) -> dict:
    """A JSON-ready dict of ``event`` (``"type"`` is its kind), e.g. for benchmark results."""
    values = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "outputs"}
    if values.get("training") is not None:
        values.update(dataclasses.asdict(values.pop("training")))
    return {"type": event.kind, **values, **extra}

"""What a model folder's ``bundle.json`` holds: ``BundleMeta``, typed and versioned.

Format versions: 1 (up to git commit 2d87ce6; only ``model_config`` was checked when read) and 2 (this
module: the whole description is checked against ``BundleMeta``). An older version is brought
up to date in memory by ``upgrade`` before it is checked, so every reader sees one shape. No
Keras here: the docks read a model's description in the napari process.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from napari_unet.core.config import AnnotationMode, ModelConfig, SeedMode, TrainConfig

FORMAT_VERSION: Final = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
INPUT_AXES: Final = "YXC"


def _jsonable(value):
    """Configs become dicts, numpy scalars/arrays plain numbers/lists, NaN becomes null."""
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def upgrade(raw: dict) -> dict:
    """A description of format version 1 as version 2 (one of version 2 as it is).

    Version 2 keeps version 1's keys and meanings; what a version 1 file left out (older
    releases wrote fewer keys) takes ``BundleMeta``'s defaults, which say what its absence meant.
    """
    if raw.get("format_version") == 1:
        return {**raw, "format_version": 2}
    return raw


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data):
        # The trainer hands numpy numbers, tuples and NaN (an epoch without validation): JSON's values.
        return _jsonable(data)


class Normalization(_Record):
    """The training image's per-channel intensity percentiles; prediction maps by them on request."""

    method: Literal["percentile"] = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.8)
    # None where the file holds null (a NaN): read, but refused before a prediction uses it.
    low: list[float | None]
    high: list[float | None]


class Classes(_Record):
    """Per model output (background first): its name and the label value that trained it."""

    activation: Literal["sigmoid", "softmax"]
    n_outputs: int
    names: list[str]
    label_values: list[int | None]  # None: no annotation value (e.g. interior and boundary of object ids)


class TunedSettings(_Record):
    """The object step's settings a model tuned (``core.objects.tuning.ObjectSettings``)."""

    objects: Literal["3d", "2d", "linked"]
    z_factor: float
    seeds: SeedMode
    seed_distance: float
    threshold: float
    min_object_size: int


class ObjectTuning(_Record):
    """``core.objects.tuning.Tuning`` as stored: the settings and how they scored."""

    settings: TunedSettings
    error: float
    default_error: float
    n_slices: int
    ids_3d: bool
    z_spacing: float | None
    tried: int
    seconds: float


class PairData(_Record):
    image_shape: list[int]
    annotated_slices: list[int]


class TrainingData(_Record):
    """What the model was trained on: the first pair's shape and slices, and the extra pairs'."""

    image_shape: list[int]
    annotated_slices: list[int]
    train_regions: int
    val_regions: int
    extra_pairs: list[PairData] = []


class History(_Record):
    """Per finished epoch; None where an epoch had no validation (or a NaN)."""

    epoch: list[int] = []
    loss: list[float | None] = []
    val_loss: list[float | None] = []
    val_dice: list[float | None] = []
    val_iou: list[float | None] = []
    seconds: list[float | None] = []


class Validation(_Record):
    """The saved (best) epoch and its scores; ``monitor`` chose it."""

    best_epoch: int | None = None
    best_val_dice: float | None = None
    best_val_iou: float | None = None
    best_val_loss: float | None = None
    monitor: Literal["val_loss", "loss"] | None = None


class Versions(_Record):
    """The libraries that wrote the model (filled in when it is saved)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True)
    napari_unet: str | None = Field(None, alias="napari-unet")
    keras: str | None = None
    backend: str | None = None
    backend_version: str | None = None
    numpy: str | None = None
    python: str | None = None


class BundleMeta(_Record):
    """A model folder's description (``bundle.json``). The configs are ``model_cfg`` and
    ``train_cfg`` here (pydantic owns the name ``model_config``), ``model_config`` and
    ``train_config`` in the file. Optional parts are None for models saved without them."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True)
    format_version: Literal[2] = FORMAT_VERSION
    model_cfg: ModelConfig = Field(alias="model_config")
    train_cfg: TrainConfig | None = Field(None, alias="train_config")
    normalization: Normalization
    classes: Classes | None = None
    annotation_mode: AnnotationMode | None = None  # None: not said (fine-tuning takes any mode)
    instances: bool = False
    boundary_width: int | None = None  # instances only
    objects_tile: bool = False  # the training objects tiled the image: they may take the background
    training_data: TrainingData | None = None
    resumed_from: str | None = None
    object_tuning: ObjectTuning | None = None
    history: History | None = None
    validation: Validation | None = None
    input_axes: Literal["YXC"] = INPUT_AXES
    versions: Versions | None = None
    created: str | None = None  # ISO 8601, UTC
    weights: str | None = None  # the weights file's name

    @field_validator("model_cfg", mode="before")
    @classmethod
    def _model_config(cls, value):
        return ModelConfig.from_dict(value) if isinstance(value, dict) else value  # JSON lists as tuples

    @field_validator("train_cfg", mode="before")
    @classmethod
    def _train_config(cls, value):
        return TrainConfig.from_dict(value) if isinstance(value, dict) else value

    def replace(self, **changes) -> BundleMeta:
        """A copy with ``changes`` (field names), validated like a new one."""
        return type(self).model_validate({**dict(self), **changes})

    def json_dict(self) -> dict:
        """As ``bundle.json`` holds it."""
        return self.model_dump(mode="json")


def describe_classes(annotation_mode: str, n_classes: int, *, instances: bool = False, label_values=None
                     ) -> Classes:
    """How the annotation's label values map to the model outputs.

    ``names`` and ``label_values`` list, per class (background first), a name and
    the label value that trained it (``None`` where the annotation has no value
    for it, e.g. background in full-slices mode is 0, unlabelled in scribbles).
    ``label_values`` overrides the defaults (e.g. the one foreground value of a
    binary full-slices annotation, which may be 255).
    """
    activation: Literal["sigmoid", "softmax"] = "sigmoid" if n_classes == 1 else "softmax"
    if instances:
        names = ["background", "interior", "boundary"]
        values = [0, None, None]
    elif n_classes == 1:
        names = ["background", "foreground"]
        values = [0, 1] if annotation_mode == "full_slices" else [1, 2]
    elif annotation_mode == "full_slices":
        names = ["background"] + [f"class {k}" for k in range(1, n_classes)]
        values = list(range(n_classes))
    else:
        names = ["background"] + [f"class {k}" for k in range(1, n_classes)]
        values = [k + 1 for k in range(n_classes)]
    if label_values is not None:
        values = [None if v is None else int(v) for v in label_values]
    return Classes(activation=activation, n_outputs=int(n_classes), names=names, label_values=values)

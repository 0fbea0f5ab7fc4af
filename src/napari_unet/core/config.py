"""Validated, frozen, JSON round-trippable configs for model, training and prediction.

pydantic models with bounded fields, ``Literal`` choices and ``extra="forbid"``: the one source
of the command line's options, help and limits, the docks' widget limits and the worker's
validation. Every check raises ``ConfigError`` (a ``ValueError``) naming the bad field.
"""

from __future__ import annotations

import copy
import math
import typing
from typing import Any, ClassVar, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from napari_unet.core.nn.losses import LOSS_FUNCTIONS


class ConfigError(ValueError):
    """A config field holds a value outside its allowed range."""


def bounded(default, lo, hi, *, help: str = ""):
    """A numeric field accepted between ``lo`` and ``hi``; ``help`` is the CLI's help text."""
    return Field(default, ge=lo, le=hi, description=help)


def choice(default, help: str = ""):
    return Field(default, description=help)


def limits(config_cls, name: str) -> tuple:
    """The (lowest, highest) value a config accepts for field ``name``: the docks and the CLI show these."""
    try:
        return config_cls.LIMITS[name]
    except KeyError:
        raise KeyError(f"{config_cls.__name__}.{name} has no numeric limits") from None


def _bounds(field) -> tuple | None:
    lo = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    hi = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    return None if lo is None else (lo, hi)


def _choices(field) -> set | None:
    if typing.get_origin(field.annotation) is Literal:
        return set(typing.get_args(field.annotation))
    return None


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)
    # Per class, read from the fields: field -> (lowest, highest), and field -> allowed values.
    LIMITS: ClassVar[dict] = {}
    CHOICES: ClassVar[dict] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls.LIMITS = {n: b for n, f in fields.items() if (b := _bounds(f)) is not None}
        cls.CHOICES = {n: c for n, f in fields.items() if (c := _choices(f)) is not None}

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict):
        # JSON has no tuples.
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self, **changes):
        """A copy with ``changes``, validated like a new config."""
        return type(self)(**{**self.to_dict(), **changes})


def _one_line(cls, exc: ValidationError) -> str:
    """The first problem pydantic found, in the words the CLI and the docks show."""
    errors = exc.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"{cls.__name__} has no field(s) {unknown}"
    error = errors[0]
    name = ".".join(str(part) for part in error["loc"]) or cls.__name__
    value, kind = error.get("input"), error["type"]
    if kind in ("greater_than_equal", "less_than_equal"):
        lo, hi = cls.LIMITS[error["loc"][0]]
        return f"{name} must be between {lo!r} and {hi!r}, got {value!r}"
    if kind == "literal_error":
        return f"{name} must be one of {sorted(cls.CHOICES[error['loc'][0]])}, got {value!r}"
    if kind == "bool_type":
        return f"{name} must be true or false, got {value!r}"
    if kind == "int_type":
        return f"{name} must be an integer, got {value!r}"
    if kind == "float_type":
        return f"{name} must be a number, got {value!r}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{name}: {error['msg']}, got {value!r}"


Activation = Literal["relu", "elu", "gelu", "swish", "leaky_relu"]
Upsampling = Literal["transpose", "bilinear"]


class ModelConfig(_Config):
    """Architecture of the 2-D U-Net.

    ``n_classes == 1`` means one sigmoid output (binary mask); ``n_classes >= 2``
    means a softmax over that many classes (class 0 is background).
    """

    # Set from the data (channels of the image, classes of the annotations), not chosen by users.
    in_channels: int = bounded(1, 1, 64)
    n_classes: int = bounded(1, 1, 255)
    DERIVED: ClassVar[tuple] = ("in_channels", "n_classes")
    # User choices.
    depth: int = bounded(3, 2, 6, help="levels of the U-Net")
    n_filters: int = bounded(16, 2, 256, help="filters of the first level (doubled at each level)")
    batch_norm: bool = True
    dropout: float = bounded(0.0, 0.0, 0.9)
    activation: Activation = "relu"
    upsampling: Upsampling = "transpose"

    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be a multiple of this (inputs are padded to it)."""
        return 2**self.depth


AnnotationMode = Literal["full_slices", "scribbles"]
ValSplit = Literal["slices", "strips"]
# A new loss is added in losses.py alone: its registry is the source of the choices.
if typing.TYPE_CHECKING:
    LossName = str  # a Literal built at run time is no type to mypy; pydantic checks the choices
else:
    LossName = Literal[tuple(LOSS_FUNCTIONS)]
LrSchedule = Literal["auto", "plateau", "cosine", "constant"]
MixedPrecision = Literal["auto", "off", "float16", "bfloat16"]
XlaChoice = Literal["auto", "on", "off"]


class TrainConfig(_Config):
    """How to train.

    Annotation modes (see README, "Label conventions"):
    - ``full_slices``: a slice with any non-zero label is annotated and 0 there is
      background; slices with no label are ignored.
    - ``scribbles``: 0 = unlabelled (ignored), 1 = background, 2..K = classes.
    ``instances``: labels are object ids; learn foreground + boundary (3 classes).
    """

    annotation_mode: AnnotationMode = choice("full_slices", "annotation mode (see README, Label conventions)")
    instances: bool = Field(False, description="labels are object ids: learn boundaries")
    # By default training runs until the validation loss stops improving (the learning
    # rate halves on each plateau), within a time cap: a fixed step count was too short
    # for real stacks and needlessly long for easy ones.
    epochs: int = bounded(500, 1, 100000, help="an upper bound; the time cap or early stopping ends training first")
    # Validation runs once per epoch (50 steps made plateaus mostly noise).
    steps_per_epoch: int = bounded(100, 1, 100000)
    # None = "auto": chosen for the device when training starts (core/nn/devices.py: 4 x 96 px on a CPU,
    # up to 16 x 256 px on a GPU, within its free memory).
    batch_size: int | None = bounded(None, 1, 1024, help="patches per step (default: auto, from the device)")
    patch_size: int | None = bounded(None, 16, 4096, help="patch side in pixels (default: auto, from the device)")
    learning_rate: float = bounded(2e-3, 1e-7, 1.0)
    # "auto" (plateau x cosine) was no better than "plateau" in one paired run (docs/defaults.md).
    lr_schedule: LrSchedule = choice(
        "plateau", "plateau: halve the rate when validation stops improving; cosine: decay over the epochs, "
                   "or over --max-seconds when that ends training first; auto: both at once")
    lr_patience: int = bounded(5, 1, 10000, help="plateau schedule: epochs without improvement before the rate halves")
    val_fraction: float = bounded(0.2, 0.0, 0.9)
    # Strips of 2 slices did worse than 1 whole slice of 2 held out (benchmarks/few_slices.py, docs/defaults.md).
    val_split: ValSplit = choice(
        "slices", "held out for validation: whole slices (a strip when one slice is annotated), or a strip "
                  "of each annotated slice")
    loss: LossName = choice("bce_dice")
    augment: bool = True
    # 12 ended ISBI at 140 s, 0.019 worse in adapted Rand error than the same model trained for 30 minutes.
    early_stopping_patience: int = bounded(20, 0, 10000, help="patience in epochs (0 = off)")
    seed: int = bounded(0, 0, 2**31 - 1)
    percentiles: tuple[float, float] = (1.0, 99.8)
    foreground_bias: float = bounded(0.5, 0.0, 1.0, help="fraction of patches centred on a foreground pixel")
    # Instances: width in px of the boundary class inside each object (see docs/objects.md).
    boundary_width: int = bounded(1, 1, 16, help="instances: width in pixels of the boundary class")
    # Batches made ahead in a background thread while the model steps (0: made in the step).
    prefetch_batches: int = bounded(2, 0, 64)
    mixed_precision: MixedPrecision = choice(
        "auto", "float16 (GPU) or bfloat16 (GPU, or a CPU with AVX512_BF16/AMX) compute; auto = off "
                "(see docs/defaults.md); asked where the device lacks it: float32, with a warning")
    # Keras' own "auto" leaves XLA off on a CPU-only TensorFlow (keras/src/trainers/trainer.py):
    # "on" is how a CPU gets it.
    xla: XlaChoice = choice(
        "auto", "compile the training step with XLA (TensorFlow's jit_compile); auto = Keras' choice: on "
                "with one GPU, off on a CPU or several GPUs; JAX always compiles it, whatever this says")
    threads: int = bounded(0, 0, 1024, help="CPU threads (0 = all)")
    # Masked reconstruction on every slice before the supervised phase (core/train/pretrain.py).
    pretrain_share: float = bounded(0.0, 0.0, 0.9, help="share of the time cap spent on self-supervised "
                                    "pretraining on every slice, painted or not (0 = off); needs a time cap")
    # Whole minutes up to 200000, as the Train dock shows it.
    max_seconds: float = bounded(300.0, 0.0, 1.2e7, help="time cap in seconds (0 = no limit); training ends "
                                 "sooner when validation stops improving (--early-stopping)")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _mixed_precision_of_old_models(cls, value):
        # Models saved before the choice stored a bool: True asked for float16 on a GPU.
        return {True: "float16", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _pretraining_needs_a_cap(self):
        if self.pretrain_share > 0 and not self.max_seconds:
            raise ValueError("Pretraining needs a time limit (--max-seconds, or the dock's Time limit): it takes a "
                             "share of that time.")
        return self

    @model_validator(mode="after")
    def _percentiles_in_order(self):
        lo, hi = self.percentiles
        if not (0.0 <= lo < hi <= 100.0):
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")
        return self


PredictOutput = Literal["labels", "instances"]
# One watershed through the volume, per slice, or per slice then linked across slices;
# "auto": 3d, unless the voxel size says slices lie far apart (see MAX_3D_ANISOTROPY).
ObjectMode = Literal["auto", "3d", "2d", "linked"]
MAX_3D_ANISOTROPY = 6.0  # slice spacing / pixel size above which "auto" links 2-D objects
FillChoice = Literal["auto", "yes", "no"]
SeedMode = Literal["interior", "distance"]
ObjectSource = Literal["foreground", "background"]  # "background": regions enclosed by the painted class
# Intensities mapped by the training image's percentiles stored in the model, or by the volume's own.
NormalizeChoice = Literal["model", "volume"]


# The object step's fields a model tunes on its annotations (core/objects/tuning.py); what the user
# leaves unset of them comes from the model's tuning, else these defaults.
TUNED_FIELDS = ("objects", "seeds", "seed_distance", "threshold", "min_object_size")


class ObjectsConfig(_Config):
    """The object step's settings and their bounds, set here only: PredictConfig's fields of the
    same names are these fields, and its objects are refused through this one config (at the
    command line, in the Segment dock, in the worker, on a cluster) before any work starts; the
    object finder checks its own arguments against the same bounds (core/objects/checks.py)."""

    # Exclusive: objects need both a foreground and a background (classes may use 0 or 1).
    THRESHOLD_BETWEEN: ClassVar[tuple] = (0.0, 1.0)

    threshold: float = Field(0.5, description="foreground probability threshold, strictly between 0 and 1")
    seeds: SeedMode = choice("distance", "watershed seeds: distance-transform maxima, or predicted object interiors")
    seed_distance: float = bounded(3.0, 0.5, 1000.0, help="distance seeds: smallest distance between two seeds (px)")
    # 100 took the synthetic cells' matching F1 from 0.891 to 0.957 and changed nothing else
    # on the benchmark stacks.
    min_object_size: int = bounded(100, 0, 10**9, help="drop objects smaller than this (voxels in 3-D, pixels in 2-D)")

    @field_validator("threshold")
    @classmethod
    def _threshold_strictly_between(cls, value):
        lo, hi = cls.THRESHOLD_BETWEEN
        if not lo < value < hi:
            raise ValueError(f"threshold must be strictly between {lo:g} and {hi:g} for objects, got {value!r}")
        return value


def _object_field(name: str):
    """ObjectsConfig's field ``name`` for PredictConfig: the same default, help and bounds."""
    return copy.copy(ObjectsConfig.model_fields[name])


class PredictConfig(_Config):
    """How to run a trained model through a volume."""

    axis: int = bounded(0, -3, 2, help="slice axis of a 3-D volume")
    tile_size: int = bounded(512, 16, 16384, help="tiles of at most this size (rounded up to the model multiple)")
    tile_overlap: int = bounded(32, 0, 1024)
    batch_size: int = bounded(4, 1, 1024)
    threshold: float = bounded(0.5, 0.0, 1.0, help="foreground probability threshold (objects: strictly between)")
    output: PredictOutput = choice(
        "labels", "labels (classes) or instances (objects); default: instances for a model "
                  "trained with --instances, labels otherwise")
    tta: bool = Field(False, description="average the 8 flips/rotations")
    three_axis: bool = Field(False, description="average XY, XZ and YZ passes (near-isotropic volumes)")
    return_probabilities: bool = False
    min_object_size: int = _object_field("min_object_size")
    objects: ObjectMode = choice(
        "auto", "instances: 3d = one id per object through the volume; 2d = per slice; linked = per "
                "slice, then linked across slices by overlap; auto = 3d unless slices lie over 6 "
                "pixels apart (then linked)")
    seeds: SeedMode = _object_field("seeds")
    seed_distance: float = _object_field("seed_distance")
    fill_background: FillChoice = choice(
        "auto", "objects also take the background pixels (auto: when the training objects tiled "
                "the image, as cells between EM membranes do)")
    objects_from: ObjectSource = choice(
        "foreground", "binary models: background = the regions the painted class encloses "
                      "(cells between painted membranes)")
    voxel_size: tuple[float, ...] = ()  # (z, y, x) for 3-D objects; () = unknown, taken as isotropic
    # The volume's own percentiles are right for 8- and 16-bit copies of one stack, where the
    # training ones gave 0.485 foreground for 0.723 on the 16-bit copy (benchmarks/normalization.py).
    normalize: NormalizeChoice = choice(
        "volume", "map intensities by the training image's percentiles stored in the model, or by this "
                  "volume's own (for data recorded differently, e.g. 16-bit instead of 8-bit)")
    block_slices: int = bounded(32, 1, 100000, help="3-D objects are found in slabs of this many slices (with "
                                "--workers: the blocks each worker predicts)")
    halo: int = bounded(4, 0, 1000, help="... each slab seeing this many more slices on either side, then joined")

    @field_validator("voxel_size")
    @classmethod
    def _positive_finite_voxels(cls, value):
        if any(not math.isfinite(v) or v <= 0 for v in value):
            raise ValueError(f"--voxel-size (voxel_size) must be positive, finite numbers, got {value!r}")
        return value

    @model_validator(mode="after")
    def _tiles_and_voxels(self):
        if self.tile_overlap * 2 >= self.tile_size:
            raise ValueError(
                f"tile_overlap ({self.tile_overlap}) must be less than half of tile_size ({self.tile_size})")
        if self.output == "instances":
            self.objects_config()  # refuses, in ObjectsConfig's one line, what objects cannot use
        if self.voxel_size and (len(self.voxel_size) != 3 or min(self.voxel_size) <= 0):
            raise ValueError(f"voxel_size must be three positive numbers (z, y, x) or empty, got {self.voxel_size!r}")
        return self

    def objects_config(self) -> ObjectsConfig:
        """The object step's settings; ConfigError (one line) where objects cannot use them."""
        return ObjectsConfig(**{name: getattr(self, name) for name in ObjectsConfig.model_fields})


class ClusterConfig(_Config):
    """Prediction on a dask.distributed cluster (``runtime.cluster``): where and how often to try."""

    workers: int = bounded(1, 1, 1024, help="predict on a local dask cluster of this many worker processes")
    retries: int = bounded(2, 0, 100, help="times dask tries a failed block of slices again")
    block_yx: int = bounded(0, 0, 2**20, help="cut slices into Y/X blocks of this many pixels a side (classes and "
                            "probabilities; 0: whole slices up to 4096 x 4096, else 2048)")


def choices_of(config_cls, name: str) -> list:
    """The sorted values a config accepts for field ``name`` (the CLI's and the docks' choices)."""
    return sorted(config_cls.CHOICES[name])

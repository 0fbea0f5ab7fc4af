"""Validated, frozen, JSON round-trippable configs for model, training and prediction.

Plain dataclasses (no pydantic) so the worker process and the reader stay light.
Every check raises ``ConfigError`` (a ``ValueError``) naming the bad field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import ClassVar, Tuple

from .losses import LOSS_FUNCTIONS


class ConfigError(ValueError):
    """A config field holds a value outside its allowed range."""


def _check_range(name, value, lo, hi, kind=(int,)):
    # bool is an int to Python, but True is no count or size.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{name} must be a {kind[0].__name__}, got {value!r}")
    if not (lo <= value <= hi):
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


# A float field also takes an int (1 for 1.0); an int field takes only ints.
_NUMBER_KINDS = {"int": (int,), "float": (float, int)}


def _check_declared(config) -> None:
    """Check every field against its class's LIMITS and CHOICES, and every bool field's type."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in config.LIMITS:
            _check_range(f.name, value, *config.LIMITS[f.name], kind=_NUMBER_KINDS[f.type])
        elif f.name in config.CHOICES:
            _check_choice(f.name, value, config.CHOICES[f.name])
        elif f.type == "bool":
            _check_bool(f.name, value)


def limits(config_cls, name: str) -> tuple:
    """The (lowest, highest) value a config accepts for field ``name``: the docks and the CLI show these."""
    try:
        return config_cls.LIMITS[name]
    except KeyError:
        raise KeyError(f"{config_cls.__name__}.{name} has no numeric limits") from None


class _JsonConfig:
    # Per class: field -> (lowest, highest) and field -> allowed values; the single source of both.
    LIMITS: ClassVar[dict] = {}
    CHOICES: ClassVar[dict] = {}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        kwargs = dict(data)
        for f in fields(cls):
            # JSON has no tuples.
            if f.name in kwargs and isinstance(kwargs[f.name], list):
                kwargs[f.name] = tuple(kwargs[f.name])
        return cls(**kwargs)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


ACTIVATIONS = {"relu", "elu", "gelu", "swish", "leaky_relu"}
UPSAMPLINGS = {"transpose", "bilinear"}


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Architecture of the 2-D U-Net.

    ``n_classes == 1`` means one sigmoid output (binary mask); ``n_classes >= 2``
    means a softmax over that many classes (class 0 is background).
    """

    in_channels: int = 1
    n_classes: int = 1
    depth: int = 3
    n_filters: int = 16
    batch_norm: bool = True
    dropout: float = 0.0
    activation: str = "relu"
    upsampling: str = "transpose"  # "transpose" or "bilinear"

    LIMITS = {
        "in_channels": (1, 64),
        "n_classes": (1, 255),
        "depth": (2, 6),
        "n_filters": (2, 256),
        "dropout": (0.0, 0.9),
    }
    CHOICES = {"activation": ACTIVATIONS, "upsampling": UPSAMPLINGS}

    def __post_init__(self):
        _check_declared(self)

    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be a multiple of this (inputs are padded to it)."""
        return 2**self.depth


ANNOTATION_MODES = {"full_slices", "scribbles"}
LOSSES = set(LOSS_FUNCTIONS)  # a new loss is added in losses.py alone
LR_SCHEDULES = {"plateau", "cosine", "constant"}


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """How to train.

    Annotation modes (see README, "Label conventions"):
    - ``full_slices``: a slice with any non-zero label is annotated and 0 there is
      background; slices with no label are ignored.
    - ``scribbles``: 0 = unlabelled (ignored), 1 = background, 2..K = classes.
    ``instances``: labels are object ids; learn foreground + boundary (3 classes).
    """

    annotation_mode: str = "full_slices"
    instances: bool = False
    # By default training runs until the validation loss stops improving (the learning
    # rate halves on each plateau), within a time cap: a fixed step count was too short
    # for real stacks and needlessly long for easy ones.
    epochs: int = 500  # an upper bound; the time cap or early stopping ends training first
    steps_per_epoch: int = 100  # validation runs once per epoch (50 made plateaus mostly noise)
    batch_size: int = 4
    patch_size: int = 96
    learning_rate: float = 2e-3
    lr_schedule: str = "plateau"  # halve on plateaus; or cosine decay over the epochs/time; or constant
    lr_patience: int = 5  # "plateau": epochs without improvement before the rate halves
    val_fraction: float = 0.2
    loss: str = "bce_dice"
    augment: bool = True
    # Epochs without improvement before training ends (0 = off). 12 ended ISBI at 140 s, 0.019
    # worse in adapted Rand error than the same model trained for 30 minutes.
    early_stopping_patience: int = 20
    seed: int = 0
    percentiles: Tuple[float, float] = (1.0, 99.8)
    foreground_bias: float = 0.5  # fraction of patches centred on a foreground pixel
    # Instances: width in px of the boundary class inside each object (see README, Objects).
    boundary_width: int = 1
    # Batches made ahead in a background thread while the model steps (0: made in the step).
    prefetch_batches: int = 2
    mixed_precision: bool = False
    threads: int = 0  # CPU threads for the worker; 0 = library default
    max_seconds: float = 300.0  # wall-clock cap; 0 = no limit

    LIMITS = {
        "epochs": (1, 100000),
        "steps_per_epoch": (1, 100000),
        "batch_size": (1, 1024),
        "patch_size": (16, 4096),
        "learning_rate": (1e-7, 1.0),
        "lr_patience": (1, 10000),
        "val_fraction": (0.0, 0.9),
        "early_stopping_patience": (0, 10000),
        "seed": (0, 2**31 - 1),
        "foreground_bias": (0.0, 1.0),
        "boundary_width": (1, 16),
        "prefetch_batches": (0, 64),
        "threads": (0, 1024),
        "max_seconds": (0.0, 1.2e7),  # whole minutes (200000), as the Train dock shows it
    }
    CHOICES = {"annotation_mode": ANNOTATION_MODES, "loss": LOSSES, "lr_schedule": LR_SCHEDULES}

    def __post_init__(self):
        _check_declared(self)
        lo, hi = self.percentiles
        if not (0.0 <= lo < hi <= 100.0):
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles!r}")


PREDICT_OUTPUTS = {"labels", "instances"}
# One watershed through the volume, per slice, or per slice then linked across slices;
# "auto": 3d, unless the voxel size says slices lie far apart (see MAX_3D_ANISOTROPY).
OBJECT_MODES = {"auto", "3d", "2d", "linked"}
MAX_3D_ANISOTROPY = 6.0  # slice spacing / pixel size above which "auto" links 2-D objects
FILL_CHOICES = {"auto", "yes", "no"}
SEED_MODES = {"interior", "distance"}
OBJECT_SOURCES = {"foreground", "background"}  # "background": regions enclosed by the painted class
# Intensities mapped by the training image's percentiles stored in the model, or by the volume's own.
NORMALIZE_CHOICES = {"model", "volume"}


@dataclass(frozen=True)
class PredictConfig(_JsonConfig):
    """How to run a trained model through a volume."""

    axis: int = 0  # slice axis of a 3-D volume (ignored for 2-D input)
    tile_size: int = 512  # tiles of at most this size (rounded up to the model multiple)
    tile_overlap: int = 32
    batch_size: int = 4
    threshold: float = 0.5
    output: str = "labels"  # "labels" (threshold/argmax) or "instances"
    tta: bool = False  # average the 8 flips/rotations
    three_axis: bool = False  # average XY, XZ and YZ passes (near-isotropic volumes)
    return_probabilities: bool = False
    # Objects smaller than this (voxels in 3-D, pixels in 2-D) are dropped: 100 took the synthetic
    # cells' matching F1 from 0.891 to 0.957 and changed nothing else on the benchmark stacks.
    min_object_size: int = 100
    objects: str = "auto"  # instances: "3d" (one id through the volume), "2d", "linked" or "auto"
    seeds: str = "distance"  # watershed seeds: distance-transform maxima, or interior components
    seed_distance: float = 3.0  # "distance" seeds: smallest distance between two seeds (px)
    fill_background: str = "auto"  # objects take the background too; auto: if they tiled the annotations
    objects_from: str = "foreground"  # binary models: "background" = regions the foreground encloses
    voxel_size: Tuple[float, ...] = ()  # (z, y, x) for 3-D objects; () = unknown, taken as isotropic
    # Intensities mapped by the volume's own percentiles: right for 8- and 16-bit copies of one stack,
    # where the training ones (stored in the model) gave 0.485 foreground for 0.723 on the 16-bit copy
    # (benchmarks/normalization.py); "model" keeps the stored ones.
    normalize: str = "volume"
    block_slices: int = 32  # 3-D objects are found in slabs of this many slices ...
    halo: int = 4  # ... each seeing this many more on either side, then joined across slabs

    LIMITS = {
        "axis": (-3, 2),
        "tile_size": (16, 16384),
        "tile_overlap": (0, 1024),
        "batch_size": (1, 1024),
        "threshold": (0.0, 1.0),
        "min_object_size": (0, 10**9),
        "seed_distance": (0.5, 1000.0),
        "block_slices": (1, 100000),
        "halo": (0, 1000),
    }
    CHOICES = {
        "output": PREDICT_OUTPUTS,
        "objects": OBJECT_MODES,
        "seeds": SEED_MODES,
        "fill_background": FILL_CHOICES,
        "objects_from": OBJECT_SOURCES,
        "normalize": NORMALIZE_CHOICES,
    }

    def __post_init__(self):
        _check_declared(self)
        if self.tile_overlap * 2 >= self.tile_size:
            raise ConfigError(
                f"tile_overlap ({self.tile_overlap}) must be less than half of tile_size ({self.tile_size})"
            )
        if self.voxel_size and (len(self.voxel_size) != 3 or min(self.voxel_size) <= 0):
            raise ConfigError(f"voxel_size must be three positive numbers (z, y, x) or empty, got {self.voxel_size!r}")

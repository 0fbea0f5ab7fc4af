"""The ``napari-unet`` command line's options, and the configs they make (no work is done here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .core.config import (
    ANNOTATION_MODES, FILL_CHOICES, LOSSES, LR_SCHEDULES, NORMALIZE_CHOICES, OBJECT_MODES, OBJECT_SOURCES,
    PREDICT_OUTPUTS, SEED_MODES,
    ModelConfig, PredictConfig, TrainConfig, limits,
)
from .core.uncertainty import MAX_RANKED_SLICES


def parse_slices(text: str | None) -> slice | None:
    if not text:
        return None
    try:
        start, _, stop = text.partition(":")
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise SystemExit(f"--slices must look like 20:30, got {text!r}") from None


def _within(config_cls, name: str, text: str = "") -> str:
    """``text`` followed by the range the config accepts for ``name``, e.g. "(1e-07 to 1.0)"."""
    lo, hi = limits(config_cls, name)
    return f"{text} ({lo!r} to {hi!r})".lstrip()


def _add_train_options(p: argparse.ArgumentParser, overwrite_help="replace an existing model folder"):
    d, m = TrainConfig(), ModelConfig()
    p.add_argument("--mode", dest="annotation_mode", default=d.annotation_mode,
                   choices=sorted(ANNOTATION_MODES), help="annotation mode (see README)")
    p.add_argument("--instances", action="store_true", help="labels are object ids: learn boundaries")
    p.add_argument("--epochs", type=int, default=d.epochs, help=_within(TrainConfig, "epochs"))
    p.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch,
                   help=_within(TrainConfig, "steps_per_epoch"))
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=_within(TrainConfig, "batch_size"))
    p.add_argument("--patch-size", type=int, default=d.patch_size, help=_within(TrainConfig, "patch_size"))
    p.add_argument("--learning-rate", type=float, default=d.learning_rate,
                   help=_within(TrainConfig, "learning_rate"))
    p.add_argument("--lr-schedule", default=d.lr_schedule, choices=sorted(LR_SCHEDULES),
                   help="plateau: halve the rate when validation stops improving; cosine: decay over "
                        "the epochs, or over --max-seconds when that ends training first")
    p.add_argument("--lr-patience", type=int, default=d.lr_patience,
                   help=_within(TrainConfig, "lr_patience",
                                "plateau schedule: epochs without improvement before the rate halves"))
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help=_within(TrainConfig, "val_fraction"))
    p.add_argument("--loss", default=d.loss, choices=sorted(LOSSES))
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help=_within(TrainConfig, "max_seconds",
                                "time cap in seconds (0 = no limit); training ends sooner when validation "
                                "stops improving (--early-stopping)"))
    p.add_argument("--early-stopping", type=int, default=d.early_stopping_patience,
                   dest="early_stopping_patience",
                   help=_within(TrainConfig, "early_stopping_patience", "patience in epochs (0 = off)"))
    p.add_argument("--seed", type=int, default=d.seed, help=_within(TrainConfig, "seed"))
    p.add_argument("--threads", type=int, default=d.threads,
                   help=_within(TrainConfig, "threads", "CPU threads (0 = all)"))
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--n-filters", type=int, default=m.n_filters, help=_within(ModelConfig, "n_filters"))
    p.add_argument("--depth", type=int, default=m.depth, help=_within(ModelConfig, "depth"))
    p.add_argument("--resume", default=None, help="model folder to fine-tune from")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def _add_predict_options(p: argparse.ArgumentParser):
    d = PredictConfig()
    p.add_argument("--axis", type=int, default=d.axis,
                   help=_within(PredictConfig, "axis", "slice axis of a 3-D volume"))
    p.add_argument("--threshold", type=float, default=d.threshold, help=_within(PredictConfig, "threshold"))
    p.add_argument("--output", default=None, choices=sorted(PREDICT_OUTPUTS),
                   help="labels (classes) or instances (objects); default: instances for a model "
                        "trained with --instances, labels otherwise")
    p.add_argument("--objects", default=d.objects, choices=sorted(OBJECT_MODES),
                   help="instances: 3d = one id per object through the volume; 2d = per slice; "
                        "linked = per slice, then linked across slices by overlap; auto = 3d unless "
                        "slices lie over 6 pixels apart (then linked)")
    p.add_argument("--seeds", default=d.seeds, choices=sorted(SEED_MODES),
                   help="watershed seeds: distance-transform maxima, or predicted object interiors")
    p.add_argument("--seed-distance", type=float, default=d.seed_distance,
                   help=_within(PredictConfig, "seed_distance",
                                "distance seeds: smallest distance between two seeds (px)"))
    p.add_argument("--min-size", type=int, default=d.min_object_size, dest="min_object_size",
                   help=_within(PredictConfig, "min_object_size",
                                "drop objects smaller than this (voxels in 3-D, pixels in 2-D)"))
    p.add_argument("--fill-background", default=d.fill_background, choices=sorted(FILL_CHOICES),
                   help="objects also take the background pixels (auto: when the training objects "
                        "tiled the image, as cells between EM membranes do)")
    p.add_argument("--objects-from", default=d.objects_from, choices=sorted(OBJECT_SOURCES),
                   help="binary models: background = the regions the painted class encloses "
                        "(cells between painted membranes)")
    p.add_argument("--voxel-size", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="voxel size for 3-D objects (default: from the TIFF, else cubic voxels)")
    p.add_argument("--normalize", default=d.normalize, choices=sorted(NORMALIZE_CHOICES),
                   help="map intensities by the training image's percentiles stored in the model, or by "
                        "this volume's own (for data recorded differently, e.g. 16-bit instead of 8-bit)")
    p.add_argument("--tile-size", type=int, default=d.tile_size, help=_within(PredictConfig, "tile_size"))
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=_within(PredictConfig, "batch_size"))
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--three-axis", action="store_true", help="average XY, XZ and YZ passes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a U-Net on an image and partial labels")
    p.add_argument("--image", required=True, action="append",
                   help="image to learn from; repeat --image and --labels to learn from several pairs")
    p.add_argument("--labels", required=True, action="append", help="its annotations (one per --image)")
    p.add_argument("--out", required=True, help="model folder to write")
    _add_train_options(p)

    p = sub.add_parser("predict", help="segment a volume with a trained model")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True, help="labels .tif, or .zarr for very large outputs")
    p.add_argument("--prob", default=None, help="also write probabilities (.tif or .zarr)")
    _add_predict_options(p)

    p = sub.add_parser("suggest", help="rank the unannotated slices by the model's uncertainty")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True, help="the annotations: annotated slices are not ranked")
    p.add_argument("--max-slices", type=int, default=MAX_RANKED_SLICES,
                   help="rank at most this many unannotated slices, evenly spaced (predicting each takes time)")
    p.add_argument("--top", type=int, default=10, help="print this many slices (0 = all ranked)")

    p = sub.add_parser("evaluate", help="score a model against ground truth")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True, help="ground truth (0 = background)")
    p.add_argument("--slices", default=None, help="slice range along the axis, e.g. 20:30")
    p.add_argument("--json", default=None, help="also write the scores to this file")
    p.add_argument("--per-slice", action="store_true",
                   help="score objects in each 2-D slice (default: objects in 3-D)")
    _add_predict_options(p)

    p = sub.add_parser("demo", help="train on the built-in sample (or your files) and segment it")
    p.add_argument("--image", default=None)
    p.add_argument("--labels", default=None)
    p.add_argument("--out", default="demo_output", help="output folder")
    p.add_argument("--view", action="store_true", help="open the result in napari")
    _add_train_options(p, overwrite_help="replace the model, masks, metrics and overview an earlier "
                                         "demo wrote in --out")
    return parser


def train_configs(args) -> tuple[ModelConfig, TrainConfig]:
    fields = TrainConfig.__dataclass_fields__
    train_cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    return ModelConfig(n_filters=args.n_filters, depth=args.depth), train_cfg


def predict_config(args, **overrides) -> PredictConfig:
    fields = PredictConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    values.update(overrides)
    overlap = PredictConfig.tile_overlap  # the CLI keeps the default overlap
    if values.get("tile_size", overlap * 2 + 1) <= 2 * overlap:
        raise ValueError(f"--tile-size {values['tile_size']} is too small: tiles overlap by {overlap} px on each "
                         f"side, so use more than {2 * overlap} (e.g. 256).")
    return PredictConfig(**values)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=float))

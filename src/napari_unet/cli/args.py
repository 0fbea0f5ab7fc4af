"""The ``napari-unet`` command line's options, and the configs they make (no work is done here)."""

from __future__ import annotations

import argparse
import json
import math
import typing
from pathlib import Path

from napari_unet.core.config import TUNED_FIELDS, ClusterConfig, ModelConfig, PredictConfig, TrainConfig, limits
from napari_unet.core.predict.uncertainty import MAX_RANKED_SLICES


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the whole usage first), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_slices(text: str | None) -> slice | None:
    if not text:
        return None
    try:
        start, _, stop = text.partition(":")
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"--slices must look like 20:30, got {text!r}") from None


def positive_finite(text: str) -> float:
    """A --voxel-size value: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"each value must be a positive, finite number (e.g. 2 0.5 0.5), got {text!r}")
    return value


def whole_number(lo: int):
    """An argparse ``type``: an integer of at least ``lo``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = lo - 1
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be a whole number, {lo} or more, got {text!r}")
        return value

    return parse


def _option(p: argparse.ArgumentParser, config_cls, name: str, flag: str | None = None, **kwargs):
    """An option for config field ``name``: its type, default, choices, help and range come from the config."""
    field = config_cls.model_fields[name]
    text = kwargs.pop("help", field.description or "")
    kwargs.setdefault("default", field.default)
    if field.annotation is bool:
        kwargs.update(action="store_true", default=False)
    elif name in config_cls.CHOICES:
        kwargs.setdefault("choices", sorted(config_cls.CHOICES[name]))
    else:
        # ``int | None``: None (the default) is "auto", any value given is an int.
        options = typing.get_args(field.annotation) or (field.annotation,)
        kwargs["type"] = next(t for t in options if t is not type(None))
        lo, hi = limits(config_cls, name)
        text = f"{text} ({lo!r} to {hi!r})".lstrip()
    p.add_argument(flag or "--" + name.replace("_", "-"), dest=name, help=text, **kwargs)


TRAIN_OPTIONS = ("instances", "epochs", "steps_per_epoch", "batch_size", "patch_size", "learning_rate",
                 "lr_schedule", "lr_patience", "val_fraction", "loss", "max_seconds", "seed", "threads",
                 "mixed_precision", "xla", "boundary_width", "pretrain_share")
MODEL_OPTIONS = ("n_filters", "depth")


def _add_train_options(p: argparse.ArgumentParser, overwrite_help="replace an existing model folder"):
    _option(p, TrainConfig, "annotation_mode", "--mode")
    for name in TRAIN_OPTIONS:
        # A bare --mixed-precision, as before it took a value, asks for float16.
        _option(p, TrainConfig, name, **({"nargs": "?", "const": "float16"} if name == "mixed_precision" else {}))
    _option(p, TrainConfig, "early_stopping_patience", "--early-stopping")
    for name in MODEL_OPTIONS:
        _option(p, ModelConfig, name)
    p.add_argument("--resume", default=None, help="model folder to fine-tune from")
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


PREDICT_OPTIONS = ("axis", "threshold", "objects", "seeds", "seed_distance", "fill_background", "objects_from",
                   "normalize", "tile_size", "batch_size", "tta", "three_axis", "block_slices", "halo")




def _add_predict_options(p: argparse.ArgumentParser):
    _option(p, PredictConfig, "output", default=None)  # None: as the model was trained
    for name in PREDICT_OPTIONS:
        # Left unset, a tuned field comes from the model (core/objects/defaults.py).
        _option(p, PredictConfig, name, **({"default": None} if name in TUNED_FIELDS else {}))
    _option(p, PredictConfig, "min_object_size", "--min-size", default=None)
    p.add_argument("--voxel-size", type=positive_finite, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="voxel size for 3-D objects (default: from the TIFF, else cubic voxels)")


def _add_suggest(sub) -> None:
    p = sub.add_parser("suggest", help="list the unannotated slices the model is least sure of, to check its "
                       "output there (as slices to annotate next they did no better than random picks: "
                       "docs/benchmarks.md)")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True, help="the annotations: annotated slices are not ranked")
    p.add_argument("--max-slices", type=whole_number(1), default=MAX_RANKED_SLICES,
                   help="rank at most this many unannotated slices, evenly spaced (predicting each takes time)")
    p.add_argument("--top", type=whole_number(0), default=10, help="print this many slices (0 = all ranked)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="napari-unet", description=__doc__.splitlines()[0])
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
    _option(p, ClusterConfig, "workers", default=None)
    _option(p, ClusterConfig, "retries")
    _option(p, ClusterConfig, "block_yx")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="predict on the dask.distributed cluster of this scheduler (e.g. tcp://host:8786)")

    _add_suggest(sub)

    p = sub.add_parser("evaluate", help="score a model against ground truth")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--labels", required=True, help="ground truth (0 = background)")
    p.add_argument("--slices", default=None, help="slice range along the axis, e.g. 20:30")
    p.add_argument("--json", default=None, help="also write the scores to this file")
    p.add_argument("--per-slice", action="store_true",
                   help="score objects in each 2-D slice (default: objects in 3-D)")
    _add_predict_options(p)

    p = sub.add_parser("export", help="write a model folder as a bioimage.io model package (.zip)")
    p.add_argument("--model", required=True, help="model folder to export")
    p.add_argument("--out", required=True, help="package to write (NAME.zip)")
    p.add_argument("--image", required=True, help="the training image: the test tensors and cover come from it")
    p.add_argument("--name", default=None, help="model name (default: napari-unet <model folder name>)")
    p.add_argument("--author", action="append", dest="authors", default=None,
                   help="author name (repeat for several; default: your user name)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX license id of the weights (default CC-BY-4.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package at --out")

    p = sub.add_parser("demo", help="train on the built-in sample (or your files) and segment it")
    p.add_argument("--image", default=None)
    p.add_argument("--labels", default=None)
    p.add_argument("--out", default="demo_output", help="output folder")
    p.add_argument("--view", action="store_true", help="open the result in napari")
    _add_train_options(p, overwrite_help="replace the model, masks, metrics and overview an earlier "
                                         "demo wrote in --out")
    return parser


def train_configs(args) -> tuple[ModelConfig, TrainConfig]:
    train_cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.model_fields})
    return ModelConfig(**{name: getattr(args, name) for name in MODEL_OPTIONS}), train_cfg


def predict_config(args, **overrides) -> PredictConfig:
    values = {k: tuple(v) if isinstance(v, list) else v  # nargs lists: the config takes tuples
              for k, v in vars(args).items() if k in PredictConfig.model_fields and v is not None}
    values.update(overrides)
    overlap = PredictConfig.model_fields["tile_overlap"].default  # the CLI keeps the default overlap
    if values.get("tile_size", overlap * 2 + 1) <= 2 * overlap:
        raise ValueError(f"--tile-size {values['tile_size']} is too small: tiles overlap by {overlap} px on each "
                         f"side, so use more than {2 * overlap} (e.g. 256).")
    return PredictConfig(**values)


def cluster_config(args) -> ClusterConfig | None:
    """The cluster to predict on (``--workers`` / ``--scheduler``), or None for one local worker."""
    if args.workers is None and args.scheduler is None:
        return None
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("Give --workers (a local cluster) or --scheduler (an existing one), not both.")
    cluster = ClusterConfig(workers=1 if args.workers is None else args.workers, retries=args.retries,
                            block_yx=args.block_yx)
    if args.scheduler is None:  # a local cluster: its workers must fit this machine
        from napari_unet.runtime.cluster import check_local_workers

        check_local_workers(cluster.workers)
    return cluster


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=float))

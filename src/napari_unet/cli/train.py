"""``napari-unet train``: a model from one or more annotated stacks, trained in the worker."""

from __future__ import annotations

import sys

import numpy as np

from napari_unet.cli.args import train_configs
from napari_unet.cli.images import load_image
from napari_unet.cli.model_folder import tidy_model_folder
from napari_unet.cli.progress import say_why_unfinished, train_with_progress
from napari_unet.core import events
from napari_unet.core.bundle import check_model_name, check_target
from napari_unet.core.train.pairs import check_same_channels
from napari_unet.io import tiff
from napari_unet.runtime import present


def run_train(args) -> int:
    check_model_name(args.out, "--out")  # first: a name too long for the disk fails even to be looked up
    tidy_model_folder(args.out)
    check_target(args.out, overwrite=args.overwrite)  # fail before loading anything
    pairs = _read_training_pairs(args.image, args.labels)
    model_cfg, train_cfg = train_configs(args)
    final = train_with_progress(*pairs[0], model_cfg, train_cfg, args.out, resume=args.resume,
                                overwrite=args.overwrite, extra_pairs=pairs[1:])
    result = final.training
    if result is None or not result.model_saved:
        say_why_unfinished(final.message if result is None else result.message)
        return 130 if isinstance(final, events.Stopped) else 1
    dice = result.best_val_dice
    if result.message:  # saved, but not where asked (its disk refused it)
        print("warning: " + result.message, file=sys.stderr)
    print(f"Model saved to {result.model_dir}")
    print("Validation Dice: " + ("n/a (no validation data)" if dice is None else f"{dice:.4f}")
          + f" (best epoch {result.best_epoch})")
    for line in present.result_notes(result):
        print(line)
    return 0


def _read_training_pairs(images, labels) -> list:
    """``[(image, labels), ...]`` from the repeated --image/--labels; channels must agree."""
    if len(images) != len(labels):
        raise ValueError(f"Give one --labels per --image: got {len(images)} image(s) and {len(labels)} labels.")
    pairs = [(load_image(image)[0], np.asarray(tiff.read_array(label)[0])) for image, label in zip(images, labels)]
    check_same_channels(pairs, names=[f"{image} / {label}" for image, label in zip(images, labels)])
    return pairs

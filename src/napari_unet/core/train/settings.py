"""What a training run is set up with, before its model exists: checks of the inputs and of the
settings against each other, the automatic batch and patch sizes, the learning-rate schedule.
No Keras here.
"""

from __future__ import annotations

import math

import numpy as np

from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.config import ModelConfig, TrainConfig, limits
from napari_unet.core.nn import devices
from napari_unet.core.train import pairs

FINAL_LR_FRACTION = 0.05  # the cosine schedule ends at this fraction of the learning rate

# ------------------------------------------------------------------ schedule


def training_progress(train_cfg: TrainConfig, step_fraction: float, elapsed_s: float) -> float:
    """Fraction of the run done, 0 to 1: the larger of the steps done and, with
    ``max_seconds``, the time used (whichever limit ends training first)."""
    progress = step_fraction
    if train_cfg.max_seconds:
        progress = max(progress, elapsed_s / train_cfg.max_seconds)
    return min(max(progress, 0.0), 1.0)


PLATEAU_FACTOR = 0.5  # "plateau" schedule: the rate is multiplied by this on each plateau


def plateau_learning_rate(train_cfg: TrainConfig, plateaus: int) -> float:
    """The "plateau" schedule's rate after ``plateaus`` halvings (Keras' ReduceLROnPlateau rule)."""
    return train_cfg.learning_rate * PLATEAU_FACTOR**plateaus


def seconds_left(train_cfg: TrainConfig, elapsed_s: float):
    """Seconds until the time cap ends training; None without a cap."""
    return max(0.0, train_cfg.max_seconds - elapsed_s) if train_cfg.max_seconds else None


def cosine_learning_rate(train_cfg: TrainConfig, step_fraction: float, elapsed_s: float) -> float:
    """Cosine decay from ``learning_rate`` to ``FINAL_LR_FRACTION`` of it over
    ``training_progress``, so a run cut by its time budget still ends at a low learning rate.
    """
    if train_cfg.lr_schedule == "constant":
        return train_cfg.learning_rate
    progress = training_progress(train_cfg, step_fraction, elapsed_s)
    decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return train_cfg.learning_rate * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * decay)


def learning_rate(train_cfg: TrainConfig, *, plateaus: int, step_fraction: float, elapsed_s: float) -> float:
    """The rate of ``train_cfg.lr_schedule`` now; "auto" halves it on each plateau *and* decays it
    along the cosine, so a run that levels off early slows down, and one the time cap ends still
    ends at a low rate."""
    schedule = train_cfg.lr_schedule
    if schedule == "plateau":
        return plateau_learning_rate(train_cfg, plateaus)
    rate = cosine_learning_rate(train_cfg, step_fraction, elapsed_s)
    return rate * PLATEAU_FACTOR**plateaus if schedule == "auto" else rate


# ------------------------------------------------------------------ inputs


def with_auto_sizes(train_cfg: TrainConfig, device, model_cfg: ModelConfig, height: int, width: int,
                    *, replicas: int = 1) -> TrainConfig:
    """``train_cfg`` with its "auto" (None) batch and patch sizes chosen for the device
    (``core/nn/devices.py``); an automatic patch shrinks to fit the smallest image. On several GPUs an
    automatic batch is per GPU (the global batch is ``replicas`` times it); a batch given is global."""
    if train_cfg.batch_size is not None and train_cfg.patch_size is not None:
        return train_cfg
    batch, patch = devices.auto_sizes(device, model_cfg.n_filters)
    fit = devices.fit_patch(patch, height, width, model_cfg.size_multiple)
    if fit >= max(model_cfg.size_multiple, limits(TrainConfig, "patch_size")[0]):
        patch = fit  # else check_patch_size says the image is too small
    batch_size = train_cfg.batch_size or min(batch * replicas, limits(TrainConfig, "batch_size")[1])
    return train_cfg.replace(batch_size=batch_size, patch_size=train_cfg.patch_size or patch)


def chosen_sizes(train_cfg: TrainConfig) -> tuple[int, int]:
    """``(batch_size, patch_size)`` of a config whose "auto" sizes ``with_auto_sizes`` has chosen."""
    if train_cfg.batch_size is None or train_cfg.patch_size is None:
        raise ValueError("batch_size and patch_size are chosen (with_auto_sizes) before they are used.")
    return train_cfg.batch_size, train_cfg.patch_size


def check_patch_size(train_cfg: TrainConfig, model_cfg: ModelConfig, height: int, width: int) -> None:
    """Refuse a patch larger than the smallest image, or not a multiple of the U-Net's size multiple."""
    p, m = chosen_sizes(train_cfg)[1], model_cfg.size_multiple
    if p > min(height, width):
        fit = min(height, width) // m * m
        smallest = max(m, limits(TrainConfig, "patch_size")[0])
        if fit < smallest:
            raise ValueError(
                f"The image ({height} x {width} pixels) is too small to train on: a side needs at least "
                f"{smallest} pixels. Check its axes (a channel or Z axis read as Y or X?).")
        raise ValueError(
            f"patch_size {p} is larger than the image ({height} x {width} pixels): "
            f"choose a patch_size of at most {fit}."
        )
    if p % m:
        raise ValueError(
            f"patch_size {p} must be a multiple of {m} for a U-Net of depth {model_cfg.depth}: "
            f"use {max(m, p // m * m)} or lower the depth."
        )


def resolve_model_config(model_cfg, n_classes: int, in_channels: int, train_cfg: TrainConfig) -> ModelConfig:
    """The default architecture for the data's classes and channels, or ``model_cfg`` checked against them."""
    if model_cfg is None:
        return ModelConfig(in_channels=in_channels, n_classes=n_classes)
    if model_cfg.in_channels != in_channels:
        raise ValueError(
            f"model_cfg.in_channels is {model_cfg.in_channels} but the image has {in_channels} channel(s): "
            f"set in_channels={in_channels}."
        )
    if model_cfg.n_classes != n_classes:
        raise ValueError(
            f"model_cfg.n_classes is {model_cfg.n_classes} but the labels need {n_classes} output(s) in "
            f"'{train_cfg.annotation_mode}' mode{' with instances' if train_cfg.instances else ''}: "
            f"set n_classes={n_classes} (see core.data.class_count)."
        )
    return model_cfg


def check_resume_meta(meta: BundleMeta, train_cfg: TrainConfig, *, n_classes: int, in_channels: int, source
                      ) -> None:
    """Refuse to fine-tune a model on labels of other classes, mode or channels (one line each)."""
    cfg = meta.model_cfg
    if cfg.in_channels != in_channels:
        raise ValueError(f"The model in {source} takes {cfg.in_channels} channel(s) but the image has {in_channels}.")
    if cfg.n_classes != n_classes:
        raise ValueError(
            f"The model in {source} has {cfg.n_classes} output(s) but these labels need {n_classes}: "
            "annotate the same classes as the model was trained on, or train a new model."
        )
    mode = meta.annotation_mode or train_cfg.annotation_mode  # None: the model did not say
    if mode != train_cfg.annotation_mode:
        raise ValueError(
            f"The model in {source} was trained on '{mode}' annotations; set the annotation mode to "
            f"'{mode}' to fine-tune it, or train a new model."
        )
    if meta.instances != train_cfg.instances:
        raise ValueError(
            f"The model in {source} was trained with instances={meta.instances}; "
            f"set instances the same way to fine-tune it."
        )


# ------------------------------------------------------------------ labels


def class_pixel_counts(targets: dict, masks: dict, items) -> np.ndarray | None:
    """Annotated pixels per class (background first; a sigmoid target counts as 2 classes); None
    without ``items``."""
    counts: np.ndarray | None = None
    for z, (y0, y1, x0, x1) in items:
        t, m = targets[z][y0:y1, x0:x1], masks[z][y0:y1, x0:x1, None]
        per = (t * m).reshape(-1, t.shape[-1]).sum(0)
        if t.shape[-1] == 1:
            per = np.array([m.sum() - per[0], per[0]])
        counts = per if counts is None else counts + per
    return counts


def foreground_label_values(labels_list, train_cfg: TrainConfig, n_classes: int):
    """The foreground value of a binary full-slices annotation (it may be e.g. 255)."""
    if n_classes == 1 and train_cfg.annotation_mode == "full_slices" and not train_cfg.instances:
        values = pairs.annotated_values(labels_list, train_cfg.annotation_mode)
        return [0, int(values[values != 0][0])]
    return None


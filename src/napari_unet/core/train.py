"""Training as a generator of events (start, batch, epoch, then done or stopped).

One batch at a time with ``train_on_batch``, so progress is reported and a
stop request is honoured between any two batches. The best weights (by
validation Dice, or by training loss without validation data) are kept in
memory and written as a model bundle when training ends, and also on
improvement when the last write is ``CHECKPOINT_INTERVAL_S`` old, so a long
run that is killed still leaves a recent model behind.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from . import data
from .bundle import check_target, describe_classes, load_bundle, model_config_of, save_bundle
from .config import ModelConfig, TrainConfig

CHECKPOINT_INTERVAL_S = 60.0
FINAL_LR_FRACTION = 0.05  # the cosine schedule ends at this fraction of the learning rate


# ------------------------------------------------------------------ device


def _tf_gpus():
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, []
    import tensorflow as tf

    return tf, tf.config.list_physical_devices("GPU")


def gpu_names() -> list:
    """Names of the GPUs the Keras backend (TensorFlow or JAX) sees."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    tf, gpus = _tf_gpus()
    return [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]


def describe_device(threads: int = 0) -> str:
    """``"GPU: <name>"`` when the backend (TensorFlow or JAX) sees a GPU, else ``"CPU (<n> threads)"``."""
    import keras

    tf, _ = _tf_gpus()
    names = gpu_names()
    if names:
        return f"GPU: {names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "")
    n = threads or (tf.config.threading.get_intra_op_parallelism_threads() if tf else 0)
    if not n:  # 0 means the library default: one thread per usable core
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    backend = keras.backend.backend()
    return f"CPU ({n} thread{'' if n == 1 else 's'})" + ("" if backend == "tensorflow" else f", {backend}")


def configure_device(train_cfg: TrainConfig) -> str:
    """Set TensorFlow's thread counts and GPU memory growth; call before any TF op.

    Returns the device description used in the "start" event.
    """
    tf, gpus = _tf_gpus()
    if tf is not None:
        if train_cfg.threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(train_cfg.threads)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, train_cfg.threads))
            except RuntimeError:
                pass  # TensorFlow is already running; its thread pools are fixed now
        for gpu in gpus:
            try:
                # Take GPU memory as needed instead of all of it up front.
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass
    return describe_device(train_cfg.threads)


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


# ------------------------------------------------------------------ inputs


def rescue_folder(out_dir) -> Path:
    """Where a model goes when its own folder cannot take it: the temporary folder."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"{Path(out_dir).name}-rescued-{time.strftime('%Y%m%d-%H%M%S')}"


def save_or_rescue(out_dir, model, meta, overwrite: bool) -> tuple[Path, str | None]:
    """Save the bundle; if its disk refuses (full, read-only), save it to ``rescue_folder``
    instead, so hours of training are not lost. Returns ``(folder, note for the user or None)``."""
    try:
        save_bundle(out_dir, model, meta, overwrite=overwrite)
        return Path(out_dir), None
    except OSError as exc:
        rescue = rescue_folder(out_dir)
        save_bundle(rescue, model, meta)  # a second failure is reported as the job's error
        return rescue, (f"The model could not be saved to {out_dir} ({exc.strerror or exc}); "
                        f"it was saved to {rescue} instead: move it where you want it.")


def _check_patch_size(train_cfg: TrainConfig, model_cfg: ModelConfig, height: int, width: int) -> None:
    p, m = train_cfg.patch_size, model_cfg.size_multiple
    if p > min(height, width):
        fit = min(height, width) // m * m
        raise ValueError(
            f"patch_size {p} is larger than the image ({height} x {width} pixels): "
            f"choose a patch_size of at most {fit}."
        )
    if p % m:
        raise ValueError(
            f"patch_size {p} must be a multiple of {m} for a U-Net of depth {model_cfg.depth}: "
            f"use {max(m, p // m * m)} or lower the depth."
        )


def _resolve_model_config(model_cfg, n_classes: int, in_channels: int, train_cfg: TrainConfig) -> ModelConfig:
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


def _check_resume_meta(meta: dict, train_cfg: TrainConfig, n_classes: int, in_channels: int, source) -> None:
    cfg = model_config_of(meta)
    if cfg.in_channels != in_channels:
        raise ValueError(f"The model in {source} takes {cfg.in_channels} channel(s) but the image has {in_channels}.")
    if cfg.n_classes != n_classes:
        raise ValueError(
            f"The model in {source} has {cfg.n_classes} output(s) but these labels need {n_classes}: "
            "annotate the same classes as the model was trained on, or train a new model."
        )
    if bool(meta.get("instances")) != train_cfg.instances:
        raise ValueError(
            f"The model in {source} was trained with instances={bool(meta.get('instances'))}; "
            f"set instances the same way to fine-tune it."
        )


# ---------------------------------------------------------------- training


def _build(model_cfg: ModelConfig, mixed_precision: bool, resume_from):
    """Build (or load) the model under the requested dtype policy, then restore the global one."""
    import keras

    from .model import build_unet

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        if resume_from is None:
            return build_unet(model_cfg), None
        return load_bundle(resume_from)
    finally:
        keras.config.set_dtype_policy(previous)


def _class_pixel_counts(targets: dict, masks: dict, items) -> np.ndarray:
    """Annotated pixels per class (background first; a sigmoid target counts as 2 classes)."""
    counts = None
    for z, (y0, y1, x0, x1) in items:
        t, m = targets[z][y0:y1, x0:x1], masks[z][y0:y1, x0:x1, None]
        per = (t * m).reshape(-1, t.shape[-1]).sum(0)
        if t.shape[-1] == 1:
            per = np.array([m.sum() - per[0], per[0]])
        counts = per if counts is None else counts + per
    return counts


def _predict(model, x, batch_size: int) -> np.ndarray:
    import keras

    parts = [
        keras.ops.convert_to_numpy(model.predict_on_batch(x[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _validate(model, loss_fn, x_val, y_val, batch_size: int):
    """``(val_loss, val_dice, val_iou)`` over all validation pixels at once."""
    import keras

    from .losses import dice_coef, iou

    pred = _predict(model, x_val, batch_size)
    as_float = lambda v: float(keras.ops.convert_to_numpy(v))  # noqa: E731
    return as_float(loss_fn(y_val, pred)), as_float(dice_coef(y_val, pred)), as_float(iou(y_val, pred))


def _label_values(labels_zyx, idx, train_cfg: TrainConfig, n_classes: int):
    """The foreground value of a binary full-slices annotation (it may be e.g. 255)."""
    if n_classes == 1 and train_cfg.annotation_mode == "full_slices" and not train_cfg.instances:
        values = np.unique(np.concatenate([np.unique(labels_zyx[z]) for z in idx]))
        return [0, int(values[values != 0][0])]
    return None


def nothing_saved_message(out_dir, replacing: bool) -> str:
    """What a run that ended before its first epoch tells the user: nothing was written."""
    kept = f" {out_dir} was left as it was." if replacing and Path(out_dir).exists() else ""
    return f"Training ended before the first epoch finished: no model was saved.{kept}"


def train(
    image,
    labels,
    model_cfg: ModelConfig | None,
    train_cfg: TrainConfig,
    out_dir,
    *,
    stop_event=None,
    resume_from=None,
    overwrite: bool = False,
) -> Iterator[dict]:
    """Train a U-Net on the annotated slices of ``image`` and save it to ``out_dir``.

    ``image`` is ``(Y, X)``, ``(Z, Y, X)``, or with a trailing channel axis one
    more dimension than ``labels`` (``(Y, X)`` or ``(Z, Y, X)`` integers).
    ``model_cfg=None`` uses the default architecture with the class and
    channel counts the data needs. ``resume_from`` (a bundle folder)
    fine-tunes that model, reusing its architecture and normalisation.
    Yields "start", "batch", "epoch" (and "warning") events, then "done", or
    "stopped" when ``stop_event`` is set; either way the best model is saved. A run
    that ends before its first epoch finished writes nothing: its final event has
    ``model_saved=False``, ``model_dir=None`` and a ``message`` saying so.
    """
    import keras

    from .losses import get_loss, inverse_frequency_weights

    mode, instances = train_cfg.annotation_mode, train_cfg.instances
    data.validate_training_pair(image, labels, mode, instances)
    image_zyxc, labels_zyx = data.as_training_pair(image, labels)
    _, height, width, in_channels = image_zyxc.shape
    n_classes = data.class_count(labels_zyx, mode, instances)
    out_dir = Path(out_dir).absolute()
    check_target(out_dir, overwrite)  # fail now, not after the training

    warnings = []
    if instances and data.annotated_object_count(labels_zyx, mode) < 2:
        warnings.append(
            "Only one object is annotated: paint several objects, some of them touching, so the model "
            "learns what separates them."
        )
    resume_meta = None
    if resume_from is not None:
        from .bundle import read_bundle_meta

        resume_meta = read_bundle_meta(resume_from)
        _check_resume_meta(resume_meta, train_cfg, n_classes, in_channels, resume_from)
        if model_cfg is not None and model_cfg != model_config_of(resume_meta):
            warnings.append(
                f"Fine-tuning keeps the architecture of {resume_from}; the model settings given were ignored."
            )
        model_cfg = model_config_of(resume_meta)
    else:
        model_cfg = _resolve_model_config(model_cfg, n_classes, in_channels, train_cfg)
    _check_patch_size(train_cfg, model_cfg, height, width)

    mixed = train_cfg.mixed_precision
    if mixed and not gpu_names():
        mixed = False
        warnings.append("Mixed precision needs a GPU; training in float32 on the CPU.")

    # Only the annotated slices are loaded and normalised: the volume may be lazy and large.
    idx = data.annotated_slices(labels_zyx, mode)
    if resume_meta is not None:
        norm = resume_meta["normalization"]
    else:
        norm = data.compute_normalization(image_zyxc, train_cfg.percentiles, seed=train_cfg.seed)
    position = {int(z): i for i, z in enumerate(idx)}
    image_norm = np.stack([data.normalize(np.asarray(image_zyxc[int(z)]), norm) for z in idx])
    targets, masks = {}, {}
    for z in idx:
        i = position[int(z)]
        targets[i], masks[i] = data.make_targets(labels_zyx[int(z)], mode, n_classes, instances,
                                                 train_cfg.boundary_width)
    train_items, val_items = data.split_validation(idx, labels_zyx, train_cfg.val_fraction, train_cfg.seed)
    train_items = [(position[z], box) for z, box in train_items]
    val_items = [(position[z], box) for z, box in val_items]

    keras.utils.set_random_seed(train_cfg.seed)
    sampler = data.PatchSampler(
        image_norm, targets, masks, train_items, train_cfg.patch_size, train_cfg.batch_size,
        foreground_bias=train_cfg.foreground_bias, augment=train_cfg.augment, seed=train_cfg.seed,
    )
    x_val, y_val = data.validation_arrays(image_norm, targets, masks, val_items, model_cfg.size_multiple)
    has_val = len(x_val) > 0

    class_weights = None
    if train_cfg.loss == "weighted_ce":
        class_weights = inverse_frequency_weights(_class_pixel_counts(targets, masks, train_items))
    loss_fn = get_loss(train_cfg.loss, n_classes, class_weights)
    model, _ = _build(model_cfg, mixed, resume_from)
    total_steps = train_cfg.epochs * train_cfg.steps_per_epoch
    model.compile(optimizer=keras.optimizers.Adam(train_cfg.learning_rate), loss=loss_fn)

    meta = {
        "model_config": model_cfg,
        "train_config": train_cfg,
        "normalization": norm,
        "classes": describe_classes(mode, n_classes, instances, _label_values(labels_zyx, idx, train_cfg, n_classes)),
        "annotation_mode": mode,
        "instances": instances,
        "boundary_width": train_cfg.boundary_width if instances else None,
        # A hint for prediction: objects that tile the image (cells between membranes) take the
        # background too, and the gaps between them are evidence that can rejoin pieces.
        "objects_tile": bool((instances or n_classes == 1) and mode == "full_slices"
                             and data.objects_tile_the_image(labels_zyx, mode)),
        "training_data": {
            "image_shape": list(np.shape(image)), "annotated_slices": [int(z) for z in idx],
            "train_regions": len(train_items), "val_regions": len(val_items),
        },
        "resumed_from": None if resume_from is None else str(Path(resume_from).absolute()),
    }
    device = describe_device(train_cfg.threads)
    yield {
        "type": "start",
        "device": device,
        "n_train_slices": len({z for z, _ in train_items}),
        "n_val_slices": len({z for z, _ in val_items}),
        "n_classes": n_classes,
        "epochs": train_cfg.epochs,
        "steps_per_epoch": train_cfg.steps_per_epoch,
        "params": int(model.count_params()),
        "mixed_precision": mixed,
    }
    for message in warnings:
        yield {"type": "warning", "message": message}

    history = {key: [] for key in ("epoch", "loss", "val_loss", "val_dice", "val_iou", "seconds")}
    best = {"score": None, "epoch": None, "weights": None, "val_loss": None, "val_dice": None, "val_iou": None}
    saved = {"overwrite": overwrite, "at": time.monotonic(), "dir": Path(out_dir)}

    def write_best():
        if best["weights"] is None:
            return  # no epoch finished: an untrained model must never replace a good one
        current = model.get_weights()
        model.set_weights(best["weights"])
        meta["history"] = history
        meta["validation"] = {
            "best_epoch": best["epoch"], "best_val_dice": best["val_dice"],
            "best_val_iou": best["val_iou"], "best_val_loss": best["val_loss"],
            "monitor": "val_loss" if has_val else "loss",
        }
        saved["dir"], note = save_or_rescue(saved["dir"], model, meta, overwrite=saved["overwrite"])
        saved.update(overwrite=True, at=time.monotonic())  # from now on the folder is ours
        saved["note"] = saved.get("note") or note
        model.set_weights(current)

    def final_event(kind, **extra):
        if best["weights"] is None:
            extra["message"] = nothing_saved_message(out_dir, saved["overwrite"])
        elif saved.get("note"):
            extra["message"] = saved["note"]
        return {
            "type": kind, "model_dir": str(saved["dir"]) if best["weights"] is not None else None,
            "model_saved": best["weights"] is not None, "best_epoch": best["epoch"],
            "best_val_dice": best["val_dice"], "best_val_iou": best["val_iou"],
            "best_val_loss": best["val_loss"], "history": history,
            "seconds": time.monotonic() - started, **extra,
        }

    started = time.monotonic()
    steps = train_cfg.steps_per_epoch
    since_best = plateaus = 0
    finish_reason = None
    for epoch in range(1, train_cfg.epochs + 1):
        epoch_start = time.monotonic()
        losses = []
        for batch in range(1, steps + 1):
            if stop_event is not None and stop_event.is_set():
                write_best()
                yield final_event("stopped")
                return
            if train_cfg.max_seconds and time.monotonic() - started >= train_cfg.max_seconds:
                finish_reason = "time_limit"
                break
            x, y = sampler.sample_batch()
            step = (epoch - 1) * steps + batch - 1
            if train_cfg.lr_schedule == "plateau":
                model.optimizer.learning_rate = plateau_learning_rate(train_cfg, plateaus)
            else:
                model.optimizer.learning_rate = cosine_learning_rate(
                    train_cfg, step / total_steps, time.monotonic() - started
                )
            loss = float(model.train_on_batch(x, y))
            if not math.isfinite(loss):
                raise ValueError(
                    f"Training diverged: the loss is {loss} at epoch {epoch}, batch {batch}. "
                    "Lower the learning rate (e.g. to a tenth)."
                )
            losses.append(loss)
            yield {
                "type": "batch", "epoch": epoch, "batch": batch, "steps": steps, "loss": loss,
                "progress": training_progress(train_cfg, (step + 1) / total_steps, time.monotonic() - started),
                "seconds_left": seconds_left(train_cfg, time.monotonic() - started),
            }
        if not losses:
            break
        epoch_loss = float(np.mean(losses))
        val_loss = val_dice = val_iou = None
        if has_val:
            val_loss, val_dice, val_iou = _validate(model, loss_fn, x_val, y_val, train_cfg.batch_size)
        seconds = time.monotonic() - epoch_start
        for key, value in zip(history, (epoch, epoch_loss, val_loss, val_dice, val_iou, seconds)):
            history[key].append(value)
        # Validation loss covers every class; a one-class Dice can reward "all foreground".
        score = (-val_loss,) if has_val else (-epoch_loss,)
        if best["score"] is None or score > best["score"]:
            best.update(score=score, epoch=epoch, weights=model.get_weights(),
                        val_loss=val_loss, val_dice=val_dice, val_iou=val_iou)
            since_best = 0
            if time.monotonic() - saved["at"] >= CHECKPOINT_INTERVAL_S:
                write_best()
        else:
            since_best += 1
            if since_best % train_cfg.lr_patience == 0:
                plateaus += 1  # only the "plateau" schedule reads it
        yield {
            "type": "epoch", "epoch": epoch, "epochs": train_cfg.epochs, "loss": epoch_loss,
            "val_loss": val_loss, "val_dice": val_dice, "val_iou": val_iou, "seconds": seconds,
            "best_epoch": best["epoch"],
            "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        }
        if finish_reason:
            break
        if train_cfg.early_stopping_patience and since_best >= train_cfg.early_stopping_patience:
            finish_reason = "early_stopping"
            break
    write_best()
    yield final_event("done", finish_reason=finish_reason or "epochs")

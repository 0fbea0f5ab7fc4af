"""Training as a generator of events (start, batch, epoch, then done or stopped).

One batch at a time with ``train_on_batch``, so progress is reported and a
stop request is honoured between any two batches. The best weights (by
validation Dice, or by training loss without validation data) are kept in
memory and written as a model bundle when training ends, and also on
improvement now and then (``core/train/checkpoints.py``), so a long run that
is killed still leaves a recent model behind. What the run is set up with
(checks, automatic sizes, the learning-rate schedule) is in ``core/train/settings.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_unet.core import data, events
from napari_unet.core.bundle import check_target, load_bundle
from napari_unet.core.bundle_meta import BundleMeta, Normalization, TrainingData, describe_classes
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.nn import devices, fitting, hardware
from napari_unet.core.nn.steps import StepLosses, distribute, train_step_loss
from napari_unet.core.train import augment, pairs, pretrain, preview
from napari_unet.core.train import objects as train_objects
from napari_unet.core.train.augment import batches
from napari_unet.core.train.checkpoints import Best, Saving, nothing_saved_message, weights_set
from napari_unet.core.train.one_slice import more_slices_line
from napari_unet.core.train.settings import (
    check_patch_size,
    check_resume_meta,
    chosen_sizes,
    class_pixel_counts,
    foreground_label_values,
    learning_rate,
    resolve_model_config,
    seconds_left,
    training_progress,
    with_auto_sizes,
)

TUNING_SHARE = 0.1  # of the training time, at most, for tuning the object step afterwards
# A ``Batch`` event (and the loss read back from the device for it) at most this often, besides
# the first batch and each epoch's last: a progress bar needs no more, and a GPU step is ~13 ms.
BATCH_EVENT_INTERVAL_S = 0.25


# ---------------------------------------------------------------- the model


def _build(model_cfg: ModelConfig, policy: str, resume_from):
    """Build (or load) the model under the dtype ``policy`` ("float32", "mixed_float16",
    "mixed_bfloat16"), then restore the global one."""
    from napari_unet.core.nn.model import build_unet

    with fitting.dtype_policy(policy):
        if resume_from is None:
            return build_unet(model_cfg), None
        return load_bundle(resume_from)


def _compiled_model(model_cfg: ModelConfig, policy: str, resume_from, loss_fn, loss_key, learning_rate: float,
                    strategy=None, xla: str = "auto"):
    """A compiled model with fresh (seeded) weights: the last one reset, when it fits, else a new one.
    With a ``tf.distribute`` ``strategy`` it is built and compiled in its scope (and never reused)."""
    import contextlib

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _compiled_model_in_scope(model_cfg, policy, resume_from, loss_fn,
                                        None if strategy is not None else loss_key, learning_rate, xla)


def _compiled_model_in_scope(model_cfg, policy, resume_from, loss_fn, loss_key, learning_rate, xla):
    model, _ = _build(model_cfg, policy, resume_from)
    key = None if resume_from is not None or loss_key is None else (model_cfg, policy, loss_key, xla)
    return fitting.compile_or_reuse(model, key, loss_fn, learning_rate, xla)


def _validate(model, loss_fn, x_val, y_val, batch_size: int):
    """``(val_loss, val_dice, val_iou)`` over all validation pixels at once."""
    from napari_unet.core.nn.losses import dice_coef, iou

    pred = fitting.predict_in_batches(model, x_val, batch_size)
    scores = (loss_fn(y_val, pred), dice_coef(y_val, pred), iou(y_val, pred))
    return tuple(fitting.to_float(score) for score in scores)


# ---------------------------------------------------------------- training


def train(
    image,
    labels,
    *,
    model_cfg: ModelConfig | None,
    train_cfg: TrainConfig,
    out_dir,
    stop_event=None,
    resume_from=None,
    overwrite: bool = False,
    extra_pairs=(),
    preview_request=None,
    weights=None,
) -> Iterator[events.Event]:
    """Train a U-Net on the annotated slices of ``image`` and save it to ``out_dir``.

    ``image`` is ``(Y, X)``, ``(Z, Y, X)``, or with a trailing channel axis one
    more dimension than ``labels`` (``(Y, X)`` or ``(Z, Y, X)`` integers).
    ``model_cfg=None`` uses the default architecture with the class and
    channel counts the data needs. ``resume_from`` (a bundle folder)
    fine-tunes that model, reusing its architecture and normalisation. ``extra_pairs``:
    more ``(image, labels)`` pairs to learn from, of any size, with the channels of ``image``.
    Yields ``events.Start``, ``Batch``, ``Epoch`` (and ``Warn``), then ``Done``, or
    ``Stopped`` when ``stop_event`` is set; either way the best model is saved. A run
    that ends before its first epoch finished writes nothing: its final event's
    ``training`` has ``model_saved=False``, ``model_dir=None`` and a ``message`` saying so.
    ``preview_request``: a callable returning the ``(axis, index)`` of the slice of ``image`` to
    preview, or None; the trainer then yields ``Preview`` events (``core.preview``).
    ``weights``: a per-pixel loss weight of ``labels``' shape (finite, non-negative; None = all 1),
    multiplied into the loss masks of ``image``'s annotated slices (training and validation).
    """
    # A generator function, so that like before every check runs on the first ``next()``.
    yield from Trainer(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=out_dir,
                       stop_event=stop_event, resume_from=resume_from, overwrite=overwrite,
                       extra_pairs=extra_pairs, preview_request=preview_request, weights=weights).run()


class Trainer:
    """One training run; ``run()`` yields the events ``train()`` documents."""

    def __init__(self, image, labels, *, model_cfg, train_cfg: TrainConfig, out_dir,
                 stop_event=None, resume_from=None, overwrite: bool = False, extra_pairs=(), preview_request=None,
                 weights=None):
        self.image, self.labels, self.model_cfg, self.cfg = image, labels, model_cfg, train_cfg
        self.raw_weights = weights
        self.raw_pairs = [(image, labels)] + [tuple(pair) for pair in extra_pairs]
        self.out_dir, self.stop_event = out_dir, stop_event
        self.resume_from, self.overwrite = resume_from, overwrite
        self.warnings: list[str] = []
        self.history: dict[str, list] = {
            key: [] for key in ("epoch", "loss", "val_loss", "val_dice", "val_iou", "seconds")}
        self.best = Best()
        self.since_best = self.plateaus = 0
        self.finish_reason: str | None = None
        self.stopped = False
        self.preview_request = preview_request
        self.last_preview = (None, -math.inf)  # (the slice, when it was previewed)
        self.last_batch_event = -math.inf
        self.tuning_line: str | None = None  # what the object tuning found, in one line

    # -------------------------------------------------------------- the run

    def run(self) -> Iterator[events.Event]:
        self._check_inputs()
        self._choose_device()
        self._choose_model_config()
        self._prepare_slices()
        self._split()
        self._build_model()
        self.meta = self._bundle_meta()
        yield self._start_event()
        for message in self.warnings:
            yield events.Warn(message)
        self.saving = Saving(folder=Path(self.out_dir), overwrite=self.overwrite, at=time.monotonic())
        self.batches = batches(self.sampler, self.cfg.prefetch_batches)
        try:
            yield from self._epochs()
        finally:
            self.batches.close()

    def _epochs(self) -> Iterator[events.Event]:
        self.started = time.monotonic()
        yield from self._pretrain()
        for epoch in range(1, self.cfg.epochs + 1):
            epoch_start, losses, self.epoch_wait0 = time.monotonic(), StepLosses(), self.batches.wait_s
            yield from self._epoch_batches(epoch, losses)
            if self.stopped:
                self._tune_objects()
                self._write_best()
                result = self._result()
                yield events.Stopped(message=result.message or "", training=result)
                return
            if not losses.count:
                break  # the time cap came before this epoch's first batch
            yield self._end_epoch(epoch, losses, epoch_start)
            yield from self._preview(epoch, due=True)
            if self._should_finish():
                break
        self._tune_objects()
        self._write_best()
        yield events.Done(training=self._result(), finish_reason=self.finish_reason or "epochs")

    # ------------------------------------------------------------ the data

    def _check_inputs(self) -> None:
        cfg = self.cfg
        pairs.validate_pairs(self.raw_pairs, cfg.annotation_mode, instances=cfg.instances)
        self.pairs = [data.as_training_pair(image, labels) for image, labels in self.raw_pairs]
        self.image_zyxc, self.labels_zyx = self.pairs[0]
        self.weights = data.loss_weights(self.raw_weights, np.shape(self.labels))
        self.in_channels, self.n_classes = pairs.channels_and_classes(self.pairs, cfg.annotation_mode,
                                                                      instances=cfg.instances)
        # Patches must fit the smallest image.
        self.height, self.width = (min(image.shape[k] for image, _ in self.pairs) for k in (1, 2))
        self.out_dir = Path(self.out_dir).absolute()
        check_target(self.out_dir, self.overwrite)  # fail now, not after the training
        if cfg.instances and sum(data.annotated_object_count(labels, cfg.annotation_mode)
                                 for _, labels in self.pairs) < 2:
            self.warnings.append(
                "Only one object is annotated: paint several objects, some of them touching, so the model "
                "learns what separates them."
            )

    def _choose_model_config(self) -> None:
        self.resume_meta = None
        if self.resume_from is not None:
            from napari_unet.core.bundle import read_bundle_meta

            self.resume_meta = read_bundle_meta(self.resume_from)
            check_resume_meta(self.resume_meta, self.cfg, n_classes=self.n_classes, in_channels=self.in_channels,
                              source=self.resume_from)
            if self.model_cfg is not None and self.model_cfg != self.resume_meta.model_cfg:
                self.warnings.append(f"Fine-tuning keeps the architecture of {self.resume_from}; "
                                     "the model settings given were ignored.")
            self.model_cfg = self.resume_meta.model_cfg
        else:
            self.model_cfg = resolve_model_config(self.model_cfg, self.n_classes, self.in_channels, self.cfg)
        self.cfg = with_auto_sizes(self.cfg, self.device, self.model_cfg, self.height, self.width,
                                   replicas=self.replicas)
        check_patch_size(self.cfg, self.model_cfg, self.height, self.width)
        self.batch_size, self.patch_size = chosen_sizes(self.cfg)

    def _choose_device(self) -> None:
        """The device's facts, the precision (with one warning line when the device lacks the one
        asked for) and, on several GPUs with TensorFlow, the MirroredStrategy over them."""
        self.device = hardware.device_facts(self.cfg.threads)
        self.policy, warning = devices.choose_precision(self.cfg.mixed_precision, self.device)
        if warning:
            self.warnings.append(warning)
        self.strategy = hardware.mirrored_strategy()
        self.replicas = self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def _prepare_slices(self) -> None:
        """Normalise the annotated slices and make their targets and masks."""
        # Only the annotated slices are loaded and normalised: the volume may be lazy and large.
        cfg, mode = self.cfg, self.cfg.annotation_mode
        self.idx = data.annotated_slices(self.labels_zyx, mode)
        # (pair, slice) of every annotated slice; the rest of the run indexes them by position here.
        self.slices = [(k, int(z)) for k, (_, labels) in enumerate(self.pairs)
                       for z in data.annotated_slices(labels, mode)]
        if self.resume_meta is not None:
            self.norm = self.resume_meta.normalization.model_dump()
        else:
            self.norm = pairs.joint_normalization([image for image, _ in self.pairs], percentiles=cfg.percentiles,
                                                  seed=cfg.seed)
        self.image_norm = [data.normalize(np.asarray(self.pairs[k][0][z]), self.norm) for k, z in self.slices]
        self.targets, self.masks = {}, {}
        for i, (k, z) in enumerate(self.slices):
            self.targets[i], self.masks[i] = data.make_targets(
                self.pairs[k][1][z], mode, self.n_classes, instances=cfg.instances, boundary_width=cfg.boundary_width)
            if k == 0 and self.weights is not None:
                self.masks[i] = self.masks[i] * self.weights[z]

    def _split(self) -> None:
        """Training and validation regions, indexed by position among the annotated slices."""
        label_slices = [self.pairs[k][1][z] for k, z in self.slices]
        self.train_items, self.val_items = data.split_slices(label_slices, self.cfg.val_fraction, seed=self.cfg.seed,
                                                             by=self.cfg.val_split)

    # ----------------------------------------------------------- the model

    def _build_model(self) -> None:
        from napari_unet.core.nn.losses import get_loss, inverse_frequency_weights

        cfg = self.cfg
        fitting.set_seed(cfg.seed)  # before the sampler and the weights are drawn
        self.sampler = augment.PatchSampler(
            self.image_norm, self.targets, self.masks, self.train_items, self.patch_size, self.batch_size,
            foreground_bias=cfg.foreground_bias, augment=cfg.augment, seed=cfg.seed,
        )
        self.x_val, self.y_val = augment.validation_arrays(self.image_norm, self.targets, self.masks,
                                                        self.val_items, self.model_cfg.size_multiple)
        self.has_val = len(self.x_val) > 0
        class_weights = None
        if cfg.loss == "weighted_ce":
            class_weights = inverse_frequency_weights(class_pixel_counts(self.targets, self.masks,
                                                                          self.train_items))
        self.loss_fn = get_loss(cfg.loss, self.n_classes, class_weights=class_weights)
        loss_key = (cfg.loss, self.n_classes, None if class_weights is None else tuple(np.ravel(class_weights)))
        self.model = _compiled_model(self.model_cfg, self.policy, self.resume_from, self.loss_fn, loss_key,
                                     cfg.learning_rate, self.strategy, cfg.xla)
        if self.strategy is not None:
            # Keras builds the compiled loss from the first batch it sees, which must not be a
            # distributed one: one evaluation of zeros (no weight changes) builds it.
            p, n = self.patch_size, self.replicas
            self.model.test_on_batch(np.zeros((n, p, p, self.sampler.n_channels), np.float32),
                                     np.zeros((n, p, p, self.sampler.n_classes + 1), np.float32))
        self.total_steps = cfg.epochs * cfg.steps_per_epoch

    def _bundle_meta(self) -> BundleMeta:
        cfg, mode, instances = self.cfg, self.cfg.annotation_mode, self.cfg.instances
        label_values = foreground_label_values([lab for _, lab in self.pairs], cfg, self.n_classes)
        return BundleMeta(
            model_cfg=self.model_cfg,
            train_cfg=cfg,
            normalization=Normalization.model_validate(self.norm),
            classes=describe_classes(mode, self.n_classes, instances=instances, label_values=label_values),
            annotation_mode=mode,
            instances=instances,
            boundary_width=cfg.boundary_width if instances else None,
            # A hint for prediction: objects that tile the image (cells between membranes) take the
            # background too, and the gaps between them are evidence that can rejoin pieces.
            objects_tile=bool((instances or self.n_classes == 1) and mode == "full_slices"
                              and all(data.objects_tile_the_image(lab, mode) for _, lab in self.pairs)),
            training_data=TrainingData.model_validate({
                "image_shape": list(np.shape(self.image)), "annotated_slices": [int(z) for z in self.idx],
                "train_regions": len(self.train_items), "val_regions": len(self.val_items),
                "extra_pairs": [{"image_shape": list(np.shape(image)),
                                 "annotated_slices": [z for k, z in self.slices if k == n]}
                                for n, (image, _) in enumerate(self.raw_pairs[1:], start=1)],
            }),
            resumed_from=None if self.resume_from is None else str(Path(self.resume_from).absolute()),
        )

    def _start_event(self) -> events.Start:
        return events.Start(
            device=hardware.describe_device(device=self.device),
            n_train_slices=len({z for z, _ in self.train_items}),
            n_val_slices=len({z for z, _ in self.val_items}),
            val_strips=any(x1 - x0 < self.image_norm[i].shape[1] for i, (_, _, x0, x1) in self.val_items),
            n_classes=self.n_classes,
            epochs=self.cfg.epochs,
            steps_per_epoch=self.cfg.steps_per_epoch,
            params=int(self.model.count_params()),
            mixed_precision=self.policy != "float32",
            precision=self.policy,
            xla=bool(self.model.jit_compile),
            replicas=self.replicas,
            batch_size=self.batch_size,
            patch_size=self.patch_size,
        )

    def _pretrain(self) -> Iterator[events.Event]:
        """Self-supervised pretraining on every slice, within the time cap, when asked for."""
        share = self.cfg.pretrain_share
        chosen = pretrain.plan(self.image_zyxc.shape[0], self.idx, share, resuming=self.resume_from is not None)
        if chosen.skip:
            yield events.Warn(chosen.skip)
        if not chosen.slices:
            return
        twin = pretrain.reconstruction_model(self.model_cfg, self.policy, self.cfg.learning_rate, self.cfg.xla)
        patches = pretrain.MaskedPatches(pretrain.load_slices(self.image_zyxc, chosen.slices, self.norm),
                                         self.patch_size, self.batch_size, self.cfg.seed)
        yield from pretrain.pretrain(
            twin, patches, started=self.started, cap_s=self.cfg.max_seconds, share=share,
            stop_event=self.stop_event, event_interval_s=BATCH_EVENT_INTERVAL_S)
        pretrain.hand_over(twin, self.model)

    # ------------------------------------------------------------ batches

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _epoch_batches(self, epoch: int, losses: StepLosses) -> Iterator[events.Event]:
        """Train one epoch's batches into ``losses``; stops early on a stop
        request (``self.stopped``) or at the time cap (``self.finish_reason``).

        A ``Batch`` event is sent for the first batch of the run, the last of each epoch, and
        otherwise once ``BATCH_EVENT_INTERVAL_S`` has passed since the last one: only then is the
        loss read back from the device (``StepLosses.read``), so the steps in between never wait
        for it."""
        steps = self.cfg.steps_per_epoch
        for batch in range(1, steps + 1):
            if self.stop_event is not None and self.stop_event.is_set():
                self.stopped = True
                return
            if self.cfg.max_seconds and self._elapsed() >= self.cfg.max_seconds:
                self.finish_reason = "time_limit"
                return
            step = (epoch - 1) * steps + batch - 1
            x, y = self.batches.next_batch()
            self._set_learning_rate(step)
            if self.strategy is not None:
                x, y = (distribute(self.strategy, a) for a in (x, y))
            losses.add(train_step_loss(self.model, x, y))
            now = time.monotonic()
            if step == 0 or batch == steps or now - self.last_batch_event >= BATCH_EVENT_INTERVAL_S:
                self.last_batch_event = now
                yield events.Batch(
                    epoch=epoch, batch=batch, steps=steps, loss=losses.read(epoch)[-1],
                    progress=training_progress(self.cfg, (step + 1) / self.total_steps, self._elapsed()),
                    seconds_left=seconds_left(self.cfg, self._elapsed()),
                )
            yield from self._preview(epoch, due=False)

    def _set_learning_rate(self, step: int) -> None:
        self.model.optimizer.learning_rate = learning_rate(
            self.cfg, plateaus=self.plateaus, step_fraction=step / self.total_steps, elapsed_s=self._elapsed())

    def _preview(self, epoch: int, due: bool) -> Iterator[events.Event]:
        """Predict the requested slice at an epoch end (``due``), every ``PREVIEW_INTERVAL_S``, and
        soon after the request moved to another slice. A slice outside the image is skipped."""
        request = self.preview_request() if self.preview_request is not None else None
        if request is None:
            return
        last, at = self.last_preview
        since = time.monotonic() - at
        if not (due or since >= preview.PREVIEW_INTERVAL_S
                or (request != last and since >= preview.FOLLOW_INTERVAL_S)):
            return
        self.last_preview = (request, time.monotonic())
        axis, index = request
        event = preview.make_preview(self.model, self.pairs[0][0], self.norm, self.model_cfg.size_multiple,
                                     axis, index, epoch=epoch)
        if event is not None:
            yield event

    # ---------------------------------------------------------- epoch end

    def _end_epoch(self, epoch: int, losses: StepLosses, epoch_start: float) -> events.Epoch:
        """Validate, record the epoch and track the best; returns its event."""
        epoch_loss = float(np.mean(losses.read(epoch)))
        val_loss = val_dice = val_iou = None
        if self.has_val:
            val_loss, val_dice, val_iou = _validate(self.model, self.loss_fn, self.x_val, self.y_val,
                                                    self.batch_size)
        seconds = time.monotonic() - epoch_start
        for key, value in zip(self.history, (epoch, epoch_loss, val_loss, val_dice, val_iou, seconds)):
            self.history[key].append(value)
        self._track_best(epoch, epoch_loss, val_loss, val_dice, val_iou)
        return events.Epoch(
            epoch=epoch, epochs=self.cfg.epochs, loss=epoch_loss,
            val_loss=val_loss, val_dice=val_dice, val_iou=val_iou, seconds=seconds,
            best_epoch=self.best.epoch,
            learning_rate=fitting.learning_rate_of(self.model),
            data_wait_share=(self.batches.wait_s - self.epoch_wait0) / max(seconds, 1e-9),
            gpu_peak_bytes=hardware.gpu_peak_bytes() if self.device.gpus else None,
        )

    def _track_best(self, epoch, epoch_loss, val_loss, val_dice, val_iou) -> None:
        """Keep an improvement (and checkpoint it when the last write is old), else count a plateau."""
        # Validation loss covers every class; a one-class Dice can reward "all foreground".
        score = (-val_loss,) if self.has_val else (-epoch_loss,)
        if self.best.score is None or score > self.best.score:
            self.best = Best(score=score, epoch=epoch, weights=self.model.get_weights(),
                             val_loss=val_loss, val_dice=val_dice, val_iou=val_iou)
            self.since_best = 0
            if self.saving.checkpoint_due():
                self._write_best()
        else:
            self.since_best += 1
            if self.since_best % self.cfg.lr_patience == 0:
                self.plateaus += 1  # the "plateau" and "auto" schedules read it

    def _cut_short(self) -> str | None:
        """One line when the time cap ended a run whose validation was still improving."""
        epochs = self.history["epoch"]
        if self.finish_reason != "time_limit" or not epochs or self.best.epoch is None:
            return None
        if epochs[-1] - self.best.epoch >= 2:
            return None  # it had levelled off
        return (f"The time limit ended training while validation was still improving (best epoch "
                f"{self.best.epoch} of {epochs[-1]}): a longer time limit (--max-seconds, or the dock's "
                "Time limit) may give a better model.")

    def _should_finish(self) -> bool:
        """True after the time cap, or when early stopping's patience has run out."""
        if self.finish_reason:
            return True
        patience = self.cfg.early_stopping_patience
        if patience and self.since_best >= patience:
            self.finish_reason = "early_stopping"
            return True
        return False

    # ------------------------------------------------------------ objects

    def _tune_objects(self) -> None:
        """Instance models: the object step tuned on the painted ids of the first pair, with the
        best weights, within TUNING_SHARE of the training time; stored in the bundle."""
        if not self.cfg.instances or self.best.weights is None or self.cfg.annotation_mode != "full_slices":
            return
        why = train_objects.why_not_tunable(self.labels_zyx, self.idx)
        if why:
            self.tuning_line = f"Objects not tuned ({why}): prediction uses the fixed defaults."
            return
        val = sorted({self.slices[i][1] for i, _ in self.val_items if self.slices[i][0] == 0})
        with weights_set(self.model, self.best.weights):
            tuning = train_objects.tune_after_training(
                self.model, self.image_zyxc, self.labels_zyx, list(self.idx), val, norm=self.norm,
                size_multiple=self.model_cfg.size_multiple, objects_tile=self.meta.objects_tile,
                budget_s=TUNING_SHARE * self._elapsed())
        self.meta = self.meta.replace(object_tuning=tuning.to_dict())
        self.tuning_line = tuning.line()

    # ------------------------------------------------------------- saving

    def _write_best(self) -> None:
        if self.best.weights is None:
            return  # no epoch finished: an untrained model must never replace a good one
        self.meta = self.meta.replace(history=self.history, validation={
            "best_epoch": self.best.epoch, "best_val_dice": self.best.val_dice,
            "best_val_iou": self.best.val_iou, "best_val_loss": self.best.val_loss,
            "monitor": "val_loss" if self.has_val else "loss",
        })
        with weights_set(self.model, self.best.weights):
            self.saving.write(self.model, self.meta)

    def _result(self) -> events.TrainingResult:
        saved = self.best.weights is not None
        message = nothing_saved_message(self.out_dir, self.saving.overwrite) if not saved else self.saving.note
        return events.TrainingResult(
            model_dir=str(self.saving.folder) if saved else None,
            model_saved=saved, best_epoch=self.best.epoch,
            best_val_dice=self.best.val_dice, best_val_iou=self.best.val_iou,
            best_val_loss=self.best.val_loss, history=self.history,
            seconds=self._elapsed(), message=message or None,
            objects=self.tuning_line, cut_short=self._cut_short(), more_slices=self._more_slices(),
        )

    def _more_slices(self) -> str | None:
        """One line when a single slice of the whole training data is annotated."""
        if len(self.slices) != 1 or self.slices[0][0] != 0:
            return None
        return more_slices_line(self.idx, self.labels_zyx.shape[0])  # the slices found at the start

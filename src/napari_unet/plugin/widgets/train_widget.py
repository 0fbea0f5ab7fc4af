"""The "Train U-Net" dock widget: pick layers and settings, train in the worker, watch it learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Labels
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from napari_unet.core import events
from napari_unet.core.accept import SliceAnnotatedError
from napari_unet.core.bundle import BundleError, check_target, read_bundle_meta
from napari_unet.core.config import ConfigError, ModelConfig, TrainConfig, choices_of, limits
from napari_unet.core.nn.devices import CPU_SIZES
from napari_unet.core.train.loop import check_resume_meta
from napari_unet.core.train.pairs import channels_and_classes, model_config_for, validate_pairs
from napari_unet.plugin.widgets._advanced import Advanced
from napari_unet.plugin.widgets._export import ExportButton
from napari_unet.plugin.widgets._job_dock import JobDock
from napari_unet.plugin.widgets._job_poller import JobPoller
from napari_unet.plugin.widgets._layers import is_preview, layer_array, spatial_shape, unique_path
from napari_unet.plugin.widgets._limits import decimals_to_show, spin_range
from napari_unet.plugin.widgets._loop import (
    FROM_DISK,
    accept_into,
    continue_choices,
    extra_pair_choices,
    is_own_output,
    model_folder,
)
from napari_unet.plugin.widgets._loss_plot import LossPlot
from napari_unet.plugin.widgets._preview import LivePreview
from napari_unet.plugin.widgets._session import TRAINED_MODELS, release_button, use_warm_worker
from napari_unet.runtime import present
from napari_unet.runtime.jobs.train import start_training

DEFAULT_MODELS_DIR = Path.home() / "napari-unet-models"
SECONDS_PER_MINUTE = 60.0


class TrainWidget(JobDock):
    ready_text = "Ready to train."

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._make_data_widgets()
        self._make_training_widgets()
        self._make_run_widgets(napari_viewer)
        # The few choices that matter lead; the rest waits behind one click.
        self.extend([
            self.image, self.labels, self.instances, self.train_button, self.stop_button,
            self.progress_bar, self.time_left, self.status, self.score,
        ])
        self.plot = LossPlot()
        self.native.layout().addWidget(self.plot.canvas)
        self.advanced = Advanced("train", [
            self.mode, self.extra_pairs, self.continue_from, self.continue_file, self.time_limit,
            self.model_dir, self.replace, self.live_preview, self.preview_probability,
            self.prediction, self.replace_annotations, self.accept_button,
            self.export.button, self.n_filters, self.depth, self.epochs, self.steps, self.auto_sizes,
            self.batch_size, self.patch_size, self.precision, self.learning_rate, self.val_fraction,
            self.pretrain_share, self.device, release_button(),
        ])
        self.advanced.add_to(self)
        self.last_model_dir: Path | None = None
        self._start_event: events.Start | None = None  # the running training's, for its device line
        self.preview = LivePreview(napari_viewer, parent=self.native)
        self.worker = use_warm_worker(self.native)
        self._connect()

    def _make_data_widgets(self):
        """What to learn from: the image, its annotations, more pairs, and a model to continue."""
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.labels = ComboBox(label="Annotations", choices=self._labels_choices)
        self.mode = ComboBox(
            label="Annotation mode",
            choices=[("full slices (0 = background)", "full_slices"),
                     ("scribbles (0 = unlabelled, 1 = background)", "scribbles")],
            value=TrainConfig().annotation_mode,
        )
        self.instances = CheckBox(label="Objects have own ids (learn boundaries)", value=False)
        self.extra_pairs = Select(label="Extra image + labels pairs", choices=self._extra_pair_choices,
                                  allow_multiple=True)
        self.continue_from = ComboBox(label="Continue from", choices=continue_choices)
        self.continue_file = FileEdit(label="Model folder to continue", mode="d", value="", visible=False)

    def _make_training_widgets(self):
        """The model's size and the training settings, with the configs' defaults and limits."""
        defaults, model_defaults = TrainConfig(), ModelConfig()
        self.n_filters = SpinBox(label="Base filters", value=model_defaults.n_filters,
                                 **spin_range(ModelConfig, "n_filters"))
        self.depth = SpinBox(label="Depth", value=model_defaults.depth, **spin_range(ModelConfig, "depth"))
        self.epochs = SpinBox(label="Epochs", value=defaults.epochs, **spin_range(TrainConfig, "epochs"))
        self.steps = SpinBox(label="Steps per epoch", value=defaults.steps_per_epoch,
                             **spin_range(TrainConfig, "steps_per_epoch"))
        # Shown in minutes; the config holds seconds.
        no_limit, longest = limits(TrainConfig, "max_seconds")
        self.time_limit = FloatSpinBox(
            label="Time limit (min, 0 = none)", value=defaults.max_seconds / SECONDS_PER_MINUTE,
            min=no_limit / SECONDS_PER_MINUTE, max=longest / SECONDS_PER_MINUTE, step=1.0,
        )
        # Left to "auto" (the configs' None), the worker picks them for the device and the boxes then
        # show its choice; untick to set them.
        self.auto_sizes = CheckBox(label="Batch and patch size: auto (for the device)", value=True)
        self.batch_size = SpinBox(label="Batch size", value=CPU_SIZES[0], enabled=False,
                                  **spin_range(TrainConfig, "batch_size"))
        self.patch_size = SpinBox(label="Patch size", value=CPU_SIZES[1], step=16, enabled=False,
                                  **spin_range(TrainConfig, "patch_size"))
        self.precision = ComboBox(label="Mixed precision", value=defaults.mixed_precision,
                                  choices=choices_of(TrainConfig, "mixed_precision"))
        rates = limits(TrainConfig, "learning_rate")
        self.learning_rate = FloatSpinBox(label="Learning rate", value=defaults.learning_rate, step=1e-4)
        self.learning_rate.native.setDecimals(decimals_to_show(rates[0]))  # first: Qt rounds the range to them
        self.learning_rate.range = rates
        self.val_fraction = FloatSpinBox(label="Validation fraction", value=defaults.val_fraction, step=0.05,
                                         **spin_range(TrainConfig, "val_fraction"))
        self.pretrain_share = FloatSpinBox(label="Pretrain on every slice (share of the time)",
                                           value=defaults.pretrain_share, step=0.05,
                                           **spin_range(TrainConfig, "pretrain_share"))

    def _make_run_widgets(self, napari_viewer):
        """Where the model goes, the buttons, what the run shows, and the correction loop."""
        self.model_dir = FileEdit(label="Save model to", mode="d", value=DEFAULT_MODELS_DIR / "unet")
        self.replace = CheckBox(label="Replace an existing model there", value=False)
        self.live_preview = CheckBox(label="Live preview of the shown slice", value=False)
        self.preview_probability = CheckBox(label="Preview probabilities too", value=False)
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.run_button = self.train_button  # the name JobDock enables and disables
        self.progress_bar = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.status = Label(label="Status", value="")
        self.status.native.setWordWrap(True)  # long lines wrap instead of widening the dock
        self.device = Label(label="Device", value="-")
        self.time_left = Label(label="Time left", value="-")
        self.score = Label(label="Validation", value="-")
        self.export = ExportButton(self)
        self.prediction = ComboBox(label="Prediction", choices=self._prediction_choices)
        self.replace_annotations = CheckBox(label="Accept replaces annotations on the slice", value=False)
        self.accept_button = PushButton(text="Accept slice (copy the prediction into the annotations)")

    def _connect(self):
        self.train_button.changed.connect(self.start_training)
        self.stop_button.changed.connect(self.stop_training)
        self.accept_button.changed.connect(self.accept_slice)
        self.continue_from.changed.connect(self._continue_from_changed)
        self.continue_file.changed.connect(self._continue_from_changed)
        self.auto_sizes.changed.connect(self._auto_sizes_changed)
        for widget in (self.image, self.labels, self.extra_pairs, self.mode, self.instances, self.patch_size,
                       self.auto_sizes):
            widget.changed.connect(self._check_inputs)
        TRAINED_MODELS.changed.connect(self._models_changed)
        # The registry outlives this dock: let go of it when the dock's Qt widget is deleted.
        self.native.destroyed.connect(self._closing)
        self._follow_layers()

    def _auto_sizes_changed(self, auto: bool):
        self.batch_size.enabled = self.patch_size.enabled = not auto

    def _closing(self, *_):
        TRAINED_MODELS.changed.disconnect(self._models_changed)

    # -- inputs ---------------------------------------------------------------------------
    def _labels_choices(self, _widget=None):
        image = self.image.value if hasattr(self, "image") else None
        layers = [layer for layer in self.viewer.layers if isinstance(layer, Labels) and not is_preview(layer)]
        if image is not None:  # only labels that line up with the image
            layers = [layer for layer in layers if spatial_shape(layer) == spatial_shape(image)]
        return [(layer.name, layer) for layer in layers]

    def _extra_pair_choices(self, _widget=None):
        if not hasattr(self, "labels"):
            return []
        return extra_pair_choices(self.viewer, self.image.value, self.labels.value)

    def _prediction_choices(self, _widget=None):
        """The plugin's own Labels outputs that line up with the annotations."""
        labels = self.labels.value if hasattr(self, "labels") else None
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Labels) and is_own_output(layer)
                and (labels is None or spatial_shape(layer) == spatial_shape(labels))]

    def _layers_changed(self, _event=None):
        self.image.reset_choices()
        self.labels.reset_choices()
        self.prediction.reset_choices()
        self._check_inputs(keep_status=True)

    def _check_inputs(self, _value=None, *, keep_status: bool = False) -> str:
        if self.image.value is not None:
            self.labels.reset_choices()  # only labels matching the picked image
            self.extra_pairs.reset_choices()
            self.prediction.reset_choices()
        return super()._check_inputs(keep_status=keep_status)

    def _models_changed(self):
        self.continue_from.reset_choices()

    def resume_path(self) -> Path | None:
        """The model training continues from; None for a new model."""
        return model_folder(self.continue_from.value, self.continue_file.value)

    def _continue_from_changed(self, _value=None):
        """A model to continue sets the annotation kind it learned; its architecture is kept."""
        self.continue_file.visible = self.continue_from.value == FROM_DISK
        path = self.resume_path()
        for widget in (self.n_filters, self.depth):
            widget.enabled = path is None
        try:
            meta = read_bundle_meta(path) if path is not None else None
        except (BundleError, OSError, ValueError):
            meta = None  # _input_problem says why
        if meta is not None:
            self.mode.value = meta.annotation_mode or self.mode.value
            self.instances.value = meta.instances
        self._check_inputs()

    def _input_problem(self) -> str:
        image, labels = self.image.value, self.labels.value
        if image is None:
            return "Pick an Image layer (open one, or File > Open Sample)."
        if labels is None:
            return "Pick a Labels layer of the same shape as the image (Layers > New Labels)."
        for layer in [image] + [extra for extra, _ in self.extra_pairs.value]:
            shape = spatial_shape(layer)
            if not self.auto_sizes.value and min(shape[-2:]) < self.patch_size.value:  # auto: fitted
                return (f"Patch size {self.patch_size.value} is larger than '{layer.name}' "
                        f"({shape[-2]} x {shape[-1]}); lower the patch size.")
        try:
            pairs = self._lazy_pairs()
            validate_pairs(pairs, self.mode.value, instances=self.instances.value, names=self._pair_names())
            self._check_resume(pairs)
        except ValueError as exc:  # BundleError included
            return str(exc)
        return ""

    def _pair_layers(self) -> list:
        """The (image, labels) layers to train on: the picked pair, then the extra pairs."""
        return [(self.image.value, self.labels.value)] + list(self.extra_pairs.value)

    def _lazy_pairs(self) -> list:
        """Their arrays, a lazy image left lazy: the input checks read a sample of it, not the stack."""
        return [(layer_array(image), np.asarray(labels.data)) for image, labels in self._pair_layers()]

    def _pairs(self) -> list:
        """Their arrays in memory, for the worker."""
        return [(np.asarray(image), labels) for image, labels in self._lazy_pairs()]

    def _pair_names(self) -> list:
        return [f"{image.name} + {labels.name}" for image, labels in self._pair_layers()]

    def _check_resume(self, pairs) -> None:
        """The model to continue must know the classes, mode and channels of these labels."""
        path = self.resume_path()
        if path is None:
            if self.continue_from.value == FROM_DISK:
                raise ValueError("Pick the model folder to continue from, or continue from none.")
            return
        mode, instances = self.mode.value, self.instances.value
        in_channels, n_classes = channels_and_classes(pairs, mode, instances=instances)
        check_resume_meta(read_bundle_meta(path), TrainConfig(annotation_mode=mode, instances=instances),
                          n_classes=n_classes, in_channels=in_channels, source=path.name)

    def _configs(self):
        model_cfg = ModelConfig(n_filters=self.n_filters.value, depth=self.depth.value)
        train_cfg = TrainConfig(
            annotation_mode=self.mode.value,
            instances=self.instances.value,
            epochs=self.epochs.value,
            steps_per_epoch=self.steps.value,
            batch_size=None if self.auto_sizes.value else self.batch_size.value,  # None: for the device
            patch_size=None if self.auto_sizes.value else self.patch_size.value,
            mixed_precision=self.precision.value,
            learning_rate=float(self.learning_rate.value),
            val_fraction=float(self.val_fraction.value),
            max_seconds=SECONDS_PER_MINUTE * float(self.time_limit.value),
            pretrain_share=float(self.pretrain_share.value),
        )
        return model_cfg, train_cfg

    def _output_dir(self) -> Path:
        path = Path(self.model_dir.value).expanduser()
        if path.exists() and not self.replace.value:
            new = unique_path(path)
            show_info(f"{path} already holds a model; saving to {new} instead "
                      "(tick 'Replace' to overwrite).")
            path = new
        return path

    # -- running --------------------------------------------------------------------------
    def start_training(self, _value=None):
        problem = self._check_inputs()
        if problem:
            show_warning(problem)
            return
        try:
            model_cfg, train_cfg = self._configs()
        except ConfigError as exc:
            show_error(str(exc))
            return
        out_dir = self._output_dir()
        try:
            check_target(out_dir, overwrite=bool(self.replace.value))
        except (ValueError, FileExistsError) as exc:
            show_error(str(exc))
            return
        try:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            show_error(f"Cannot create {out_dir.parent}: {exc}. Pick another folder.")
            return
        pairs = self._pairs()
        (image, labels), *extra = pairs
        resume = self.resume_path()
        model_cfg = None if resume is not None else model_config_for(  # continuing keeps the architecture
            model_cfg, pairs, train_cfg.annotation_mode, instances=train_cfg.instances)
        job = start_training(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=str(out_dir),
                             resume_from=resume, overwrite=bool(self.replace.value), extra_pairs=extra,
                             worker=self.worker,
                             preview=self.preview.request_for(self.image.value) if self.live_preview.value else None)
        if self.live_preview.value:
            self.preview.start(self.image.value, bool(self.preview_probability.value), job)
        self._trained = (self.image.value, self.labels.value, resume)
        self.plot.clear()
        self.score.value = "-"
        # In percent: the steps or the time cap, whichever ends training first.
        self.progress_bar.max = 100
        self.progress_bar.value = 0
        self.poller = JobPoller(job, self._on_event, self._on_finished).start()
        self.train_button.enabled = False
        self.stop_button.enabled = True
        self.status.value = f"Starting the worker; the model goes to {out_dir}"

    def stop_training(self, _value=None):
        if self.poller is not None and self.poller.active:
            self.poller.stop()
            self.status.value = "Stopping after the current batch; the best model so far is kept."

    def _on_event(self, event: events.Event):
        if isinstance(event, events.Start):
            self._start_event = event
            self.device.value = present.device_line(event)
            if self.auto_sizes.value:  # show what "auto" chose
                self.batch_size.value, self.patch_size.value = event.batch_size, event.patch_size
            self.status.value = present.data_line(event)
        elif isinstance(event, events.Batch):
            done = round(event.progress * self.progress_bar.max)
            self.progress_bar.value = done
            self.time_left.value = present.time_left(event.seconds_left)
            if self._napari_progress is None:  # made here, not in the Train click: it costs ~0.1 s
                self._napari_progress = progress(total=100, desc="Training U-Net")
            self._napari_progress.n = done
            self._napari_progress.set_description(f"Training U-Net: {present.batch_line(event)}")
        elif isinstance(event, events.Epoch):
            self.plot.add_epoch(event)
            if event.gpu_peak_bytes is not None and self._start_event is not None:
                self.device.value = present.device_line(self._start_event, event.gpu_peak_bytes)
            self.status.value = present.epoch_status(event)
        elif isinstance(event, events.Preview):
            self.preview.show(event)
        elif isinstance(event, events.Stage):  # pretraining
            self.status.value = event.message
        elif isinstance(event, events.Warn):
            show_warning(event.message)

    def _on_finished(self, final: events.Final):
        self.preview.stop()
        self._close_progress()
        self.time_left.value = "-"
        self.stop_button.enabled = False
        result = getattr(final, "training", None)
        if result is not None and not result.model_saved:
            self.status.value = result.message  # ended before the first epoch: nothing written
            show_warning(self.status.value)
        elif result is not None:
            self._model_saved(result, finished=isinstance(final, events.Done))
        elif isinstance(final, events.Stopped):
            self.status.value = "Training was ended before a model could be saved."
            show_warning(final.message or self.status.value)
        else:
            self._report_failure(final, "Training")
        self._check_inputs(keep_status=True)

    def _model_saved(self, result: events.TrainingResult, finished: bool):
        self.last_model_dir = Path(result.model_dir)
        resume = self._trained[2]
        TRAINED_MODELS.add(self.last_model_dir, fine_tuned_from=resume)
        self.export.model_ready(self.last_model_dir)
        dice = result.best_val_dice
        self.score.value = "n/a (no validation data)" if dice is None else f"Dice {dice:.3f}"
        verb = "Training finished" if finished else "Training stopped"
        if finished:
            self.progress_bar.value = self.progress_bar.max
        self.status.value = "\n".join(
            [f"{verb}. Model saved to {self.last_model_dir}"] + present.result_notes(result))
        show_info(f"{verb}: model saved to {self.last_model_dir}. It is now offered in 'Segment with U-Net'.")
        if result.message:  # saved, but not where asked (its disk refused it)
            show_warning(result.message)
        for line in (result.cut_short, result.more_slices):
            if line:
                show_info(line)

    # -- correcting -------------------------------------------------------------------------
    def accept_slice(self, _value=None):
        """Copy the prediction of the shown slice into the annotations, to correct it."""
        prediction, annotations = self.prediction.value, self.labels.value
        if annotations is None:
            show_warning("Pick the annotations (a Labels layer) to accept the prediction into.")
            return
        if prediction is None:
            show_warning("No prediction yet: segment this image with 'Segment with U-Net' first; "
                         "Accept copies its result of the shown slice into the annotations.")
            return
        try:
            message = accept_into(self.viewer, prediction, annotations, bool(self.replace_annotations.value))
        except SliceAnnotatedError:
            show_warning("This slice already has annotations; they are kept. Tick 'Accept replaces "
                         "annotations on the slice' to overwrite them, or go to another slice.")
            return
        except ValueError as exc:  # BundleError included
            show_error(str(exc))
            return
        show_info(message)
        self._check_inputs(keep_status=True)

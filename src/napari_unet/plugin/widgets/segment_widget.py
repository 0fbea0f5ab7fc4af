"""The "Segment with U-Net" dock widget: run a model through a volume, watch the labels fill in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning

from napari_unet.core import events
from napari_unet.core.bundle import BundleError, read_bundle_meta
from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.config import ConfigError, ObjectsConfig, PredictConfig
from napari_unet.core.objects import defaults as object_defaults
from napari_unet.plugin.widgets._advanced import Advanced
from napari_unet.plugin.widgets._job_dock import JobDock
from napari_unet.plugin.widgets._job_poller import JobPoller
from napari_unet.plugin.widgets._layers import (
    MODEL_KEY,
    OUTPUT_KIND_KEY,
    OUTPUT_MARKER,
    is_lazy,
    layer_array,
    preload_layer_modules,
    source_file,
    spatial_shape,
)
from napari_unet.plugin.widgets._limits import spin_range
from napari_unet.plugin.widgets._session import TRAINED_MODELS, release_button, use_warm_worker
from napari_unet.runtime import present
from napari_unet.runtime.jobs.predict import start_prediction
from napari_unet.runtime.shm import LazyFile

FROM_DISK = "from disk (below)"
FROM_PACKAGE = "bioimage.io package (.zip, below)"


class SegmentWidget(JobDock):
    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        preload_layer_modules()
        self._spacing = (None, (), None)  # (layer data, shape, estimated slice spacing): see _spacing_of
        defaults = PredictConfig()
        self._make_input_widgets(defaults)
        self._make_object_widgets(defaults)
        self._make_run_widgets(defaults)
        # The few choices that matter lead (the voxel size too: a bare TIFF's is a guess to check);
        # the rest waits behind one click.
        self.extend([
            self.image, self.model, self.model_file, self.summary, self.output, self.voxel_size, self.voxel_note,
            self.run_button, self.cancel_button, self.progress_bar, self.status,
        ])
        self.advanced = Advanced("segment", [
            self.objects, self.seeds, self.seed_distance, self.min_size, self.threshold, self.fill_background,
            self.objects_from, self.axis, self.intensities, self.tile_size, self.tta, self.three_axis,
            self.probabilities, release_button(),
        ])
        self.advanced.add_to(self)
        self.worker = use_warm_worker(self.native)
        self.result_layer = None
        self.prob_layer = None
        self._axis = 0
        self._meta: BundleMeta | None = None
        self._dirty = False
        self._connect()
        self._follow_layers()
        self._offer_objects()

    def _make_input_widgets(self, defaults: PredictConfig):
        self.image = ComboBox(label="Image", choices=self._image_choices)
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_file = FileEdit(label="Model folder", mode="d", value="")
        self.summary = Label(label="Model summary", value="-")
        self.axis = ComboBox(label="Slice axis", choices=[("0 (Z)", 0), ("1 (Y)", 1), ("2 (X)", 2)],
                             value=0)
        self.threshold = FloatSpinBox(label="Threshold", value=defaults.threshold, step=0.05,
                                      **spin_range(PredictConfig, "threshold"))
        self.output = ComboBox(label="Output", choices=[("classes", "labels"), ("objects", "instances")])

    def _make_object_widgets(self, defaults: PredictConfig):
        self.objects = ComboBox(label="Objects", value=defaults.objects, choices=[
            ("auto (3-D unless slices lie far apart)", "auto"), ("3-D: one id through the volume", "3d"),
            ("2-D: per slice", "2d"), ("2-D, linked across slices", "linked")])
        self.fill_background = ComboBox(label="Objects fill the background", value=defaults.fill_background,
                                        choices=[("as in the training objects", "auto"), ("yes", "yes"),
                                                 ("no", "no")])
        self.seeds = ComboBox(label="Seeds", value=defaults.seeds, choices=[
            ("object interiors", "interior"), ("distance maxima", "distance")])
        self.seed_distance = FloatSpinBox(label="Seed distance (px)", value=defaults.seed_distance, step=0.5,
                                          **spin_range(ObjectsConfig, "seed_distance"))
        self.min_size = SpinBox(label="Min object size (voxels)", value=defaults.min_object_size,
                                **spin_range(ObjectsConfig, "min_object_size"))
        # The voxel size 3-D objects will use: the layer's scale, else estimated from the image; editable.
        self.voxel_size = LineEdit(label="Voxel size (z, y, x)", value="")
        self.voxel_note = Label(label="", value="")
        self.objects_from = ComboBox(label="Objects are", value=defaults.objects_from, choices=[
            ("the painted class", "foreground"),
            ("regions it encloses (e.g. cells between membranes)", "background")])

    def _make_run_widgets(self, defaults: PredictConfig):
        self.intensities = ComboBox(label="Intensities", value=defaults.normalize, choices=[
            ("as in the training image (model)", "model"), ("by this volume's own percentiles", "volume")])
        self.three_axis = CheckBox(label="Average XY, XZ and YZ passes (3x slower)", value=False)
        self.tile_size = SpinBox(label="Tile size", value=defaults.tile_size, step=32,
                                 **spin_range(PredictConfig, "tile_size"))
        self.tta = CheckBox(label="Test-time augmentation (8x slower)", value=False)
        self.probabilities = CheckBox(label="Also add probabilities", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="Progress", value=0, min=0, max=1)
        self.status = Label(label="Status", value="")
        for label in (self.summary, self.voxel_note, self.status):
            label.native.setWordWrap(True)  # long lines wrap instead of widening the dock

    def _connect(self):
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        for widget in (self.image, self.model, self.model_file, self.axis):
            widget.changed.connect(self._check_inputs)
        self.model.changed.connect(self._pick_folder_or_package)
        self.model.changed.connect(self._offer_objects)
        self.model_file.changed.connect(self._offer_objects)
        self.output.changed.connect(self._show_object_options)
        self.image.changed.connect(self._show_voxel_size)
        self.objects.changed.connect(self._show_voxel_size)
        TRAINED_MODELS.changed.connect(self._models_changed)
        # The registry outlives this dock: let go of it when the dock's Qt widget is deleted.
        self.native.destroyed.connect(lambda *_: TRAINED_MODELS.changed.disconnect(self._models_changed))

    # -- inputs ---------------------------------------------------------------------------
    def _model_choices(self, _widget=None):
        return TRAINED_MODELS.choices() + [(FROM_DISK, FROM_DISK), (FROM_PACKAGE, FROM_PACKAGE)]

    def _pick_folder_or_package(self, _value=None):
        """The file picker opens folders for a model folder, .zip files for a package."""
        package = self.model.value == FROM_PACKAGE
        self.model_file.mode = "r" if package else "d"
        self.model_file.filter = "bioimage.io package (*.zip)" if package else None
        self.model_file.label = "Package (.zip)" if package else "Model folder"

    def _models_changed(self):
        self.model.reset_choices()
        newest = str(TRAINED_MODELS.paths[0]) if TRAINED_MODELS.paths else None
        if newest in self.model.choices:  # not in a dock whose Qt widget is gone (its choices stay as they were)
            self.model.value = newest
        self._check_inputs()

    def _layers_changed(self, _event=None):
        self.image.reset_choices()
        self._check_inputs(keep_status=True)

    def model_path(self) -> Path | None:
        if self.model.value not in (FROM_DISK, FROM_PACKAGE):
            return Path(self.model.value)
        value = str(self.model_file.value)
        return Path(value) if value not in ("", ".") else None

    def _input_problem(self) -> str:
        self._meta = None
        path = self.model_path()
        if path is None:
            self.summary.value = "-"
            return "Pick a model: train one, or choose a model folder or a bioimage.io package (.zip)."
        try:
            self._meta = read_bundle_meta(path)
        except (BundleError, OSError, ValueError) as exc:
            self.summary.value = "-"
            return str(exc)
        self.summary.value = _summary(self._meta)
        image = self.image.value
        if image is None:
            return "Pick an Image layer to segment."
        channels = image.data.shape[-1] if image.rgb else 1
        expected = self._meta.model_cfg.in_channels
        if channels != expected:
            return (f"The model expects {expected} channel(s) but '{image.name}' has {channels}; "
                    "pick a matching image or model.")
        ndim = len(spatial_shape(image))
        if ndim == 2 and self.axis.value != 0:
            return "A 2-D image has no slice axis to choose; set the axis to 0."
        if ndim > 3:
            return f"'{image.name}' has {ndim} dimensions; only 2-D and 3-D images are supported."
        return ""

    def _offer_objects(self, _value=None):
        """Models trained on object ids segment objects by default, with the object step the model
        tuned on its annotations (the user can change any of it)."""
        if self._meta is not None:
            self.output.value = "instances" if self._meta.instances else "labels"
            tuned, _ = object_defaults.object_fields(self._meta, {})  # said in the model summary
            for name, value in tuned.items():
                getattr(self, "min_size" if name == "min_object_size" else name).value = value
        self._show_object_options()
        self._show_voxel_size()

    def _show_voxel_size(self, _value=None):
        """Fill in the voxel size 3-D objects will use, and say where it comes from."""
        image = self.image.value
        if image is None or len(spatial_shape(image)) != 3:
            self.voxel_size.value, self.voxel_note.value = "", ""
            return
        factor = object_defaults.z_factor(self._meta, self.objects.value)
        size, lines = object_defaults.voxel_size(layer_array(image), None, tuple(image.scale[-3:]), factor=factor,
                                                 how_to_set="the layer's scale, or edit this",
                                                 estimate=lambda volume: self._spacing_of(image, volume))
        self.voxel_size.value = ", ".join(f"{v:.4g}" for v in size)
        self.voxel_note.value = lines[0] if lines else "from the layer's scale"

    def _spacing_of(self, image, volume):
        """The image's estimated slice spacing, once per layer data: it reads slices, and this runs
        on every change of image, model or assembly."""
        data, shape, spacing = self._spacing
        if data is not image.data or shape != tuple(volume.shape):  # `is`: the data is held, so never reused
            spacing = object_defaults.z_spacing_from_image(volume)
            self._spacing = (image.data, tuple(volume.shape), spacing)
        return spacing

    def _binary_model(self) -> bool:
        return self._meta is not None and self._meta.model_cfg.n_classes == 1

    def _show_object_options(self, _value=None):
        objects = self.output.value == "instances"
        for widget in (self.objects, self.seeds, self.seed_distance, self.min_size, self.fill_background,
                       self.voxel_size, self.voxel_note):
            widget.visible = objects
        self.objects_from.visible = objects and self._binary_model()

    # -- running --------------------------------------------------------------------------
    def run(self, _value=None):
        problem = self._check_inputs()
        if problem:
            show_warning(problem)
            return
        try:
            cfg = PredictConfig(
                axis=self.axis.value, threshold=float(self.threshold.value),
                output=self.output.value, tile_size=self.tile_size.value, tta=self.tta.value,
                three_axis=self.three_axis.value, return_probabilities=self.probabilities.value,
                objects=self.objects.value, seeds=self.seeds.value, fill_background=self.fill_background.value,
                seed_distance=float(self.seed_distance.value), min_object_size=self.min_size.value,
                objects_from=self.objects_from.value if self._binary_model() else "foreground",
                voxel_size=self._voxel_size(), normalize=self.intensities.value,
            )
        except ConfigError as exc:
            show_error(str(exc))
            return
        image = self.image.value
        data = layer_array(image)
        path = source_file(image)
        volume = LazyFile(str(path)) if is_lazy(data) and path else np.asarray(data)
        channel_axis = data.ndim - 1 if image.rgb else None
        job = start_prediction(volume, str(self.model_path()), predict_cfg=cfg, channel_axis=channel_axis,
                               worker=self.worker)
        self._prepare_layers(image, cfg)
        self._axis = cfg.axis if len(spatial_shape(image)) == 3 else None
        self.progress_bar.value = 0
        self._dirty = False
        self._slices_done = 0  # counted here: a stop by force has no count of its own
        self.poller = JobPoller(job, self._on_event, self._on_finished,
                                on_tick=self._refresh_if_dirty).start()
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "Starting the worker..."

    def _voxel_size(self) -> tuple:
        """The voxel size shown (and perhaps edited); () for 2-D images or objects per slice."""
        if len(spatial_shape(self.image.value)) != 3 or self.output.value != "instances" or self.objects.value == "2d":
            return ()
        text = self.voxel_size.value.replace(",", " ").split()
        try:
            values = tuple(float(v) for v in text)
        except ValueError:
            values = ()
        if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
            raise ConfigError(f"Voxel size (z, y, x) must be three positive numbers, e.g. 4, 1, 1; "
                              f"got {self.voxel_size.value!r}.")
        return values

    def _prepare_layers(self, image, cfg: PredictConfig):
        """Reuse this widget's own output layer on a rerun; never touch the user's layers."""
        name = f"{image.name} [{self.model_path().name}]"
        shape = spatial_shape(image)
        dtype = np.uint32 if cfg.output == "instances" else np.uint8
        layer = self._own_layer(name, "labels")
        kwargs = dict(scale=image.scale[: len(shape)], translate=image.translate[: len(shape)])
        # What "Accept slice" needs to turn predicted classes into annotation values.
        made_by = {MODEL_KEY: str(self.model_path()), OUTPUT_KIND_KEY: cfg.output}
        if cfg.voxel_size:  # the layer keeps the image's scale, so that the two overlay
            made_by["voxel_size"] = tuple(cfg.voxel_size)
        if layer is not None and layer.data.shape == shape and layer.data.dtype == dtype:
            layer.data[...] = 0
            layer.metadata.update(made_by)
            layer.refresh()
        else:
            layer = self.viewer.add_labels(np.zeros(shape, dtype), name=name,
                                           metadata={OUTPUT_MARKER: True, **made_by}, **kwargs)
        self.result_layer = layer
        self.prob_layer = None
        if cfg.return_probabilities:
            prob_name = f"{name} probability"
            prob = self._own_layer(prob_name, "image")
            if prob is None or prob.data.shape != shape:
                prob = self.viewer.add_image(
                    np.zeros(shape, np.float32), name=prob_name, colormap="magma",
                    contrast_limits=(0, 1), blending="additive", visible=False,
                    metadata={OUTPUT_MARKER: True}, **kwargs,
                )
            self.prob_layer = prob

    def _own_layer(self, name, kind):
        for layer in self.viewer.layers:
            if layer.name == name and layer._type_string == kind and layer.metadata.get(OUTPUT_MARKER):
                return layer
        return None

    def cancel(self, _value=None):
        if self.poller is not None and self.poller.active:
            self.poller.stop()
            self.status.value = "Cancelling after the current batch..."

    def _on_event(self, event: events.Event):
        if isinstance(event, events.Progress):  # three-axis passes, before any slice is written
            self._show_pass(event)
        elif isinstance(event, events.Warn):
            show_warning(event.message)
        elif isinstance(event, events.Slice):
            self._show_slice(event)

    def _show_slice(self, event: events.Slice):
        i, n = event.index, event.n_slices
        index = (slice(None),) * (self._axis or 0) + (i,) if self._axis is not None else ...
        job = self.poller.job
        self.result_layer.data[index] = job.output("labels")[index]
        if self.prob_layer is not None:
            self.prob_layer.data[index] = job.output("probs")[index]
        self.progress_bar.max = n
        self.progress_bar.value = i + 1
        if self._napari_progress is None:  # made here, not in the click: it costs ~0.1 s
            self._napari_progress = progress(total=n, desc="Segmenting")
        if self._napari_progress is not None:
            self._napari_progress.total = n
            self._napari_progress.n = i + 1
            self._napari_progress.refresh()
        self.status.value = f"Slice {i + 1} of {n}"
        self._slices_done += 1
        self._dirty = True

    def _show_pass(self, event: events.Progress):
        i, n = event.index, event.n_slices
        self.progress_bar.max = n
        self.progress_bar.value = i + 1
        self.status.value = present.pass_line(event)

    def _refresh_if_dirty(self):
        # One redraw per timer tick, however many slices arrived: the fill-in stays live and cheap.
        if self._dirty:
            self._dirty = False
            self._refresh_layers()

    def _refresh_layers(self):
        self.result_layer.refresh()
        if self.prob_layer is not None:
            self.prob_layer.refresh()

    def _on_finished(self, final: events.Final):
        self._refresh_layers()
        self._close_progress()
        self.cancel_button.enabled = False
        if isinstance(final, events.Done):
            self.status.value = f"Done: {self.result_layer.name}"
        elif isinstance(final, events.Stopped):
            total = final.n_slices or (self.progress_bar.max if self._slices_done else "?")
            self.status.value = (f"Cancelled after {self._slices_done} of {total} slices: those are kept, "
                                 "the others are empty.")
            show_info(self.status.value)
        else:
            self._report_failure(final, "Segmentation")
        self._check_inputs(keep_status=True)


def _summary(meta: BundleMeta) -> str:
    cfg = meta.model_cfg
    kind = "binary" if cfg.n_classes == 1 else f"{cfg.n_classes} classes"
    if meta.instances:
        kind = "instances (boundaries)"
    dice = meta.validation.best_val_dice if meta.validation else None
    score = f", val Dice {dice:.3f}" if dice is not None else ""
    tuning = object_defaults.model_tuning(meta)
    tuned = f"\n{tuning.line()}" if tuning else ""
    return f"{kind}, {cfg.in_channels} channel(s), depth {cfg.depth}{score}{tuned}"

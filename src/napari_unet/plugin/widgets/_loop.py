"""The Train dock's human-in-the-loop parts: suggested slices, Accept, the models to continue
from and extra image/labels pairs. No maths here: core.uncertainty, core.accept, core.pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import Label, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_info, show_warning

from napari_unet.core import events
from napari_unet.runtime import engine
from napari_unet.core.accept import accept_slice, label_values_of
from napari_unet.core.bundle import read_bundle_meta
from napari_unet.core.uncertainty import candidate_slices
from napari_unet.plugin.widgets._job_poller import JobPoller
from napari_unet.plugin.widgets._layers import (
    MODEL_KEY, OUTPUT_KIND_KEY, OUTPUT_MARKER, is_preview, layer_array, spatial_shape,
)
from napari_unet.plugin.widgets._session import TRAINED_MODELS, WARM_WORKER

NEW_MODEL = "none (a new model)"
FROM_DISK = "from disk (below)"


def continue_choices(_widget=None) -> list:
    """What the Train dock can continue from: the Segment dock's models, or a new model."""
    return [(NEW_MODEL, NEW_MODEL)] + TRAINED_MODELS.choices() + [(FROM_DISK, FROM_DISK)]


def is_own_output(layer) -> bool:
    return bool((layer.metadata or {}).get(OUTPUT_MARKER))


def extra_pair_choices(viewer, main_image, main_labels) -> list:
    """Every other (image, labels) pair of one shape, as ``("img + ann", (image, labels))``."""
    images = [layer for layer in viewer.layers
              if isinstance(layer, Image) and layer is not main_image and not is_preview(layer)]
    labels = [layer for layer in viewer.layers if isinstance(layer, Labels) and layer is not main_labels
              and not is_own_output(layer) and not is_preview(layer)]
    return [(f"{image.name} + {label.name}", (image, label)) for image in images for label in labels
            if spatial_shape(image) == spatial_shape(label)]


def current_slice(viewer, layer) -> int | None:
    """The slice of ``layer`` (axis 0) the viewer shows; None for a 2-D layer."""
    if layer.ndim < 3:
        return None
    return int(round(layer.world_to_data(viewer.dims.point[-layer.ndim:])[0]))


def go_to_slice(viewer, layer, index: int) -> None:
    """Show slice ``index`` (axis 0) of ``layer``, whatever its scale and translation."""
    world = layer.data_to_world([index] + [0] * (layer.ndim - 1))
    viewer.dims.set_point(viewer.dims.ndim - layer.ndim, float(world[0]))


def accept_into(viewer, prediction, annotations, overwrite: bool) -> str:
    """Copy the shown slice of ``prediction`` into ``annotations`` (undoable with Ctrl-Z);
    returns what was done. Raises ``ValueError`` (one line) when it cannot."""
    z = current_slice(viewer, annotations)
    where = Ellipsis if z is None else z
    predicted = np.asarray(prediction.data[where])
    label_values = None
    if (prediction.metadata or {}).get(OUTPUT_KIND_KEY) == "labels":
        label_values = label_values_of(read_bundle_meta(prediction.metadata[MODEL_KEY]))
    target = np.array(annotations.data[where])
    written = accept_slice(predicted, target, overwrite=overwrite, label_values=label_values)
    name = "the image" if z is None else f"slice {z}"
    if not written:
        return f"Nothing to accept on {name}: the prediction there is empty (no object found)."
    changed = np.nonzero(target != np.asarray(annotations.data[where]))
    indices = changed if z is None else (np.full(changed[0].size, z),) + changed
    annotations.data_setitem(indices, target[changed])  # through napari's history: Ctrl-Z undoes it
    return (f"Accepted {name}: {written} pixels of '{annotations.name}' set from '{prediction.name}'. "
            "Correct them, then train again (Ctrl-Z undoes).")


class SuggestedSlices:
    """Ranks the unannotated slices in the worker with a model, then steps the viewer through
    them, most uncertain first, skipping slices annotated since."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.label = Label(label="Next suggested slice", value="-")
        self.button = PushButton(text="Go to the next suggested slice", enabled=False)
        self.button.changed.connect(self.go_to_next)
        self.poller = None
        self.ranking: list = []
        self.layer = None  # the annotations the ranking was made for
        self._cursor = 0

    @property
    def widgets(self) -> list:
        return [self.label, self.button]

    def start(self, model_dir, image_layer, labels_layer) -> None:
        """Rank the slices of ``image_layer`` that ``labels_layer`` leaves unannotated."""
        self.stop()
        self.ranking, self.layer, self._cursor = [], labels_layer, 0
        self.button.enabled = False
        if len(spatial_shape(labels_layer)) != 3:
            self.label.value = "- (a 2-D image is one slice)"
            return
        slices, free = candidate_slices(np.asarray(labels_layer.data))
        if not slices:
            self.label.value = "- (every slice is annotated)"
            return
        data = np.asarray(layer_array(image_layer))
        job = engine.start_ranking(data, str(model_dir), slices, data.ndim - 1 if image_layer.rgb else None,
                                   worker=WARM_WORKER)
        self.poller = JobPoller(job, self._on_event, self._on_finished).start()
        sample = f" (an even sample of {free})" if len(slices) < free else ""
        self.label.value = f"ranking {len(slices)} unannotated slices{sample}..."

    def stop(self) -> None:
        if self.poller is not None and self.poller.active:
            self.poller.stop()

    def close(self) -> None:
        """End a ranking still running: the dock that shows it is being deleted."""
        if self.poller is not None:
            self.poller.close()

    def _on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            self.label.value = f"ranking: slice {event.index + 1} of {event.n_slices}..."

    def _on_finished(self, final: events.Final) -> None:
        if isinstance(final, events.Ranked):
            self.ranking = [int(z) for z, _ in final.ranking]
            self._show_next()
        elif isinstance(final, events.Error):
            self.label.value = "-"
            show_warning(f"The slices could not be ranked: {engine.failure_line(final, 'Ranking')}")
        else:
            self.label.value = "-"

    def _next(self) -> int | None:
        """Position in the ranking of the next slice still unannotated, from the cursor on (wrapping)."""
        n = len(self.ranking)
        for step in range(n):
            k = (self._cursor + step) % n
            if not np.asarray(self.layer.data[self.ranking[k]]).any():
                return k
        return None

    def _show_next(self) -> None:
        k = self._next() if self.ranking and self.layer is not None else None
        self.button.enabled = k is not None
        self.label.value = "- (every suggested slice is annotated)" if k is None else str(self.ranking[k])

    def go_to_next(self, _value=None) -> None:
        k = self._next() if self.ranking and self.layer in self.viewer.layers else None
        if k is None:
            show_info("Every suggested slice is annotated now: train again for new suggestions.")
            self._show_next()
            return
        go_to_slice(self.viewer, self.layer, self.ranking[k])
        self._cursor = k + 1
        self._show_next()


def model_folder(choice, file_value) -> Path | None:
    """The folder a "Continue from" choice names; None for a new model or an empty picker."""
    if choice == NEW_MODEL:
        return None
    if choice != FROM_DISK:
        return Path(choice)
    value = str(file_value)
    return Path(value) if value not in ("", ".") else None

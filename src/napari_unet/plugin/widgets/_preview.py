"""The Train dock's live preview: tell the worker which slice the viewer shows, draw what comes back.

The preview goes into the plugin's own layers, ``<image> [preview]`` (Labels) and optionally
``<image> [preview probability]`` (Image), never into the user's. Each ``events.Preview``
fills one slice in place. A layer the user deleted ends the preview quietly; training goes on.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer

from napari_unet.core import events
from napari_unet.core.train.preview import NO_REQUEST, encode_request
from napari_unet.plugin.widgets._layers import PREVIEW_KEY, spatial_shape

REQUEST = "preview_request"  # the job's live input (see runtime.jobs.train.start_training)


def shown_slice(viewer, layer) -> tuple[int, int] | None:
    """``(axis, index)`` of the slice of ``layer`` the viewer shows, in the layer's data axes;
    ``(0, 0)`` for a 2-D layer, None in a 3-D view."""
    ndim = layer.ndim
    if ndim < 3:
        return (0, 0)
    offset = viewer.dims.ndim - ndim
    sliced = [axis - offset for axis in viewer.dims.not_displayed if axis >= offset]
    if not sliced:
        return None
    axis = sliced[-1]
    return axis, int(round(layer.world_to_data(viewer.dims.point[offset:])[axis]))


LAYER_SPACING_MS = 60  # between adding the two preview layers: napari redraws in between


class LivePreview:
    """One training run's preview: ``request_for`` the job's first request, ``start`` with the job,
    ``show`` each event, ``stop`` at the end."""

    def __init__(self, viewer, parent=None):
        self.viewer = viewer
        self.job = None
        self.image = self.labels_layer = self.prob_layer = None
        # Adds the preview layers after the Train click; dies with ``parent`` (the dock), so it
        # never fires into a closed viewer.
        self._layer_timer = QTimer(parent)
        self._layer_timer.setSingleShot(True)
        self._layer_timer.timeout.connect(self._add_next_layer)
        self._layers_to_add: list = []

    def request_for(self, image) -> int:
        """The request for the slice of ``image`` shown now (``start_training``'s ``preview``)."""
        shown = shown_slice(self.viewer, image) if image in self.viewer.layers else None
        return NO_REQUEST if shown is None else encode_request(*shown)

    def start(self, image, with_probability: bool, job) -> None:
        """Follow the slider for ``job``; the preview layers are made (or reused) just after."""
        self.image, self.job = image, job
        self.labels_layer = self.prob_layer = None
        self.viewer.dims.events.current_step.connect(self._slice_moved)
        # Adding a layer holds the event loop ~0.1 s: one per turn, not in the Train click.
        self._layers_to_add = [self._make_labels_layer] + ([self._make_probability_layer] if with_probability else [])
        self._layer_timer.start(0)

    def _add_next_layer(self) -> None:
        if self.active and self._layers_to_add:
            self._layers_to_add.pop(0)()
            self.viewer.layers.selection.active = self.image  # the user's layer stays the one they paint on
        if self.active and self._layers_to_add:
            self._layer_timer.start(LAYER_SPACING_MS)

    def _make_labels_layer(self) -> None:
        self.labels_layer = self._own_layer(Labels, f"{self.image.name} [preview]", np.uint8, {})

    def _make_probability_layer(self) -> None:
        self.prob_layer = self._own_layer(Image, f"{self.image.name} [preview probability]", np.uint8,
                                          {"colormap": "magma", "contrast_limits": (0, 255), "opacity": 0.5,
                                           "blending": "additive"})

    def stop(self) -> None:
        """Stop following the slider (training ended, or the preview layer is gone)."""
        self._layer_timer.stop()
        self._layers_to_add = []
        if self.image is not None:
            self.viewer.dims.events.current_step.disconnect(self._slice_moved)
            self._send(NO_REQUEST)
        self.image = self.job = None

    @property
    def active(self) -> bool:
        return self.image is not None

    def show(self, event: events.Preview) -> None:
        if not self.active or self.labels_layer is None:
            return  # not following a run, or its layer is still to be made
        if self.labels_layer not in self.viewer.layers or self.image not in self.viewer.layers:
            self.stop()  # deleted by the user: nothing to draw into
            return
        index = (slice(None),) * event.axis + (event.index,)
        for layer, values in ((self.labels_layer, event.labels), (self.prob_layer, event.probability)):
            if layer is None or layer not in self.viewer.layers:
                continue
            if not _fits(layer.data, event.axis, event.index, values.shape):
                continue  # the layer's data was changed meanwhile: this slice no longer fits
            layer.data[index] = values
            layer.refresh()

    # -- internals ----------------------------------------------------------------------------
    def _own_layer(self, kind, name, dtype, options):
        shape = spatial_shape(self.image)
        for layer in self.viewer.layers:
            if isinstance(layer, kind) and layer.metadata.get(PREVIEW_KEY) == self.image.name:
                if layer.data.shape != shape:
                    layer.data = np.zeros(shape, dtype)
                return layer
        metadata = {PREVIEW_KEY: self.image.name}  # not an output: Accept never copies from it
        layer = kind(np.zeros(shape, dtype), name=name, scale=self.image.scale, translate=self.image.translate,
                     metadata=metadata, **options)
        return self.viewer.add_layer(layer)

    def _slice_moved(self, _event=None) -> None:
        self._send(self.request_for(self.image))

    def _send(self, code: int) -> None:
        if self.job is None:
            return  # the first request travels with the job
        try:
            self.job.live_input(REQUEST)[0] = code
        except (KeyError, RuntimeError):
            pass  # not started yet, or already closed: nothing reads it


def _fits(data, axis: int, index: int, slice_shape) -> bool:
    shape = data.shape
    return axis < len(shape) and 0 <= index < shape[axis] and shape[:axis] + shape[axis + 1:] == slice_shape

"""The Train dock's human-in-the-loop parts: Accept, the models to continue from and extra
image/labels pairs. No maths here: core.accept, core.pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels

from napari_unet.core.accept import accept_slice, label_values_of
from napari_unet.core.bundle import read_bundle_meta
from napari_unet.plugin.widgets._layers import (
    MODEL_KEY,
    OUTPUT_KIND_KEY,
    OUTPUT_MARKER,
    is_preview,
    spatial_shape,
)
from napari_unet.plugin.widgets._session import TRAINED_MODELS

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


def model_folder(choice, file_value) -> Path | None:
    """The folder a "Continue from" choice names; None for a new model or an empty picker."""
    if choice == NEW_MODEL:
        return None
    if choice != FROM_DISK:
        return Path(choice)
    value = str(file_value)
    return Path(value) if value not in ("", ".") else None

"""Reading arrays out of napari layers and finding compatible layers (no maths)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

OUTPUT_MARKER = "napari_unet_output"  # metadata key of layers the plugin created
MODEL_KEY = "napari_unet_model"  # ... the model folder that made an output layer
OUTPUT_KIND_KEY = "napari_unet_output_kind"  # ... and what it holds: "labels" (classes) or "instances"
PREVIEW_KEY = "napari_unet_preview"  # metadata of the live preview's layers: the image they preview

# The first Labels layer of a dtype costs napari 0.3-0.8 s once (importing pandas for the
# features table, loading numba's colour-mapping code for that dtype): warmed up off the
# click that adds the first output layer.
OUTPUT_LABEL_DTYPES = (np.uint8, np.uint32)


def is_preview(layer) -> bool:
    """A live preview layer: never offered as training data or as an image to segment."""
    return PREVIEW_KEY in (layer.metadata or {})


def spatial_shape(layer) -> tuple:
    """Shape without the RGB channel axis."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def layer_array(layer):
    """The full-resolution data of a layer, still lazy if the layer is lazy."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_lazy(array) -> bool:
    return not isinstance(array, np.ndarray)


def source_file(layer) -> Path | None:
    """The TIFF a layer was opened from, if napari or our reader recorded it."""
    path = (layer.metadata or {}).get("source_path") or getattr(layer.source, "path", None)
    if path and Path(path).is_file() and str(path).lower().endswith((".tif", ".tiff")):
        return Path(path)
    return None


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``path-2``, ``path-3``, ... so nothing is overwritten unasked."""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def preload_layer_modules() -> None:
    """Warm up, in a background thread, what napari's first Labels layers would load."""

    def load():
        try:
            from napari.layers import Labels

            for dtype in OUTPUT_LABEL_DTYPES:
                Labels(np.zeros((1, 2, 2), dtype))  # never added to a viewer
        except Exception:  # noqa: BLE001  a warm-up only: napari loads it all itself later
            pass

    threading.Thread(target=load, name="napari-unet preload", daemon=True).start()

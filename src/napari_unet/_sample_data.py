"""File > Open Sample: a synthetic cell stack with a few annotated slices."""

from __future__ import annotations

import numpy as np

from .core.synthetic import make_cells_volume

IMAGE_NAME = "synthetic cells"
LABELS_NAME = "synthetic cells annotations"


def make_sample_data() -> list:
    """Image and partial annotation as napari LayerData tuples ``(data, kwargs, type)``."""
    sample = make_cells_volume()
    scale = sample["scale"]
    image = sample["image"]
    # Percentile limits so a few hot pixels do not wash out the display.
    low, high = (float(v) for v in np.percentile(image, (0.5, 99.8)))
    image_kwargs = {"name": IMAGE_NAME, "scale": scale, "colormap": "gray", "contrast_limits": (low, high)}
    labels_kwargs = {"name": LABELS_NAME, "scale": scale, "opacity": 0.5}
    return [
        (image, image_kwargs, "image"),
        (sample["labels"], labels_kwargs, "labels"),
    ]

"""File > Open Sample: synthetic stacks (membrane-stained cells, touching nuclei) with a few
annotated slices."""

from __future__ import annotations

import numpy as np

from napari_unet.samples.synthetic import make_cells_volume, make_nuclei_volume

IMAGE_NAME = "synthetic cells"
LABELS_NAME = "synthetic cells annotations"
NUCLEI_NAME = "synthetic nuclei"


def _layers(sample: dict, name: str, annotations) -> list:
    """Image and annotations as napari LayerData tuples ``(data, kwargs, type)``."""
    scale = sample["scale"]
    image = sample["image"]
    # Percentile limits so a few hot pixels do not wash out the display.
    low, high = (float(v) for v in np.percentile(image, (0.5, 99.8)))
    image_kwargs = {"name": name, "scale": scale, "colormap": "gray", "contrast_limits": (low, high)}
    labels_kwargs = {"name": f"{name} annotations", "scale": scale, "opacity": 0.5}
    return [(image, image_kwargs, "image"), (annotations, labels_kwargs, "labels")]


def make_sample_data() -> list:
    """Membrane-stained cells; cell (1) vs membrane/outside (0) painted on 5 slices."""
    sample = make_cells_volume()
    return _layers(sample, IMAGE_NAME, sample["labels"])


def make_nuclei_sample_data() -> list:
    """Densely packed, touching nuclei; each nucleus has its own id on 5 slices (train with
    'Objects have own ids')."""
    sample = make_nuclei_volume()
    ids = np.where(sample["labels"] != 0, sample["instances"], 0).astype(np.uint32)
    return _layers(sample, NUCLEI_NAME, ids)

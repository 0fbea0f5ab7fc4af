import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_unet.plugin.sample_data import (
    IMAGE_NAME,
    LABELS_NAME,
    NUCLEI_NAME,
    make_nuclei_sample_data,
    make_sample_data,
)
from napari_unet.samples.synthetic import DEFAULT_SCALE, default_annotated_slices


@pytest.fixture(scope="module")
def layers():
    return make_sample_data()


def test_returns_image_then_partial_labels(layers):
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels"]
    (image, image_kwargs, _), (labels, labels_kwargs, _) = layers
    assert image_kwargs["name"] == IMAGE_NAME
    assert labels_kwargs["name"] == LABELS_NAME
    assert image.shape == labels.shape and image.ndim == 3
    assert image.dtype == np.uint16 and labels.dtype == np.uint8
    # Only the default slices carry annotations, as a user would leave them.
    annotated = tuple(np.flatnonzero(labels.any(axis=(1, 2))))
    assert annotated == default_annotated_slices(image.shape[0])
    assert image_kwargs["scale"] == labels_kwargs["scale"] == DEFAULT_SCALE
    low, high = image_kwargs["contrast_limits"]
    assert image.min() <= low < high <= image.max()


def test_layers_are_accepted_by_napari(layers):
    import napari.layers as napari_layers

    for data, kwargs, layer_type in layers:
        layer = napari_layers.Layer.create(data, kwargs, layer_type)
        assert layer.name == kwargs["name"]
        np.testing.assert_allclose(layer.scale, kwargs["scale"])


def test_manifest_points_at_both_samples():
    manifest = yaml.safe_load((Path(__file__).parents[2] / "src/napari_unet/napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    samples = [commands[s["command"]] for s in manifest["contributions"]["sample_data"]]
    assert samples == ["napari_unet.plugin.sample_data:make_sample_data",
                       "napari_unet.plugin.sample_data:make_nuclei_sample_data"]


def test_nuclei_sample_has_object_ids_on_its_annotated_slices():
    (image, image_kwargs, _), (ids, labels_kwargs, kind) = make_nuclei_sample_data()
    assert kind == "labels" and image_kwargs["name"] == NUCLEI_NAME and image.shape == ids.shape
    annotated = tuple(np.flatnonzero(ids.any(axis=(1, 2))))
    assert annotated == default_annotated_slices(image.shape[0])
    assert len(np.unique(ids[list(annotated)])) > 20  # one id per nucleus, not a class mask


def test_import_pulls_in_no_gui_or_deep_learning_library():
    code = (
        "import sys\n"
        "from napari_unet.plugin.sample_data import make_sample_data\n"
        "make_sample_data()\n"
        "heavy = {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'keras', 'tensorflow'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

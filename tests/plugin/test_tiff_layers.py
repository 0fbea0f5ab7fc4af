"""TIFF files as napari layer data (napari_unet.plugin.reader.tiff_layers): which layers, their
names, scale, units and metadata; on small files tifffile writes in tmp_path."""

import numpy as np
import pytest
import tifffile

from napari_unet.plugin import reader


def _rng_stack(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)


def _only_layer(path, **kw):
    layers = reader.tiff_layers(path, **kw)
    assert len(layers) == 1
    return layers[0]


# ------------------------------------------------------------------ formats


def test_plain_multipage_opens_as_zyx_image_with_unit_scale(tmp_path):
    stack = _rng_stack((5, 32, 32))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, metadata=None)  # no shape/axes description at all

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    np.testing.assert_array_equal(data, stack)
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    assert kwargs["axis_labels"] == ("z", "y", "x")
    assert "units" not in kwargs
    assert kwargs["name"] == "stack"
    assert kwargs["metadata"]["axes"] == "ZYX"
    assert kwargs["metadata"]["source_path"] == str(path.resolve())


def test_imagej_spacing_and_resolution_become_scale_and_units(tmp_path):
    stack = _rng_stack((4, 32, 48))
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"})

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    np.testing.assert_array_equal(data, stack)
    assert kwargs["scale"] == (2.0, 0.5, 0.25)
    assert kwargs["units"] == ("micrometer",) * 3
    assert kwargs["metadata"]["voxel_size"] == {"Z": 2.0, "Y": 0.5, "X": 0.25}


def test_imagej_5d_hyperstack_splits_channels_and_keeps_t_unscaled(tmp_path):
    stack = _rng_stack((2, 3, 2, 16, 16))
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um"})

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    np.testing.assert_array_equal(data, stack)
    assert kwargs["channel_axis"] == 2
    assert kwargs["name"] == ["hyper [ch0]", "hyper [ch1]"]
    assert kwargs["scale"] == [(1.0, 1.5, 0.5, 0.5)] * 2
    assert kwargs["axis_labels"] == [("t", "z", "y", "x")] * 2
    assert kwargs["units"] == [("pixel", "micrometer", "micrometer", "micrometer")] * 2
    assert [m["axes"] for m in kwargs["metadata"]] == ["TZYX", "TZYX"]
    assert kwargs["metadata"][1]["file_axes"] == "TZCYX"


def test_ome_physical_sizes_and_channel_names(tmp_path):
    stack = _rng_stack((3, 2, 16, 16))
    path = tmp_path / "sample.ome.tif"
    tifffile.imwrite(path, stack, ome=True, metadata={
        "axes": "ZCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "PhysicalSizeZ": 1.5,
        "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm", "PhysicalSizeZUnit": "nm",
        "Channel": {"Name": ["DAPI", "GFP"]},
    })

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    np.testing.assert_array_equal(data, stack)
    assert kwargs["channel_axis"] == 1
    assert kwargs["name"] == ["sample [DAPI]", "sample [GFP]"]
    assert kwargs["scale"] == [(1.5, 0.4, 0.3)] * 2
    assert kwargs["units"] == [("nanometer",) * 3] * 2


def test_ome_channel_named_label_opens_as_labels_beside_the_image(tmp_path):
    stack = _rng_stack((3, 2, 16, 16))
    path = tmp_path / "sample.ome.tiff"
    tifffile.imwrite(path, stack, ome=True, metadata={
        "axes": "ZCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
        "Channel": {"Name": ["raw", "nuclei labels"]},
    })

    layers = reader.tiff_layers(path)

    assert [t for _, _, t in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[0][0], stack[:, 0])
    np.testing.assert_array_equal(layers[1][0], stack[:, 1])
    assert layers[1][1]["name"] == "sample [nuclei labels]"
    assert layers[1][1]["scale"] == (1.0, 0.3, 0.3)  # no PhysicalSizeZ -> 1
    assert layers[1][1]["units"] == ("pixel", "micrometer", "micrometer")  # OME default unit


@pytest.mark.parametrize("planar", [False, True])
def test_rgb_pages_open_as_rgb_image_with_samples_last(tmp_path, planar):
    rgb = _rng_stack((16, 24, 3), np.uint8)
    path = tmp_path / "photo_mask.tif"  # a labels-like name must not turn RGB into labels
    if planar:
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    else:
        tifffile.imwrite(path, rgb, photometric="rgb")

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(data, rgb)
    assert kwargs["scale"] == (1.0, 1.0)
    assert kwargs["axis_labels"] == ("y", "x")


def test_single_2d_page(tmp_path):
    image = _rng_stack((32, 40)).astype(np.float32)
    path = tmp_path / "plane.tiff"
    tifffile.imwrite(path, image)

    data, kwargs, layer_type = _only_layer(path)

    assert layer_type == "image"
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, image)
    assert kwargs["scale"] == (1.0, 1.0)
    assert kwargs["metadata"]["axes"] == "YX"

# ------------------------------------------------------------- labels rule


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cells_labels.tif", True),
        ("Labels.tif", True),
        ("nucleiMask.tif", True),
        ("seg-01.tiff", True),
        ("Segmentation.ome.tif", True),
        ("my annotations.tif", True),
        ("label.tif", True),
        ("cells.tif", False),
        ("unmasked.tif", False),
        ("raw_data.tif", False),
    ],
)
def test_labels_by_name(name, expected):
    assert reader.labels_by_name(name) is expected


@pytest.mark.parametrize(
    "name, dtype, expected",
    [
        ("nuclei_labels.tif", np.uint16, "labels"),
        ("nuclei_mask.tif", np.int32, "labels"),
        ("nuclei_labels.tif", np.float32, "image"),  # float never opens as labels
        ("nuclei.tif", np.uint16, "image"),
    ],
)
def test_labels_rule_needs_integer_dtype_and_name(tmp_path, name, dtype, expected):
    path = tmp_path / name
    tifffile.imwrite(path, _rng_stack((5, 16, 16)).astype(dtype))
    assert _only_layer(path)[2] == expected


@pytest.mark.parametrize("where", ["Properties", "Info"])
def test_imagej_layer_type_property_marks_labels(tmp_path, where):
    path = tmp_path / "result.tif"
    marker = ({"Properties": {"layer_type": "labels"}} if where == "Properties"
              else {"Info": "source=x\nlayer_type = labels"})
    tifffile.imwrite(path, _rng_stack((3, 16, 16)), imagej=True, metadata={"axes": "ZYX", **marker})
    assert _only_layer(path)[2] == "labels"

    tifffile.imwrite(path, _rng_stack((3, 16, 16)), imagej=True, metadata={"axes": "ZYX", "Info": "just notes"})
    assert _only_layer(path)[2] == "image"


def test_integer_channels_of_a_labels_named_file_open_as_separate_labels(tmp_path):
    stack = _rng_stack((3, 2, 16, 16))
    path = tmp_path / "organelle_masks.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX"})

    layers = reader.tiff_layers(path)

    assert [(k["name"], t) for _, k, t in layers] == [
        ("organelle_masks [ch0]", "labels"), ("organelle_masks [ch1]", "labels")]
    np.testing.assert_array_equal(layers[1][0], stack[:, 1])
    assert layers[1][1]["metadata"]["channel"] == 1


def test_extra_samples_that_are_not_rgb_become_channels(tmp_path):
    pixels = _rng_stack((16, 16, 2))
    path = tmp_path / "two_samples.tif"
    tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")

    data, kwargs, _ = _only_layer(path)

    assert kwargs["channel_axis"] == 2
    assert kwargs["scale"] == [(1.0, 1.0)] * 2
    np.testing.assert_array_equal(data, pixels)

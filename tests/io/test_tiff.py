"""TIFF reading and writing (napari_unet.io.tiff) on small files tifffile writes in tmp_path."""

import os

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_unet.io import tiff


def _rng_stack(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)


def _only_layer(path, **kw):
    layers = tiff.read_tiff(path, **kw)
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

    layers = tiff.read_tiff(path)

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


def test_read_array_and_open_lazy_return_the_whole_series_and_meta(tmp_path):
    stack = _rng_stack((2, 3, 16, 16))
    path = tmp_path / "two_channels.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX", "spacing": 3.0})

    eager, meta = tiff.read_array(path)
    lazy, lazy_meta = tiff.open_lazy(path)

    assert isinstance(eager, np.ndarray) and isinstance(lazy, da.Array)
    np.testing.assert_array_equal(eager, stack)
    np.testing.assert_array_equal(lazy.compute(), stack)
    assert meta["axes"] == lazy_meta["axes"] == "ZCYX"
    assert meta["scale"] == (3.0, 1.0, 1.0, 1.0)
    assert meta["shape"] == stack.shape


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
    assert tiff.labels_by_name(name) is expected


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


# ---------------------------------------------------------------- lazy path


def _write_compressed_stack_with_broken_last_page(path, stack):
    tifffile.imwrite(path, stack, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[len(stack) - 1]
        offset, count = last.dataoffsets[0], last.databytecounts[0]
    with open(path, "r+b") as fh:  # same size, garbage instead of zlib data
        fh.seek(offset)
        fh.write(b"\xff" * count)


def test_lazy_open_reads_no_pixels(tmp_path, monkeypatch):
    """Pixels of the last page are garbage: opening must work, only reading that page fails."""
    stack = _rng_stack((6, 32, 32))
    path = tmp_path / "big.tif"
    _write_compressed_stack_with_broken_last_page(path, stack)
    with pytest.raises(tiff.TiffReadError, match="truncated or corrupt"):
        tiff.read_tiff(path, lazy=False)  # an eager read does touch the broken page

    monkeypatch.setattr(tiff, "LAZY_THRESHOLD_BYTES", stack.nbytes - 1)
    data, kwargs, layer_type = _only_layer(path)  # lazy=None: chosen by size

    assert isinstance(data, da.Array)
    assert data.shape == stack.shape and data.dtype == stack.dtype
    assert data.chunks[0] == (1,) * 6  # one page per chunk: slices load independently
    np.testing.assert_array_equal(data[0].compute(), stack[0])
    with pytest.raises(Exception):  # noqa: B017  (the codec's own error, e.g. imagecodecs.DeflateError, varies by build)
        data[-1].compute()


def test_small_files_open_eagerly_and_lazy_can_be_forced(tmp_path):
    path = tmp_path / "small.tif"
    stack = _rng_stack((3, 16, 16))
    tifffile.imwrite(path, stack, photometric="minisblack")
    assert isinstance(_only_layer(path)[0], np.ndarray)
    forced = _only_layer(path, lazy=True)[0]
    assert isinstance(forced, da.Array)
    np.testing.assert_array_equal(forced.compute(), stack)


# --------------------------------------------------------------- rejections


def test_not_a_tiff_with_tif_name_is_rejected(tmp_path):
    path = tmp_path / "fake.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(tiff.TiffReadError, match=r"fake\.tif is not a TIFF file"):
        tiff.read_tiff(path)


def test_zero_byte_file_is_rejected(tmp_path):
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(tiff.TiffReadError, match=r"empty\.tif is empty"):
        tiff.read_tiff(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(tiff.TiffReadError, match="does not exist"):
        tiff.read_tiff(tmp_path / "nope.tif")


@pytest.mark.parametrize("compression, keep", [(None, 0.5), (None, 0.97), ("zlib", 0.5), ("zlib", 0.9)])
def test_truncated_file_is_rejected_with_its_name(tmp_path, compression, keep):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _rng_stack((6, 32, 32)), compression=compression)
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])

    with pytest.raises(tiff.TiffReadError, match=r"cut\.tif is truncated or corrupt: .*Re-export"):
        tiff.read_tiff(path)
    with pytest.raises(tiff.TiffReadError, match="truncated or corrupt"):
        tiff.open_lazy(path)


def test_truncated_imagej_file_is_rejected(tmp_path):
    path = tmp_path / "cut_ij.tif"
    tifffile.imwrite(path, _rng_stack((6, 32, 32)), imagej=True, metadata={"axes": "ZYX"})
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * 0.97)])
    with pytest.raises(tiff.TiffReadError, match="truncated or corrupt"):
        tiff.read_tiff(path)


# ------------------------------------------------------------------- writer


@pytest.mark.parametrize("dtype, imagej", [
    (np.uint8, True), (np.uint16, True), (np.int32, False), (np.uint32, False), (np.int64, False),
])
def test_write_labels_round_trip(tmp_path, dtype, imagej):
    labels = _rng_stack((3, 24, 32), dtype)
    labels[0, 0, 0] = np.iinfo(dtype).max  # extreme ids survive
    scale = (2.5, 0.123456789, 0.3)

    written = tiff.write_labels_tiff(tmp_path / "result.tif", labels, scale=scale, units=("um",) * 3)

    assert written == str(tmp_path / "result.tif")
    with tifffile.TiffFile(written) as tif:
        assert tif.is_imagej is imagej
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    data, kwargs, layer_type = _only_layer(written)
    assert layer_type == "labels"  # from the marker: the name says nothing
    assert data.dtype == dtype and data.shape == labels.shape
    np.testing.assert_array_equal(data, labels)
    assert kwargs["scale"] == scale
    assert kwargs["units"] == ("micrometer",) * 3
    assert os.listdir(tmp_path) == ["result.tif"]  # no temporary file left behind


def test_imagej_labels_keep_calibration_for_fiji(tmp_path):
    path = tiff.write_labels_tiff(tmp_path / "l.tif", np.ones((2, 8, 8), np.uint16),
                                scale=(4.0, 0.5, 0.5), units=("micrometer",) * 3)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["spacing"] == 4.0
        assert tif.imagej_metadata["unit"] == "micron"
        assert tif.pages[0].get_resolution() == (2.0, 2.0)


def test_write_labels_keeps_singleton_axes_and_2d(tmp_path):
    single = _rng_stack((1, 16, 16), np.uint16)
    data, kwargs, _ = _only_layer(tiff.write_labels_tiff(tmp_path / "a.tif", single, scale=(3, 1, 1)))
    assert data.shape == (1, 16, 16) and kwargs["scale"] == (3.0, 1.0, 1.0)
    plane = _rng_stack((16, 20), np.uint8)
    data, kwargs, layer_type = _only_layer(tiff.write_labels_tiff(tmp_path / "b.tif", plane))
    np.testing.assert_array_equal(data, plane)
    assert layer_type == "labels" and kwargs["scale"] == (1.0, 1.0)


def test_write_labels_bool_becomes_uint8_and_dask_writes_plane_by_plane(tmp_path):
    mask = _rng_stack((3, 16, 16)) > 100
    data, _, _ = _only_layer(tiff.write_labels_tiff(tmp_path / "m.tif", mask))
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, mask)

    labels = _rng_stack((2, 3, 16, 16), np.int32)
    path = tiff.write_labels_tiff(tmp_path / "d.tif", da.from_array(labels, chunks=(1, 1, 16, 16)),
                                scale=(1, 2, 3, 4), axes="TZYX")
    data, kwargs, _ = _only_layer(path)
    np.testing.assert_array_equal(data, labels)
    assert kwargs["scale"] == (1.0, 2.0, 3.0, 4.0)
    assert kwargs["metadata"]["axes"] == "TZYX"


def test_write_labels_adds_tif_suffix_and_overwrites(tmp_path):
    path = tiff.write_labels_tiff(tmp_path / "out", np.zeros((8, 8), np.uint8))
    assert path.endswith("out.tif")
    tiff.write_labels_tiff(path, np.full((8, 8), 7, np.uint8))
    np.testing.assert_array_equal(tiff.read_array(path)[0], 7)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tiff.write_labels_tiff(tmp_path / "keep.tif", np.full((8, 8), 3, np.uint8))

    def broken_imwrite(file, *args, **kwargs):
        with open(file, "wb") as fh:
            fh.write(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tiff.tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        tiff.write_labels_tiff(path, np.zeros((8, 8), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(tiff.read_array(path)[0], 3)
    assert os.listdir(tmp_path) == ["keep.tif"]


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "missing_dir/x.tif"}, "does not exist"),
    ({"data": np.zeros((8, 8), np.float32)}, "integer dtype"),
    ({"data": np.zeros(8, np.uint8)}, "at least 2 dimensions"),
    ({"path": "x.png"}, r"\.tif or \.tiff"),
    ({"scale": (1.0,)}, "scale must be 2 positive numbers"),
    ({"scale": (1.0, 0.0)}, "scale must be 2 positive numbers"),
    ({"axes": "ZYX"}, "axes 'ZYX' do not fit"),
    ({"units": ("um",)}, "units must have one entry per axis"),
])
def test_write_labels_rejects_bad_input(tmp_path, kwargs, message):
    args = {"path": "ok.tif", "data": np.zeros((8, 8), np.uint8), **kwargs}
    with pytest.raises(ValueError, match=message):
        tiff.write_labels_tiff(tmp_path / args.pop("path"), **args)


def test_integer_channels_of_a_labels_named_file_open_as_separate_labels(tmp_path):
    stack = _rng_stack((3, 2, 16, 16))
    path = tmp_path / "organelle_masks.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX"})

    layers = tiff.read_tiff(path)

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

"""npe2 reader/writer adapters, alone and through a napari viewer."""

import numpy as np
import pytest
import tifffile

from napari_unet.io import tiff
from napari_unet.plugin import reader as _reader
from napari_unet.plugin import writer as _writer


@pytest.fixture
def shown_errors(monkeypatch):
    messages = []
    monkeypatch.setattr("napari.utils.notifications.show_error", messages.append)
    return messages


def _zyx_image(path, dtype=np.uint16):
    stack = np.random.default_rng(0).integers(0, 50, (4, 32, 32)).astype(dtype)
    tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 3.0, "unit": "micron"})
    return stack


def _truncated(path):
    _zyx_image(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


# ------------------------------------------------------------------ get_reader


def test_get_reader_accepts_tiffs_and_path_lists(tmp_path):
    path = tmp_path / "a.ome.tiff"
    _zyx_image(path)
    assert _reader.get_reader(str(path)) is _reader.read_tiff_layers
    assert _reader.get_reader([str(path), "other.png"]) is _reader.read_tiff_layers


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    fake = tmp_path / "fake.tif"
    fake.write_text("not an image")
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n")
    assert _reader.get_reader(str(fake)) is None  # TIFF name, other content
    assert _reader.get_reader(str(png)) is None
    assert _reader.get_reader(str(tmp_path / "missing.tif")) is None
    assert _reader.get_reader(str(tmp_path)) is None
    assert _reader.get_reader([]) is None
    assert _reader.get_reader(None) is None


def test_reader_reports_a_corrupt_file_and_returns_no_layers(tmp_path, shown_errors):
    path = tmp_path / "broken.tif"
    _truncated(path)
    reader = _reader.get_reader(str(path))  # the header is fine, so it is accepted
    assert reader is not None

    assert reader(str(path)) == _reader.NO_LAYERS
    assert len(shown_errors) == 1
    assert "broken.tif is truncated or corrupt" in shown_errors[0]


def test_reader_reports_unexpected_failures_too(tmp_path, shown_errors, monkeypatch):
    path = tmp_path / "a.tif"
    _zyx_image(path)
    monkeypatch.setattr(_reader, "tiff_layers", lambda p: 1 / 0)
    assert _reader.read_tiff_layers([str(path)]) == _reader.NO_LAYERS
    assert "Could not read" in shown_errors[0] and "a.tif" in shown_errors[0]


def test_writer_uses_layer_scale_units_and_axes(tmp_path):
    labels = np.arange(2 * 3 * 8 * 8, dtype=np.int32).reshape(2, 3, 8, 8)
    meta = {"scale": [1.0, 2.0, 0.5, 0.5], "units": ["pixel", "micrometer", "micrometer", "micrometer"],
            "metadata": {"axes": "TZYX"}, "name": "x"}

    written = _writer.write_labels(str(tmp_path / "out.tif"), labels, meta)

    data, read_meta = tiff.read_array(written[0])
    np.testing.assert_array_equal(data, labels)
    assert read_meta.axes == "TZYX"
    assert read_meta.scale == (1.0, 2.0, 0.5, 0.5)
    assert read_meta.units == (None, "micrometer", "micrometer", "micrometer")


def test_writer_keeps_the_voxel_size_objects_were_found_with_on_a_bare_layer(tmp_path):
    labels = np.ones((3, 8, 8), np.uint16)
    bare = {"scale": [1.0, 1.0, 1.0], "metadata": {"voxel_size": (12.5, 1.0, 1.0)}}
    assert tiff.read_array(_writer.write_labels(str(tmp_path / "a.tif"), labels, bare)[0])[1].scale == (12.5, 1, 1)
    scaled = {"scale": [2.0, 0.5, 0.5], "metadata": {"voxel_size": (12.5, 1.0, 1.0)}}  # the layer's own scale wins
    written = _writer.write_labels(str(tmp_path / "b.tif"), labels, scaled)[0]
    assert tiff.read_array(written)[1].scale == (2, 0.5, 0.5)


def test_writer_ignores_axes_that_no_longer_fit(tmp_path):
    written = _writer.write_labels(str(tmp_path / "o.tif"), np.ones((8, 8), np.uint8),
                                   {"scale": [1, 1], "metadata": {"axes": "ZYX"}})
    assert tiff.read_array(written[0])[1].axes == "YX"


# ----------------------------------------------------------------- via napari


def test_viewer_opens_image_and_labels_with_scale(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image_path, labels_path = tmp_path / "cells.tif", tmp_path / "cells_labels.tif"
    stack = _zyx_image(image_path)
    _zyx_image(labels_path, np.uint8)

    image = viewer.open(str(image_path), plugin="napari-slice-unet")
    labels = viewer.open(str(labels_path), plugin="napari-slice-unet")

    assert [type(layer).__name__ for layer in image + labels] == ["Image", "Labels"]
    for layer in image + labels:
        np.testing.assert_allclose(layer.scale, (3.0, 0.5, 0.5))
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
        assert tuple(layer.axis_labels) == ("z", "y", "x")
    np.testing.assert_array_equal(image[0].data, stack)
    assert image[0].name == "cells"
    assert labels[0].metadata["axes"] == "ZYX"


def test_viewer_splits_channels_and_opens_rgb(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 2, 16, 16), np.uint16), ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeZ": 2.0, "Channel": {"Name": ["a", "b"]}})
    rgb_path = tmp_path / "photo.tif"
    tifffile.imwrite(rgb_path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")

    layers = viewer.open(str(path), plugin="napari-slice-unet")
    rgb = viewer.open(str(rgb_path), plugin="napari-slice-unet")

    assert [layer.name for layer in layers] == ["two [a]", "two [b]"]
    assert all(layer.data.shape == (3, 16, 16) for layer in layers)
    np.testing.assert_allclose(layers[1].scale, (2.0, 1.0, 1.0))
    assert rgb[0].rgb and rgb[0].ndim == 2


def test_viewer_survives_a_corrupt_file(make_napari_viewer, tmp_path, shown_errors):
    viewer = make_napari_viewer()
    path = tmp_path / "broken.tif"
    _truncated(path)

    assert viewer.open(str(path), plugin="napari-slice-unet") == []
    assert len(viewer.layers) == 0
    assert "broken.tif" in shown_errors[0]


def _save_and_reopen(viewer, out, dtype):
    """A Labels layer with a scale saved through the plugin to ``out`` and opened again:
    (labels, layer, paths written, reopened layer)."""
    labels = np.random.default_rng(1).integers(0, 5, (3, 16, 16)).astype(dtype)
    layer = viewer.add_labels(labels, scale=(2.0, 0.25, 0.25), units="um")
    written = layer.save(str(out), plugin="napari-slice-unet")
    return labels, layer, written, viewer.open(str(out), plugin="napari-slice-unet")[0]


def test_viewer_saves_labels_that_reopen_identically(make_napari_viewer, tmp_path):
    out = tmp_path / "saved.tif"
    labels, layer, written, reopened = _save_and_reopen(make_napari_viewer(), out, np.uint16)

    assert written == [str(out)]
    assert type(reopened).__name__ == "Labels"
    np.testing.assert_array_equal(reopened.data, labels)
    assert reopened.data.dtype == labels.dtype
    np.testing.assert_allclose(reopened.scale, layer.scale)
    assert reopened.units == layer.units


# ------------------------------------------------------------------ OME-Zarr


def test_zarr_reader_accepts_zarr_folders_only(tmp_path):
    from napari_unet.io import omezarr

    path = omezarr.write_ome_zarr(tmp_path / "a.ome.zarr", np.zeros((2, 8, 8), np.uint8), axes="ZYX")
    assert _reader.get_zarr_reader(path) is _reader.read_zarr_layers
    assert _reader.get_zarr_reader([path]) is _reader.read_zarr_layers
    assert _reader.get_zarr_reader(str(tmp_path / "missing.zarr")) is None
    assert _reader.get_zarr_reader(str(tmp_path)) is None


def test_zarr_reader_reports_a_folder_without_an_image(tmp_path, shown_errors):
    import zarr

    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    assert _reader.read_zarr_layers(str(tmp_path / "bare.zarr")) == _reader.NO_LAYERS
    assert "multiscales" in shown_errors[0]


def test_viewer_saves_labels_to_ome_zarr_that_reopen_lazily_with_their_scale(make_napari_viewer, tmp_path):
    out = tmp_path / "saved.ome.zarr"
    viewer = make_napari_viewer()
    labels, layer, written, reopened = _save_and_reopen(viewer, out, np.uint32)

    assert written == [str(out)]
    assert type(reopened).__name__ == "Labels" and hasattr(reopened.data, "dask")
    np.testing.assert_array_equal(np.asarray(reopened.data), labels)
    np.testing.assert_allclose(reopened.scale, layer.scale)
    assert reopened.units == layer.units and reopened.name == "saved"
    with pytest.raises(FileExistsError):  # never replaced
        _writer.write_labels_ome_zarr(str(out), labels[:1], {"scale": (1, 1, 1)})
    np.testing.assert_array_equal(np.asarray(viewer.open(str(out), plugin="napari-slice-unet")[0].data), labels)

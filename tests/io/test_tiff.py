"""TIFF reading and writing (napari_unet.io.tiff) on small files tifffile writes in tmp_path; the
napari layers made of what it reads are tested in tests/plugin/test_tiff_layers.py."""

import os

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_unet.io import tiff


def _rng_stack(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 200, shape).astype(dtype)


# ------------------------------------------------------------------ metadata


def test_read_array_and_open_lazy_return_the_whole_series_and_meta(tmp_path):
    stack = _rng_stack((2, 3, 16, 16))
    path = tmp_path / "two_channels.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZCYX", "spacing": 3.0})

    eager, meta = tiff.read_array(path)
    lazy, lazy_meta = tiff.open_lazy(path)

    assert isinstance(eager, np.ndarray) and isinstance(lazy, da.Array)
    np.testing.assert_array_equal(eager, stack)
    np.testing.assert_array_equal(lazy.compute(), stack)
    assert meta.axes == lazy_meta.axes == "ZCYX"
    assert meta.scale == (3.0, 1.0, 1.0, 1.0)
    assert meta.shape == stack.shape
    assert meta.channel_axis == 1 and not meta.labels_marked


@pytest.mark.parametrize("where", ["Properties", "Info"])
def test_imagej_layer_type_property_marks_labels(tmp_path, where):
    path = tmp_path / "result.tif"
    marker = ({"Properties": {"layer_type": "labels"}} if where == "Properties"
              else {"Info": "source=x\nlayer_type = labels"})
    tifffile.imwrite(path, _rng_stack((3, 16, 16)), imagej=True, metadata={"axes": "ZYX", **marker})
    assert tiff.read_array(path)[1].labels_marked

    tifffile.imwrite(path, _rng_stack((3, 16, 16)), imagej=True, metadata={"axes": "ZYX", "Info": "just notes"})
    assert not tiff.read_array(path)[1].labels_marked


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
        tiff.read_image(path, lazy=False)  # an eager read does touch the broken page

    monkeypatch.setattr(tiff, "LAZY_THRESHOLD_BYTES", stack.nbytes - 1)
    data, _ = tiff.read_image(path)  # lazy=None: chosen by size

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
    assert isinstance(tiff.read_image(path)[0], np.ndarray)
    forced = tiff.read_image(path, lazy=True)[0]
    assert isinstance(forced, da.Array)
    np.testing.assert_array_equal(forced.compute(), stack)


# --------------------------------------------------------------- rejections


def test_not_a_tiff_with_tif_name_is_rejected(tmp_path):
    path = tmp_path / "fake.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(tiff.TiffReadError, match=r"fake\.tif is not a TIFF file"):
        tiff.read_image(path)


def test_zero_byte_file_is_rejected(tmp_path):
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(tiff.TiffReadError, match=r"empty\.tif is empty"):
        tiff.read_image(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(tiff.TiffReadError, match="does not exist"):
        tiff.read_image(tmp_path / "nope.tif")


@pytest.mark.parametrize("compression, keep", [(None, 0.5), (None, 0.97), ("zlib", 0.5), ("zlib", 0.9)])
def test_truncated_file_is_rejected_with_its_name(tmp_path, compression, keep):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _rng_stack((6, 32, 32)), compression=compression)
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])

    with pytest.raises(tiff.TiffReadError, match=r"cut\.tif is truncated or corrupt: .*Re-export"):
        tiff.read_image(path)
    with pytest.raises(tiff.TiffReadError, match="truncated or corrupt"):
        tiff.open_lazy(path)


def test_truncated_imagej_file_is_rejected(tmp_path):
    path = tmp_path / "cut_ij.tif"
    tifffile.imwrite(path, _rng_stack((6, 32, 32)), imagej=True, metadata={"axes": "ZYX"})
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * 0.97)])
    with pytest.raises(tiff.TiffReadError, match="truncated or corrupt"):
        tiff.read_image(path)


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
    data, meta = tiff.read_array(written)
    assert meta.labels_marked  # the marker: the name says nothing
    assert data.dtype == dtype and data.shape == labels.shape
    np.testing.assert_array_equal(data, labels)
    assert meta.scale == scale
    assert meta.units == ("micrometer",) * 3
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
    data, meta = tiff.read_array(tiff.write_labels_tiff(tmp_path / "a.tif", single, scale=(3, 1, 1)))
    assert data.shape == (1, 16, 16) and meta.scale == (3.0, 1.0, 1.0)
    plane = _rng_stack((16, 20), np.uint8)
    data, meta = tiff.read_array(tiff.write_labels_tiff(tmp_path / "b.tif", plane))
    np.testing.assert_array_equal(data, plane)
    assert meta.labels_marked and meta.scale == (1.0, 1.0)


def test_write_labels_bool_becomes_uint8_and_dask_writes_plane_by_plane(tmp_path):
    mask = _rng_stack((3, 16, 16)) > 100
    data, _ = tiff.read_array(tiff.write_labels_tiff(tmp_path / "m.tif", mask))
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, mask)

    labels = _rng_stack((2, 3, 16, 16), np.int32)
    path = tiff.write_labels_tiff(tmp_path / "d.tif", da.from_array(labels, chunks=(1, 1, 16, 16)),
                                scale=(1, 2, 3, 4), axes="TZYX")
    data, meta = tiff.read_array(path)
    np.testing.assert_array_equal(data, labels)
    assert meta.scale == (1.0, 2.0, 3.0, 4.0)
    assert meta.axes == "TZYX"


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

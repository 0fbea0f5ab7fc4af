"""zarr and OME-Zarr reading and writing (io.omezarr): axes, scale and labels survive."""

import json

import numpy as np
import pytest
import zarr

from napari_unet.io import images, omezarr


def test_ome_zarr_round_trip_keeps_axes_scale_units_and_labels(tmp_path):
    labels = np.random.default_rng(0).integers(0, 5, (3, 20, 24)).astype(np.uint32)
    path = omezarr.write_ome_zarr(tmp_path / "cells.ome.zarr", labels, axes="ZYX", scale=(3.0, 0.5, 0.25),
                                  units=("micrometer",) * 3)
    data, meta = images.open_lazy(path)
    assert type(data).__name__ == "Array" and hasattr(data, "dask")  # lazy
    np.testing.assert_array_equal(np.asarray(data), labels)
    assert meta.axes == "ZYX" and meta.scale == (3.0, 0.5, 0.25) and meta.labels_marked
    assert meta.units == ("micrometer",) * 3
    attrs = json.loads((tmp_path / "cells.ome.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    assert attrs["version"] == "0.5" and attrs["multiscales"][0]["axes"][0] == {
        "name": "z", "type": "space", "unit": "micrometer"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_an_existing_path_is_never_replaced(tmp_path):
    (tmp_path / "taken.ome.zarr").mkdir()
    (tmp_path / "taken.ome.zarr" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="exists"):
        omezarr.write_ome_zarr(tmp_path / "taken.ome.zarr", np.zeros((4, 4), np.uint8), axes="YX")
    assert [p.name for p in (tmp_path / "taken.ome.zarr").iterdir()] == ["mine.txt"]


def test_an_ome_zarr_0_4_image_with_a_labels_group(tmp_path):
    """The zarr format 2 layout of OME-Zarr 0.4: multiscales at the top, labels in labels/<name>."""
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    multiscales = [{"version": "0.4", "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                                               {"name": "x", "type": "space"}],
                    "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                              "scale": [1, 0.2, 0.3]}]}]}]
    root.attrs["multiscales"] = multiscales
    root.create_array("0", shape=(2, 8, 8), dtype=np.uint16)[:] = 7
    data, meta = omezarr.open_lazy(tmp_path / "img.zarr")
    assert meta.axes == "CYX" and meta.scale == (1.0, 0.2, 0.3) and not meta.labels_marked
    assert np.asarray(data).max() == 7

    only_labels = zarr.open_group(str(tmp_path / "lab.zarr"), mode="w", zarr_format=2)
    only_labels.create_group("labels").attrs["labels"] = ["nuclei"]
    nuclei = only_labels["labels"].create_group("nuclei")
    nuclei.attrs["multiscales"] = [dict(multiscales[0], axes=multiscales[0]["axes"][1:], datasets=[
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.2, 0.3]}]}])]
    nuclei.create_array("0", shape=(8, 8), dtype=np.uint8)[:] = 1
    data, meta = omezarr.open_lazy(tmp_path / "lab.zarr")
    assert meta.labels_marked and meta.scale == (0.2, 0.3) and data.shape == (8, 8)


def test_ome_zarr_0_3_axes_given_as_plain_names(tmp_path):
    """OME-Zarr 0.3 lists axes as names ("z", "y", "x"), not as dicts: read, not a TypeError."""
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=2)
    root.attrs["multiscales"] = [{"version": "0.3", "axes": ["z", "y", "x"], "datasets": [{"path": "0"}]}]
    root.create_array("0", shape=(2, 8, 8), dtype=np.uint16)[:] = 5
    data, meta = omezarr.open_lazy(tmp_path / "old.zarr")
    assert meta.axes == "ZYX" and meta.units is None and np.asarray(data).max() == 5


def test_a_plain_zarr_array_and_unreadable_folders(tmp_path):
    array = omezarr.create_array(tmp_path / "plain.zarr", (2, 6, 6), np.uint8, (1, 6, 6), axes="ZYX",
                                 scale=(2.0, 1.0, 1.0))
    array[:] = 3
    data, meta = omezarr.open_lazy(tmp_path / "plain.zarr")
    assert meta.scale == (2.0, 1.0, 1.0) and np.asarray(data).sum() == 3 * 72
    with pytest.raises(omezarr.ZarrReadError, match="no such folder"):
        omezarr.open_lazy(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    with pytest.raises(omezarr.ZarrReadError, match="without OME-Zarr multiscales"):
        omezarr.open_lazy(tmp_path / "bare.zarr")

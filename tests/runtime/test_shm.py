"""The arrays' wire form between the parent and its worker (``runtime.shm``), in one process."""

import numpy as np
import pytest

from napari_unet.runtime.shm import (
    LazyFile,
    SharedArray,
    ZarrOutput,
    close_segment,
    new_segment,
    open_input,
    open_output,
    segment_view,
)


def test_a_shared_array_opens_as_views_of_the_same_memory():
    shm = new_segment(8 * 4)
    segments = []
    try:
        parent = segment_view(shm, (4, 2), np.int32)
        parent[:] = np.arange(8).reshape(4, 2)
        spec = SharedArray(shm.name, (4, 2), np.dtype(np.int32).str)
        written, read = open_output(spec, segments), open_input(spec, segments)
        written[0, 0] = 42
        assert parent[0, 0] == read[0, 0] == 42 and read[3, 1] == 7
        assert written.flags.writeable and not read.flags.writeable  # an input is never written
        del parent, written, read
    finally:
        for segment in segments + [shm]:
            close_segment(segment)
        shm.unlink()


def test_a_zarr_output_opens_for_writing(tmp_path):
    import zarr

    path = str(tmp_path / "out.zarr")
    zarr.open_array(path, mode="w-", shape=(2, 3), dtype="u1", fill_value=0)
    open_output(ZarrOutput(path, (2, 3), "|u1"), [])[1] = 5
    assert zarr.open_array(path, mode="r")[1].tolist() == [5, 5, 5]


def test_an_input_cannot_be_a_zarr_output_nor_an_output_a_file():
    with pytest.raises(ValueError, match="Unknown input"):
        open_input(ZarrOutput("x.zarr", (1,), "|u1"), [])
    with pytest.raises(ValueError, match="Unknown output"):
        open_output(LazyFile("x.tif"), [])

import numpy as np
import pytest

from napari_unet.core.predict.tiling import pad_for_tiles, stitch, tile_shape, tile_slices

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize(
    "shape, tile, overlap, multiple",
    [((50, 20), 32, 8, 8), ((37, 101), 48, 10, 16), ((5, 3), 64, 8, 16), ((200, 64), 64, 0, 16), ((33, 33), 32, 12, 4)],
)
def test_tiles_partition_the_slice_and_keep_away_from_inner_edges(shape, tile, overlap, multiple):
    tiles = tile_slices(shape, tile, overlap, multiple)
    th, tw = tile_shape(tiles)
    assert th % multiple == 0 and tw % multiple == 0
    assert th <= max(tile, multiple) + multiple and tw <= max(tile, multiple) + multiple
    covered = np.zeros(shape, int)
    padded = pad_for_tiles(np.zeros(shape), tiles).shape
    for t in tiles:
        assert (t.source[0].stop - t.source[0].start, t.source[1].stop - t.source[1].start) == (th, tw)
        # Starts on the model grid; everything inside the padded slice.
        assert t.source[0].start % multiple == 0 and t.source[1].start % multiple == 0
        assert t.source[0].stop <= padded[0] and t.source[1].stop <= padded[1]
        covered[t.target] += 1
        for ax in (0, 1):
            src, crop, tgt = t.source[ax], t.crop[ax], t.target[ax]
            assert tgt.start - src.start == crop.start and tgt.stop - tgt.start == crop.stop - crop.start
            # Kept pixels are >= overlap from every edge that is not an image edge.
            if tgt.start > 0:
                assert crop.start >= overlap
            if tgt.stop < shape[ax]:
                assert (src.stop - src.start) - crop.stop >= overlap
    assert (covered == 1).all()


def test_padded_slice_is_the_slice_padded_to_the_multiple():
    tiles = tile_slices((50, 20), 32, 8, 16)
    image = np.arange(50 * 20, dtype=float).reshape(50, 20)
    padded = pad_for_tiles(image, tiles)
    assert padded.shape == (64, 32)
    np.testing.assert_array_equal(padded, np.pad(image, ((0, 14), (0, 12)), mode="reflect"))


def test_small_slice_is_one_tile_of_the_slice_rounded_up():
    tiles = tile_slices((5, 19), 64, 8, 16)
    assert len(tiles) == 1 and tile_shape(tiles) == (16, 32)
    assert tiles[0].target == (slice(0, 5), slice(0, 19))


def test_stitching_identity_rebuilds_the_image():
    image = np.random.default_rng(0).random((45, 70, 2))
    tiles = tile_slices(image.shape[:2], 32, 6, 8)
    assert len(tiles) > 4
    padded = pad_for_tiles(image, tiles)
    out = np.full(image.shape, np.nan)
    for t in tiles:
        stitch(out, t, padded[t.source])
    np.testing.assert_array_equal(out, image)


def test_too_much_overlap_says_what_to_set():
    with pytest.raises(ValueError, match=r"tile_overlap 30 leaves no room.*at most 24.*at least 76"):
        tile_slices((100, 100), 64, 30, 16)


@pytest.mark.parametrize("shape", [(0, 5), (5,), (3, 4, 5)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match="non-empty 2-D shape"):
        tile_slices(shape, 32, 4, 8)

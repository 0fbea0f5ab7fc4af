import os
import socket
from functools import partial

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core.config import ObjectsConfig, limits
from napari_unet.core.objects import slabs, streaming, watershed
from napari_unet.core.objects.checks import SEED_MODES
from napari_unet.core.objects.maps import MODEL_KINDS, object_maps
from napari_unet.core.objects.streaming import OBJECT_MODES

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent

# Most tests here are about the watershed and the stitching, with exact interior maps:
# they use interior seeds unless a test asks for distance seeds.
seeded_watershed = partial(watershed.seeded_watershed, seeds="interior")
label_volume = partial(streaming.label_volume, seeds="interior")
StreamingObjects = partial(streaming.StreamingObjects, seeds="interior")

# ------------------------------------------------------------------ helpers


def ball(shape, centre, radius, spacing=None):
    """Boolean ball of ``radius`` (physical units) around ``centre`` (voxels)."""
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    grids = np.indices(shape, dtype=float)
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    return squared <= radius**2


def maps_from_labels(truth):
    """Perfect (foreground, interior) maps: interior drops pixels next to another object in the same plane."""
    truth = np.asarray(truth)
    footprint = np.ones((1,) * (truth.ndim - 2) + (3, 3), bool)
    foreground = truth > 0
    no_background = np.where(foreground, truth, truth.max() + 1)
    higher = ndi.maximum_filter(truth, footprint=footprint) > truth
    lower = ndi.minimum_filter(no_background, footprint=footprint) < truth
    between = foreground & (higher | lower)
    return np.stack([foreground, foreground & ~between], axis=-1).astype(np.float32)


def same_partition(a, b):
    """True if two labellings have the same background and a one-to-one contingency."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def n_objects(labels):
    return len(np.unique(labels[labels > 0]))


def stream(maps, **kwargs):
    """All (index, labels) StreamingObjects returns, pushes then flush."""
    objects = StreamingObjects(len(maps), maps.shape[1:3], **kwargs)
    returned = []
    for index in range(len(maps)):
        returned += objects.push(index, maps[index])
    return returned + objects.flush()


def tube(n_slices=10, size=32, radius=6):
    truth = np.zeros((n_slices, size, size), np.uint32)
    truth[:, ball((size, size), (size // 2, size // 2), radius)] = 1
    return truth


def blobs_volume():
    """(40, 48, 48): balls and tubes of several lengths, some touching side by side, many crossing z = 8k."""
    truth = np.zeros((40, 48, 48), np.uint32)
    plane = (48, 48)
    truth[0:40][:, ball(plane, (10, 10), 5)] = 1  # whole volume
    truth[3:30][:, ball(plane, (10, 21), 5)] = 2  # touches 1 side by side
    truth[14:19][:, ball(plane, (36, 36), 4)] = 3  # short, crosses z = 16
    truth[20:38][:, ball(plane, (36, 12), 4)] = 4
    truth[ball(truth.shape, (8, 30, 30), 6)] = 5  # centred on a slab border
    truth[ball(truth.shape, (27, 24, 30), 5)] = 6
    truth[ball(truth.shape, (36, 40, 24), 3)] = 7  # reaches the last slice
    return truth


# ------------------------------------------------------------------ object_maps


def test_object_maps_boundary_model():
    probs = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], np.float32)
    maps = object_maps(probs, "boundary")
    np.testing.assert_allclose(maps, [[0.8, 0.5], [0.1, 0.05]], atol=1e-6)
    assert maps.dtype == np.float32


def test_object_maps_binary_model():
    probs = np.array([[[0.7], [0.1]]], np.float32)
    maps = object_maps(probs, "binary")
    assert maps.shape == (1, 2, 2)
    np.testing.assert_allclose(maps[..., 0], [[0.7, 0.1]])
    np.testing.assert_allclose(maps[..., 1], [[0.7, 0.1]])


def test_object_maps_classes_model():
    probs = np.array([[0.25, 0.5, 0.25], [0.75, 0.2, 0.05]], np.float32)
    maps = object_maps(probs[np.newaxis, np.newaxis], "classes")  # any leading shape
    assert maps.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(maps[0, 0], [[0.75, 0.75], [0.25, 0.25]], atol=1e-6)


@pytest.mark.parametrize("kind, n_channels", [("boundary", 2), ("boundary", 4), ("binary", 2), ("classes", 1)])
def test_object_maps_rejects_wrong_channel_count(kind, n_channels):
    with pytest.raises(ValueError, match=kind):
        object_maps(np.zeros((4, 4, n_channels)), kind)


def test_object_maps_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        object_maps(np.zeros((4, 4, 3)), "instances")


# ------------------------------------------------------------ seeded_watershed


def two_touching_disks():
    centres = [(16, 10), (16, 23)]
    truth = np.zeros((32, 34), np.uint32)
    for i, centre in enumerate(centres, start=1):
        truth[ball(truth.shape, centre, 8) & (truth == 0)] = i
    return truth, centres


def test_boundary_ridge_separates_touching_disks():
    truth, centres = two_touching_disks()
    maps = maps_from_labels(truth)
    assert maps[..., 1].sum() < maps[..., 0].sum()  # there is a ridge
    labels = seeded_watershed(maps)
    assert labels.dtype == np.uint32
    assert n_objects(labels) == 2
    assert labels[centres[0]] != labels[centres[1]]
    # Without the ridge the disks are one blob: the ridge is what separates them.
    assert n_objects(seeded_watershed(np.stack([truth > 0] * 2, axis=-1).astype(np.float32))) == 1


def test_distance_seeds_split_overlapping_disks():
    blob = ball((32, 40), (16, 13), 9) | ball((32, 40), (16, 27), 9)
    maps = np.stack([blob, blob], axis=-1).astype(np.float32)
    assert n_objects(seeded_watershed(maps, seeds="interior")) == 1
    labels = seeded_watershed(maps, seeds="distance")
    assert n_objects(labels) == 2
    assert labels[16, 8] != labels[16, 32]
    assert np.array_equal(labels > 0, blob)


def test_distance_seeds_one_per_plateau_and_close_maxima_merge():
    rectangle = np.zeros((20, 60), bool)
    rectangle[5:15, 5:55] = True  # its distance transform has a long flat ridge
    maps = np.stack([rectangle, rectangle], axis=-1).astype(np.float32)
    assert n_objects(seeded_watershed(maps, seeds="distance")) == 1
    blob = ball((32, 40), (16, 13), 9) | ball((32, 40), (16, 27), 9)
    maps = np.stack([blob, blob], axis=-1).astype(np.float32)
    assert n_objects(seeded_watershed(maps, seeds="distance", seed_distance=20)) == 1


def test_min_size_drops_small_objects_and_renumbers():
    truth = np.zeros((30, 30), np.uint32)
    truth[ball(truth.shape, (8, 8), 5)] = 1
    truth[ball(truth.shape, (22, 22), 2)] = 2  # 13 pixels
    labels = seeded_watershed(maps_from_labels(truth), min_size=20)
    assert sorted(np.unique(labels)) == [0, 1]
    assert labels[22, 22] == 0


def test_seeded_watershed_in_3d():
    truth = blobs_volume()
    labels = seeded_watershed(maps_from_labels(truth))
    assert same_partition(labels, truth)


def test_threshold_sets_the_foreground():
    maps = np.zeros((10, 10, 2), np.float32)
    maps[2:8, 2:8] = 0.6
    assert n_objects(seeded_watershed(maps, threshold=0.5)) == 1
    assert n_objects(seeded_watershed(maps, threshold=0.7)) == 0


def two_cells_wide_pixels():
    """Two overlapping round cells side by side along x, imaged with pixels 3x wider than tall."""
    spacing = (1.0, 3.0)
    blob = ball((40, 40), (20, 17), 10, spacing) | ball((40, 40), (20, 22), 9, spacing)
    return np.stack([blob, blob], axis=-1).astype(np.float32), spacing


def test_distance_seeds_respect_anisotropic_sampling():
    maps, spacing = two_cells_wide_pixels()
    labels = seeded_watershed(maps, seeds="distance", sampling=spacing)
    assert n_objects(labels) == 2
    # Taken as isotropic, the two cells look like one squat blob.
    assert n_objects(seeded_watershed(maps, seeds="distance")) == 1


def test_streaming_distance_seeds_respect_anisotropic_sampling():
    maps, (y_spacing, x_spacing) = two_cells_wide_pixels()
    volume = np.stack([maps] * 30)  # the cells extruded through 30 slices
    sampling = (1.0, y_spacing, x_spacing)
    for mode in OBJECT_MODES:
        assert n_objects(label_volume(volume, mode=mode, seeds="distance", sampling=sampling)) == (
            60 if mode == "2d" else 2
        )
    blocks = label_volume(volume, seeds="distance", sampling=sampling, block_slices=8, halo=3)
    assert same_partition(blocks, seeded_watershed(volume, seeds="distance", sampling=sampling))
    assert n_objects(label_volume(volume, seeds="distance")) == 1


# ------------------------------------------------------------ modes


@pytest.mark.parametrize("mode, expected", [("3d", 1), ("linked", 1), ("2d", 10)])
def test_tube_ids_per_mode(mode, expected):
    labels = label_volume(maps_from_labels(tube()), mode=mode, block_slices=3, halo=1)
    assert n_objects(labels) == expected
    assert np.array_equal(labels > 0, tube() > 0)
    assert all(n_objects(plane) == 1 for plane in labels)


def test_linked_needs_enough_overlap():
    truth = tube()
    truth[5:] = np.roll(truth[5:], 8, axis=2)  # the disk jumps sideways: IoU < 0.5
    labels = label_volume(maps_from_labels(truth), mode="linked")
    assert n_objects(labels[:5]) == n_objects(labels[5:]) == 1
    assert labels[4].max() != labels[5].max()


def test_linked_gives_a_previous_id_once():
    truth = np.zeros((2, 20, 20), np.uint32)
    truth[:, 5:15, 5:13] = 1
    truth[1, 5:15, 9:13] = 2  # the cell divides in two equal halves, IoU 0.5 each
    labels = label_volume(maps_from_labels(truth), mode="linked")
    assert n_objects(labels[1]) == 2
    assert n_objects(labels) == 2  # one half keeps the id, the other gets a new one
    assert labels[0].max() in labels[1]


def test_linked_larger_daughter_keeps_the_id():
    truth = np.zeros((2, 20, 20), np.uint32)
    truth[:, 5:15, 5:13] = 1
    truth[1, 5:15, 11:13] = 2
    labels = label_volume(maps_from_labels(truth), mode="linked")
    assert labels[1, 10, 6] == labels[0, 10, 6]
    assert labels[1, 10, 12] not in labels[0]


def test_2d_mode_uses_the_in_plane_sampling():
    blob = ball((32, 40), (16, 13), 9) | ball((32, 40), (16, 27), 9)
    maps = np.stack([np.stack([blob, blob], axis=-1)] * 3).astype(np.float32)
    labels = label_volume(maps, mode="2d", seeds="distance", sampling=(10.0, 1.0, 1.0))
    assert [n_objects(plane) for plane in labels] == [2, 2, 2]
    assert n_objects(labels) == 6


# ------------------------------------------------------------ blockwise 3-D


def test_blockwise_equals_in_memory():
    truth = blobs_volume()
    maps = maps_from_labels(truth)
    whole = label_volume(maps, block_slices=40, halo=3)
    blocks = label_volume(maps, block_slices=8, halo=3)
    assert n_objects(whole) == n_objects(truth)
    assert same_partition(blocks, whole)
    assert same_partition(whole, truth)


def test_one_slab_equals_seeded_watershed():
    maps = maps_from_labels(blobs_volume())
    for seeds in SEED_MODES:
        whole = label_volume(maps, block_slices=50, seeds=seeds, min_size=100)
        assert np.array_equal(whole, seeded_watershed(maps, seeds=seeds, min_size=100))


@pytest.mark.parametrize("block_slices, halo", [(1, 1), (3, 5), (7, 0), (8, 3), (13, 2)])
def test_blockwise_keeps_objects_whole(block_slices, halo):
    truth = blobs_volume()
    labels = label_volume(maps_from_labels(truth), block_slices=block_slices, halo=halo)
    if halo:
        assert same_partition(labels, truth)
    else:  # no overlap to stitch on: objects are cut at slab borders, never merged
        pairs = np.unique(np.stack([labels.ravel(), truth.ravel()]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]
        assert n_objects(labels) > n_objects(truth)


def test_ids_of_separate_slabs_never_collide():
    truth = np.zeros((24, 32, 32), np.uint32)
    for z in range(1, 24, 5):  # balls on slices z-1..z+2, a gap between them
        truth[ball(truth.shape, (z + 0.5, 10 + z % 3, 16), 1.5)] = z
        truth[ball(truth.shape, (z + 0.5, 24, 16), 1.5)] = z + 100
    labels = label_volume(maps_from_labels(truth), block_slices=4, halo=2)
    assert n_objects(labels) == n_objects(truth) == 10
    assert same_partition(labels, truth)


def test_min_size_spares_big_objects_cut_by_slabs():
    truth = np.zeros((40, 32, 32), np.uint32)
    truth[:, ball((32, 32), (8, 8), 2)] = 1  # 13 px x 40 slices = 520 voxels, < 200 per slab
    truth[ball(truth.shape, (20, 24, 24), 2)] = 2  # 33 voxels, isolated
    truth[ball(truth.shape, (0, 24, 8), 2)] = 3  # small, cut by the volume's first slice
    truth[ball(truth.shape, (39, 24, 8), 2)] = 4  # small, cut by the volume's last slice
    maps = maps_from_labels(truth)
    labels = label_volume(maps, block_slices=8, halo=3, min_size=200)
    assert np.array_equal(labels > 0, truth == 1)
    assert n_objects(labels) == 1
    assert np.array_equal(labels, seeded_watershed(maps, min_size=200))


def test_min_size_never_cuts_an_object_already_returned():
    truth = np.zeros((20, 16, 16), np.uint32)
    truth[6:11][:, ball((16, 16), (8, 8), 1)] = 1  # 25 voxels across the border at z = 8
    for block_slices, halo in [(8, 1), (8, 2), (4, 1), (3, 3)]:
        labels = label_volume(maps_from_labels(truth), block_slices=block_slices, halo=halo, min_size=30)
        kept = labels[truth == 1]
        assert np.all(kept == 0) or (np.all(kept > 0) and n_objects(labels) == 1), (block_slices, halo)


# ------------------------------------------------------------ streaming contract


@pytest.mark.parametrize("mode", OBJECT_MODES)
@pytest.mark.parametrize("n_slices, block_slices, halo", [(1, 4, 2), (10, 3, 1), (10, 4, 6), (10, 32, 4), (9, 3, 0)])
def test_every_slice_returned_once_in_order(mode, n_slices, block_slices, halo):
    maps = maps_from_labels(tube(n_slices))
    returned = stream(maps, mode=mode, block_slices=block_slices, halo=halo)
    assert [index for index, _ in returned] == list(range(n_slices))
    for _, plane in returned:
        assert plane.dtype == np.uint32 and plane.shape == (32, 32)


def test_3d_returns_a_slab_once_its_halo_has_arrived():
    maps = maps_from_labels(tube(20))
    objects = StreamingObjects(20, (32, 32), block_slices=8, halo=3)
    ready = {i: [index for index, _ in objects.push(i, maps[i])] for i in range(20)}
    assert ready[10] == list(range(8)) and ready[18] == list(range(8, 16))
    assert ready[19] == list(range(16, 20))
    assert sum(len(v) for v in ready.values()) == 20 and objects.flush() == []


def test_2d_modes_return_each_slice_at_once():
    maps = maps_from_labels(tube(4))
    for mode in ("2d", "linked"):
        objects = StreamingObjects(4, (32, 32), mode=mode)
        assert [[index for index, _ in objects.push(i, maps[i])] for i in range(4)] == [[0], [1], [2], [3]]


def test_returned_ids_do_not_change_later():
    maps = maps_from_labels(blobs_volume())
    objects = StreamingObjects(40, (48, 48), block_slices=8, halo=3)
    copies, returned = {}, {}
    for i in range(40):
        for index, plane in objects.push(i, maps[i]):
            copies[index], returned[index] = plane.copy(), plane
    assert all(np.array_equal(copies[i], returned[i]) for i in range(40))


def test_caller_may_reuse_its_slice_buffer():
    maps = maps_from_labels(blobs_volume())
    objects = StreamingObjects(40, (48, 48), block_slices=8, halo=3)
    buffer, labels = np.empty((48, 48, 2), np.float32), np.zeros((40, 48, 48), np.uint32)
    for i in range(40):
        buffer[...] = maps[i]
        for index, plane in objects.push(i, buffer):
            labels[index] = plane
    assert same_partition(labels, blobs_volume())


def test_flush_before_the_end_labels_the_pushed_slices():
    maps = maps_from_labels(tube(20))
    objects = StreamingObjects(20, (32, 32), block_slices=8, halo=3)
    returned = [index for i in range(12) for index, _ in objects.push(i, maps[i])]
    returned += [index for index, _ in objects.flush()]
    assert returned == list(range(12))
    with pytest.raises(ValueError, match="closed"):
        objects.push(12, maps[12])


@pytest.mark.parametrize("mode", OBJECT_MODES)
def test_push_out_of_order_raises(mode):
    maps = maps_from_labels(tube(5))
    objects = StreamingObjects(5, (32, 32), mode=mode)
    with pytest.raises(ValueError, match="expected index 0"):
        objects.push(1, maps[1])
    objects.push(0, maps[0])
    with pytest.raises(ValueError, match="expected index 1"):
        objects.push(0, maps[0])
    with pytest.raises(ValueError, match="expected index 1"):
        objects.push(2, maps[2])


def test_push_past_the_end_or_wrong_shape_raises():
    maps = maps_from_labels(tube(2))
    objects = StreamingObjects(2, (32, 32))
    with pytest.raises(ValueError, match="maps_slice"):
        objects.push(0, maps[0, ..., :1])
    objects.push(0, maps[0])
    objects.push(1, maps[1])
    with pytest.raises(ValueError, match="already pushed"):
        objects.push(2, maps[1])


# ------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"mode": "3D"}, "mode"),
        ({"seeds": "peaks"}, "seeds"),
        ({"block_slices": 0}, "block_slices"),
        ({"halo": -1}, "halo"),
        ({"seed_distance": 0}, "seed_distance"),
        ({"min_size": -5}, "min_size"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"sampling": (1.0, 1.0)}, "sampling"),
        ({"sampling": (1.0, 0.0, 1.0)}, "sampling"),
        ({"n_slices": 0}, "n_slices"),
        ({"slice_shape": (32,)}, "slice_shape"),
    ],
)
def test_streaming_objects_checks_arguments(kwargs, name):
    args = {"n_slices": 4, "slice_shape": (32, 32), **kwargs}
    with pytest.raises(ValueError, match=name):
        StreamingObjects(**args)


def test_the_object_finder_refuses_what_the_objects_config_refuses():
    """Its bounds are ObjectsConfig's: what the CLI, the dock and the worker accept, it accepts."""
    (lo, hi), (_, most) = limits(ObjectsConfig, "seed_distance"), limits(ObjectsConfig, "min_object_size")
    StreamingObjects(4, (8, 8), seed_distance=lo, min_size=most)
    StreamingObjects(4, (8, 8), seed_distance=hi, threshold=0.01)
    for kwargs in ({"seed_distance": lo / 2}, {"seed_distance": hi * 2}, {"min_size": most + 1},
                   {"threshold": ObjectsConfig.THRESHOLD_BETWEEN[1]}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            StreamingObjects(4, (8, 8), **kwargs)


def test_error_messages_list_allowed_values():
    with pytest.raises(ValueError, match="'3d', '2d', 'linked'"):
        StreamingObjects(4, (8, 8), mode="volume")
    with pytest.raises(ValueError, match="'interior', 'distance'"):
        seeded_watershed(np.zeros((8, 8, 2)), seeds="maxima")
    with pytest.raises(ValueError, match="'boundary', 'binary', 'classes'"):
        object_maps(np.zeros((8, 8, 3)), "multiclass")
    assert MODEL_KINDS == ("boundary", "binary", "classes")


@pytest.mark.parametrize(
    "maps, kwargs, name",
    [
        (np.zeros((8, 8, 3)), {}, "maps"),
        (np.zeros((8,) * 4 + (2,)), {}, "maps"),
        (np.zeros((8, 8, 2)), {"sampling": (1.0, 1.0, 1.0)}, "sampling"),
        (np.zeros((8, 8, 2)), {"seed_distance": -1.0}, "seed_distance"),
        (np.zeros((8, 8, 2)), {"threshold": 2}, "threshold"),
    ],
)
def test_seeded_watershed_checks_arguments(maps, kwargs, name):
    with pytest.raises(ValueError, match=name):
        seeded_watershed(maps, **kwargs)


def test_distance_seeds_cut_at_the_neck():
    big, small = ball((40, 48), (20, 16), 11), ball((40, 48), (20, 32), 7)
    blob = big | small
    labels = seeded_watershed(np.stack([blob, blob], axis=-1).astype(np.float32), seeds="distance")
    assert n_objects(labels) == 2
    big_id, small_id = labels[20, 16], labels[20, 32]
    assert np.mean(labels[big & ~small] == big_id) > 0.99
    assert np.mean(labels[small & ~big] == small_id) > 0.99


def test_merging_branches_without_a_majority_get_a_new_id():
    truth = np.zeros((20, 24, 40), np.uint32)
    for i, x in enumerate((8, 20, 32), start=1):
        truth[:12, 6:18, x - 5 : x + 6] = i  # three touching tubes, cut apart by boundaries
    truth[12:, 6:18, 3:37] = 4  # that merge into one
    labels = label_volume(maps_from_labels(truth), block_slices=8, halo=3)
    branch_ids = {labels[4, 12, x] for x in (8, 20, 32)}
    assert len(branch_ids) == 3
    # Slab [8, 16) sees one object, a third in each branch: it takes none of their ids.
    assert labels[10, 12, 20] not in branch_ids
    assert n_objects(labels[8:]) == 1
    assert n_objects(seeded_watershed(maps_from_labels(truth))) == 1


def test_distance_seeds_keep_objects_thinner_than_the_peak_height():
    inside = np.zeros((16, 64), np.float32)
    inside[::2, ::2] = 1  # 256 one-pixel objects: no distance maximum is 2 px deep
    labels = watershed.seeded_watershed(np.stack([inside, inside], axis=-1), seeds="distance")
    assert n_objects(labels) == 256


def test_pieces_cut_through_predicted_interior_are_joined():
    objects_ = np.zeros((10, 20), np.int32)
    objects_[:, :10], objects_[:, 10:] = 1, 2  # one cut down the middle
    interior = np.ones((10, 20), np.float32)  # ... through what the model calls interior
    assert n_objects(watershed.merge_across_interior(objects_, interior)) == 1
    interior[:, 9:11] = 0.1  # a predicted boundary there: two objects
    assert n_objects(watershed.merge_across_interior(objects_, interior)) == 2


def test_a_long_object_with_two_distance_maxima_is_one_object():
    inside = np.zeros((20, 60), np.float32)
    inside[5:15, 2:25] = inside[5:15, 35:58] = 1
    inside[8:12, 25:35] = 1  # a neck: two distance maxima, but all of it interior
    maps = np.stack([inside, inside], axis=-1)
    assert n_objects(watershed.seeded_watershed(maps, seeds="distance")) == 2  # shape alone: two
    assert n_objects(watershed.seeded_watershed(maps, seeds="distance", join_pieces=True)) == 1
    inside[8:12, 29:31] = 0.2  # the model sees a boundary across the neck
    maps = np.stack([np.maximum(inside, 0.6), inside], axis=-1)
    assert n_objects(watershed.seeded_watershed(maps, seeds="distance", join_pieces=True)) == 2


# ------------------------------------------------------------ memory budget and Y/X tiles


def tiled_plan(budget, tile_halo=3, slice_shape=(48, 48)):
    plan = slabs.slab_plan(slice_shape, 8, 3, tile_halo=tile_halo, budget=budget)
    assert plan.tile[0] < slice_shape[0] and plan.tile[1] < slice_shape[1]  # the budget forces tiles
    return plan


@pytest.mark.parametrize("seeds", SEED_MODES)
@pytest.mark.parametrize("budget, tile_halo", [(60_000, 2), (60_000, 4), (400_000, 3)])
def test_tiled_slabs_equal_in_memory(seeds, budget, tile_halo):
    # 16 x 16 tiles: objects of blobs_volume cross tile faces and slab faces.
    maps = maps_from_labels(blobs_volume())
    tiled_plan(budget, tile_halo)
    tiled = label_volume(maps, seeds=seeds, block_slices=8, halo=3, tile_halo=tile_halo, memory_budget=budget)
    whole = label_volume(maps, seeds=seeds, block_slices=8, halo=3)
    assert same_partition(tiled, whole)
    assert n_objects(tiled) == n_objects(blobs_volume())


def test_tube_crossing_a_tile_face_and_slab_faces_gets_one_id():
    truth = np.zeros((30, 48, 48), np.uint32)
    for z in range(30):  # an oblique tube: its axis goes from x = 8 to x = 40, across tile faces
        truth[z][ball((48, 48), (16, 8 + z * 32 / 29), 4)] = 1
    truth[:, ball((48, 48), (32, 32), 5)] = 2  # a straight tube on the corner of four tiles
    plan = tiled_plan(60_000)
    labels = label_volume(maps_from_labels(truth), block_slices=8, halo=3, tile_halo=3, memory_budget=60_000)
    assert plan.core_slices < 30
    assert n_objects(labels) == 2
    assert same_partition(labels, truth)


def test_tiles_spare_big_objects_from_min_size():
    truth = np.zeros((12, 48, 48), np.uint32)
    truth[:, 20:28, 2:46] = 1  # 8 x 44 x 12 voxels, cut by the tile faces into pieces of < 800
    truth[6, 38:42, 6:10] = 2  # small, inside one tile and one slab core
    tiled_plan(60_000)
    labels = label_volume(maps_from_labels(truth), block_slices=8, halo=3, tile_halo=3, min_size=800,
                          memory_budget=60_000)
    assert np.array_equal(labels > 0, truth == 1)
    assert n_objects(labels) == 1


def test_small_slices_keep_whole_slabs_and_large_ones_fit_the_budget():
    small = slabs.slab_plan((256, 128), 32, 4)
    assert small.core_slices == 32 and small.tile == (256, 128)
    for size in (512, 1024, 2048):
        plan = slabs.slab_plan((size, size), 32, 4)
        assert plan.nbytes <= slabs.MEMORY_BUDGET, size
        assert plan.core_slices >= 1 and plan.tile[0] >= 16


def random_cells(shape, seed=0):
    """Maps of smooth random blobs, ~10 px across, with interior shrunk from foreground."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random(shape, np.float32), (1, 3, 3))
    field = (field - field.mean()) / field.std()
    foreground = np.clip(0.5 + field, 0, 1)
    return np.stack([foreground, np.clip(foreground - 0.15, 0, 1)], axis=-1).astype(np.float32)


def peak_bytes_of_labelling(maps, **kwargs):
    import tracemalloc

    objects_ = StreamingObjects(len(maps), maps.shape[1:3], seeds="distance", **kwargs)
    tracemalloc.start()
    try:
        for index in range(len(maps)):
            objects_.push(index, maps[index])  # labels dropped at once, as a writer does
        objects_.flush()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_3d_objects_stays_within_the_budget():
    maps = random_cells((12, 192, 192))
    budget = 3_000_000
    plan = slabs.slab_plan((192, 192), 8, 3, tile_halo=8, budget=budget)
    assert plan.tile < (192, 192) and plan.nbytes <= budget
    tiled = peak_bytes_of_labelling(maps, block_slices=8, halo=3, tile_halo=8, memory_budget=budget)
    whole = peak_bytes_of_labelling(maps, block_slices=8, halo=3)
    # The budget rests on measured bytes per voxel: allow the estimate a small error.
    assert tiled <= 1.1 * budget
    assert whole > 5 * budget


# ------------------------------------------------------------ slab planes on disk

DISK_BUDGET = 2_000_000  # 48 x 48 slices: whole slices do not fit, deep tiled slabs on disk do


def test_large_slices_put_deep_slabs_on_disk_when_there_is_room():
    on_disk = slabs.slab_plan((2048, 2048), 32, 4, disk_room=10 * 2**30)
    in_memory = slabs.slab_plan((2048, 2048), 32, 4, disk_room=0)
    assert on_disk.store == "disk" and in_memory.store == "memory"
    assert on_disk.nbytes <= slabs.MEMORY_BUDGET and in_memory.nbytes <= slabs.MEMORY_BUDGET
    assert on_disk.core_slices > in_memory.core_slices
    # Each voxel is labelled fewer times (slab halos and tile halos count again).
    shape = (2048, 2048)
    assert on_disk.relabelling(shape) < in_memory.relabelling(shape) / 2


@pytest.mark.parametrize("seeds", SEED_MODES)
def test_slabs_on_disk_equal_in_memory(seeds, tmp_path):
    maps = maps_from_labels(blobs_volume())
    plan = slabs.slab_plan((48, 48), 8, 3, tile_halo=4, budget=DISK_BUDGET, disk_room=2**30)
    assert plan.store == "disk" and plan.tile < (48, 48) and plan.core_slices > 1
    on_disk = label_volume(maps, seeds=seeds, block_slices=8, halo=3, tile_halo=4, memory_budget=DISK_BUDGET,
                           scratch=tmp_path)
    whole = label_volume(maps, seeds=seeds, block_slices=8, halo=3)
    assert same_partition(on_disk, whole)
    assert list(tmp_path.iterdir()) == []  # the planes' folder is gone once the volume is done


def test_a_stopped_volume_on_disk_returns_every_pushed_slice_and_tidies(tmp_path):
    maps = maps_from_labels(blobs_volume())
    objects_ = StreamingObjects(len(maps), maps.shape[1:3], block_slices=8, halo=3, tile_halo=4,
                                memory_budget=DISK_BUDGET, scratch=tmp_path)
    returned = [index for i in range(10) for index, _ in objects_.push(i, maps[i])]
    assert len(list(tmp_path.iterdir())) == 1  # planes of the slab in progress
    finished = objects_.flush()
    assert returned + [index for index, _ in finished] == list(range(10))
    assert all(plane.shape == (48, 48) for _, plane in finished)  # still readable after the tidy-up
    assert list(tmp_path.iterdir()) == []


def test_without_disk_room_large_slices_stay_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "disk_room", lambda folder=None: 0)
    maps = maps_from_labels(blobs_volume())
    labels = label_volume(maps, block_slices=8, halo=3, tile_halo=4, memory_budget=DISK_BUDGET, scratch=tmp_path)
    assert same_partition(labels, label_volume(maps, block_slices=8, halo=3))
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_planes_folder_is_removed(tmp_path):
    from napari_unet.core.objects.planes import FOLDER_PREFIX, DiskPlanes

    stale, alive = tmp_path / (FOLDER_PREFIX + "old"), tmp_path / (FOLDER_PREFIX + "live")
    for folder, pid in ((stale, 2**22 + 7), (alive, os.getpid())):
        folder.mkdir()
        (folder / ".napari_unet_owner").write_text(f"{pid}@{socket.gethostname()}")
    planes = DiskPlanes(tmp_path)
    assert not stale.exists() and alive.exists()
    planes.close()
    assert not planes.folder.exists()


def test_memory_of_slabs_on_disk_stays_within_the_budget(tmp_path):
    maps = random_cells((12, 192, 192))
    budget = 3_000_000
    assert slabs.slab_plan((192, 192), 8, 3, tile_halo=8, budget=budget, disk_room=2**30).store == "disk"
    peak = peak_bytes_of_labelling(maps, block_slices=8, halo=3, tile_halo=8, memory_budget=budget, scratch=tmp_path)
    assert peak <= 1.1 * budget

"""Blocks of slices labelled apart and joined give the objects of one process (core.predict.blocks)."""

import numpy as np
import pytest

from napari_unet.core.config import PredictConfig
from napari_unet.core.objects import streaming
from napari_unet.core.objects.stitching import joint_counts
from napari_unet.core.objects.streaming import StreamingObjects, label_volume
from napari_unet.core.predict.blocks import (
    BlockLabels,
    BlockOutput,
    block_config,
    block_extent,
    block_plan,
    face_links,
    in_unit,
    join_blocks,
    join_units,
    region_tiles,
    slab_slice,
    unit_record,
    unit_slab_plan,
    unit_zone,
    yx_regions,
)

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent

TILED_BUDGET = 4_000_000  # bytes: 96 x 96 slices then need Y/X tiles


def _maps(shape=(22, 40, 40), seed=0):
    """Foreground/interior maps of random balls and one long rod through every slice."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    fg = np.zeros(shape, np.float32)
    for _ in range(shape[1] * shape[2] // 115):
        c = rng.uniform((0, 4, 4), (shape[0], shape[1] - 4, shape[2] - 4))
        r = rng.uniform(2.5, 5)
        fg = np.maximum(fg, ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r).astype(np.float32))
    fg[:, 30:35, 4:9] = 1.0  # crosses every block face
    return np.stack([fg, fg], axis=-1)


def _units_of_block(maps, cfg, plan, k):
    """One block as a cluster worker labels it: each tile's own labels over the block's extent."""
    extent = block_extent(plan, plan.blocks[k])
    bcfg = block_config(cfg, plan, extent)
    tiles = {}
    objects = StreamingObjects(extent[1] - extent[0], maps.shape[1:3], block_slices=bcfg.block_slices,
                               halo=bcfg.halo, min_size=bcfg.min_object_size, plan=unit_slab_plan(plan, extent),
                               tile_sink=lambda t, labels: tiles.__setitem__((k, t), labels))
    for i in range(*extent):
        assert objects.push(i - extent[0], maps[i]) == []
    assert objects.flush() == []
    return tiles


def _in_units(maps, cfg, plan):
    """3-D objects: every block's units, their zone counts, the join, each block's final slices."""
    tiles = {}
    for k in range(len(plan.blocks)):
        tiles.update(_units_of_block(maps, cfg, plan, k))
    records = [unit_record(tiles[unit], plan, unit) for unit in sorted(tiles)]
    counts = {unit: [(owner, joint_counts(tiles[unit][in_unit(plan, unit, region)],
                                         tiles[owner][in_unit(plan, owner, region)]))
                     for owner, region in unit_zone(plan, unit)] for unit in tiles}
    lookups = join_units(records, counts, min_size=cfg.min_object_size)
    out = np.zeros(maps.shape[:3], np.uint32)
    for k, (a, b) in enumerate(plan.blocks):
        for i in range(a, b):
            out[i] = slab_slice(plan, k, i, lambda t, depth, k=k: tiles[(k, t)][depth], lookups)
    return out


def _in_blocks(maps, cfg, disk_room=0, budget=None):
    """Label each block apart (as cluster workers do), then join."""
    plan = block_plan(cfg, maps.shape[:3], 0, disk_room=disk_room, **({} if budget is None else {"budget": budget}))
    if plan.mode == "3d":
        return _in_units(maps, cfg, plan), plan
    out = np.zeros(maps.shape[:3], np.uint32)
    records, faces = [], []
    for block in plan.blocks:
        extent = block_extent(plan, block)
        local = label_volume(maps[extent[0]:extent[1]], mode=plan.mode, min_size=cfg.min_object_size)
        labels = BlockLabels(out, 0, extent, block, maps.shape[:3])
        for i, plane in enumerate(local):
            labels[(i,)] = plane
        records.append(labels.record())
        faces.append(None if block[0] == 0 or plan.mode == "2d" else face_links(out[block[0]], out[block[0] - 1]))
    lookups = join_blocks(records, faces)
    for (a, b), lookup in zip(plan.blocks, lookups):
        out[a:b] = lookup[out[a:b]]
    return out, plan


@pytest.mark.parametrize("min_size", [0, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_blocks_joined_give_the_single_process_objects(min_size, seed):
    maps = _maps(seed=seed)
    cfg = PredictConfig(output="instances", objects="3d", block_slices=6, halo=2, min_object_size=min_size)
    single = label_volume(maps, mode="3d", block_slices=6, halo=2, min_size=min_size)
    joined, plan = _in_blocks(maps, cfg)
    assert len(plan.blocks) == 4 and len(plan.tiles) == 1  # 22 slices in blocks of 6
    np.testing.assert_array_equal(joined, single)


@pytest.mark.parametrize("disk_room", [0, 10**9], ids=["tiles in memory", "planes on disk"])
@pytest.mark.parametrize("min_size", [0, 40])
def test_tiled_slabs_joined_give_the_single_process_objects(tmp_path, monkeypatch, disk_room, min_size):
    """Slices too large for whole-slice slabs: blocks are cut in the single process's Y/X tiles,
    and joining the units gives its objects, ids included."""
    monkeypatch.setattr(streaming, "disk_room", lambda folder=None: disk_room)  # the single process's room
    maps = _maps((20, 96, 96), seed=4)
    cfg = PredictConfig(output="instances", objects="3d", block_slices=8, halo=3, min_object_size=min_size)
    joined, plan = _in_blocks(maps, cfg, disk_room=disk_room, budget=TILED_BUDGET)
    assert len(plan.tiles) > 1 and len(plan.blocks) > 1
    assert plan.slab.store == ("disk" if disk_room else "memory")
    single = label_volume(maps, mode="3d", block_slices=8, halo=3, min_size=min_size, memory_budget=TILED_BUDGET,
                          scratch=tmp_path)
    np.testing.assert_array_equal(joined, single)
    assert len(np.unique(single)) > 20


def test_an_object_crossing_a_block_face_gets_one_id():
    maps = np.zeros((12, 16, 16, 2), np.float32)
    maps[:, 4:10, 4:10] = 1.0  # one box through both blocks
    cfg = PredictConfig(output="instances", objects="3d", block_slices=6, halo=2, min_object_size=0)
    joined, plan = _in_blocks(maps, cfg)
    assert plan.blocks == [(0, 6), (6, 12)]
    assert set(np.unique(joined)) == {0, 1}
    # Without the join each block numbers its own objects: the box would have two ids.
    separate = np.concatenate([label_volume(maps[a:b], mode="3d", block_slices=6, halo=0) + 10 * k
                               for k, (a, b) in enumerate(plan.blocks)])
    assert len(np.unique(separate[separate % 10 > 0])) == 2


@pytest.mark.parametrize("mode", ["linked", "2d"])
def test_slice_objects_joined_give_the_single_process_objects(mode):
    maps = _maps(seed=2)
    cfg = PredictConfig(output="instances", objects=mode, block_slices=5, min_object_size=10)
    single = label_volume(maps, mode=mode, min_size=10)
    joined, plan = _in_blocks(maps, cfg)
    assert plan.halo == 0 and len(plan.blocks) == 5
    np.testing.assert_array_equal(joined, single)


def test_slices_too_large_for_whole_slabs_keep_the_single_process_slabs():
    """256 x 256 slices: one process labels 3-D objects in slabs of 19 slices (the memory budget),
    so blocks are 19 slices too and still give its objects."""
    maps = np.repeat(np.repeat(_maps((40, 64, 64), seed=3), 4, axis=1), 4, axis=2)
    cfg = PredictConfig(output="instances", objects="3d", min_object_size=100)
    joined, plan = _in_blocks(maps, cfg)
    assert len(plan.tiles) == 1 and plan.blocks[0] == (0, 19)
    np.testing.assert_array_equal(joined, label_volume(maps, mode="3d", min_size=100))


def test_a_small_object_going_on_across_a_face_is_kept_as_one_process_keeps_it():
    """Slab rule for the minimum size: 25 voxels (< 40) crossing the face at slice 6 reach the
    first slab's open end, so one process keeps them, and so must the join."""
    maps = np.zeros((12, 16, 16, 2), np.float32)
    maps[3:8, 7:8, 6:11] = 1.0  # 5 voxels on each of slices 3-7
    cfg = PredictConfig(output="instances", objects="3d", block_slices=6, halo=2, min_object_size=40)
    single = label_volume(maps, mode="3d", block_slices=6, halo=2, min_size=40)
    assert single.max() == 1 and np.count_nonzero(single) == 25
    joined, _ = _in_blocks(maps, cfg)
    np.testing.assert_array_equal(joined, single)


def _tile_position_model(x):
    """Not translation-equivariant: adds each pixel's place in its tile, so only the very same
    tiles (sources and kept parts) give the same output."""
    ramp = np.add.outer(np.arange(x.shape[1]), 1000 * np.arange(x.shape[2])).astype(np.float32)
    return (x.sum(-1) + ramp)[..., np.newaxis] / 1e5


def test_a_y_x_region_predicted_in_the_slice_tiles_equals_the_whole_slice():
    from napari_unet.core.predict.tiling import tile_slices
    from napari_unet.core.predict.volume import predict_volume

    image = np.random.default_rng(0).random((3, 70, 45)).astype(np.float32)
    cfg = PredictConfig(tile_size=32, tile_overlap=8, return_probabilities=True, normalize="model")
    norm = {"low": [0.0], "high": [1.0]}
    kwargs = dict(n_classes=1, size_multiple=8, normalization=norm)
    whole = list(predict_volume(image, _tile_position_model, cfg=cfg, **kwargs))[-1].outputs["probs"]
    tiles = tile_slices((70, 45), 32, 8, 8)
    regions = yx_regions((70, 45), 20)
    assert len(regions) == 12 and len(tiles) > 4
    out = np.full(whole.shape, np.nan, np.float32)
    for region in regions:
        window, moved = region_tiles(tiles, region)
        block = BlockOutput(out, 0, (0, 3), (0, 3), image.shape, region=region, window=window)
        part = image[(slice(None),) + window]
        list(predict_volume(part, _tile_position_model, cfg=cfg, **kwargs, out_probs=block, tiles=moved,
                            out_labels=np.zeros(part.shape, np.uint8)))
    np.testing.assert_array_equal(out, whole)

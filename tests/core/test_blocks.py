"""Blocks of slices labelled apart and joined give the objects of one process (core.blocks)."""

import numpy as np
import pytest

from napari_unet.core.blocks import (
    BlockLabels, block_config, block_extent, block_plan, face_links, face_overlaps, join_blocks, objects_budget,
)
from napari_unet.core.config import PredictConfig
from napari_unet.core.objects import label_volume


def _maps(shape=(22, 40, 40), seed=0):
    """Foreground/interior maps of random balls and one long rod through every slice."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    fg = np.zeros(shape, np.float32)
    for _ in range(14):
        c = rng.uniform((0, 4, 4), (shape[0], shape[1] - 4, shape[2] - 4))
        r = rng.uniform(2.5, 5)
        fg = np.maximum(fg, ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r).astype(np.float32))
    fg[:, 30:35, 4:9] = 1.0  # crosses every block face
    return np.stack([fg, fg], axis=-1)


def _in_blocks(maps, cfg):
    """Label each block's extent apart (as a cluster worker does), then join."""
    plan = block_plan(cfg, maps.shape[:3], 0)
    out = np.zeros(maps.shape[:3], np.uint32)
    records, faces = [], []
    for block in plan["blocks"]:
        extent = block_extent(plan, block)
        bcfg = block_config(cfg, plan, extent)
        budget = objects_budget(plan, extent, maps.shape[:3], 0)
        local = label_volume(maps[extent[0]:extent[1]], mode=plan["mode"], block_slices=bcfg.block_slices,
                             halo=bcfg.halo, min_size=bcfg.min_object_size,
                             **({} if budget is None else {"memory_budget": budget}))
        labels = BlockLabels(out, 0, extent, block, maps.shape[:3], plan)
        for i, plane in enumerate(local):
            labels[(i,)] = plane
        records.append(labels.record())
        if block[0] == 0 or plan["mode"] == "2d":
            faces.append(None)
        elif plan["mode"] == "3d":
            faces.append(face_overlaps(np.stack(labels.zone), out[block[0] - plan["halo"]:block[0]]))
        else:
            faces.append(face_links(out[block[0]], out[block[0] - 1]))
    lookups = join_blocks(records, faces, plan["mode"], cfg.min_object_size)
    for (a, b), lookup in zip(plan["blocks"], lookups):
        out[a:b] = lookup[out[a:b]]
    return out, plan


@pytest.mark.parametrize("min_size", [0, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_blocks_joined_give_the_single_process_objects(min_size, seed):
    maps = _maps(seed=seed)
    cfg = PredictConfig(output="instances", objects="3d", block_slices=6, halo=2, min_object_size=min_size)
    single = label_volume(maps, mode="3d", block_slices=6, halo=2, min_size=min_size)
    joined, plan = _in_blocks(maps, cfg)
    assert len(plan["blocks"]) == 4  # 22 slices in blocks of 6
    np.testing.assert_array_equal(joined, single)


def test_an_object_crossing_a_block_face_gets_one_id():
    maps = np.zeros((12, 16, 16, 2), np.float32)
    maps[:, 4:10, 4:10] = 1.0  # one box through both blocks
    cfg = PredictConfig(output="instances", objects="3d", block_slices=6, halo=2, min_object_size=0)
    joined, plan = _in_blocks(maps, cfg)
    assert plan["blocks"] == [(0, 6), (6, 12)]
    assert set(np.unique(joined)) == {0, 1}
    # Without the join each block numbers its own objects: the box would have two ids.
    separate = np.concatenate([label_volume(maps[a:b], mode="3d", block_slices=6, halo=0) + 10 * k
                               for k, (a, b) in enumerate(plan["blocks"])])
    assert len(np.unique(separate[separate % 10 > 0])) == 2


@pytest.mark.parametrize("mode", ["linked", "2d"])
def test_slice_objects_joined_give_the_single_process_objects(mode):
    maps = _maps(seed=2)
    cfg = PredictConfig(output="instances", objects=mode, block_slices=5, min_object_size=10)
    single = label_volume(maps, mode=mode, min_size=10)
    joined, plan = _in_blocks(maps, cfg)
    assert plan["halo"] == 0 and len(plan["blocks"]) == 5
    np.testing.assert_array_equal(joined, single)


def test_slices_too_large_for_whole_slabs_keep_the_single_process_slabs():
    """256 x 256 slices: one process labels 3-D objects in slabs of 19 slices (the memory budget),
    so blocks are 19 slices too and still give its objects."""
    maps = np.repeat(np.repeat(_maps((40, 64, 64), seed=3), 4, axis=1), 4, axis=2)
    cfg = PredictConfig(output="instances", objects="3d", min_object_size=100)
    joined, plan = _in_blocks(maps, cfg)
    assert plan["as_one_process"] and plan["blocks"][0] == (0, 19)
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

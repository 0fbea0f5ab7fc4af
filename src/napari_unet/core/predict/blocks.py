"""A volume predicted in blocks of slices, each on its own (a task of a cluster), and the objects
of those blocks joined into the ids one process gives.

Classes and probabilities need no joining: a block writes its slices and is done. Their blocks
may also cut large slices into Y/X regions (``yx_regions``): a region's block predicts every
model tile (``core.tiling``, the single process's grid) whose kept part falls in the region, so
the neighbouring tiles are its Y/X halo, and writes the region only. Objects:

- ``"3d"``: a block is one slab of the single-process ``objects.streaming.StreamingObjects``, cut as it
  cuts them (``objects.slabs.slab_plan``: the same slab depth, ``halo`` and, for slices too large
  for whole-slice slabs, the same Y/X tiles with their ``tile_halo``). The block predicts its
  slices plus the halo and labels each tile's window on its own: a *unit* (block, tile) with
  ids 1..n. Joining then replays what one process does unit after unit (``join_units``): a
  unit's objects take the ids of the objects already final where they overlap by a mutual
  majority in the zone labelled before them (the halo slices before the slab, the cores of
  the slab's earlier tiles), or new ids, with the slab rule for the minimum size. What
  that needs is counted per unit on the cluster (``objects.stitching.joint_counts``: voxels per pair of unit
  id and the id of the unit that labelled the zone first), so the join itself handles only
  small tables. The result is the single process's, ids included.
- ``"linked"``: the first slice of a block is linked to the last one of the block before by
  IoU, as the previous slice is in one process (``face_links``).
- ``"2d"``: objects per slice; only the numbering joins the blocks.

numpy only: the runtime (``runtime.cluster``) moves the blocks and the face data around.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from napari_unet.core.objects.slabs import MEMORY_BUDGET, SlabPlan, slab_plan
from napari_unet.core.objects.stitching import (
    MIN_IOU,
    IdCounter,
    best_pairs,
    iou_pairs,
    stitched_ids,
    tile_facts,
    written_before,
)
from napari_unet.core.predict.read import n_slices_along, slice_shape
from napari_unet.core.predict.tiling import Tile
from napari_unet.core.predict.write import object_mode, object_sampling

# Slices up to this many pixels stay whole in a block of classes; larger ones are cut into
# regions of AUTO_REGION x AUTO_REGION (a float32 slice of 3 classes is 200 MB at 4096 x 4096).
AUTO_REGION_ABOVE = 4096 * 4096
AUTO_REGION = 2048


@dataclass(frozen=True)
class BlockPlan:
    """Blocks of slices predicted apart (``block_plan``): ``blocks`` [(start, stop)] along the
    slice axis, each predicting ``halo`` more slices on either side, object ``mode`` (None for
    classes), ``n_slices`` and ``regions``, the Y/X regions of a slice. 3-D objects also have
    ``slab`` (the ``SlabPlan`` one process would use), ``slice_shape`` and ``tiles`` (core and
    window of each Y/X tile; one tile when slabs are whole slices)."""

    blocks: list
    halo: int
    mode: str | None
    n_slices: int
    regions: list
    slab: SlabPlan | None = None
    slice_shape: tuple | None = None
    tiles: list | None = None


def block_plan(cfg, spatial_shape, axis, *, disk_room=0, budget=MEMORY_BUDGET, block_yx=0) -> BlockPlan:
    """Blocks of slices along ``axis``; regions: ``yx_regions`` of ``block_yx`` (the whole slice
    for objects). 3-D objects: the blocks are the slabs one process would use (``disk_room``: free
    bytes for its planes, as ``planes.disk_room``; ``budget``: its ``memory_budget``)."""
    n, shape = n_slices_along(spatial_shape, axis), slice_shape(spatial_shape, axis)
    mode = None
    if cfg.output == "instances":
        mode = object_mode(cfg.objects, object_sampling(cfg, axis), axis)
        if block_yx:
            raise ValueError(f"Y/X blocks (block_yx={block_yx}) are for classes and probabilities; objects "
                             "need whole slices in a block: leave block_yx at 0.")
    regions = yx_regions(shape, block_yx) if mode is None else yx_regions(shape, max(shape))
    if mode != "3d":
        return BlockPlan(_blocks(n, cfg.block_slices), 0, mode, n, regions)
    slab = slab_plan(shape, cfg.block_slices, cfg.halo, budget=budget, disk_room=disk_room)
    return BlockPlan(_blocks(n, slab.core_slices), slab.halo, mode, n, regions, slab=slab, slice_shape=shape,
                     tiles=slab.tiles(shape))


def _blocks(n, size) -> list:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def yx_regions(shape, size=0) -> list:
    """A slice of ``shape`` cut into ``size`` x ``size`` regions (the last ones smaller), as
    (y slice, x slice) in raster order; ``size`` 0: whole up to ``AUTO_REGION_ABOVE`` pixels,
    else ``AUTO_REGION``."""
    if not size:
        size = max(shape) if shape[0] * shape[1] <= AUTO_REGION_ABOVE else AUTO_REGION
    edges = [[slice(a, min(a + size, n)) for a in range(0, n, size)] for n in shape]
    return [(y, x) for y in edges[0] for x in edges[1]]


def region_tiles(tiles, region) -> tuple:
    """The model tiles a block of ``region`` predicts: ``(window, tiles)``, the window of the
    slice they read (the union of their sources, within the slice) and the tiles whose kept
    part meets the region, moved into the window and keeping only that part."""
    chosen = [t for t in tiles if all(_meet(t.target[a], region[a]) for a in (0, 1))]
    start = [min(t.source[a].start for t in chosen) for a in (0, 1)]
    # Sources may reach into the padding past the slice's end (where the last kept part ends).
    stop = [min(max(t.source[a].stop for t in chosen), max(t.target[a].stop for t in tiles)) for a in (0, 1)]
    window = (slice(start[0], stop[0]), slice(start[1], stop[1]))
    return window, [_moved(t, region, start) for t in chosen]


def _meet(a, b) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)


def _moved(tile, region, origin) -> Tile:
    """``tile`` in window coordinates (the window starts at ``origin``), kept part cut to ``region``."""
    source, crop, target = [], [], []
    for a in (0, 1):
        t0, t1 = max(tile.target[a].start, region[a].start), min(tile.target[a].stop, region[a].stop)
        c0 = tile.crop[a].start + t0 - tile.target[a].start
        source.append(slice(tile.source[a].start - origin[a], tile.source[a].stop - origin[a]))
        crop.append(slice(c0, c0 + t1 - t0))
        target.append(slice(t0 - origin[a], t1 - origin[a]))
    return Tile(tuple(source), tuple(crop), tuple(target))


def block_extent(plan, block) -> tuple:
    """The slices a block predicts: its own and ``halo`` more on each side, within the volume."""
    start, stop = block
    return max(start - plan.halo, 0), min(stop + plan.halo, plan.n_slices)


def block_config(cfg, plan, extent):
    """The config a block predicts with: the volume's normalisation (computed once, passed as the
    model's); for 3-D objects one slab over the whole extent, every object kept (the minimum
    size is applied when the units are joined)."""
    changes = {"normalize": "model"}
    if plan.mode == "3d":
        changes.update(block_slices=extent[1] - extent[0], halo=0, min_object_size=0)
    return cfg.replace(**changes)


def unit_slab_plan(plan, extent) -> SlabPlan:
    """The ``SlabPlan`` a block's ``StreamingObjects`` labels its units with: one slab over the
    extent, in the single process's tiles."""
    return replace(plan.slab, core_slices=extent[1] - extent[0], halo=0)


# ------------------------------------------------------------------ 3-D objects: units


def units(plan) -> list:
    """Every (block index, tile index), in the order one process labels them."""
    return [(k, t) for k in range(len(plan.blocks)) for t in range(len(plan.tiles))]


def unit_geometry(plan, unit) -> tuple:
    """``(extent, core, window)``: the slab's (s0, s1, e0, e1), the tile's Y/X core and window."""
    k, t = unit
    s0, s1 = plan.blocks[k]
    e0, e1 = block_extent(plan, (s0, s1))
    core, window = plan.tiles[t]
    return (s0, s1, e0, e1), core, window


def unit_record(local, plan, unit) -> dict:
    """What the join needs of a unit's own labels ``local`` (its extent x its window), besides
    its zone: ``objects.stitching.tile_facts`` (voxels per id, ids in its core, ids on open faces)."""
    extent, core, window = unit_geometry(plan, unit)
    written = written_before(local.shape, extent, _earlier_cores(plan, unit[1])[window])
    facts = tile_facts(local, written, extent, (core, window), plan.slice_shape, plan.n_slices)
    return {"unit": tuple(unit), **facts}


def _earlier_cores(plan, tile) -> np.ndarray:
    """The Y/X cores of the tiles labelled before ``tile`` in a slab."""
    written = np.zeros(plan.slice_shape, bool)
    for core, _ in plan.tiles[:tile]:
        written[core] = True
    return written


def unit_zone(plan, unit) -> list:
    """Where the unit's zone (voxels with final ids when it is labelled) lies, by the unit that
    labelled it: [(owner unit, (z, y, x) slices in volume coordinates)], disjoint, covering it."""
    k, t = unit
    (s0, s1, e0, _), _, (wy, wx) = unit_geometry(plan, unit)
    parts = []
    for owner_k, (a, b) in enumerate(plan.blocks[:k]):
        z = slice(max(a, e0), min(b, s0))
        if z.start < z.stop:
            every_tile = range(len(plan.tiles))
            parts += [((owner_k, u), (z,) + yx) for u, yx in _tile_overlaps(plan, every_tile, wy, wx)]
    parts += [((k, u), (slice(s0, s1),) + yx) for u, yx in _tile_overlaps(plan, range(t), wy, wx)]
    return parts


def _tile_overlaps(plan, tiles, wy, wx):
    """(tile, (y, x) slices) where the cores of ``tiles`` meet the window (wy, wx)."""
    for u in tiles:
        (cy, cx), _ = plan.tiles[u]
        y = slice(max(cy.start, wy.start), min(cy.stop, wy.stop))
        x = slice(max(cx.start, wx.start), min(cx.stop, wx.stop))
        if y.start < y.stop and x.start < x.stop:
            yield u, (y, x)


def in_unit(plan, unit, region) -> tuple:
    """A volume-coordinate region as indices into the unit's own labels (extent x window)."""
    (_, _, e0, _), _, window = unit_geometry(plan, unit)
    z, y, x = region
    return (slice(z.start - e0, z.stop - e0),) + tuple(
        slice(r.start - w.start, r.stop - w.start) for r, w in zip((y, x), window))


def join_units(records, counts, *, min_size=0) -> dict:
    """Per unit, the lookup table from its ids to final ids (0: no object), as one process
    labels the units in order (``objects.stitching.stitched_ids``). ``records``: ``unit_record`` of each
    unit, in ``units`` order; ``counts[unit]``: [(owner unit, ``stitching.joint_counts``)] over its zone."""
    lookups: dict[tuple, np.ndarray] = {}  # unit -> its lookup table
    ids = IdCounter()
    for record in records:
        pairs = _zone_pairs(counts.get(record["unit"], []), lookups, record["sizes"].size - 1)
        lookups[record["unit"]] = stitched_ids(record, pairs, min_size, ids.take)
    return lookups


def _zone_pairs(owner_counts, lookups, n_ids):
    """(unit id, final id, overlap, unit id's voxels in the zone, final id's voxels in the zone)
    of every pair of objects meeting in the zone, ordered by (unit id, final id)."""
    if not owner_counts:
        empty = np.zeros(0, np.int64)
        return empty, empty.astype(np.uint32), empty, empty, empty
    new = np.concatenate([c[0] for _, c in owner_counts])
    final = np.concatenate([lookups[owner][c[1]] for owner, c in owner_counts]).astype(np.int64)
    count = np.concatenate([c[2] for _, c in owner_counts])
    new_size = np.bincount(new, weights=count, minlength=n_ids + 1)
    old_size = np.bincount(final, weights=count)
    both = (new > 0) & (final > 0)
    keys, inverse = np.unique(new[both] << 32 | final[both], return_inverse=True)
    overlap = np.bincount(inverse, weights=count[both], minlength=keys.size)
    new, final = keys >> 32, (keys & 0xFFFFFFFF).astype(np.uint32)
    return new, final, overlap, new_size[new], old_size[final]


def slab_slice(plan, block_index, i, read_tile, lookups) -> np.ndarray:
    """Final labels of slice ``i`` of block ``block_index``: each tile's core through its lookup.
    ``read_tile(t, depth)``: tile t's own labels on the slab's extended slice ``depth``."""
    (s0, s1, e0, _), _, _ = unit_geometry(plan, (block_index, 0))
    labels = np.zeros(plan.slice_shape, np.uint32)
    for t, (core, window) in enumerate(plan.tiles):
        inner = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, window))
        labels[core] = lookups[(block_index, t)][read_tile(t, i - e0)[inner]]
    return labels


class BlockOutput:
    """An output of ``predict_volume`` run on one block's extent (and Y/X ``window``): the block's
    own slices (and ``region``) are written into ``out`` (the whole volume's output) at their
    place; halo slices (and the rest of the window) are not."""

    def __init__(self, out, axis, extent, block, spatial_shape, *, region=None, window=None):
        self.out, self.axis, self.extent, self.block = out, axis, extent, block
        tail = tuple(out.shape[len(spatial_shape):])  # a channel axis of probabilities
        shape = list(spatial_shape)
        self.place, self.crop = [slice(None)] * len(spatial_shape), (slice(None), slice(None))
        if axis is not None:
            shape[axis] = extent[1] - extent[0]
        if window is not None:
            for ax, w, r in zip([a for a in range(len(shape)) if a != axis], window, region):
                shape[ax], self.place[ax] = w.stop - w.start, r
            self.crop = tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, window))
        self.shape = tuple(shape) + tail
        self.dtype = out.dtype

    def __setitem__(self, index, value):
        if self.axis is None:  # a 2-D image: one block, one slice
            self.out[tuple(self.place)] = value[self.crop]
            self.seen(0, value)
            return
        i = self.extent[0] + index[self.axis]
        if self.block[0] <= i < self.block[1]:
            place = list(self.place)
            place[self.axis] = i
            self.out[tuple(place)] = value[self.crop]
        self.seen(i, value)

    def seen(self, i, value) -> None:
        """Called with every slice written, in order: a hook for what a block records."""


class BlockLabels(BlockOutput):
    """Block labels of objects per slice ("linked", "2d"; ids 1..n, the block's own), recording
    their count and which of them lie in the block's own slices."""

    def __init__(self, out, axis, extent, block, spatial_shape):
        super().__init__(out, axis, extent, block, spatial_shape)
        self.in_core = np.zeros(1, bool)

    def seen(self, i, labels) -> None:
        if self.block[0] <= i < self.block[1]:
            ids = np.unique(np.asarray(labels))
            self.in_core = np.pad(self.in_core, (0, max(int(ids[-1]) + 1 - self.in_core.size, 0)))
            self.in_core[ids] = True

    def record(self) -> dict:
        """What the join needs from this block (small: arrays of the block's object count)."""
        in_core = self.in_core.copy()
        in_core[0] = False
        return {"block": tuple(self.block), "n_ids": in_core.size - 1, "in_core": in_core}


# ------------------------------------------------------------------ objects per slice: joining


def face_links(first, previous) -> dict:
    """Linked objects: pairs (id of the block's first slice, id of the slice before it) at IoU >= 0.5."""
    new, old = best_pairs(*iou_pairs(np.asarray(first), np.asarray(previous)), MIN_IOU)
    return {"new": new, "old": old.astype(np.int64)}


def join_blocks(records, faces) -> list:
    """Objects per slice: per block, the lookup table from its ids to final ids, numbered as one
    process numbers them (block by block, new objects in the order of their block ids).
    ``faces[k]``: ``face_links`` between block k and block k - 1, or None (first block, "2d")."""
    lookups: list[np.ndarray] = []
    ids = IdCounter()
    for record, face in zip(records, faces):
        lookup = np.zeros(record["n_ids"] + 1, np.uint32)
        if face is not None and lookups:
            lookup[face["new"]] = lookups[-1][face["old"]]
        fresh = np.flatnonzero(record["in_core"] & (lookup == 0))
        lookup[fresh] = ids.take(fresh.size)
        lookups.append(lookup)
    return lookups

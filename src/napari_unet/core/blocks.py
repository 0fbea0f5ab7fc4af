"""A volume predicted in blocks of slices, each on its own (a task of a cluster), and the objects
of those blocks joined into the ids one process gives.

Classes and probabilities need no joining: a block writes its slices and is done. Objects:

- ``"3d"``: a block is one slab of the single-process ``objects.StreamingObjects`` (the volume
  is cut at the same slices, every ``block_slices``) predicted with ``halo`` more
  slices on each side, so the block's watershed sees what the slab's sees. Its objects are
  then matched across each face by the slab stitching's rule, on the ``halo`` slices before
  the block (``face_overlaps``): a mutual majority of the overlap there, one to one, best
  first. Minimum sizes follow the slab rule too (``_kept``), so the result is the single
  process's, ids included, when its slabs are whole ``block_slices`` slabs (``as_one_process``
  in the plan). Slices too large for that (``objects.MEMORY_BUDGET``: about 1024 x 1024 and up
  with the defaults) make one process cut thinner slabs, in Y/X tiles; a block still spans
  ``block_slices`` slices (thinner blocks would predict mostly halo) and stitches such slabs
  inside itself, so objects may be cut at other places than in one process.
- ``"linked"``: the first slice of a block is linked to the last one of the block before by
  IoU, as the previous slice is in one process (``face_links``).
- ``"2d"``: objects per slice; only the numbering joins the blocks.

numpy only: the runtime (``runtime.cluster``) moves the blocks and the face data around.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core.objects import (
    _MIN_IOU, _best_pairs, _iou_pairs, _pair_counts, _sizes, majority_score, slab_plan,
)
from napari_unet.core.predict_read import n_slices_along, slice_shape
from napari_unet.core.predict_write import object_mode, object_sampling


def block_plan(cfg, spatial_shape, axis) -> dict:
    """Blocks of ``cfg.block_slices`` slices along ``axis``: ``blocks`` [(start, stop)], ``halo``,
    object ``mode`` (None for classes), ``n_slices``, and ``as_one_process``: whether the join
    gives exactly the single process's objects (3-D objects: its slabs are the blocks)."""
    n = n_slices_along(spatial_shape, axis)
    mode = None
    if cfg.output == "instances":
        mode = object_mode(cfg.objects, object_sampling(cfg, axis), axis)
    halo = cfg.halo if mode == "3d" else 0
    size, exact = cfg.block_slices, True
    if mode == "3d":
        shape = slice_shape(spatial_shape, axis)
        slabs = slab_plan(shape, cfg.block_slices, halo)
        exact = slabs["tile"] == shape  # whole slices: a block can be one of these slabs
        size = slabs["core_slices"] if exact else cfg.block_slices
    size = max(size, halo)  # the slices before a block then lie in the one block before it
    blocks = [(a, min(a + size, n)) for a in range(0, n, size)]
    return {"blocks": blocks, "halo": halo, "mode": mode, "n_slices": n, "as_one_process": exact}


def block_extent(plan, block) -> tuple:
    """The slices a block predicts: its own and ``halo`` more on each side, within the volume."""
    start, stop = block
    return max(start - plan["halo"], 0), min(stop + plan["halo"], plan["n_slices"])


def block_config(cfg, plan, extent):
    """The config a block predicts with: the volume's normalisation (computed once, passed as the
    model's); for 3-D objects one slab over the whole extent (without a halo of its own, as the
    extent is the halo), keeping every object (the minimum size is applied when the blocks are
    joined, where whole objects are known)."""
    changes = {"normalize": "model"}
    if plan["mode"] == "3d":
        changes.update(block_slices=extent[1] - extent[0], min_object_size=0)
        if plan["as_one_process"]:
            changes["halo"] = 0
    return cfg.replace(**changes)


def objects_budget(plan, extent, spatial_shape, axis):
    """Bytes a block's 3-D objects may hold so that its extent is one slab, as the single
    process's slab over the same slices is (None: the default budget, thinner slabs)."""
    if plan["mode"] != "3d" or not plan["as_one_process"]:
        return None
    shape = slice_shape(spatial_shape, axis)
    return slab_plan(shape, extent[1] - extent[0], 0, budget=np.inf)["nbytes"]


class BlockOutput:
    """An output of ``predict_volume`` run on one block's extent: the block's own slices are
    written into ``out`` (the whole volume's output) at their place; halo slices are not."""

    def __init__(self, out, axis, extent, block, spatial_shape):
        self.out, self.axis, self.extent, self.block = out, axis, extent, block
        tail = tuple(out.shape[len(spatial_shape):])  # a channel axis of probabilities
        shape = list(spatial_shape)
        if axis is not None:
            shape[axis] = extent[1] - extent[0]
        self.shape = tuple(shape) + tail
        self.dtype = out.dtype

    def __setitem__(self, index, value):
        if self.axis is None:  # a 2-D image: one block, one slice
            self.out[index] = value
            self.seen(0, value)
            return
        i = self.extent[0] + index[self.axis]
        if self.block[0] <= i < self.block[1]:
            self.out[index[: self.axis] + (i,)] = value
        self.seen(i, value)

    def seen(self, i, value) -> None:
        """Called with every slice written, in order: a hook for what a block records."""


class BlockLabels(BlockOutput):
    """Block labels (ids 1..n, the block's own), recording what joining the blocks needs:
    voxels per id over the extent, the ids in the block's own slices, the ids on the faces
    where objects may go on, and the labels of the halo slices before the block (``zone``)."""

    def __init__(self, out, axis, extent, block, spatial_shape, plan):
        super().__init__(out, axis, extent, block, spatial_shape)
        self.plan = plan
        self.sizes = np.zeros(1, np.int64)
        self.in_core = np.zeros(1, bool)
        self.open_ids = []
        self.zone = []

    def seen(self, i, labels) -> None:
        labels = np.asarray(labels)
        counts = np.bincount(labels.ravel().astype(np.int64), minlength=self.sizes.size)
        counts[: self.sizes.size] += self.sizes
        self.sizes = counts
        if self.block[0] <= i < self.block[1]:
            self.in_core = np.pad(self.in_core, (0, counts.size - self.in_core.size))
            self.in_core[np.unique(labels)] = True
        elif i < self.block[0]:
            self.zone.append(labels)
        if self._open_face(i):
            self.open_ids.append(np.unique(labels))

    def _open_face(self, i) -> bool:
        """Whether slice ``i`` is a face of the extent that cuts the volume, beyond which nothing
        is labelled yet in one process (the face before counts only without a halo)."""
        n, (e0, e1) = self.plan["n_slices"], self.extent
        return (i == e1 - 1 and e1 < n) or (i == e0 and e0 > 0 and self.plan["halo"] == 0)

    def record(self) -> dict:
        """What the join needs from this block (small: arrays of the block's object count)."""
        n = self.sizes.size - 1
        in_core = np.pad(self.in_core, (0, n + 1 - self.in_core.size))
        in_core[0] = False
        open_ids = np.unique(np.concatenate(self.open_ids)) if self.open_ids else np.zeros(0, np.int64)
        return {"block": tuple(self.block), "n_ids": n, "sizes": self.sizes, "in_core": in_core,
                "open_ids": open_ids[open_ids > 0]}


# ------------------------------------------------------------------ joining


def face_overlaps(zone, previous) -> dict:
    """3-D objects: how the block's ids in the halo slices before it (``zone``) overlap the ids
    the block before wrote there (``previous``): pairs, overlap voxels, and each one's voxels there."""
    zone, previous = np.asarray(zone), np.asarray(previous)
    new, old, overlap = _pair_counts(zone, previous)
    return {"new": new, "old": old.astype(np.int64), "overlap": overlap,
            "new_size": _sizes(zone, new), "old_size": _sizes(previous, old)}


def face_links(first, previous) -> dict:
    """Linked objects: pairs (id of the block's first slice, id of the slice before it) at IoU >= 0.5."""
    new, old = _best_pairs(*_iou_pairs(np.asarray(first), np.asarray(previous)), _MIN_IOU)
    return {"new": new, "old": old.astype(np.int64)}


def join_blocks(records, faces, mode, min_size=0) -> list:
    """Per block, the lookup table from its ids to final ids (0: no object), numbered as one
    process numbers them: block by block, new objects in the order of their block ids.

    ``faces[k]``: ``face_overlaps`` ("3d") or ``face_links`` ("linked") between block k and
    block k - 1, or None (first block, no halo, "2d")."""
    lookups, next_id = [], 1
    for record, face in zip(records, faces):
        previous = lookups[-1] if lookups else None
        kept = _kept(record, face, previous, mode, min_size)
        lookup = np.zeros(record["n_ids"] + 1, np.uint32)
        if face is not None and previous is not None:
            new, old = _partners(face, kept, previous, mode)
            lookup[new] = previous[old]
        fresh = np.flatnonzero(kept & record["in_core"] & (lookup == 0))
        if next_id + fresh.size - 1 > np.iinfo(np.uint32).max:
            raise OverflowError("More than 2**32 - 1 objects: uint32 ids are exhausted.")
        lookup[fresh] = np.arange(next_id, next_id + fresh.size, dtype=np.uint32)
        next_id += fresh.size
        lookups.append(lookup)
    return lookups


def _kept(record, face, previous, mode, min_size):
    """Per block id, whether the object stays: 3-D objects by the slab rule (``objects._SlabObjects._kept``):
    big enough over the extent, or on a face where it may go on, or going on from the block before."""
    kept = np.ones(record["n_ids"] + 1, bool)
    if mode == "3d":
        kept = record["sizes"] >= max(min_size, 1)
        kept[record["open_ids"]] = True
        if face is not None and previous is not None:
            kept[face["new"][previous[face["old"]] > 0]] = True
    kept[0] = False
    return kept


def _partners(face, kept, previous, mode):
    """One-to-one pairs (block id, id of the block before) that become one object."""
    new, old = face["new"], face["old"]
    if mode != "3d":
        return new, old
    score = majority_score(face["overlap"], face["new_size"], face["old_size"])
    score = np.where(kept[new] & (previous[old] > 0), score, 0)
    return _best_pairs(new, old, score, min_score=1)

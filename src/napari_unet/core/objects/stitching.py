"""Ids that stay the same across parts labelled apart: the slab rule that joins a tile's own
labels to the final ids already given (``stitched_ids``, also the cluster's join), the IoU
links of objects per slice, and the counter that hands out ids unique across a volume."""

from __future__ import annotations

import numpy as np

# Overlap needed to carry an id over: IoU between slices ("linked"), and the
# share of each object's overlap-zone voxels between slabs ("3d").
MIN_IOU = 0.5
_MIN_SHARE = 0.5


class IdCounter:
    """Hands out object ids, unique across the volume."""

    def __init__(self):
        self.next_id = 1

    def take(self, count):
        first = self.next_id
        self.next_id += int(count)
        if self.next_id - 1 > np.iinfo(np.uint32).max:
            raise OverflowError("More than 2**32 - 1 objects: uint32 ids are exhausted.")
        return np.arange(first, first + count, dtype=np.uint32)


def written_before(shape, extent, written_yx):
    """Where a tile of ``shape`` (its slab's extended slices x its window) has final ids when
    it is labelled: the halo slices returned by earlier slabs, and in the core slices the
    Y/X cores of the slab's earlier tiles (``written_yx``, the window's part of them)."""
    s0, s1, e0, _ = extent
    written = np.zeros(shape, bool)
    written[: s0 - e0] = True
    written[s0 - e0 : s1 - e0] = written_yx
    return written


def tile_facts(local, written, extent, tile, slice_shape, end) -> dict:
    """What the slab rule needs of a tile's own labels ``local`` besides its zone: voxels per id
    (``sizes``), whether each id lies in the tile's core (``in_core``), and the ids on faces
    where objects may go on outside (``open_ids``: ``open_faces``)."""
    (y, x), (ey, ex) = tile
    s0, s1, e0, _ = extent
    sizes = np.bincount(local.ravel())
    in_core = np.zeros(sizes.size, bool)
    inner = (slice(s0 - e0, s1 - e0), slice(y.start - ey.start, y.stop - ey.start),
             slice(x.start - ex.start, x.stop - ex.start))
    in_core[np.unique(local[inner])] = True
    faces = open_faces(local, written, extent, (ey, ex), slice_shape, end)
    open_ids = np.unique(np.concatenate(faces)).astype(np.int64) if faces else np.zeros(0, np.int64)
    return {"sizes": sizes, "in_core": in_core, "open_ids": open_ids}


def stitched_ids(facts, pairs, min_size, take_ids) -> np.ndarray:
    """The slab rule: lookup table from a tile's own ids to final ids (0: no object).

    An object is kept if it has ``min_size`` voxels, or lies on an open face (it may be a piece
    of a bigger one), or meets final ids in its zone (it goes on); it takes the final id it holds
    a mutual majority with (one to one, largest overlap first), else a new id from
    ``take_ids(count)`` if it lies in the core, in id order. ``facts``: ``tile_facts``;
    ``pairs``: ``zone_pairs``."""
    new, old, overlap, new_size, old_size = pairs
    kept = facts["sizes"] >= max(min_size, 1)
    kept[facts["open_ids"]] = True
    kept[new] = True
    kept[0] = False
    score = np.where(kept[new], majority_score(overlap, new_size, old_size), 0)
    new, old = best_pairs(new, old, score, min_score=1)
    ids = np.zeros(kept.size, np.uint32)
    ids[new] = old
    fresh = np.flatnonzero(kept & facts["in_core"] & (ids == 0))
    ids[fresh] = take_ids(fresh.size)
    return ids


def open_faces(local, written, extent, window, slice_shape, end):
    """Labels on the faces of a tile's block that cut the volume (of ``end`` slices), where
    nothing is written beyond yet: objects there may go on outside."""
    _, _, e0, e1 = extent
    (ey, ex), (height, width) = window, slice_shape
    cuts = [(0, 0, e0 > 0), (0, -1, e1 < end), (1, 0, ey.start > 0), (1, -1, ey.stop < height),
            (2, 0, ex.start > 0), (2, -1, ex.stop < width)]
    faces = []
    for axis, side, cut in cuts:
        if cut:
            face = (slice(None),) * axis + (side,)
            faces.append(local[face][~written[face]])
    return faces


def _pair_counts(a, b):
    """Overlapping (a id, b id, voxel count) of two label arrays, both ids > 0."""
    both = (a > 0) & (b > 0)
    return joint_counts(a[both], b[both])


def joint_counts(a, b):
    """(a id, b id, voxel count) of every pair of ids on the same voxels, 0 included."""
    keys = a.astype(np.uint64).ravel() << np.uint64(32) | b.astype(np.uint64).ravel()
    keys, counts = np.unique(keys, return_counts=True)
    return (keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), counts


def _sizes(labels, ids):
    """Voxel count of each of ``ids`` in ``labels``."""
    values, counts = np.unique(labels, return_counts=True)
    return counts[np.searchsorted(values, ids)]


def iou_pairs(local, previous) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(new id, old id, IoU) of overlapping objects of two slices."""
    new, old, overlap = _pair_counts(local, previous)
    union = _sizes(local, new) + _sizes(previous, old) - overlap
    return new, old, overlap / union


def zone_pairs(zone, previous):
    """(new id, old id, overlap, new id's voxels in the zone, old id's voxels in the zone) of the
    objects meeting in a tile's zone (its own ids, and the final ids ``previous`` there)."""
    new, old, overlap = _pair_counts(zone, previous)
    return new, old, overlap, _sizes(zone, new), _sizes(previous, old)


def majority_score(overlap, new_size, old_size):
    """Overlap voxels of pairs where each object holds a majority of its voxels in the overlap
    zone within the other, else 0: pairs rank by overlap, but only mutual majorities qualify."""
    share = np.minimum(overlap / new_size, overlap / old_size)
    return np.where(share >= _MIN_SHARE, overlap, 0)


def best_pairs(new, old, score, min_score):
    """One-to-one pairs with score >= min_score, best first: each id used once."""
    order = np.lexsort((new, -score.astype(float)))
    used_new, used_old, pairs = set(), set(), []
    for i in order:
        if score[i] < min_score:
            break
        if new[i] not in used_new and old[i] not in used_old:
            used_new.add(new[i])
            used_old.add(old[i])
            pairs.append(i)
    pairs = np.asarray(pairs, dtype=np.int64)
    return new[pairs], old[pairs]


def fill_new_ids(ids, candidates, counter):
    """Give a new id to each candidate local id that has none yet."""
    missing = candidates[ids[candidates] == 0]
    ids[missing] = counter.take(missing.size)

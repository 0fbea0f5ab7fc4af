"""Objects of a volume labelled slice by slice as the predictor produces it, in memory that does
not grow with the volume (``StreamingObjects``): per slice ("2d"), per slice linked to the
previous slice ("linked"), or true 3-D objects labelled in overlapping slabs (in Y/X tiles when
slices are large, ``core.objects.slabs``) and stitched (``core.objects.stitching``).
``label_volume`` runs it over a volume already in memory. numpy only."""

from __future__ import annotations

import typing
from collections import deque
from numbers import Integral

import numpy as np

from napari_unet.core.config import ObjectMode
from napari_unet.core.objects.checks import (
    check_choice,
    check_int,
    check_labelling,
    check_maps,
    check_sampling,
    check_slice_shape,
)
from napari_unet.core.objects.planes import DiskPlanes, MemoryPlanes, disk_room
from napari_unet.core.objects.slabs import MEMORY_BUDGET, TILE_HALO, SlabPlan, slab_plan
from napari_unet.core.objects.stitching import (
    MIN_IOU,
    IdCounter,
    best_pairs,
    fill_new_ids,
    iou_pairs,
    stitched_ids,
    tile_facts,
    written_before,
    zone_pairs,
)
from napari_unet.core.objects.watershed import seeded_watershed, unfiltered_watershed

OBJECT_MODES = tuple(mode for mode in typing.get_args(ObjectMode) if mode != "auto")  # ("3d", "2d", "linked")
# "3d" keeps a slab's maps as probabilities in steps of 1/255 (uint8).
_MAP_LEVELS = 255


class StreamingObjects:
    """Objects of a volume fed one slice of object maps at a time, in order.

    ``push(index, maps_slice)`` takes the maps ``(H, W, 2)`` of slice ``index``
    (0, 1, 2, ... strictly in order) and returns ``[(index, labels (H, W) uint32)]``
    for the slices whose labels are now final (none, one or several);
    ``flush()`` after the last push returns the rest. Each slice comes back once,
    in increasing order. Ids are > 0, unique across the volume and never change
    once returned, so they can be written out at once.

    Modes (``OBJECT_MODES``):

    - ``"2d"``: each slice labelled alone (``seeded_watershed``), returned at once.
    - ``"linked"``: as ``"2d"``, then an object takes the id of the object of the
      previous slice it overlaps most if their IoU >= 0.5 (one object per id).
    - ``"3d"``: slabs of ``block_slices`` core slices, each labelled by a 3-D
      ``seeded_watershed`` over the core plus ``halo`` slices on each side, once
      its last slice has arrived. An object takes the id of the object it
      overlaps most in the ``halo`` slices before the core (already returned)
      when that overlap holds at least half of both objects' voxels there;
      otherwise it gets a new id. Memory: the maps of at most
      ``block_slices + 2 * halo`` slices and the labels of the last ``halo``.
      With ``block_slices >= n_slices`` this is ``seeded_watershed`` of the whole
      volume. Stitching cannot undo what was returned: an object whose branches
      join in a later slab keeps several ids, and ``halo=0`` cuts objects at
      every slab border.

    Memory in ``"3d"`` stays within ``memory_budget`` bytes (``MEMORY_BUDGET``).
    The maps are kept to steps of 1/255, so a probability within 1/510 of
    ``threshold`` may fall on either side of it. When the watershed of whole slices
    would not fit, each slab is labelled in Y/X tiles that see ``tile_halo`` more
    pixels on each side, and the slab's planes (buffered maps, labels) go to a
    temporary folder in ``scratch`` (None: the system's) so that slabs stay deep;
    returned planes are then read-only mappings of its files (their pages stay resident
    while the caller holds them: drop each once written). Without room there,
    slabs get fewer core slices (at least 1; the ``halo`` stays) and stay in memory. Tiles are joined
    like slabs: an object takes the id of the object it overlaps most among the ids already returned
    or written by earlier tiles, where it holds a mutual majority. Tiles that cut through large
    objects can change where those objects are split.

    ``min_size`` in ``"3d"``: a slab removes an object of fewer voxels only if it
    sees all of it, so pieces of big objects are never removed at slab borders.
    An object is kept when it reaches the slab's last slice (unless that is the
    volume's last), or when it overlaps objects already returned in the halo
    before the core (with ``halo=0``: when it reaches the slab's first slice,
    unless that is the volume's first). Hence a small object that crosses a slab
    border and is longer than ``halo`` slices may be kept.

    ``sampling``: voxel size along (slices, y, x); None = isotropic.

    For labelling a volume in parts elsewhere (``core.predict.blocks``), in ``"3d"``: ``plan`` (a
    ``slab_plan``) fixes the slabs and tiles instead of choosing them, and ``tile_sink(tile_index,
    labels)`` takes each tile's own labels (ids 1..n over its extended window, joined to nothing,
    no minimum size); no slice is then returned.
    """

    def __init__(
        self,
        n_slices: int,
        slice_shape,
        *,
        mode: str = "3d",
        block_slices: int = 32,
        halo: int = 4,
        threshold: float = 0.5,
        seeds: str = "distance",
        seed_distance: float = 3.0,
        min_size: int = 0,
        sampling=None,
        join_pieces: bool = False,
        tile_halo: int = TILE_HALO,
        memory_budget: int = MEMORY_BUDGET,
        scratch=None,
        plan: SlabPlan | None = None,
        tile_sink=None,
    ):
        check_int("n_slices", n_slices, 1)
        self.slice_shape = check_slice_shape(slice_shape)
        check_choice("mode", mode, OBJECT_MODES)
        check_int("block_slices", block_slices, 1)
        check_int("halo", halo, 0)
        check_int("tile_halo", tile_halo, 0)
        check_int("memory_budget", memory_budget, 1)
        check_labelling(threshold, seeds, seed_distance, min_size)
        sampling = check_sampling(sampling, 3)
        self.n_slices, self.mode = int(n_slices), mode
        self._next_index = 0
        self._closed = False
        labelling = dict(threshold=threshold, seeds=seeds, seed_distance=seed_distance, min_size=int(min_size),
                         join_pieces=bool(join_pieces))
        ids = IdCounter()
        self._labeller: _SlabObjects | _SliceObjects
        if mode == "3d":
            if plan is None:
                plan = slab_plan(self.slice_shape, int(block_slices), int(halo), tile_halo=int(tile_halo),
                                 budget=int(memory_budget), disk_room=disk_room(scratch))
            self._labeller = _SlabObjects(self.n_slices, self.slice_shape, plan, labelling, sampling, ids, scratch,
                                          tile_sink)
        else:
            plane_sampling = None if sampling is None else sampling[1:]
            self._labeller = _SliceObjects(mode == "linked", labelling, plane_sampling, ids)

    def push(self, index: int, maps_slice) -> list[tuple[int, np.ndarray]]:
        """Add the maps of slice ``index``; return the slices labelled so far."""
        maps_slice = self._check_push(index, maps_slice)
        self._next_index += 1
        return self._labeller.push(int(index), maps_slice)

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """Return the slices not returned yet, and close.

        Called before all slices are pushed (a stopped prediction), it labels the
        pushed slices as if the volume ended at the last one.
        """
        if self._closed:
            raise ValueError("flush() was already called: this StreamingObjects is closed.")
        self._closed = True
        return self._labeller.flush(self._next_index)

    def _check_push(self, index, maps_slice):
        if self._closed:
            raise ValueError("push() after flush(): this StreamingObjects is closed.")
        if self._next_index >= self.n_slices:
            raise ValueError(f"All {self.n_slices} slices were already pushed (got index {index!r}).")
        if isinstance(index, bool) or not isinstance(index, Integral) or index != self._next_index:
            raise ValueError(
                f"Slices must be pushed in order 0..{self.n_slices - 1}: expected index {self._next_index}, "
                f"got {index!r}."
            )
        maps_slice = np.asarray(maps_slice, dtype=np.float32)
        if maps_slice.shape != self.slice_shape + (2,):
            raise ValueError(
                f"maps_slice must have shape {self.slice_shape + (2,)} (foreground, interior maps from "
                f"object_maps), got {maps_slice.shape}."
            )
        return maps_slice


def label_volume(maps, **kwargs) -> np.ndarray:
    """Objects ``(Z, Y, X)`` uint32 of in-memory maps ``(Z, Y, X, 2)`` via ``StreamingObjects``.

    ``kwargs`` are those of ``StreamingObjects`` (mode, block_slices, halo, ...).
    """
    maps = check_maps(maps, spatial_ndims=(3,))
    objects = StreamingObjects(maps.shape[0], maps.shape[1:3], **kwargs)
    labels = np.zeros(maps.shape[:3], np.uint32)
    for index in range(maps.shape[0]):
        _copy_planes(objects.push(index, maps[index]), labels)
    _copy_planes(objects.flush(), labels)
    return labels


def _copy_planes(finished, labels):
    """Copy returned planes into ``labels``, dropping each at once (planes on disk stay mapped until dropped)."""
    while finished:
        done, plane = finished.pop()
        labels[done] = plane
        del plane


class _SliceObjects:
    """Modes "2d" and "linked": every slice is labelled and returned at once."""

    def __init__(self, linked, labelling, sampling, ids):
        self.linked, self.labelling, self.sampling, self.ids = linked, labelling, sampling, ids
        self.previous = None

    def push(self, index, maps_slice):
        local = seeded_watershed(maps_slice, sampling=self.sampling, **self.labelling)
        ids = np.zeros(int(local.max()) + 1, np.uint32)
        if self.linked and self.previous is not None:
            new, old = best_pairs(*iou_pairs(local, self.previous), MIN_IOU)
            ids[new] = old
        fill_new_ids(ids, np.arange(1, ids.size), self.ids)
        labels = ids[local]
        self.previous = labels if self.linked else None
        return [(index, labels)]

    def flush(self, n_pushed):
        return []


def _quantise(maps_slice):
    """Maps in [0, 1] as uint8 steps of 1/255, one channel at a time (no float copy of both)."""
    out = np.empty(maps_slice.shape, np.uint8)
    for channel in range(maps_slice.shape[-1]):
        out[..., channel] = np.rint(maps_slice[..., channel] * _MAP_LEVELS)
    return out


def _dequantise(maps):
    return np.multiply(maps, np.float32(1 / _MAP_LEVELS), dtype=np.float32)


class _SlabObjects:
    """Mode "3d": overlapping slabs, each labelled in 3-D (in Y/X tiles if large) and
    stitched to the ids already returned and to the tiles labelled before it. The planes
    (maps of coming slices, labels of this slab and of the last ``halo`` returned slices)
    live in a ``planes`` store: in memory, or on disk for slices too large for that."""

    def __init__(self, n_slices, slice_shape, plan, labelling, sampling, ids, scratch=None, tile_sink=None):
        self.n_slices, self.slice_shape, self.tile_sink = n_slices, slice_shape, tile_sink
        self.block, self.halo = plan.core_slices, plan.halo
        self.tiles = plan.tiles(slice_shape)
        labelling = dict(labelling)
        self.min_size = labelling.pop("min_size")
        self.labelling, self.sampling, self.ids = labelling, sampling, ids
        self.planes = DiskPlanes(scratch) if plan.store == "disk" else MemoryPlanes()
        self.returned = deque(maxlen=self.halo)  # indices of the last `halo` returned slices
        self.core_start = 0  # first core slice of the next slab

    def push(self, index, maps_slice):
        self.planes.put(("maps", index), _quantise(maps_slice))  # a copy: the caller may reuse its buffer
        done = []
        while self.core_start < self.n_slices and index >= self._extent(self.n_slices)[3] - 1:
            done += self._label_slab(self.n_slices)
        if self.core_start >= self.n_slices:
            self.planes.close()
        return done

    def flush(self, n_pushed):
        done = []
        while self.core_start < n_pushed:
            done += self._label_slab(n_pushed)
        self.planes.close()
        return done

    def _extent(self, end):
        """Core [s0, s1) and extended range [e0, e1) of the next slab of a volume ending at ``end``."""
        s0 = self.core_start
        s1 = min(s0 + self.block, end)
        return s0, s1, max(s0 - self.halo, 0), min(s1 + self.halo, end)

    def _label_slab(self, end):
        s0, s1, e0, e1 = self._extent(end)
        if self.tile_sink is not None:
            return self._hand_over_tiles((s0, s1, e0, e1))
        for i in range(s0, s1):
            self.planes.create(("labels", i), self.slice_shape, np.uint32)
        written = np.zeros(self.slice_shape, bool)  # Y/X cores of the tiles labelled so far
        for tile in self.tiles:
            self._label_tile(tile, (s0, s1, e0, e1), end, written)
            written[tile[0]] = True
        done = [(i, self.planes.take(("labels", i))) for i in range(s0, s1)]
        self._advance((s0, s1, e0, e1))
        return done

    def _hand_over_tiles(self, extent):
        """Each tile's own labels to ``tile_sink``; nothing to return."""
        for index, tile in enumerate(self.tiles):
            self.tile_sink(index, self._tile_labels(tile, extent))
        s0, s1, e0, _ = extent
        self.core_start = s1
        for i in range(e0, s1 - self.halo):
            self.planes.drop(("maps", i))
        return []

    def _tile_labels(self, tile, extent):
        """The watershed of the tile's extended window over the slab's extended slices."""
        _, (ey, ex) = tile
        _, _, e0, e1 = extent
        maps = _dequantise(np.stack([self.planes.read(("maps", i), (ey, ex)) for i in range(e0, e1)]))
        return unfiltered_watershed(maps, sampling=self.sampling, **self.labelling)

    def _label_tile(self, tile, extent, end, written_yx):
        (y, x), (ey, ex) = tile
        s0, s1, e0, e1 = extent
        local = self._tile_labels(tile, extent)
        written, previous = self._written_ids(local.shape, extent, (ey, ex), written_yx)
        zone, before = local[written], previous[written]
        del previous
        facts = tile_facts(local, written, extent, tile, self.slice_shape, end)
        ids = stitched_ids(facts, zone_pairs(zone, before), self.min_size, self.ids.take)
        del zone, before
        inner = (slice(y.start - ey.start, y.stop - ey.start), slice(x.start - ex.start, x.stop - ex.start))
        for depth, i in enumerate(range(s0, s1)):
            self.planes.write(("labels", i), (y, x), ids[local[s0 - e0 + depth][inner]])

    def _written_ids(self, shape, extent, window, written_yx):
        """Where the tile's voxels already have final ids, and those ids (0 elsewhere)."""
        s0, s1, e0, _ = extent
        written, previous = written_before(shape, extent, written_yx[window]), np.zeros(shape, np.uint32)
        for depth, i in enumerate(range(e0, s1)):
            previous[depth] = self.planes.read(("labels", i), window)
        return written, previous

    def _advance(self, extent):
        """Forget the maps no coming slab needs and the labels beyond the last ``halo`` returned."""
        s0, s1, e0, _ = extent
        self.core_start = s1
        for index in range(e0, s1 - self.halo):
            self.planes.drop(("maps", index))
        for index in range(s0, s1):
            if self.halo and len(self.returned) == self.halo:
                self.planes.drop(("labels", self.returned[0]))
            self.returned.append(index)
            if not self.halo:
                self.planes.drop(("labels", index))

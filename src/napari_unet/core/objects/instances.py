"""Objects (instance labels) from per-slice U-Net probabilities, in 2-D or 3-D.

- ``object_maps`` turns a model's probabilities ``(..., K)`` into two maps,
  foreground and interior probability ``(..., 2)``, whatever the kind of model.
- ``seeded_watershed`` labels a 2-D or 3-D stack of such maps at once.
- ``StreamingObjects`` labels a volume slice by slice as the predictor produces
  it, in memory that does not grow with the volume: objects per slice ("2d"),
  per slice linked to the previous slice ("linked"), or true 3-D objects computed
  in overlapping slabs and stitched ("3d").
- ``label_volume`` runs ``StreamingObjects`` over a volume already in memory.

numpy, scipy and scikit-image only.
"""

from __future__ import annotations

from collections import deque
from numbers import Integral, Real

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as connected_components_graph
from skimage.measure import label as connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

from napari_unet.core.objects.planes import DiskPlanes, MemoryPlanes, disk_room

MODEL_KINDS = ("boundary", "binary", "classes")
OBJECT_MODES = ("3d", "2d", "linked")
SEED_MODES = ("interior", "distance")

# Distance maxima that rise less than this (in voxels of the finest axis) above
# their surroundings are not objects of their own. 2 was measured best over the
# synthetic cells and nuclei (0.5 over-split the cells: 232 objects for 93).
_MIN_PEAK_HEIGHT = 2.0
# Overlap needed to carry an id over: IoU between slices ("linked"), and the
# share of each object's overlap-zone voxels between slabs ("3d").
_MIN_IOU = 0.5
_MIN_SHARE = 0.5

# Memory of "3d" objects. A slab's maps are kept as probabilities in steps of 1/255
# (uint8: 2 bytes per pixel for both maps instead of 8), labels as uint32.
_MAP_LEVELS = 255
_MAP_BYTES, _LABEL_BYTES = 2, 4
# Working memory per voxel of labelling one tile of a slab: seeded_watershed's peak, measured
# 96 B (distance seeds) and 37-53 B (interior seeds) on a 12 x 1024 x 1024 slab, plus the
# tile's float32 maps (8 B) and its stitching masks (5 B).
_TILE_BYTES_PER_VOXEL = 110
# Bytes "3d" objects may hold at once: buffered maps, the labels kept for stitching and one
# tile's watershed. A 4 GB stack of 2048 x 2048 slices must segment in under 1.5 GB of worker
# memory, of which TensorFlow, the model and the prediction buffers take about 1.25 GB.
MEMORY_BUDGET = 200 * 2**20
# Context on each side of a Y/X tile, in pixels, for the watershed and for stitching.
TILE_HALO = 16
_MIN_TILE = 16  # tile core side when even a one-slice slab exceeds the budget


# ------------------------------------------------------------------ maps


def object_maps(probs, kind: str, threshold: float = 0.5) -> np.ndarray:
    """Foreground and interior probability maps ``(..., 2)`` float32 from ``probs (..., K)``.

    - ``"boundary"``: K == 3 softmax (background, interior, boundary);
      foreground = interior + boundary, interior = interior.
    - ``"binary"``: K == 1 sigmoid; foreground = interior = the probability.
    - ``"classes"``: K >= 2 softmax, class 0 = background;
      foreground = interior = 1 - background.

    ``threshold`` is only checked here; it is applied by ``seeded_watershed``.
    """
    _check_choice("kind", kind, MODEL_KINDS)
    _check_threshold(threshold)
    probs = np.asarray(probs, dtype=np.float32)
    n_channels = probs.shape[-1] if probs.ndim else 0
    if kind == "boundary":
        _check_channels(kind, probs, n_channels == 3, "3 channels (background, interior, boundary)")
        foreground, interior = probs[..., 1] + probs[..., 2], probs[..., 1]
    elif kind == "binary":
        _check_channels(kind, probs, n_channels == 1, "1 channel (a sigmoid)")
        foreground = interior = probs[..., 0]
    else:
        _check_channels(kind, probs, n_channels >= 2, "at least 2 channels (background first)")
        foreground = interior = 1.0 - probs[..., 0]
    # Softmax sums can leave [0, 1] by a rounding error.
    return np.clip(np.stack([foreground, interior], axis=-1), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------ watershed


def seeded_watershed(
    maps,
    *,
    threshold: float = 0.5,
    seeds: str = "distance",
    seed_distance: float = 3.0,
    min_size: int = 0,
    sampling=None,
    join_pieces: bool = False,
) -> np.ndarray:
    """Objects (uint32, 0 = background, 1..n) of ``maps`` ``(Y, X, 2)`` or ``(Z, Y, X, 2)``.

    Foreground = ``maps[..., 0] > threshold``. Seeds grow over the foreground by
    a watershed on ``1 - interior``, so they meet on predicted boundaries.

    ``seeds``:

    - ``"interior"``: one seed per face-connected region of interior > threshold.
      Simple and exact when boundaries are closed; a gap in a predicted boundary
      merges the two objects on either side (use ``"distance"`` then).
    - ``"distance"``: one seed per maximum of the distance to the outside of the
      interior, so a blob made of two overlapping round objects gives two seeds.
      Maxima closer than ``seed_distance`` (in voxels of the finest axis) are one
      seed, and shallow maxima (plateaus, ripples) do not count. The watershed
      then also climbs away from the distance maxima, so on a flat interior map
      touching objects are cut at their narrowest neck.

    ``sampling``: voxel size per spatial axis (None = isotropic); distances are
    measured in these units, so seeds respect an anisotropic voxel size.
    Objects of fewer than ``min_size`` voxels are removed.
    ``join_pieces``: join touching objects whose contact is predicted interior; for maps
    with boundary evidence (a boundary model, or cells between membranes), where a long
    object with several distance maxima would otherwise be cut in pieces. Off for a flat
    interior map (a plain foreground model), where the shape is the only evidence.
    """
    maps = _check_maps(maps, spatial_ndims=(2, 3))
    _check_labelling(threshold, seeds, seed_distance, min_size)
    sampling = check_sampling(sampling, maps.ndim - 1)
    objects = _watershed(maps, threshold, seeds, seed_distance, sampling, join_pieces)
    return drop_small_objects(objects, min_size)


def _watershed(maps, threshold, seeds, seed_distance, sampling, join_pieces=False):
    """Unfiltered seeded watershed: int labels, 0 = background."""
    foreground = maps[..., 0] > threshold
    inside = (maps[..., 1] > threshold) & foreground
    elevation = 1.0 - maps[..., 1]
    if seeds == "interior":
        markers = connected_components(inside, connectivity=1)
    else:
        distance = _distance(inside, sampling)
        markers = _distance_seeds(inside, distance, seed_distance, sampling)
        # Where the interior map is flat, objects then meet at the narrowest neck
        # instead of wherever the flooding order puts them.
        elevation = elevation + 1.0 / (1.0 + distance)
    objects = watershed(elevation, markers, mask=foreground)
    if not join_pieces:
        return objects
    # Several distance maxima in one long object split it; a cut that runs through
    # predicted interior is no boundary, so the pieces on either side are one object.
    return merge_across_interior(objects, maps[..., 1], threshold)


def merge_across_interior(objects, interior, threshold=0.5):
    """Join objects that touch within a slice where, on average, interior is predicted
    (> threshold). Contacts across slices do not count: a model that sees one slice at a
    time predicts interior on both sides of an oblique boundary between two slices."""
    first, second, mean = _contacts(objects, interior)
    joined = mean > threshold
    if not joined.any():
        return objects
    n = int(objects.max()) + 1
    graph = coo_matrix((np.ones(int(joined.sum())), (first[joined], second[joined])), shape=(n, n))
    _, group = connected_components_graph(graph, directed=False)
    # Group ids in 1..m, background stays 0.
    _, new_ids = np.unique(group[1:], return_inverse=True)
    lookup = np.concatenate([[0], new_ids + 1]).astype(objects.dtype)
    return lookup[objects]


def _contacts(objects, values):
    """Pairs of objects ``(a < b)`` touching along Y or X, and the mean of ``values`` on their contact."""
    codes, sums = [], []
    n = np.int64(objects.max()) + 1
    for axis in (objects.ndim - 2, objects.ndim - 1):  # in-plane (Y, X) contacts only
        a = np.moveaxis(objects, axis, 0)
        v = np.moveaxis(values, axis, 0)
        left, right = a[:-1], a[1:]
        touch = (left != right) & (left > 0) & (right > 0)
        low = np.minimum(left[touch], right[touch]).astype(np.int64)
        high = np.maximum(left[touch], right[touch]).astype(np.int64)
        codes.append(low * n + high)
        sums.append((v[:-1][touch] + v[1:][touch]) / 2)
    codes, sums = np.concatenate(codes), np.concatenate(sums)
    if codes.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    pairs, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    mean = np.bincount(inverse, weights=sums) / counts
    return pairs // n, pairs % n, mean


def _distance(inside, sampling):
    """Distance to the outside of ``inside``, in voxels of the finest axis."""
    spacing = _spacing(inside.ndim, sampling)
    # float32 halves the memory of the maps that follow, at no cost in precision here.
    return ndi.distance_transform_edt(inside, sampling=spacing / spacing.min()).astype(np.float32)


def _distance_seeds(inside, distance, seed_distance, sampling):
    """One marker per deep maximum of ``distance``."""
    # h-maxima: a plateau is one region and ripples lower than h are ignored.
    peaks = h_maxima(distance, _MIN_PEAK_HEIGHT).astype(bool) & inside
    peaks |= _tops_of_unseeded_parts(inside, distance, peaks)
    if not peaks.any():
        return np.zeros(inside.shape, np.int32)
    # Peaks closer than seed_distance join one seed; within `inside` only, so
    # close peaks of two separate objects stay apart.
    spacing = _spacing(inside.ndim, sampling)
    near_peak = ndi.distance_transform_edt(~peaks, sampling=spacing / spacing.min()) <= seed_distance / 2
    groups = connected_components(near_peak & inside, connectivity=inside.ndim)
    return np.where(peaks, groups, 0)


def _tops_of_unseeded_parts(inside, distance, peaks):
    """The deepest voxels of each part of ``inside`` without a peak: objects thinner than
    the peak height are not lost."""
    parts, n = ndi.label(inside)
    unseeded = np.ones(n + 1, bool)
    unseeded[np.unique(parts[peaks])] = False
    unseeded[0] = False
    if not unseeded[1:].any():
        return np.zeros(inside.shape, bool)
    tops = np.zeros(n + 1, np.float32)
    tops[1:] = ndi.maximum(distance, parts, np.arange(1, n + 1))
    return unseeded[parts] & (distance == tops[parts])


def _spacing(ndim, sampling):
    return np.ones(ndim) if sampling is None else np.asarray(sampling, dtype=float)


def drop_small_objects(objects, min_size):
    """Remove objects of fewer than ``min_size`` voxels; number the rest 1..n (uint32)."""
    if min_size > 1:
        small = np.bincount(objects.ravel()) < min_size
        small[0] = False
        objects = np.where(small[objects], 0, objects)
    return relabel_sequential(objects)[0].astype(np.uint32)


# ------------------------------------------------------------ streaming


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

    For labelling a volume in parts elsewhere (``core.blocks``), in ``"3d"``: ``plan`` (a
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
        plan: dict | None = None,
        tile_sink=None,
    ):
        _check_int("n_slices", n_slices, 1)
        self.slice_shape = _check_slice_shape(slice_shape)
        _check_choice("mode", mode, OBJECT_MODES)
        _check_int("block_slices", block_slices, 1)
        _check_int("halo", halo, 0)
        _check_int("tile_halo", tile_halo, 0)
        _check_int("memory_budget", memory_budget, 1)
        _check_labelling(threshold, seeds, seed_distance, min_size)
        sampling = check_sampling(sampling, 3)
        self.n_slices, self.mode = int(n_slices), mode
        self._next_index = 0
        self._closed = False
        labelling = dict(threshold=threshold, seeds=seeds, seed_distance=seed_distance, min_size=int(min_size),
                         join_pieces=bool(join_pieces))
        ids = _IdCounter()
        if mode == "3d":
            if plan is None:
                plan = slab_plan(self.slice_shape, int(block_slices), int(halo), int(tile_halo), int(memory_budget),
                                 disk_room(scratch))
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
    maps = _check_maps(maps, spatial_ndims=(3,))
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


class _IdCounter:
    """Hands out object ids, unique across the volume."""

    def __init__(self):
        self.next_id = 1

    def take(self, count):
        first = self.next_id
        self.next_id += int(count)
        if self.next_id - 1 > np.iinfo(np.uint32).max:
            raise OverflowError("More than 2**32 - 1 objects: uint32 ids are exhausted.")
        return np.arange(first, first + count, dtype=np.uint32)


class _SliceObjects:
    """Modes "2d" and "linked": every slice is labelled and returned at once."""

    def __init__(self, linked, labelling, sampling, ids):
        self.linked, self.labelling, self.sampling, self.ids = linked, labelling, sampling, ids
        self.previous = None

    def push(self, index, maps_slice):
        local = seeded_watershed(maps_slice, sampling=self.sampling, **self.labelling)
        ids = np.zeros(int(local.max()) + 1, np.uint32)
        if self.linked and self.previous is not None:
            new, old = _best_pairs(*_iou_pairs(local, self.previous), _MIN_IOU)
            ids[new] = old
        _fill_new_ids(ids, np.arange(1, ids.size), self.ids)
        labels = ids[local]
        self.previous = labels if self.linked else None
        return [(index, labels)]

    def flush(self, n_pushed):
        return []


def slab_plan(slice_shape, block_slices, halo, tile_halo=TILE_HALO, budget=MEMORY_BUDGET, disk_room=0) -> dict:
    """How "3d" objects cut a volume of ``slice_shape`` slices to stay within ``budget`` bytes.

    Returns ``core_slices`` (<= ``block_slices``), ``halo``, ``tile`` (the Y/X core size of a
    tile; the slice shape when slabs are not tiled), ``tile_halo``, ``nbytes`` (the estimated
    peak), ``store`` ("memory", or "disk" when the slab's planes go to a temporary folder) and
    ``disk_bytes`` (what that folder needs). ``disk_room``: free bytes for that folder.
    """
    height, width = slice_shape
    area = height * width

    def buffers(core):  # the slab's maps, its labels, and the labels kept from the last slab
        return area * ((core + 2 * halo) * _MAP_BYTES + (core + halo) * _LABEL_BYTES)

    def plan(core, tile, store="memory"):
        extended = _extended_area(slice_shape, tile, tile_halo)
        held = buffers(core) if store == "memory" else 0
        return dict(core_slices=core, halo=halo, tile=tile, tile_halo=tile_halo, store=store,
                    nbytes=held + (core + 2 * halo) * extended * _TILE_BYTES_PER_VOXEL,
                    disk_bytes=0 if store == "memory" else buffers(core))

    # Whole slices while a slab keeps at least two halos of core slices: relabelling
    # the halos then costs at most as much again as the core.
    for core in range(block_slices, max(min(block_slices, 2 * halo), 1) - 1, -1):
        whole = plan(core, slice_shape)
        if whole["nbytes"] <= budget:
            return whole
    # Planes on disk: the slab depth and tile that label each voxel the fewest times.
    on_disk = [plan(core, tile, "disk") for core, tile in _disk_layouts(slice_shape, block_slices, halo,
                                                                        tile_halo, budget)]
    on_disk = [p for p in on_disk if p["disk_bytes"] * 1.25 <= disk_room]
    if on_disk:
        return min(on_disk, key=lambda p: _relabelling(p, slice_shape))
    # Otherwise tiles in memory: slabs as deep as half the budget allows, the rest for one tile.
    core = next((c for c in range(block_slices, 0, -1) if buffers(c) <= budget / 2), 1)
    tile_area = max(budget - buffers(core), 0) / ((core + 2 * halo) * _TILE_BYTES_PER_VOXEL)
    side = max(int(np.sqrt(tile_area)) - 2 * tile_halo, _MIN_TILE)
    return plan(core, (min(side, height), min(side, width)))


def _extended_area(slice_shape, tile, tile_halo):
    if tuple(tile) == tuple(slice_shape):
        return slice_shape[0] * slice_shape[1]
    return min(tile[0] + 2 * tile_halo, slice_shape[0]) * min(tile[1] + 2 * tile_halo, slice_shape[1])


def _disk_layouts(slice_shape, block_slices, halo, tile_halo, budget):
    """(core slices, tile) pairs whose tile watershed fits ``budget``."""
    for core in range(1, block_slices + 1):
        extended = budget / ((core + 2 * halo) * _TILE_BYTES_PER_VOXEL)
        side = int(np.sqrt(extended)) - 2 * tile_halo
        if side >= _MIN_TILE:
            yield core, (min(side, slice_shape[0]), min(side, slice_shape[1]))


def _relabelling(plan, slice_shape):
    """Voxels labelled per voxel of the volume: slab halos and tile halos count again."""
    tile = plan["tile"]
    depth = (plan["core_slices"] + 2 * plan["halo"]) / plan["core_slices"]
    return depth * _extended_area(slice_shape, tile, plan["tile_halo"]) / (tile[0] * tile[1])


def _tiles(slice_shape, tile, tile_halo):
    """``(core, extended)`` pairs of (y slice, x slice), in raster order, covering a slice."""
    axes = []
    for n, size in zip(slice_shape, tile):
        edges = np.linspace(0, n, -(-n // size) + 1).round().astype(int)  # equal tiles
        axes.append([(slice(a, b), slice(max(a - tile_halo, 0), min(b + tile_halo, n)))
                     for a, b in zip(edges[:-1], edges[1:])])
    return [((y, x), (ey, ex)) for y, ey in axes[0] for x, ex in axes[1]]


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
    live in a ``slab_store`` store: in memory, or on disk for slices too large for that."""

    def __init__(self, n_slices, slice_shape, plan, labelling, sampling, ids, scratch=None, tile_sink=None):
        self.n_slices, self.slice_shape, self.tile_sink = n_slices, slice_shape, tile_sink
        self.block, self.halo = plan["core_slices"], plan["halo"]
        self.tiles = _tiles(slice_shape, plan["tile"], plan["tile_halo"])
        labelling = dict(labelling)
        self.min_size = labelling.pop("min_size")
        self.labelling, self.sampling, self.ids = labelling, sampling, ids
        self.planes = DiskPlanes(scratch) if plan["store"] == "disk" else MemoryPlanes()
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
        return _watershed(maps, sampling=self.sampling, **self.labelling)

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
    new, old = _best_pairs(new, old, score, min_score=1)
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


# ------------------------------------------------------------ matching


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


def _iou_pairs(local, previous):
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


def _best_pairs(new, old, score, min_score):
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


def _fill_new_ids(ids, candidates, counter):
    """Give a new id to each candidate local id that has none yet."""
    missing = candidates[ids[candidates] == 0]
    ids[missing] = counter.take(missing.size)


# ------------------------------------------------------------ checks


def _check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def _check_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold < 1:
        raise ValueError(f"threshold must be a number between 0 and 1 (exclusive); got {threshold!r}.")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _check_labelling(threshold, seeds, seed_distance, min_size):
    _check_threshold(threshold)
    _check_choice("seeds", seeds, SEED_MODES)
    if isinstance(seed_distance, bool) or not isinstance(seed_distance, Real) or not seed_distance > 0:
        raise ValueError(f"seed_distance must be a number > 0 (voxels of the finest axis); got {seed_distance!r}.")
    _check_int("min_size", min_size, 0)


def check_sampling(sampling, ndim):
    if sampling is None:
        return None
    try:
        values = tuple(float(v) for v in sampling)
    except (TypeError, ValueError):
        values = ()
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"sampling must be None (isotropic) or {ndim} positive voxel sizes, one per spatial axis; "
            f"got {sampling!r}."
        )
    return values


def _check_slice_shape(slice_shape):
    try:
        shape = tuple(int(n) for n in slice_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"slice_shape must be (height, width), two integers >= 1; got {slice_shape!r}.")
    return shape


def _check_channels(kind, probs, ok, expected):
    if not ok:
        raise ValueError(
            f"A {kind!r} model gives {expected} in the last axis; got probabilities of shape {probs.shape}."
        )


def _check_maps(maps, spatial_ndims):
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim - 1 not in spatial_ndims or maps.shape[-1] != 2:
        expected = " or ".join("(" + ", ".join("ZYX"[3 - n :]) + ", 2)" for n in spatial_ndims)
        raise ValueError(
            f"maps must be {expected}: foreground and interior maps from object_maps; got shape {maps.shape}."
        )
    return maps

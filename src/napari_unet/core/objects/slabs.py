"""How "3d" objects cut a volume into slabs of slices (and, for large slices, Y/X tiles) so that
labelling it stays within a memory budget: the slab plan. numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A slab's maps are kept as probabilities in steps of 1/255 (uint8: 2 bytes per pixel for both
# maps instead of 8), labels as uint32.
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


@dataclass(frozen=True)
class SlabPlan:
    """How "3d" objects cut a volume: slabs of ``core_slices`` slices, each seeing ``halo`` more
    on either side, labelled in Y/X tiles of ``tile`` pixels (the slice shape when slabs are not
    tiled) that see ``tile_halo`` more on each side. ``nbytes``: the estimated peak; ``store``:
    where the slab's planes live, "memory" or "disk" (a temporary folder of ``disk_bytes``)."""

    core_slices: int
    halo: int
    tile: tuple
    tile_halo: int
    store: str
    nbytes: int
    disk_bytes: int

    def tiles(self, slice_shape) -> list:
        """``(core, extended)`` pairs of (y slice, x slice), in raster order, covering a slice."""
        axes = []
        for n, size in zip(slice_shape, self.tile):
            edges = np.linspace(0, n, -(-n // size) + 1).round().astype(int)  # equal tiles
            axes.append([(slice(a, b), slice(max(a - self.tile_halo, 0), min(b + self.tile_halo, n)))
                         for a, b in zip(edges[:-1], edges[1:])])
        return [((y, x), (ey, ex)) for y, ey in axes[0] for x, ex in axes[1]]

    def relabelling(self, slice_shape) -> float:
        """Voxels labelled per voxel of the volume: slab halos and tile halos count again."""
        depth = (self.core_slices + 2 * self.halo) / self.core_slices
        return depth * _extended_area(slice_shape, self.tile, self.tile_halo) / (self.tile[0] * self.tile[1])


def slab_plan(slice_shape, block_slices, halo, *, tile_halo=TILE_HALO, budget=MEMORY_BUDGET, disk_room=0) -> SlabPlan:
    """How "3d" objects cut a volume of ``slice_shape`` slices to stay within ``budget`` bytes:
    at most ``block_slices`` core slices a slab, planes on disk only where ``disk_room`` (free
    bytes for their folder) holds them."""
    height, width = slice_shape
    area = height * width

    def buffers(core):  # the slab's maps, its labels, and the labels kept from the last slab
        return area * ((core + 2 * halo) * _MAP_BYTES + (core + halo) * _LABEL_BYTES)

    def plan(core, tile, store="memory"):
        extended = _extended_area(slice_shape, tile, tile_halo)
        held = buffers(core) if store == "memory" else 0
        return SlabPlan(core_slices=core, halo=halo, tile=tile, tile_halo=tile_halo, store=store,
                        nbytes=held + (core + 2 * halo) * extended * _TILE_BYTES_PER_VOXEL,
                        disk_bytes=0 if store == "memory" else buffers(core))

    # Whole slices while a slab keeps at least two halos of core slices: relabelling
    # the halos then costs at most as much again as the core.
    for core in range(block_slices, max(min(block_slices, 2 * halo), 1) - 1, -1):
        whole = plan(core, slice_shape)
        if whole.nbytes <= budget:
            return whole
    # Planes on disk: the slab depth and tile that label each voxel the fewest times.
    on_disk = [plan(core, tile, "disk") for core, tile in _disk_layouts(slice_shape, block_slices, halo,
                                                                        tile_halo, budget)]
    on_disk = [p for p in on_disk if p.disk_bytes * 1.25 <= disk_room]
    if on_disk:
        return min(on_disk, key=lambda p: p.relabelling(slice_shape))
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

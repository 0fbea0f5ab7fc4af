"""Overlapping tiles of a 2-D slice and their seamless stitching (numpy only).

Stitching keeps only the centre ("valid" region) of each tile: every output
pixel comes from the one tile in which it lies at least ``overlap`` pixels away
from an inner tile edge. So for a translation-equivariant model whose receptive
field radius is at most ``overlap``, tiled prediction equals a whole-slice
pass (on the slice reflect-padded to the size multiple). Tile starts are multiples of the model's size multiple, so the
pooling grid of a U-Net lines up with the one of a whole-slice pass too.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Tile(NamedTuple):
    """Where a tile comes from and where its prediction goes.

    ``source``: the tile's window in the padded slice (see ``pad_for_tiles``).
    ``crop``: the part of the tile's prediction that is kept.
    ``target``: where that part goes in the (unpadded) slice.
    """

    source: tuple
    crop: tuple
    target: tuple


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def tile_size_for(length: int, tile: int, multiple: int) -> int:
    """Tile length along one axis: ``tile`` rounded up to ``multiple``, but no
    longer than the axis itself rounded up (a small slice is one tile)."""
    return min(round_up(tile, multiple), round_up(length, multiple))


def _axis_tiles(length: int, tile: int, overlap: int, multiple: int):
    """``(starts, size, [(own_start, own_stop), ...])`` along one axis.

    Tiles span the axis padded up to ``multiple`` and the last one ends exactly
    there, so the padded content matches a whole-slice pass.
    """
    padded = round_up(length, multiple)
    size = tile_size_for(length, tile, multiple)
    if size >= length:
        return [0], size, [(0, length)]
    step = (size - 2 * overlap) // multiple * multiple
    if step < multiple:
        raise ValueError(
            f"tile_overlap {overlap} leaves no room in tiles of {size} px (the step between tiles must be at "
            f"least {multiple} px): set tile_overlap to at most {(size - multiple) // 2} or raise tile_size "
            f"to at least {2 * overlap + multiple}."
        )
    n_tiles = math.ceil((padded - size) / step) + 1
    starts = [i * step for i in range(n_tiles - 1)] + [padded - size]
    # Cut half-way through each shared region (>= 2 * overlap wide), so the kept part of
    # both neighbours is at least ``overlap`` away from their inner edges.
    cuts = [0] + [(prev + size + start) // 2 for prev, start in zip(starts, starts[1:])] + [length]
    return starts, size, list(zip(cuts[:-1], cuts[1:]))


def tile_slices(shape_yx, tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering a slice of ``shape_yx``; all tiles have the same shape,
    a multiple of ``multiple`` of at most ``tile`` rounded up to it.

    Raises ``ValueError`` if the overlap leaves no step between tiles.
    """
    if len(shape_yx) != 2 or min(shape_yx) < 1:
        raise ValueError(f"tile_slices needs a non-empty 2-D shape, got {tuple(shape_yx)}.")
    if multiple < 1 or tile < 1 or overlap < 0:
        raise ValueError(f"tile ({tile}) and multiple ({multiple}) must be >= 1 and overlap ({overlap}) >= 0.")
    per_axis = [_axis_tiles(n, tile, overlap, multiple) for n in shape_yx]
    tiles = []
    (ys, ysize, yown), (xs, xsize, xown) = per_axis
    for y0, (ya, yb) in zip(ys, yown):
        for x0, (xa, xb) in zip(xs, xown):
            tiles.append(
                Tile(
                    source=(slice(y0, y0 + ysize), slice(x0, x0 + xsize)),
                    crop=(slice(ya - y0, yb - y0), slice(xa - x0, xb - x0)),
                    target=(slice(ya, yb), slice(xa, xb)),
                )
            )
    return tiles


def tile_shape(tiles: list[Tile]) -> tuple[int, int]:
    s = tiles[0].source
    return s[0].stop - s[0].start, s[1].stop - s[1].start


def pad_for_tiles(image, tiles: list[Tile]):
    """Reflect-pad the end of the two first axes of ``image`` so every tile
    source lies inside (up to the next multiple of the model's size multiple).
    Padding the whole slice, not each tile, keeps the padded content identical
    to a whole-slice pass padded the same way."""
    image = np.asarray(image)
    need_y = max(t.source[0].stop for t in tiles) - image.shape[0]
    need_x = max(t.source[1].stop for t in tiles) - image.shape[1]
    if need_y <= 0 and need_x <= 0:
        return image
    widths = [(0, max(need_y, 0)), (0, max(need_x, 0))] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="reflect")


def stitch(out, tile: Tile, prediction) -> None:
    """Write the kept centre of one tile's ``prediction`` into ``out``."""
    out[tile.target] = prediction[tile.crop]

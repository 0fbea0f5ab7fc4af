"""A synthetic, partly annotated microscopy stack of cells (numpy and scipy only).

The volume imitates a fluorescence stack of a tissue with labelled membranes:
3-D Voronoi cells with wobbly, bright membranes of uneven brightness, granular
cytoplasm, dark speckled nuclei, dark space outside the tissue, an anisotropic
blur (PSF), uneven illumination that fades with depth, and Poisson + Gaussian
camera noise. Cells continue across Z, so slices that were not annotated can
be segmented from the ones that were.

The task (cell interior vs. membrane/outside) needs context: nuclei are as dark
as the outside, and membranes are brighter than the interior, so a global
threshold fails while a small U-Net learns it from a few slices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import qmc

DEFAULT_SHAPE = (32, 256, 256)
# Voxel size in micrometres (z, y, x): z steps four times coarser than the pixels.
DEFAULT_SCALE = (1.0, 0.25, 0.25)
CELL_SPACING_UM = 9.0  # smallest distance between two cell centres (smaller in small images)
MEMBRANE_HALF_WIDTH_PX = 1  # 2 px wide membrane in every slice
OUTSIDE_FRACTION = 0.2  # share of the cells dropped to leave space outside the tissue
PHOTONS_AT_MEMBRANE = 60.0
CAMERA_OFFSET = 100.0
READ_NOISE = 3.0


def default_annotated_slices(n_slices: int, n_annotated: int = 5) -> tuple:
    """Slices a user would annotate: spread evenly, away from the very ends."""
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    n = min(n_annotated, n_slices)
    # Centres of n equal bins, e.g. 3, 9, 16, 22, 28 for 32 slices.
    picks = np.floor((np.arange(n) + 0.5) * n_slices / n).astype(int)
    return tuple(sorted({int(p) for p in picks}))


def make_cells_volume(
    shape: tuple = DEFAULT_SHAPE,
    seed: int = 0,
    annotated_slices: tuple | None = None,
    scale: tuple = DEFAULT_SCALE,
) -> dict:
    """Generate the synthetic stack, its ground truth and a partial annotation.

    Returns a dict with
    ``image`` (uint16, Z×Y×X, raw camera counts),
    ``labels_full`` (uint8, 1 = cell interior, 0 = membrane/outside, every slice),
    ``labels`` (uint8, ``labels_full`` on the annotated slices, 0 elsewhere),
    ``instances`` (uint32, one id per cell, 0 on membranes and outside),
    ``annotated_slices`` (tuple of int) and ``scale`` (z, y, x in micrometres).
    ``annotated_slices=None`` picks about five slices spread through Z.
    """
    shape = _check_shape(shape)
    scale = tuple(float(s) for s in scale)
    if len(scale) != 3 or min(scale) <= 0:
        raise ValueError(f"scale must be three positive voxel sizes (z, y, x), got {scale!r}")
    if annotated_slices is None:
        annotated_slices = default_annotated_slices(shape[0])
    annotated_slices = _check_slices(annotated_slices, shape[0])
    rng = np.random.default_rng(seed)

    cells, dist_um, nucleus_radius_um = _voronoi_cells(shape, scale, rng)
    membrane = _membranes(cells)
    instances = np.where(membrane, 0, cells).astype(np.uint32)
    labels_full = (instances > 0).astype(np.uint8)
    nucleus = (cells > 0) & (dist_um < nucleus_radius_um[cells])

    image = _render(cells, membrane, nucleus, scale, rng)

    labels = np.zeros_like(labels_full)
    labels[list(annotated_slices)] = labels_full[list(annotated_slices)]
    empty = [z for z in annotated_slices if not labels[z].any()]
    if empty:
        raise ValueError(
            f"annotated slices {empty} hold no cells, so they would not count as annotated; "
            "choose other slices or another seed"
        )
    return {
        "image": image,
        "labels_full": labels_full,
        "labels": labels,
        "instances": instances,
        "annotated_slices": annotated_slices,
        "scale": scale,
    }


def _check_shape(shape) -> tuple:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (z, y, x), got {shape!r}")
    if shape[0] < 1 or min(shape[1:]) < 32:
        raise ValueError(f"shape needs at least 1 slice of 32 x 32 pixels, got {shape!r}")
    return shape


def _check_slices(slices, n_slices: int) -> tuple:
    slices = tuple(sorted({int(z) for z in slices}))
    if not slices:
        raise ValueError("annotated_slices is empty; give at least one slice index")
    bad = [z for z in slices if not 0 <= z < n_slices]
    if bad:
        raise ValueError(f"annotated_slices {bad} are outside the {n_slices} slices (0..{n_slices - 1})")
    return slices


def _smooth_noise(shape, sigma, rng) -> np.ndarray:
    """Random field with unit standard deviation and correlation length ``sigma`` (px)."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _cell_spacing_um(shape, scale) -> float:
    """Cell size: the default, but small enough for several cells across a small image."""
    smallest_side_um = min(shape[1] * scale[1], shape[2] * scale[2])
    return min(CELL_SPACING_UM, smallest_side_um / 3)


def _seed_points(shape, scale, spacing_um, rng) -> np.ndarray:
    """Cell centres (micrometres): random, but never closer than ``spacing_um``."""
    extent = np.array(shape) * np.array(scale)
    side = float(extent.max())
    # Sample a cube (l_bounds needs scipy >= 1.15) and keep the points inside the volume.
    unit = qmc.PoissonDisk(d=3, radius=spacing_um / side, seed=rng).fill_space()
    points = unit * side
    points = points[np.all(points < extent, axis=1)]
    # A thin volume can miss every point; one cell in the middle keeps it valid.
    return points if len(points) else extent[None, :] / 2


def _voronoi_cells(shape, scale, rng):
    """Label every voxel with its nearest cell centre, with wobbly borders.

    Returns the cell ids (0 = outside the tissue), the distance to the cell
    centre in micrometres and a per-cell nucleus radius (indexed by cell id).
    """
    spacing_um = _cell_spacing_um(shape, scale)
    seeds_px = np.round(_seed_points(shape, scale, spacing_um, rng) / np.array(scale)).astype(int)
    seeds_px = np.clip(seeds_px, 0, np.array(shape) - 1)
    n_cells = len(seeds_px)
    seed_ids = np.zeros(shape, dtype=np.int32)
    seed_ids[tuple(seeds_px.T)] = np.arange(1, n_cells + 1)
    dist_um, nearest = ndi.distance_transform_edt(seed_ids == 0, sampling=scale, return_indices=True)
    cells = seed_ids[tuple(nearest)]
    dist_um = dist_um.astype(np.float32)

    # Bend the straight Voronoi faces: look labels up at smoothly displaced positions.
    z, y, x = np.indices(shape, dtype=np.int32)
    sigma = (2.0, 12.0, 12.0)
    y = np.clip(y + np.round(4.0 * _smooth_noise(shape, sigma, rng)).astype(np.int32), 0, shape[1] - 1)
    x = np.clip(x + np.round(4.0 * _smooth_noise(shape, sigma, rng)).astype(np.int32), 0, shape[2] - 1)
    cells = cells[z, y, x]
    dist_um = dist_um[z, y, x]

    # Leave space outside the tissue: drop the cells where a smooth random field is low,
    # so the gaps are connected patches rather than scattered single cells.
    # The field is smooth, so a grid four times coarser is enough (and much faster).
    coarse = tuple(-(-n // 4) for n in shape)
    field = _smooth_noise(coarse, (0.75, 5.0, 5.0), rng)[tuple((seeds_px // 4).T)]
    dropped = np.concatenate([[False], field < np.quantile(field, OUTSIDE_FRACTION)])
    cells[dropped[cells]] = 0
    nucleus_radius_um = rng.uniform(0.5, 0.75, n_cells + 1) * spacing_um / 2
    return cells, dist_um, nucleus_radius_um.astype(np.float32)


def _membranes(cells) -> np.ndarray:
    """Pixels next to another cell or to the outside, found in each slice (2 px wide)."""
    size = 2 * MEMBRANE_HALF_WIDTH_PX + 1
    footprint = (1, size, size)
    hi = ndi.maximum_filter(cells, size=footprint)
    lo = ndi.minimum_filter(cells, size=footprint)
    return (hi != lo) & (cells > 0)


def _render(cells, membrane, nucleus, scale, rng) -> np.ndarray:
    """Turn the label maps into a noisy, blurred, unevenly lit camera image."""
    shape = cells.shape
    n_ids = int(cells.max()) + 1
    inside = cells > 0
    cytoplasm_level = rng.uniform(0.3, 0.5, n_ids).astype(np.float32)
    granules = _smooth_noise(shape, (0.5, 1.0, 1.0), rng)
    chromatin = _smooth_noise(shape, (0.5, 1.5, 1.5), rng)
    haze = _smooth_noise(shape, (2.0, 8.0, 8.0), rng)

    signal = np.where(inside, cytoplasm_level[cells] * (1 + 0.3 * granules), 0.08 + 0.03 * haze)
    signal = np.where(nucleus, 0.12 + 0.06 * chromatin, signal)
    # Membrane brightness varies along the membrane, some stretches are faint.
    membrane_level = np.clip(0.8 + 0.35 * _smooth_noise(shape, (1.0, 6.0, 6.0), rng), 0.35, 1.3)
    signal = np.where(membrane, membrane_level, signal).astype(np.float32)

    # Point spread function: wider along z; micrometres turned into pixels of each axis.
    psf_sigma_um = (0.6, 0.25, 0.25)
    signal = ndi.gaussian_filter(signal, [s / v for s, v in zip(psf_sigma_um, scale)])

    # Illumination: a tilted, smooth field across the image, dimmer deeper in the stack.
    zz, yy, xx = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij", sparse=True)
    tilt = rng.uniform(-0.25, 0.25, 2)
    shading = (1 + tilt[0] * (yy - 0.5) + tilt[1] * (xx - 0.5)) * np.exp(-0.35 * zz)
    expected = PHOTONS_AT_MEMBRANE * signal * shading.astype(np.float32)

    counts = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    counts += CAMERA_OFFSET + READ_NOISE * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(np.round(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)

"""Synthetic, partly annotated microscopy stacks (numpy and scipy only).

Two kinds: membrane-stained tissue (``make_cells_volume``, described below) and
densely packed, touching nuclei (``make_nuclei_volume``), which a threshold
merges and which need a seeded split.

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
    shape, scale, annotated_slices = _check_inputs(shape, scale, annotated_slices)
    rng = np.random.default_rng(seed)

    cells, dist_um, nucleus_radius_um = _voronoi_cells(shape, scale, rng)
    membrane = _membranes(cells)
    instances = np.where(membrane, 0, cells).astype(np.uint32)
    labels_full = (instances > 0).astype(np.uint8)
    nucleus = (cells > 0) & (dist_um < nucleus_radius_um[cells])

    image = _render(cells, membrane, nucleus, scale, rng)

    labels = _partial_labels(labels_full, annotated_slices, "cells")
    return {
        "image": image,
        "labels_full": labels_full,
        "labels": labels,
        "instances": instances,
        "annotated_slices": annotated_slices,
        "scale": scale,
    }


def _check_inputs(shape, scale, annotated_slices) -> tuple:
    """Validated shape, scale and annotated slices (``None`` picks the default slices)."""
    shape = _check_shape(shape)
    scale = tuple(float(s) for s in scale)
    if len(scale) != 3 or min(scale) <= 0:
        raise ValueError(f"scale must be three positive voxel sizes (z, y, x), got {scale!r}")
    if annotated_slices is None:
        annotated_slices = default_annotated_slices(shape[0])
    return shape, scale, _check_slices(annotated_slices, shape[0])


def _partial_labels(labels_full, annotated_slices, objects: str) -> np.ndarray:
    """The ground truth on the annotated slices only; an empty one is refused."""
    labels = np.zeros_like(labels_full)
    labels[list(annotated_slices)] = labels_full[list(annotated_slices)]
    empty = [z for z in annotated_slices if not labels[z].any()]
    if empty:
        raise ValueError(
            f"annotated slices {empty} hold no {objects}, so they would not count as annotated; "
            "choose other slices or another seed"
        )
    return labels


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
    return _camera_image(signal, scale, rng)


def _camera_image(signal, scale, rng, photons: float = PHOTONS_AT_MEMBRANE) -> np.ndarray:
    """Blur, light and record ``signal`` as raw camera counts (``photons`` where it is 1)."""
    shape = signal.shape
    # Point spread function: wider along z; micrometres turned into pixels of each axis.
    psf_sigma_um = (0.6, 0.25, 0.25)
    signal = ndi.gaussian_filter(signal, [s / v for s, v in zip(psf_sigma_um, scale)])

    # Illumination: a tilted, smooth field across the image, dimmer deeper in the stack.
    zz, yy, xx = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij", sparse=True)
    tilt = rng.uniform(-0.25, 0.25, 2)
    shading = (1 + tilt[0] * (yy - 0.5) + tilt[1] * (xx - 0.5)) * np.exp(-0.35 * zz)
    expected = photons * signal * shading.astype(np.float32)

    counts = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    counts += CAMERA_OFFSET + READ_NOISE * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(np.round(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


# --- Densely packed nuclei (a nuclear stain such as DAPI or H2B) ---------------

NUCLEUS_SEMI_AXES_UM = (3.0, 5.0)  # range of each semi-axis of a nucleus
# Centres may come this much closer than the sum of their mean radii, so that
# neighbours press into each other and share a face instead of leaving a gap.
NUCLEUS_PACKING = 0.8
NUCLEUS_PLACEMENT_TRIES = 4000  # random candidates; most are rejected once the space fills
# Pieces smaller than this share of the smallest whole nucleus are dropped: slivers
# at the crop border, or squeezed between neighbours, are no nucleus to segment.
NUCLEUS_MIN_PIECE = 0.05
NUCLEUS_BRIGHTNESS = (0.4, 1.0)  # stain per nucleus, relative to the brightest one
NUCLEUS_RIM_DIP = 0.3  # nuclei are dimmer towards their rim, hence at a shared face
PHOTONS_AT_BRIGHTEST_NUCLEUS = 200.0  # nuclear stains are bright; keeps the noise below the texture


def make_nuclei_volume(
    shape: tuple = DEFAULT_SHAPE,
    seed: int = 0,
    annotated_slices: tuple | None = None,
    scale: tuple = DEFAULT_SCALE,
) -> dict:
    """Generate a stack of densely packed, touching nuclei and its ground truth.

    Imitates a nuclear stain in an embryo or organoid: ellipsoidal nuclei of
    random size and orientation pressed against each other, uneven brightness,
    chromatin texture, a faint background, an anisotropic blur, light fading
    with depth and camera noise. Touching nuclei meet at a face that is only a
    little darker than their interiors, so a global threshold merges them.

    Returns the same keys as :func:`make_cells_volume`: ``image`` (uint16),
    ``labels_full`` (uint8, 1 = nucleus), ``labels`` (``labels_full`` on the
    annotated slices, 0 elsewhere), ``instances`` (uint32, one id per nucleus,
    0 = background; unlike the cells, touching nuclei have no gap between them),
    ``annotated_slices`` and ``scale``.
    """
    shape, scale, annotated_slices = _check_inputs(shape, scale, annotated_slices)
    rng = np.random.default_rng(seed)

    centres_um, axes_um, rotations = _place_nuclei(shape, scale, rng)
    instances, radial = _ellipsoid_voronoi(shape, scale, centres_um, axes_um, rotations)
    instances = _drop_slivers(instances, _sliver_voxels(shape, scale))
    labels_full = (instances > 0).astype(np.uint8)
    signal = _nuclei_signal(instances, radial, rng)
    image = _camera_image(signal, scale, rng, PHOTONS_AT_BRIGHTEST_NUCLEUS)
    return {
        "image": image,
        "labels_full": labels_full,
        "labels": _partial_labels(labels_full, annotated_slices, "nuclei"),
        "instances": instances,
        "annotated_slices": annotated_slices,
        "scale": scale,
    }


def _nucleus_size_factor(shape, scale) -> float:
    """1, or less so that a small image still holds about three nuclei across."""
    smallest_side_um = min(shape[1] * scale[1], shape[2] * scale[2])
    largest_diameter_um = 2 * NUCLEUS_SEMI_AXES_UM[1]
    return min(1.0, smallest_side_um / (3 * largest_diameter_um))


def _random_rotations(n, rng) -> np.ndarray:
    """``n`` random 3-D rotation matrices (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1  # reflections -> rotations
    return q


def _place_nuclei(shape, scale, rng):
    """Centres (um), semi-axes (um) and orientations of the nuclei.

    Random sequential placement: a candidate is kept when it is far enough from
    every kept centre, "far enough" being a bit less than the sum of mean radii
    so that neighbours touch. Centres may lie up to one radius outside the
    volume, so nuclei are cut at the borders as in a real crop.
    """
    size = _nucleus_size_factor(shape, scale)
    low_um, high_um = (size * a for a in NUCLEUS_SEMI_AXES_UM)
    extent = np.array(shape) * np.array(scale)
    candidates = rng.uniform(-low_um, extent + low_um, (NUCLEUS_PLACEMENT_TRIES, 3))
    axes = rng.uniform(low_um, high_um, (NUCLEUS_PLACEMENT_TRIES, 3))
    mean_radius = axes.prod(axis=1) ** (1 / 3)

    kept = []
    for i, centre in enumerate(candidates):
        if kept:
            gaps = np.linalg.norm(candidates[kept] - centre, axis=1)
            if np.any(gaps < NUCLEUS_PACKING * (mean_radius[kept] + mean_radius[i])):
                continue
        kept.append(i)
    return candidates[kept], axes[kept], _random_rotations(len(kept), rng)


def _ellipsoid_voronoi(shape, scale, centres_um, axes_um, rotations):
    """Give each voxel to the nucleus whose ellipsoid it lies deepest in.

    The ellipsoid distance is 0 at a centre and 1 on the surface; a voxel with
    distance < 1 to several nuclei goes to the one it is closest to, so overlapping
    ellipsoids are cut along a shared face instead of covering each other.
    Returns the instance ids and, per voxel, the distance to its own centre.
    """
    scale = np.array(scale)
    best = np.ones(shape, dtype=np.float32)  # 1 = outside every nucleus
    instances = np.zeros(shape, dtype=np.uint32)
    for nucleus_id, (centre, axes, rotation) in enumerate(zip(centres_um, axes_um, rotations), 1):
        box = _bounding_box(centre, axes.max(), scale, shape)
        if box is None:
            continue
        offsets_um = [(np.arange(s.start, s.stop) * v - c) for s, v, c in zip(box, scale, centre)]
        # Coordinates along the principal axes, in units of each semi-axis.
        to_axes = (rotation / axes).astype(np.float32)
        distance_sq = np.zeros([s.stop - s.start for s in box], dtype=np.float32)
        for k in range(3):
            along = (
                offsets_um[0][:, None, None] * to_axes[0, k]
                + offsets_um[1][None, :, None] * to_axes[1, k]
                + offsets_um[2][None, None, :] * to_axes[2, k]
            )
            distance_sq += along**2
        distance = np.sqrt(distance_sq)
        closer = distance < best[box]
        best[box] = np.where(closer, distance, best[box])
        instances[box] = np.where(closer, nucleus_id, instances[box])
    return instances, best


def _bounding_box(centre_um, radius_um, scale, shape):
    """Slices of the voxels within ``radius_um`` of the centre, or None if outside."""
    low = np.maximum(np.floor((centre_um - radius_um) / scale).astype(int), 0)
    high = np.minimum(np.ceil((centre_um + radius_um) / scale).astype(int) + 1, shape)
    if np.any(high <= low):
        return None
    return tuple(slice(lo, hi) for lo, hi in zip(low, high))


def _sliver_voxels(shape, scale) -> float:
    """Voxel count below which a piece of a nucleus is dropped."""
    smallest_axis_um = _nucleus_size_factor(shape, scale) * NUCLEUS_SEMI_AXES_UM[0]
    smallest_nucleus_um3 = 4 / 3 * np.pi * smallest_axis_um**3
    return NUCLEUS_MIN_PIECE * smallest_nucleus_um3 / float(np.prod(scale))


def _drop_slivers(instances, min_voxels) -> np.ndarray:
    """Remove the pieces smaller than ``min_voxels`` and number the rest 1..n."""
    sizes = np.bincount(instances.ravel())
    kept = np.flatnonzero(sizes >= min_voxels)
    kept = kept[kept > 0]
    lookup = np.zeros(len(sizes), dtype=np.uint32)
    lookup[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    return lookup[instances]


def _nuclei_signal(instances, radial, rng) -> np.ndarray:
    """Stain density: uneven nuclei with chromatin texture on a faint background."""
    shape = instances.shape
    n_ids = int(instances.max()) + 1
    brightness = rng.uniform(*NUCLEUS_BRIGHTNESS, n_ids).astype(np.float32)
    chromatin = _smooth_noise(shape, (0.5, 1.5, 1.5), rng)
    haze = _smooth_noise(shape, (2.0, 8.0, 8.0), rng)

    # Dimmer towards the rim: where two nuclei meet, both are near their rim.
    profile = 1 - NUCLEUS_RIM_DIP * radial**2
    nuclei = brightness[instances] * profile * (1 + 0.25 * chromatin)
    background = 0.06 + 0.02 * haze
    return np.where(instances > 0, nuclei, background).astype(np.float32)

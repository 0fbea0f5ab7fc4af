"""The slice spacing of a stack whose file does not say it, from the stack itself.

Structure that is isotropic on average changes as much from one slice to the next as
within a slice over a shift of one slice spacing. So the spacing, in pixels, is the in-plane
shift whose mean squared difference equals that of neighbouring slices (a variogram
crossing). The same works on 3-D object ids, with "differs" in place of the squared
difference: ids are not blurred by the microscope's longer reach along z, which makes
neighbouring image slices look alike and the image's estimate short.

numpy only.
"""

from __future__ import annotations

import numpy as np

# Largest spacing looked for (pixels); a stack whose slices share nothing reports this.
MAX_SPACING = 40
_SAMPLED_SLICES = 16  # slice pairs compared: enough for a stable mean, cheap on any stack
_CROP = 512  # central in-plane crop, so a large slice costs no more than a small one


def z_spacing_from_image(volume, max_spacing: int = MAX_SPACING) -> float | None:
    """Slice spacing in pixels of a (Z, Y, X) volume, or (Z, Y, X, C) (its first channel), or
    None when it cannot tell (fewer than 2 slices, a constant volume). Reads at most 17 slices
    of a lazy volume."""
    if len(volume.shape) not in (3, 4) or volume.shape[0] < 2:
        return None
    pairs = _slice_pairs(volume.shape[0])
    planes = {k: _grey(_crop(_read(volume, k))) for k in set(pairs) | {k + 1 for k in pairs}}
    across = np.mean([np.mean((planes[k + 1] - planes[k]) ** 2) for k in pairs])
    within = _in_plane_curve([planes[k] for k in pairs], max_spacing,
                             lambda a, b: np.mean((a - b) ** 2))
    return _crossing(across, within)


def z_spacing_from_ids(labels, slices, *, max_spacing: int = MAX_SPACING) -> float | None:
    """Slice spacing in pixels from 3-D object ids painted on adjacent annotated slices
    ``slices`` of ``labels`` (Z, Y, X); None without two adjacent slices whose ids carry over."""
    annotated = set(int(z) for z in slices)
    pairs = [z for z in sorted(annotated) if z + 1 in annotated]
    pairs = [z for z in pairs if ids_carry_over(labels[z], labels[z + 1])]
    if not pairs:
        return None
    planes = {z: _crop(np.asarray(labels[z])) for z in set(pairs) | {z + 1 for z in pairs}}
    across = float(np.mean([_differ(planes[z], planes[z + 1]) for z in pairs]))
    within = _in_plane_curve([planes[z] for z in pairs], max_spacing, _differ)
    return _crossing(across, within)


def ids_carry_over(a, b, *, min_iou: float = 0.5, min_share: float = 0.5) -> bool:
    """True when most ids found on both label slices ``a`` and ``b`` mark overlapping objects
    (3-D ids), False when the same numbers mean other objects (ids numbered per slice)."""
    a, b = np.asarray(a), np.asarray(b)
    shared = np.intersect1d(np.unique(a[a > 0]), np.unique(b[b > 0]))
    if shared.size == 0:
        return False
    same = 0
    for i in shared:
        in_a, in_b = a == i, b == i
        same += int(np.count_nonzero(in_a & in_b) >= min_iou * np.count_nonzero(in_a | in_b))
    return same >= min_share * shared.size


def _slice_pairs(n_slices: int) -> list[int]:
    """First slices of the neighbouring pairs compared, spread evenly through the stack."""
    count = min(_SAMPLED_SLICES, n_slices - 1)
    return sorted({int(k) for k in np.linspace(0, n_slices - 2, count).round()})


def _crop(plane) -> np.ndarray:
    h, w = plane.shape[:2]
    y0, x0 = max(0, (h - _CROP) // 2), max(0, (w - _CROP) // 2)
    return np.asarray(plane[y0:y0 + _CROP, x0:x0 + _CROP])


def _read(volume, k) -> np.ndarray:
    """Slice ``k``; a lazy (dask) stack reads it here, even where a dask.distributed client is the
    default scheduler (its workers cannot take a lazy TIFF's graph)."""
    plane = volume[k]
    return np.asarray(plane.compute(scheduler="synchronous") if hasattr(plane, "compute") else plane)


def _grey(plane) -> np.ndarray:
    return (plane[..., 0] if plane.ndim == 3 else plane).astype(np.float32)


def _differ(a, b) -> float:
    return float(np.mean(a != b))


def _in_plane_curve(planes, max_spacing: int, difference) -> np.ndarray:
    """The mean difference of each plane with itself shifted by 1..max_spacing px (y and x)."""
    size = min(min(p.shape) for p in planes)
    shifts = range(1, max(1, min(max_spacing, size - 1)) + 1)
    return np.array([np.mean([difference(p[:, d:], p[:, :-d]) for p in planes]
                             + [difference(p[d:], p[:-d]) for p in planes]) for d in shifts])


def _crossing(across: float, within: np.ndarray) -> float | None:
    """The shift (interpolated, in px) at which the in-plane curve reaches ``across``."""
    if not np.isfinite(across) or within.size == 0 or within[-1] <= 0:
        return None
    curve = np.concatenate([[0.0], within])
    reached = np.flatnonzero(curve >= across)
    if reached.size == 0:
        return float(within.size)  # the slices share less than any shift shows: as far as we look
    i = int(reached[0])
    if i == 0:
        return None  # identical neighbours: nothing to measure
    step = curve[i] - curve[i - 1]
    return float(i - 1 + (across - curve[i - 1]) / step) if step > 0 else float(i)

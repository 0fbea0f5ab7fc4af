"""The object step tuned on the user's own annotations, after training (as StarDist tunes its
thresholds on validation images).

The model's object maps of the annotated stretch of the volume are labelled with each
candidate setting, and each result is scored by adapted Rand error against the painted ids:
over the annotated slices together when the ids are 3-D (the same id on several slices is
one object), else slice by slice. One setting at a time is searched, in this order, the
best so far kept: the assembly (3-D at the estimated slice spacing x 0.5, 1 or 2, linked,
2-D), the seeds, the threshold, the minimum size. Each list holds the fixed default, so the
choice never scores worse than the defaults on the annotations; a change must win by a margin
(MARGIN), not by noise. A time budget ends the
search early, keeping the best so far.

numpy only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from napari_unet.core.metrics import adapted_rand_error
from napari_unet.core.objects.streaming import label_volume

Z_FACTORS = (1.0, 0.5, 2.0)  # the image's spacing estimate reads short where the microscope blurs z
SEED_CHOICES = (("distance", 3.0), ("distance", 2.0), ("distance", 5.0), ("distance", 8.0), ("interior", 3.0))
THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.7)
MIN_SIZE_FRACTIONS = (0.0, 0.05, 0.15, 0.3)  # of the median painted object's area in a slice
# A candidate replaces the best so far only when it is better by this share of the error and,
# scored slice by slice, by more than the paired standard error over the slices: a 12 % gain on
# ISBI's 4 held-out slices (min size 0, threshold 0.4) was a 58 % loss on 10 other slices.
MARGIN = 0.05


@dataclass(frozen=True)
class ObjectSettings:
    """One setting of the object step (the names of ``PredictConfig``'s fields)."""

    objects: str = "3d"
    z_factor: float = 1.0  # times the estimated slice spacing, for "3d"
    seeds: str = "distance"
    seed_distance: float = 3.0
    threshold: float = 0.5
    min_object_size: int = 100

    def summary(self) -> str:
        """As the CLI and the docks say it, e.g. ``linked, distance seeds 3 px, threshold 0.5, min size 30``."""
        seeds = f"distance seeds {self.seed_distance:g} px" if self.seeds == "distance" else "interior seeds"
        spacing = f" (slice spacing x {self.z_factor:g})" if self.objects == "3d" and self.z_factor != 1 else ""
        return (f"{self.objects}{spacing}, {seeds}, threshold {self.threshold:g}, "
                f"min size {self.min_object_size}")


@dataclass(frozen=True)
class Tuning:
    """The tuned settings, how they score beside the defaults, and what was searched."""

    settings: ObjectSettings
    error: float
    default_error: float
    n_slices: int  # annotated slices scored
    ids_3d: bool
    z_spacing: float | None  # slice spacing (px) the 3-D candidates were given
    tried: int
    seconds: float

    def to_dict(self) -> dict:
        return {**asdict(self), "settings": asdict(self.settings)}

    @classmethod
    def from_dict(cls, data: dict) -> Tuning:
        return cls(**{**data, "settings": ObjectSettings(**data["settings"])})

    def line(self) -> str:
        return (f"objects tuned on your annotations: {self.settings.summary()} (adapted Rand error "
                f"{self.error:.3f} on {self.n_slices} annotated slices; the defaults: {self.default_error:.3f})")


def tune_objects(maps, annotations, *, annotated, z_spacing, ids_3d: bool, defaults: ObjectSettings,
                 join_pieces: bool, budget_s: float) -> Tuning:
    """Tune the object step on ``maps`` (Z, Y, X, 2) against painted ids ``annotations`` (Z, Y, X)
    on the slices ``annotated``; ``z_spacing`` in px (None: unknown, taken as 1)."""
    start = time.monotonic()
    scorer = _Scorer(maps, annotations, list(annotated), ids_3d, z_spacing or 1.0, join_pieces)
    best, best_error = defaults, scorer(defaults)
    default_error = best_error
    for candidates in _searches(defaults, annotations, list(annotated)):
        for candidate in candidates(best):
            if time.monotonic() - start > budget_s:
                break
            if scorer.clearly_better(candidate, best):
                best, best_error = candidate, scorer(candidate)
    return Tuning(settings=best, error=best_error, default_error=default_error, n_slices=len(annotated),
                  ids_3d=ids_3d, z_spacing=z_spacing, tried=scorer.calls, seconds=time.monotonic() - start)


def _searches(defaults: ObjectSettings, annotations, annotated):
    """One list of candidates per setting, each made from the best setting so far."""
    sizes = _min_sizes(annotations, annotated, defaults.min_object_size)
    return [
        lambda s: [replace(s, objects="3d", z_factor=f) for f in Z_FACTORS]
        + [replace(s, objects=m, z_factor=1.0) for m in ("linked", "2d")],
        lambda s: [replace(s, seeds=k, seed_distance=d) for k, d in SEED_CHOICES],
        lambda s: [replace(s, threshold=t) for t in THRESHOLDS],
        lambda s: [replace(s, min_object_size=m) for m in sizes],
    ]


def _min_sizes(annotations, annotated, default: int) -> list[int]:
    """Minimum sizes to try: fractions of the median painted object's area, and the default."""
    areas: list[int] = []
    for z in annotated:
        ids, counts = np.unique(annotations[z], return_counts=True)
        areas.extend(counts[ids > 0])
    median = float(np.median(areas)) if areas else 0.0
    return sorted({int(round(f * median)) for f in MIN_SIZE_FRACTIONS} | {int(default)})


class _Scorer:
    """Adapted Rand error of one setting's objects on the annotated slices (memoised)."""

    def __init__(self, maps, annotations, annotated, ids_3d, z_spacing, join_pieces) -> None:
        self.maps, self.truth, self.annotated = maps, annotations, annotated
        self.ids_3d, self.z_spacing, self.join_pieces = ids_3d, z_spacing, join_pieces
        self.seen: dict = {}  # setting -> errors (one, or one per scored slice)
        self.calls = 0

    def __call__(self, s: ObjectSettings) -> float:
        return float(np.mean(self._errors(s)))

    def clearly_better(self, candidate: ObjectSettings, best: ObjectSettings) -> bool:
        """Better than ``best`` by MARGIN of its error, and (per slice) by more than the noise."""
        gains = self._errors(best) - self._errors(candidate)
        if gains.mean() <= MARGIN * self(best):
            return False
        return gains.size < 2 or gains.mean() > gains.std(ddof=1) / np.sqrt(gains.size)

    def _errors(self, s: ObjectSettings) -> np.ndarray:
        if s not in self.seen:
            self.calls += 1
            self.seen[s] = self._error(self._objects(s))
        return self.seen[s]

    def _objects(self, s: ObjectSettings) -> np.ndarray:
        three_d = s.objects == "3d"
        if not three_d and not self.ids_3d:
            # Scored slice by slice, per-slice objects (linked ones only renumbered) need only the
            # scored slices labelled: a fraction of the stretch, so more of the list fits the budget.
            objects = np.zeros(self.maps.shape[:3], np.uint32)
            objects[self.annotated] = self._label(self.maps[self.annotated], replace(s, objects="2d"))
            return objects
        return self._label(self.maps, s)

    def _label(self, maps, s: ObjectSettings) -> np.ndarray:
        three_d = s.objects == "3d"
        return label_volume(
            maps, mode=s.objects, block_slices=maps.shape[0], halo=0,
            threshold=s.threshold, seeds=s.seeds, seed_distance=s.seed_distance, min_size=s.min_object_size,
            sampling=(self.z_spacing * s.z_factor, 1.0, 1.0) if three_d else None,
            join_pieces=self.join_pieces and not three_d)

    def _error(self, objects) -> np.ndarray:
        if self.ids_3d:
            return np.array([adapted_rand_error(objects[self.annotated], self.truth[self.annotated])["error"]])
        errors = [adapted_rand_error(objects[z], self.truth[z])["error"]
                  for z in self.annotated if np.any(self.truth[z])]
        return np.array(errors if errors else [1.0])

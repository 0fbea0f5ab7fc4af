"""How prediction settles the object step's settings and the voxel size, for the command line
and the Segment dock alike: what the user gave wins, then what the model tuned on its
annotations, then the fixed defaults; the voxel size comes from the user, else the file (or
layer), else an estimate from the image. Each choice the user did not make is said in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_unet.core.config import TUNED_FIELDS
from napari_unet.core.objects.anisotropy import z_spacing_from_image
from napari_unet.core.objects.tuning import Tuning

if TYPE_CHECKING:
    from napari_unet.core.bundle_meta import BundleMeta

DISAGREEMENT = 3.0  # a given slice spacing this far from the image's estimate is worth a warning


def resolve(meta: BundleMeta | None, given: dict, *, volume, scale, is_3d: bool,
            how_to_set: str = "--voxel-size Z Y X") -> tuple[dict, list[str]]:
    """PredictConfig fields of objects for ``volume`` (Z, Y, X[, C]) and the lines to say:
    ``object_fields``, plus ``voxel_size`` for a 3-D volume (``voxel_size``'s rules)."""
    fields, line = object_fields(meta, given)
    lines = [line] if line else []
    mode = fields.get("objects", "auto")
    if is_3d and mode != "2d":
        fields["voxel_size"], said = voxel_size(volume, given.get("voxel_size"), scale, factor=z_factor(meta, mode),
                                                how_to_set=how_to_set)
        lines += said
    return fields, lines


def model_tuning(meta: BundleMeta | None) -> Tuning | None:
    """The object step a model tuned after training; None for older models, untuned ones and no model."""
    stored = meta.object_tuning if meta is not None else None
    return Tuning.from_dict(stored.model_dump()) if stored else None


def object_fields(meta: BundleMeta | None, given: dict) -> tuple[dict, str | None]:
    """PredictConfig fields of the object step: ``given`` ones (not None) win, the rest come from
    the model's tuning (and the line that says so), else are left to PredictConfig's defaults."""
    fields = {k: v for k, v in given.items() if k in TUNED_FIELDS and v is not None}
    tuning = model_tuning(meta)
    if tuning is None:
        return fields, None
    taken = {k: getattr(tuning.settings, k) for k in TUNED_FIELDS if k not in fields}
    return {**taken, **fields}, (tuning.line() if taken else None)


def z_factor(meta: BundleMeta | None, objects: str) -> float:
    """The tuned correction of the image's spacing estimate, for 3-D objects."""
    tuning = model_tuning(meta)
    return tuning.settings.z_factor if tuning and objects == "3d" and tuning.settings.objects == "3d" else 1.0


def known_scale(scale) -> tuple | None:
    """A file's or layer's (z, y, x) scale, or None where it says nothing (missing, or all 1)."""
    if not scale or len(scale) != 3 or all(float(s) == 1.0 for s in scale):
        return None
    return tuple(float(s) for s in scale)


def voxel_size(volume, given, scale, *, factor: float = 1.0, how_to_set: str = "--voxel-size Z Y X",
               estimate=None) -> tuple[tuple, list[str]]:
    """The (z, y, x) voxel size for 3-D objects of ``volume`` (Z, Y, X[, C]) and the lines to say:
    ``given`` (the user's), else ``scale`` (the file's or layer's), else estimated from the image.
    ``estimate``: a callable giving ``z_spacing_from_image(volume)``, for callers that keep it."""
    chosen = tuple(float(v) for v in given) if given else known_scale(scale)
    estimate = (estimate or z_spacing_from_image)(volume)
    if chosen is not None:
        return chosen, _disagreement(chosen, estimate)
    if estimate is None:
        return (), [f"No voxel size known and none could be estimated from the image: 3-D objects take the "
                    f"voxels as cubes (set {how_to_set} if slices lie further apart than pixels)."]
    z = estimate * factor
    tuned = f", x {factor:g} as the model tuned it" if factor != 1.0 else ""
    return (z, 1.0, 1.0), [f"No voxel size in the file: slices estimated {estimate:.1f} px apart from the image "
                           f"(voxel size z, y, x = {z:.3g}, 1, 1{tuned}); set {how_to_set} to override."]


def _disagreement(chosen: tuple, estimate: float | None) -> list[str]:
    spacing = chosen[0] / min(chosen[1:])
    if estimate is None or max(spacing / estimate, estimate / spacing) <= DISAGREEMENT:
        return []
    return [f"warning: the voxel size given puts slices {spacing:.3g} px apart, but the image looks like "
            f"{estimate:.3g} px: using the voxel size given."]

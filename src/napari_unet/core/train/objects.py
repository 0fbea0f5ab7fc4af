"""After training an instance model: predict the annotated stretch of the volume and tune the
object step on the painted ids (``object_tuning``); the choice goes into the model bundle."""

from __future__ import annotations

import time

import numpy as np

from napari_unet.core.config import MAX_3D_ANISOTROPY, PredictConfig
from napari_unet.core.objects import anisotropy
from napari_unet.core.objects.maps import object_maps
from napari_unet.core.objects.tuning import ObjectSettings, Tuning, tune_objects
from napari_unet.core.train.preview import central_window, predict_slice

MAX_SLICES = 32  # predicted for the tuning: the slices around the scored ones, at most
# Pixels predicted and labelled for the tuning, at most: a central crop of the slices keeps a
# 20-slice stretch of 512 x 512 slices within the time budget on 2 cores.
MAX_PIXELS = 32 * 256 * 256
MIN_OBJECTS = 2  # fewer painted objects tell nothing about seeds and sizes


def why_not_tunable(labels_zyx, annotated) -> str | None:
    """Why the painted ids cannot tune the object step (one line), or None when they can."""
    if len(annotated) < 2:
        return "only one slice is annotated"
    ids = np.unique(np.concatenate([np.unique(labels_zyx[z]) for z in annotated]))
    if np.count_nonzero(ids) < MIN_OBJECTS:
        return "fewer than 2 objects are painted"
    return None


def scored_slices(annotated, val_slices) -> list[int]:
    """Held-out slices when there are at least 2, else every annotated slice (said in the docs)."""
    chosen = sorted(val_slices) if len(val_slices) >= 2 else sorted(annotated)
    if chosen[-1] - chosen[0] + 1 > MAX_SLICES:  # the nearest run of slices that fits
        best = max(chosen, key=lambda s: sum(s <= z < s + MAX_SLICES for z in chosen))
        chosen = [z for z in chosen if best <= z < best + MAX_SLICES]
    return chosen


def default_settings(z_spacing: float | None) -> ObjectSettings:
    """What prediction does untuned: PredictConfig's defaults, "auto" resolved by the spacing."""
    cfg = PredictConfig()
    far = z_spacing is not None and z_spacing > MAX_3D_ANISOTROPY
    return ObjectSettings(objects="linked" if far else "3d", seeds=cfg.seeds, seed_distance=cfg.seed_distance,
                          threshold=cfg.threshold, min_object_size=cfg.min_object_size)


def tune_after_training(model, image_zyxc, labels_zyx, annotated, val_slices, *, norm, size_multiple,
                        objects_tile: bool, budget_s: float) -> Tuning:
    """Predict slices ``min..max`` of the scored ones and tune the object step on their ids; the
    prediction counts against ``budget_s`` too."""
    start = time.monotonic()
    scored = scored_slices(annotated, val_slices)
    first, last = scored[0], scored[-1]
    window = central_window(image_zyxc.shape[1:3], last - first + 1, max_pixels=MAX_PIXELS)
    probs = np.stack([predict_slice(model, np.asarray(image_zyxc[z][window]), norm, size_multiple)
                      for z in range(first, last + 1)])
    maps = object_maps(probs, "boundary")
    if objects_tile:
        maps[..., 0] = 1.0  # as prediction does for such a model (fill_background="auto")
    truth = np.zeros(maps.shape[:3], np.uint32)
    for z in scored:
        truth[z - first] = labels_zyx[z][window]
    relative = [z - first for z in scored]
    ids_3d = len(scored) >= 2 and _ids_are_3d(labels_zyx, scored)
    spacing = (anisotropy.z_spacing_from_ids(labels_zyx, annotated)
               or anisotropy.z_spacing_from_image(image_zyxc))
    return tune_objects(maps, truth, annotated=relative, z_spacing=spacing, ids_3d=ids_3d,
                        defaults=default_settings(spacing), join_pieces=True,
                        budget_s=budget_s - (time.monotonic() - start))


def _ids_are_3d(labels_zyx, slices) -> bool:
    """Whether ids on the nearest pairs of annotated slices mark the same objects."""
    pairs = list(zip(slices[:-1], slices[1:]))
    return sum(anisotropy.ids_carry_over(labels_zyx[a], labels_zyx[b], min_iou=0.25) for a, b in pairs) * 2 > len(pairs)

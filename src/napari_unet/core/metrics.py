"""Segmentation scores (numpy and scikit-image only).

Conventions: a class score with the class absent from both images is 1.0 (a
perfect "nothing found where there is nothing"). Cell regions are the
4-connected components of the cell class, found in each 2-D slice separately
(the model is 2-D, and EM slices are too far apart for 3-D connectivity); the
adapted Rand error is pooled over all slices of a stack.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as connected_components
from skimage.metrics import adapted_rand_error as _skimage_adapted_rand_error


def _pair(pred, gt):
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"Prediction shape {pred.shape} and ground-truth shape {gt.shape} differ: compare the same region.")
    if pred.size == 0:
        raise ValueError("Cannot score empty images (size 0).")
    return pred, gt


def dice(pred, gt, label=1) -> float:
    """``2 |P ∩ G| / (|P| + |G|)`` for the pixels equal to ``label``."""
    pred, gt = _pair(pred, gt)
    p, g = pred == label, gt == label
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2.0 * int((p & g).sum()) / total


def iou(pred, gt, label=1) -> float:
    """``|P ∩ G| / |P ∪ G|`` (Jaccard) for the pixels equal to ``label``."""
    pred, gt = _pair(pred, gt)
    p, g = pred == label, gt == label
    union = int((p | g).sum())
    return 1.0 if union == 0 else int((p & g).sum()) / union


def pixel_accuracy(pred, gt) -> float:
    """Fraction of pixels with the same label."""
    pred, gt = _pair(pred, gt)
    return float(np.mean(pred == gt))


def cell_regions(cell_mask):
    """Ids of the 4-connected components of a 2-D or 3-D mask, per 2-D slice,
    unique across slices (0 = not a cell)."""
    mask = np.asarray(cell_mask) != 0
    if mask.ndim == 2:
        return connected_components(mask, connectivity=1)
    if mask.ndim != 3:
        raise ValueError(f"Cell masks must be 2-D or (Z, Y, X), got shape {mask.shape}.")
    regions = np.zeros(mask.shape, np.int64)
    next_id = 0
    for z, plane in enumerate(mask):
        ids = connected_components(plane, connectivity=1)
        regions[z] = np.where(ids > 0, ids + next_id, 0)
        next_id += int(ids.max())
    return regions


def adapted_rand_error(pred_regions, gt_regions) -> dict:
    """SNEMI3D/ISBI adapted Rand error of two region labellings, from pairs of
    pixels; pixels that are 0 in the ground truth (e.g. membrane) are ignored.

    Returns ``{"error", "split_score", "merge_score"}``: ``error`` is 0 for a
    perfect segmentation; ``split_score`` drops when true regions are split,
    ``merge_score`` when they are merged (the paper's Rand split and merge
    scores; scikit-image calls them precision and recall, see its issue #6485).
    """
    pred, gt = _pair(pred_regions, gt_regions)
    if not (gt != 0).any():
        raise ValueError("The ground truth has no region (all 0): the adapted Rand error is undefined.")
    error, split, merge = _skimage_adapted_rand_error(gt.astype(np.int64), pred.astype(np.int64))
    return {"error": float(error), "split_score": float(split), "merge_score": float(merge)}


def segmentation_report(pred, gt, foreground_label=1) -> dict:
    """Dice and IoU of ``foreground_label``, pixel accuracy, and the adapted Rand
    error of its connected regions (if the ground truth has any)."""
    pred, gt = _pair(pred, gt)
    report = {
        "foreground_label": foreground_label,
        "dice": dice(pred, gt, foreground_label),
        "iou": iou(pred, gt, foreground_label),
        "pixel_accuracy": pixel_accuracy(pred, gt),
    }
    if (gt == foreground_label).any():
        rand = adapted_rand_error(cell_regions(pred == foreground_label), cell_regions(gt == foreground_label))
        report["adapted_rand_error"] = rand["error"]
    return report


def evaluate_membrane(pred_cell_mask, gt_cell_mask) -> dict:
    """ISBI 2012 EM convention: cell interior (label 255, any non-zero) vs
    membrane (0). Reports membrane Dice, pixel accuracy of cell/membrane, and
    the adapted Rand error of the cell regions."""
    pred_cell, gt_cell = _pair(np.asarray(pred_cell_mask) != 0, np.asarray(gt_cell_mask) != 0)
    rand = adapted_rand_error(cell_regions(pred_cell), cell_regions(gt_cell))
    return {
        "membrane_dice": dice(pred_cell, gt_cell, label=False),
        "pixel_accuracy": pixel_accuracy(pred_cell, gt_cell),
        "adapted_rand_error": rand["error"],
        "rand_split_score": rand["split_score"],
        "rand_merge_score": rand["merge_score"],
    }

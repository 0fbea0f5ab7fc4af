"""Segmentation scores (numpy, scipy and scikit-image only).

Pixel scores: ``dice``, ``iou`` and ``pixel_accuracy`` of one class;
``segmentation_report`` and ``evaluate_membrane`` (ISBI 2012 EM) bundle them
with the adapted Rand error of the connected regions.

Object scores, for labellings where each non-zero id is one object and 0 is
background (ignored in the ground truth):

- ``adapted_rand_error``: SNEMI3D/ISBI error with its split and merge parts;
- ``variation_of_information``: conditional entropies (bits) of false splits
  and false merges;
- ``match_objects``: one-to-one matching of objects at an IoU threshold
  (``IoU >= threshold``, as in StarDist), with precision, recall and F1;
- ``object_report``: all of the above, either for 3-D objects through the
  volume or slice by slice (``per_slice=True``).

Conventions: a class score with the class absent from both images is 1.0 (a
perfect "nothing found where there is nothing"). Cell regions are the
4-connected components of the cell class, found in each 2-D slice separately
(the model is 2-D, and EM slices are too far apart for 3-D connectivity); the
adapted Rand error is pooled over all slices of a stack.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.measure import label as connected_components
from skimage.metrics import adapted_rand_error as _skimage_adapted_rand_error
from skimage.metrics import variation_of_information as _skimage_variation_of_information


def _compact_ids(labels):
    """Ids renumbered to at most the number of distinct values, 0 kept as 0:
    scikit-image's contingency tables are indexed by id, so large ids (e.g.
    uint32 hashes) would cost memory and negative ones would fail."""
    labels = np.asarray(labels)
    compact = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64) + 1
    compact[labels == 0] = 0
    return compact


def _require_objects(gt, what):
    if not (gt != 0).any():
        raise ValueError(f"The ground truth has no region (all 0): the {what} is undefined.")


def _pair(pred, gt):
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(
            f"Prediction shape {pred.shape} and ground-truth shape {gt.shape} differ: compare the same region.")
    if pred.size == 0:
        raise ValueError("Cannot score empty images (size 0).")
    return pred, gt


def dice(pred, gt, *, label=1) -> float:
    """``2 |P ∩ G| / (|P| + |G|)`` for the pixels equal to ``label``."""
    pred, gt = _pair(pred, gt)
    p, g = pred == label, gt == label
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2.0 * int((p & g).sum()) / total


def iou(pred, gt, *, label=1) -> float:
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
    _require_objects(gt, "adapted Rand error")
    error, split, merge = _skimage_adapted_rand_error(_compact_ids(gt), _compact_ids(pred))
    return {"error": float(error), "split_score": float(split), "merge_score": float(merge)}


def segmentation_report(pred, gt, *, foreground_label=1) -> dict:
    """Dice and IoU of ``foreground_label``, pixel accuracy, and the adapted Rand
    error of its connected regions (if the ground truth has any)."""
    pred, gt = _pair(pred, gt)
    report = {
        "foreground_label": foreground_label,
        "dice": dice(pred, gt, label=foreground_label),
        "iou": iou(pred, gt, label=foreground_label),
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


# ---------------------------------------------------------------- object scores


def variation_of_information(pred_regions, gt_regions) -> dict:
    """Variation of information (Meila 2007) of two labellings, in bits;
    pixels that are 0 in the ground truth are ignored.

    Returns ``{"voi", "voi_split", "voi_merge"}``: ``voi_split`` is
    ``H(pred | gt)``, which grows when true objects are cut into several
    predicted ones (over-segmentation); ``voi_merge`` is ``H(gt | pred)``,
    which grows when one predicted object covers several true ones; ``voi`` is
    their sum. All are 0 for a perfect segmentation (up to renumbering).
    """
    pred, gt = _pair(pred_regions, gt_regions)
    _require_objects(gt, "variation of information")
    # scikit-image returns (H(test | true), H(true | test)) = (splits, merges).
    split, merge = _skimage_variation_of_information(_compact_ids(gt), _compact_ids(pred), ignore_labels=(0,))
    split, merge = max(float(split), 0.0), max(float(merge), 0.0)  # rounding can give -0.0 or -1e-16
    return {"voi": split + merge, "voi_split": split, "voi_merge": merge}


def _object_numbers(labels):
    """Object number (0, 1, ...) of each pixel, -1 for background, and the
    number of objects."""
    ids, index = np.unique(labels.ravel(), return_inverse=True)
    is_object = ids != 0
    numbers = np.cumsum(is_object) - 1
    numbers[~is_object] = -1
    return numbers[index], int(is_object.sum())


def _pair_iou(pred, gt):
    """IoU of every overlapping (gt, pred) pair of objects, from one np.unique
    over the pixel pairs (a sparse contingency table). Returns ``(gt_number,
    pred_number, iou, n_true, n_pred)``."""
    gt_numbers, n_true = _object_numbers(gt)
    pred_numbers, n_pred = _object_numbers(pred)
    gt_area = np.bincount(gt_numbers[gt_numbers >= 0], minlength=n_true)
    pred_area = np.bincount(pred_numbers[pred_numbers >= 0], minlength=n_pred)
    both = (gt_numbers >= 0) & (pred_numbers >= 0)
    pairs, overlap = np.unique(gt_numbers[both] * max(n_pred, 1) + pred_numbers[both], return_counts=True)
    g, p = pairs // max(n_pred, 1), pairs % max(n_pred, 1)
    return g, p, overlap / (gt_area[g] + pred_area[p] - overlap), n_true, n_pred


def _matched_ious(g, p, iou_values, iou_threshold):
    """IoUs of the one-to-one matched pairs with ``IoU >= iou_threshold``."""
    keep = iou_values >= iou_threshold
    g, p, iou_values = g[keep], p[keep], iou_values[keep]
    if iou_threshold > 0.5 or iou_values.size == 0:
        # Above 0.5 an object overlaps more than half of its union with any
        # partner, so it has at most one: the candidates are the matching.
        return iou_values
    # At or below 0.5 candidates compete: most matches first, then the highest
    # IoU as tie-breaker (StarDist's cost), among the candidate objects only.
    rows, g = np.unique(g, return_inverse=True)
    cols, p = np.unique(p, return_inverse=True)
    iou_table = np.zeros((rows.size, cols.size))
    iou_table[g, p] = iou_values
    is_candidate = np.zeros_like(iou_table, bool)
    is_candidate[g, p] = True
    cost = -(is_candidate + iou_table / (2 * min(iou_table.shape)))
    r, c = linear_sum_assignment(cost)
    return iou_table[r, c][is_candidate[r, c]]


def _matching_scores(n_pred, n_true, matched_ious, iou_threshold) -> dict:
    """Counts and rates from the matched IoUs. With no object anywhere every
    rate is 1.0 (nothing to find, nothing found); with objects in one image
    only it is 0.0. ``mean_matched_iou`` is 0.0 when nothing matched."""
    tp = int(len(matched_ious))
    fp, fn = n_pred - tp, n_true - tp

    def rate(numerator, denominator):
        return 1.0 if n_pred == n_true == 0 else (numerator / denominator if denominator else 0.0)

    return {
        "n_pred": n_pred, "n_true": n_true, "tp": tp, "fp": fp, "fn": fn,
        "precision": rate(tp, n_pred),
        "recall": rate(tp, n_true),
        "f1": rate(2 * tp, n_pred + n_true),
        "mean_matched_iou": float(np.mean(matched_ious)) if tp else 0.0,
        "iou_threshold": float(iou_threshold),
    }


def _check_iou_threshold(iou_threshold):
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")


def match_objects(pred_objects, gt_objects, *, iou_threshold=0.5) -> dict:
    """One-to-one matching of predicted and true objects (non-zero ids).

    A pair can match when ``IoU >= iou_threshold`` (StarDist's convention:
    two halves of a true object, IoU 0.5 each, match it once at 0.5). Returns
    ``{"n_pred", "n_true", "tp", "fp", "fn", "precision", "recall", "f1",
    "mean_matched_iou", "iou_threshold"}``; see ``_matching_scores`` for the
    empty cases.
    """
    _check_iou_threshold(iou_threshold)
    pred, gt = _pair(pred_objects, gt_objects)
    g, p, iou_values, n_true, n_pred = _pair_iou(pred, gt)
    return _matching_scores(n_pred, n_true, _matched_ious(g, p, iou_values, iou_threshold), iou_threshold)


def _region_scores(pred, gt) -> dict:
    rand = adapted_rand_error(pred, gt)
    scores = {
        "adapted_rand_error": rand["error"],
        "rand_split_score": rand["split_score"],
        "rand_merge_score": rand["merge_score"],
    }
    scores.update(variation_of_information(pred, gt))
    return scores


_MATCH_KEYS = ("precision", "recall", "f1", "mean_matched_iou", "n_pred", "n_true")


def _object_report_3d(pred, gt, iou_threshold) -> dict:
    report = _region_scores(pred, gt)
    matching = match_objects(pred, gt, iou_threshold=iou_threshold)
    report.update({key: matching[key] for key in _MATCH_KEYS})
    return report


def _object_report_per_slice(pred, gt, iou_threshold) -> dict:
    """Region scores averaged over the slices with a true object; matching
    pooled over all slices, so objects predicted in empty slices are false
    positives."""
    slices = zip(pred, gt) if gt.ndim == 3 else [(pred, gt)]
    region_scores, matched, n_pred, n_true = [], [], 0, 0
    for pred_slice, gt_slice in slices:
        if (gt_slice != 0).any():
            region_scores.append(_region_scores(pred_slice, gt_slice))
        g, p, iou_values, slice_true, slice_pred = _pair_iou(pred_slice, gt_slice)
        matched.append(_matched_ious(g, p, iou_values, iou_threshold))
        n_pred, n_true = n_pred + slice_pred, n_true + slice_true
    report = {key: float(np.mean([s[key] for s in region_scores])) for key in region_scores[0]}
    matching = _matching_scores(n_pred, n_true, np.concatenate(matched), iou_threshold)
    report.update({key: matching[key] for key in _MATCH_KEYS})
    return report


def object_report(pred_objects, gt_objects, *, per_slice=False, iou_threshold=0.5) -> dict:
    """Adapted Rand error (with split and merge scores), variation of
    information and object matching of two labellings (0 = background).

    ``per_slice=False``: ids are objects through the volume ("mode": "3d").
    ``per_slice=True``: each 2-D slice is its own image, so a 3-D object cut
    by the slices counts once per slice ("mode": "2d"); Rand and VOI scores
    are the mean over slices with a true object, matching counts are summed
    over slices and ``mean_matched_iou`` is over all matched pairs.
    """
    _check_iou_threshold(iou_threshold)
    pred, gt = _pair(pred_objects, gt_objects)
    if gt.ndim not in (2, 3):
        raise ValueError(f"Object labellings must be 2-D or (Z, Y, X), got shape {gt.shape}.")
    _require_objects(gt, "object report")
    report_of = _object_report_per_slice if per_slice else _object_report_3d
    report = report_of(pred, gt, iou_threshold)
    report["mode"] = "2d" if per_slice else "3d"
    return report

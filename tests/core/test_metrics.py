import numpy as np
import pytest

from napari_unet.core.metrics import (
    adapted_rand_error,
    cell_regions,
    dice,
    evaluate_membrane,
    iou,
    match_objects,
    object_report,
    pixel_accuracy,
    segmentation_report,
    variation_of_information,
)

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent

PRED = np.array([[1, 1, 0, 0], [2, 2, 2, 0]])
GT = np.array([[1, 0, 1, 0], [2, 2, 0, 0]])


def test_dice_iou_accuracy_by_hand():
    # label 1: P = 2 px, G = 2 px, overlap 1 -> Dice 2/4, IoU 1/3
    assert dice(PRED, GT) == pytest.approx(0.5)
    assert iou(PRED, GT) == pytest.approx(1 / 3)
    # label 2: P = 3 px, G = 2 px, overlap 2 -> Dice 4/5, IoU 2/3
    assert dice(PRED, GT, label=2) == pytest.approx(0.8)
    assert iou(PRED, GT, label=2) == pytest.approx(2 / 3)
    # label 0: P = 3 px, G = 4 px, overlap 2 -> Dice 4/7
    assert dice(PRED, GT, label=0) == pytest.approx(4 / 7)
    # equal at (0,0), (0,3), (1,0), (1,1), (1,3): 5 of 8
    assert pixel_accuracy(PRED, GT) == pytest.approx(5 / 8)


def test_absent_class_scores_one():
    assert dice(PRED, GT, label=9) == 1.0 and iou(PRED, GT, label=9) == 1.0


def test_adapted_rand_error_by_hand():
    gt = np.array([[1, 1, 2, 2]])
    merged = np.array([[5, 5, 5, 5]])
    # Ordered pixel pairs in the same region: both 2 + 2 = 4, truth 2 + 2 = 4, test 4 * 3 = 12.
    result = adapted_rand_error(merged, gt)
    assert result["split_score"] == pytest.approx(4 / 4) and result["merge_score"] == pytest.approx(4 / 12)
    assert result["error"] == pytest.approx(1 - 4 / (0.5 * 4 + 0.5 * 12))
    split = adapted_rand_error(np.array([[1, 2, 3, 3]]), gt)  # region 1 cut in two
    # both 0 + 0 + 2 = 2, truth 4, test 2
    assert split["split_score"] == pytest.approx(2 / 4) and split["merge_score"] == pytest.approx(2 / 2)
    assert split["error"] == pytest.approx(1 - 2 / 3)
    # Renumbered but identical regions are perfect; pixels that are 0 in the truth do not count.
    assert adapted_rand_error(np.array([[7, 7, 3, 3, 9]]), np.array([[1, 1, 2, 2, 0]]))["error"] == pytest.approx(0.0)


def test_cell_regions_are_per_slice_and_unique():
    mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(cell_regions(mask), [[1, 1, 0, 2], [0, 0, 0, 2]])
    diagonal = np.eye(2)  # corner contact is not a connection
    np.testing.assert_array_equal(cell_regions(diagonal), [[1, 0], [0, 2]])
    stack = cell_regions(np.stack([mask, mask]))  # not joined across slices
    np.testing.assert_array_equal(stack[1], np.where(mask > 0, cell_regions(mask) + 2, 0))


def isbi_pair():
    gt = np.full((4, 5), 255, np.uint8)
    gt[:, 2] = 0  # a membrane between two cells
    pred = gt.copy()
    pred[0, 2] = 255  # a gap in the membrane merges the cells
    return pred, gt


def test_evaluate_membrane_by_hand():
    pred, gt = isbi_pair()
    result = evaluate_membrane(pred, gt)
    # membrane: G = 4 px, P = 3 px, overlap 3 -> 6/7; one pixel of 20 wrong
    assert result["membrane_dice"] == pytest.approx(6 / 7)
    assert result["pixel_accuracy"] == pytest.approx(19 / 20)
    # 16 cell pixels in the ground truth (membrane ignored), two cells of 8 merged into one.
    # Ordered pairs in one region: both 2 * 8 * 7 = 112, truth 112, test 16 * 15 = 240.
    assert result["rand_split_score"] == pytest.approx(1.0)
    assert result["rand_merge_score"] == pytest.approx(112 / 240)
    assert result["adapted_rand_error"] == pytest.approx(1 - 112 / (0.5 * 112 + 0.5 * 240))
    perfect = evaluate_membrane(gt, gt)
    assert perfect["membrane_dice"] == 1.0 and perfect["adapted_rand_error"] == pytest.approx(0.0)


def test_segmentation_report():
    pred, gt = isbi_pair()
    report = segmentation_report(pred, gt, foreground_label=0)
    assert report["foreground_label"] == 0
    assert report["dice"] == pytest.approx(6 / 7) and report["iou"] == pytest.approx(3 / 4)
    assert report["pixel_accuracy"] == pytest.approx(19 / 20)
    # Membrane regions: the 4-px true column is split into 3 px (a region) + 1 px (label 0).
    # Ordered pairs: both 3 * 2 = 6, truth 4 * 3 = 12, test 6.
    assert report["adapted_rand_error"] == pytest.approx(1 - 6 / (0.5 * 12 + 0.5 * 6))
    cells = segmentation_report(pred, gt, foreground_label=255)
    assert cells["adapted_rand_error"] == pytest.approx(evaluate_membrane(pred, gt)["adapted_rand_error"])


def test_errors():
    with pytest.raises(ValueError, match=r"shape \(2, 4\) and ground-truth shape \(2, 3\) differ"):
        dice(PRED, GT[:, :3])
    with pytest.raises(ValueError, match="no region"):
        adapted_rand_error(np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="empty"):
        pixel_accuracy(np.zeros(0), np.zeros(0))


# ------------------------------------------------------------- object scores

TWO_CELLS = np.array([[1, 1, 2, 2]])


def test_identical_objects_score_perfectly():
    gt = np.array([[1, 1, 0, 2], [3, 3, 0, 2]])
    permuted = np.array([[9, 9, 0, 4], [6, 6, 0, 4]])  # same objects, other ids
    report = object_report(permuted, gt)
    assert report["adapted_rand_error"] == pytest.approx(0.0) and report["voi"] == pytest.approx(0.0)
    assert report["f1"] == 1.0 and report["mean_matched_iou"] == 1.0
    assert report["n_pred"] == report["n_true"] == 3 and report["mode"] == "3d"


def test_split_object_by_hand():
    split = np.array([[1, 2, 3, 3]])  # true object 1 cut in two halves
    # Rand: ordered pairs in one region: both 2, truth 4, test 2 -> split 2/4, merge 1.
    report = object_report(split, TWO_CELLS)
    assert report["rand_split_score"] == pytest.approx(0.5) and report["rand_merge_score"] == pytest.approx(1.0)
    # VOI: H(pred | gt) = 1/2 (half the pixels in a 50/50 split, 1 bit); H(gt | pred) = 0.
    assert report["voi_split"] == pytest.approx(0.5) and report["voi_merge"] == pytest.approx(0.0)
    assert report["voi"] == pytest.approx(0.5)
    # IoU of each half with object 1 is 1/2; object 2 matches with IoU 1.
    # The threshold is inclusive (IoU >= 0.5, as in StarDist): one half matches,
    # once; the other half is a false positive.
    at_half = match_objects(split, TWO_CELLS, iou_threshold=0.5)
    assert (at_half["tp"], at_half["fp"], at_half["fn"]) == (2, 1, 0)
    assert at_half["precision"] == pytest.approx(2 / 3) and at_half["recall"] == 1.0
    assert at_half["f1"] == pytest.approx(2 * 2 / (3 + 2))
    assert at_half["mean_matched_iou"] == pytest.approx((0.5 + 1.0) / 2)
    above = match_objects(split, TWO_CELLS, iou_threshold=0.6)
    assert (above["tp"], above["fp"], above["fn"]) == (1, 2, 1) and above["mean_matched_iou"] == 1.0


def test_merged_objects_by_hand():
    merged = np.array([[5, 5, 5, 5]])
    # VOI: H(gt | pred) = 1 bit (the one predicted region is 50/50); H(pred | gt) = 0.
    voi = variation_of_information(merged, TWO_CELLS)
    assert voi == pytest.approx({"voi": 1.0, "voi_split": 0.0, "voi_merge": 1.0})
    report = object_report(merged, TWO_CELLS)
    assert report["rand_split_score"] == pytest.approx(1.0) and report["rand_merge_score"] == pytest.approx(4 / 12)
    # Each true object has IoU 2/4 with the merged one, which matches only one of them.
    assert (report["n_pred"], report["n_true"]) == (1, 2)
    assert report["precision"] == 1.0 and report["recall"] == 0.5 and report["f1"] == pytest.approx(2 / 3)


def test_voi_ignores_ground_truth_background():
    gt = np.array([[1, 1, 0, 0]])
    assert variation_of_information(np.array([[3, 3, 4, 5]]), gt)["voi"] == pytest.approx(0.0)


def test_matching_counts_by_hand():
    gt = np.array([[1, 1, 0, 2, 2, 2, 0, 3, 3]])
    pred = np.array([[7, 7, 0, 0, 0, 9, 0, 0, 0]])
    # 7 == object 1 (IoU 1); 9 covers 1 of 3 pixels of object 2 (IoU 1/3); object 3 missed.
    result = match_objects(pred, gt)
    assert (result["n_true"], result["n_pred"]) == (3, 2)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 2)
    assert result["precision"] == 0.5 and result["recall"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx(2 * 1 / (2 + 3)) and result["mean_matched_iou"] == 1.0
    low = match_objects(pred, gt, iou_threshold=0.3)  # below 0.5: the assignment path
    assert low["tp"] == 2 and low["mean_matched_iou"] == pytest.approx((1 + 1 / 3) / 2)


def test_matching_empty_conventions():
    empty = np.zeros((2, 2), int)
    none = match_objects(empty, empty)
    assert none["precision"] == none["recall"] == none["f1"] == 1.0 and none["mean_matched_iou"] == 0.0
    missed = match_objects(empty, np.eye(2, dtype=int))
    assert missed["precision"] == missed["recall"] == missed["f1"] == 0.0 and missed["fn"] == 1
    with pytest.raises(ValueError, match="iou_threshold"):
        match_objects(empty, empty, iou_threshold=0)


def test_low_threshold_matching_maximises_matches():
    gt = np.array([[1] * 10 + [2] * 2])
    pred = np.array([[5] * 2 + [6] * 10])
    # IoU(1, 6) = 8/12, IoU(2, 6) = 2/10, IoU(1, 5) = 2/10. At 0.2 the most
    # matches are 1-5 and 2-6 (two), though 1-6 alone has the higher total IoU.
    result = match_objects(pred, gt, iou_threshold=0.2)
    assert result["tp"] == 2 and result["mean_matched_iou"] == pytest.approx(0.2)
    assert match_objects(pred, gt, iou_threshold=0.5)["tp"] == 1  # 1-6 only


def tube():
    gt = np.ones((3, 1, 2), int)  # one object through 3 slices
    pred = np.arange(1, 4)[:, None, None] * gt  # a new id in each slice
    return pred, gt


def test_per_slice_scores_a_tube_per_slice():
    pred, gt = tube()
    whole = object_report(pred, gt)
    # 3-D: both 3 * 2 = 6 ordered pairs, truth 6 * 5 = 30, test 6 -> split 6/30, error 1 - 6/18.
    assert whole["rand_split_score"] == pytest.approx(0.2) and whole["rand_merge_score"] == pytest.approx(1.0)
    assert whole["adapted_rand_error"] == pytest.approx(2 / 3)
    assert whole["voi_split"] == pytest.approx(np.log2(3)) and whole["voi_merge"] == pytest.approx(0.0)
    assert (whole["n_true"], whole["n_pred"], whole["f1"]) == (1, 3, 0.0)  # each IoU 1/3
    sliced = object_report(pred, gt, per_slice=True)
    assert sliced["mode"] == "2d" and sliced["adapted_rand_error"] == pytest.approx(0.0)
    assert sliced["voi"] == pytest.approx(0.0)
    assert (sliced["n_true"], sliced["n_pred"], sliced["f1"]) == (3, 3, 1.0)


def test_per_slice_pools_matching_and_skips_empty_slices():
    gt = np.zeros((2, 1, 4), int)
    gt[0] = TWO_CELLS
    pred = np.zeros_like(gt)
    pred[0] = [[1, 2, 3, 3]]
    pred[1] = [[0, 0, 4, 4]]  # an object where nothing is true: a false positive
    report = object_report(pred, gt, per_slice=True)
    # Rand and VOI come from slice 0 only; matching: tp 2 of 4 predicted, 2 true.
    assert report["rand_split_score"] == pytest.approx(0.5) and report["voi_split"] == pytest.approx(0.5)
    assert (report["n_pred"], report["n_true"]) == (4, 2)
    assert report["precision"] == 0.5 and report["recall"] == 1.0
    flat = object_report(pred[0], gt[0], per_slice=True)  # a 2-D image is one slice
    assert flat["precision"] == pytest.approx(2 / 3) and flat["mode"] == "2d"


def test_object_report_errors():
    with pytest.raises(ValueError, match="no region"):
        object_report(np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no region"):
        object_report(np.ones((2, 3, 3)), np.zeros((2, 3, 3)), per_slice=True)
    with pytest.raises(ValueError, match="differ"):
        object_report(np.ones((3, 3)), np.ones((3, 4)))

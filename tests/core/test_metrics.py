import numpy as np
import pytest

from napari_unet.core.metrics import (
    adapted_rand_error,
    cell_regions,
    dice,
    evaluate_membrane,
    iou,
    pixel_accuracy,
    segmentation_report,
)

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

import numpy as np
import pytest
from keras import ops

from napari_unet.core.nn.losses import (
    LOSS_FUNCTIONS,
    dice_coef,
    get_loss,
    inverse_frequency_weights,
    iou,
    masked_bce,
    masked_bce_dice,
    masked_dice_loss,
)

EPS = 1e-7


def value(tensor):
    return float(ops.convert_to_numpy(tensor))


def pack(target, mask):
    return np.concatenate([target, mask[..., None]], axis=-1).astype(np.float32)


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    target = (rng.random((2, 8, 8, 1)) > 0.6).astype(np.float32)
    mask = (rng.random((2, 8, 8)) > 0.4).astype(np.float32)
    prob = rng.uniform(0.05, 0.95, (2, 8, 8, 1)).astype(np.float32)
    return target, mask, prob


@pytest.fixture
def softmax():
    rng = np.random.default_rng(1)
    target = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (2, 8, 8))]
    mask = (rng.random((2, 8, 8)) > 0.4).astype(np.float32)
    logits = rng.normal(size=(2, 8, 8, 3))
    prob = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    return target, mask, prob


def test_bce_matches_numpy_over_annotated_pixels(binary):
    target, mask, prob = binary
    t, p, m = target[..., 0], prob[..., 0], mask.astype(bool)
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p))[m].mean()
    assert value(masked_bce(pack(target, mask), prob)) == pytest.approx(expected, rel=1e-5)


def test_bce_of_softmax_is_categorical_cross_entropy(softmax):
    target, mask, prob = softmax
    expected = -(target * np.log(prob)).sum(-1)[mask.astype(bool)].mean()
    assert value(get_loss("bce", 3)(pack(target, mask), prob)) == pytest.approx(expected, rel=1e-5)


def _soft_dice(t, p, m):
    return (2 * (t * p * m).sum() + 1) / ((t * m).sum() + (p * m).sum() + 1)


def test_dice_loss_matches_numpy(binary, softmax):
    target, mask, prob = binary  # a sigmoid counts as background and foreground
    t, p = target[..., 0], prob[..., 0]
    expected = 1 - np.mean([_soft_dice(t, p, mask), _soft_dice(1 - t, 1 - p, mask)])
    assert value(masked_dice_loss(pack(target, mask), prob)) == pytest.approx(expected, rel=1e-5)

    target, mask, prob = softmax  # mean over all classes 0, 1 and 2
    per_class = [_soft_dice(target[..., k], prob[..., k], mask) for k in range(3)]
    assert value(masked_dice_loss(pack(target, mask), prob)) == pytest.approx(1 - np.mean(per_class), rel=1e-5)


def test_dice_loss_does_not_depend_on_which_class_is_painted_1(binary):
    # Thin membranes painted 0 between cells painted 1 must weigh as if painted 1.
    target, mask, prob = binary
    direct = value(masked_dice_loss(pack(target, mask), prob))
    swapped = value(masked_dice_loss(pack(1 - target, mask), 1 - prob))
    assert swapped == pytest.approx(direct, rel=1e-5)


def test_bce_dice_is_the_sum(binary):
    y = pack(binary[0], binary[1])
    total = value(masked_bce(y, binary[2])) + value(masked_dice_loss(y, binary[2]))
    assert value(masked_bce_dice(y, binary[2])) == pytest.approx(total, rel=1e-6)
    assert get_loss("bce_dice", 1) is masked_bce_dice


def test_weighted_ce_matches_numpy(softmax, binary):
    target, mask, prob = softmax
    w = np.array([0.5, 2.0, 3.0], np.float32)
    m = mask.astype(bool)
    pixel_w = (target * w).sum(-1)
    expected = -(target * w * np.log(prob)).sum(-1)[m].sum() / pixel_w[m].sum()
    loss = get_loss("weighted_ce", 3, class_weights=w)
    assert value(loss(pack(target, mask), prob)) == pytest.approx(expected, rel=1e-5)

    target, mask, prob = binary
    t, p, m = target[..., 0], prob[..., 0], mask.astype(bool)
    pixel_w = np.where(t > 0, 4.0, 0.5)
    expected = -(4.0 * t * np.log(p) + 0.5 * (1 - t) * np.log(1 - p))[m].sum() / pixel_w[m].sum()
    loss = get_loss("weighted_ce", 1, class_weights=[0.5, 4.0])
    assert value(loss(pack(target, mask), prob)) == pytest.approx(expected, rel=1e-5)


def test_uniform_weighted_ce_equals_cross_entropy(softmax):
    y = pack(softmax[0], softmax[1])
    plain = value(masked_bce(y, softmax[2]))
    assert value(get_loss("weighted_ce", 3, class_weights=[1, 1, 1])(y, softmax[2])) == pytest.approx(plain, rel=1e-5)


def test_metrics_on_a_hand_made_example():
    # 4 annotated pixels: truth 1 1 0 0, prediction 1 0 1 0 -> TP 1, FP 1, FN 1; pixel 5 is ignored.
    target = np.array([1, 1, 0, 0, 1], np.float32).reshape(1, 1, 5, 1)
    mask = np.array([1, 1, 1, 1, 0], np.float32).reshape(1, 1, 5)
    prob = np.array([0.9, 0.2, 0.7, 0.1, 0.0], np.float32).reshape(1, 1, 5, 1)
    y = pack(target, mask)
    assert value(dice_coef(y, prob)) == pytest.approx(2 / 4)
    assert value(iou(y, prob)) == pytest.approx(1 / 3)


def test_softmax_metrics_average_foreground_classes_present():
    classes_true = np.array([0, 1, 1, 2, 0, 2])
    classes_pred = np.array([0, 1, 0, 2, 2, 2])
    target = np.eye(4, dtype=np.float32)[classes_true].reshape(1, 1, 6, 4)  # class 3 never occurs
    prob = np.eye(4, dtype=np.float32)[classes_pred].reshape(1, 1, 6, 4) * 0.7 + 0.075
    y = pack(target, np.ones((1, 1, 6), np.float32))
    dice_1, dice_2 = 2 * 1 / (2 + 1), 2 * 2 / (2 + 3)
    iou_1, iou_2 = 1 / 2, 2 / 3
    assert value(dice_coef(y, prob)) == pytest.approx((dice_1 + dice_2) / 2, rel=1e-6)
    assert value(iou(y, prob)) == pytest.approx((iou_1 + iou_2) / 2, rel=1e-6)


def test_metrics_are_one_when_nothing_is_there_to_find():
    y = pack(np.zeros((1, 4, 4, 1), np.float32), np.ones((1, 4, 4), np.float32))
    prob = np.full((1, 4, 4, 1), 0.1, np.float32)
    assert value(dice_coef(y, prob)) == 1.0 and value(iou(y, prob)) == 1.0


@pytest.mark.parametrize("kind", ["binary", "softmax"])
def test_unannotated_pixels_change_neither_losses_nor_metrics(kind, binary, softmax):
    target, mask, prob = binary if kind == "binary" else softmax
    k = target.shape[-1]
    rng = np.random.default_rng(5)
    outside = mask == 0
    target2, prob2 = target.copy(), prob.copy()
    n = int(outside.sum())
    target2[outside] = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)] if k > 1 else rng.integers(0, 2, (n, 1))
    new_prob = rng.uniform(0.01, 0.99, (n, k)).astype(np.float32)
    prob2[outside] = new_prob / new_prob.sum(-1, keepdims=True) if k > 1 else new_prob
    assert not np.array_equal(prob, prob2) and not np.array_equal(target, target2)
    weights = [0.3, 2.0] if k == 1 else [0.3, 2.0, 5.0]
    losses = [get_loss(name, k, class_weights=weights) for name in LOSS_FUNCTIONS]  # every loss offered
    functions = losses + [dice_coef, iou]
    for fn in functions:
        before = value(fn(pack(target, mask), prob))
        after = value(fn(pack(target2, mask), prob2))
        assert np.isfinite(before)
        assert after == pytest.approx(before, rel=1e-6, abs=1e-7), fn
    # ...while the same change on annotated pixels does change the loss.
    assert value(masked_bce(pack(target, np.ones_like(mask)), prob)) != pytest.approx(
        value(masked_bce(pack(target2, np.ones_like(mask)), prob2)), rel=1e-3
    )


def test_no_annotated_pixel_gives_zero_cross_entropy(binary):
    target, _, prob = binary
    assert value(masked_bce(pack(target, np.zeros(target.shape[:-1])), prob)) == 0.0


def test_inverse_frequency_weights_balance_the_classes():
    counts = np.array([900, 100, 0])
    w = inverse_frequency_weights(counts)
    assert w[0] * counts[0] == pytest.approx(w[1] * counts[1])
    assert w[2] == 1.0
    np.testing.assert_allclose(w[:2], [1000 / (2 * 900), 1000 / (2 * 100)], rtol=1e-6)
    with pytest.raises(ValueError, match="No annotated pixels"):
        inverse_frequency_weights([0, 0])


def test_get_loss_rejects_bad_requests():
    with pytest.raises(ValueError, match="Unknown loss 'focal'.*bce"):
        get_loss("focal", 1)
    with pytest.raises(ValueError, match="needs 3 class weights"):
        get_loss("weighted_ce", 3)
    with pytest.raises(ValueError, match="needs 2 class weights"):
        get_loss("weighted_ce", 1, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-negative"):
        get_loss("weighted_ce", 2, class_weights=[1.0, -2.0])


def test_every_offered_loss_is_a_training_choice():
    from napari_unet.core.config import TrainConfig

    for name in LOSS_FUNCTIONS:
        assert TrainConfig(loss=name).loss == name
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="focal")


def test_loss_names_are_read_without_loading_keras():
    import subprocess
    import sys

    code = ("import sys; from napari_unet.core.config import TrainConfig; LOSSES = TrainConfig.CHOICES['loss']; "
            "assert 'bce_dice' in LOSSES; assert 'keras' not in sys.modules, 'keras imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""Masked losses and metrics (``keras.ops``, any Keras backend).

``y_true`` packs the targets and the loss mask: ``(..., K + 1)`` with the mask
(1 = annotated, 0 = ignored) as the LAST channel, as ``PatchSampler`` makes
it. ``y_pred`` holds ``K`` probabilities: one sigmoid channel (``K == 1``) or a
softmax. Every value is a mean over the annotated pixels of the whole batch,
so unannotated pixels never count, whatever the model predicts there.

``LOSS_FUNCTIONS`` is the one list of losses: the configs, the CLI and the docks take their
choices from it. The configs are read in the GUI process, so importing this module must not
load Keras; ``ops`` loads it on first use.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7
DICE_SMOOTH = 1.0  # keeps the soft Dice finite and smooth on patches without foreground


class _KerasOps:
    """``keras.ops``, imported when a loss or metric first runs (in the worker), not at import."""

    def __getattr__(self, name):
        from keras import ops as keras_ops

        return getattr(keras_ops, name)


ops = _KerasOps()


def _split(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    target, mask = y_true[..., :-1], y_true[..., -1:]
    prob = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
    return target, mask, prob


def _masked_mean(per_pixel, mask):
    """Mean of ``per_pixel`` (..., 1) over the annotated pixels; 0 when there are none."""
    return ops.sum(per_pixel * mask) / ops.maximum(ops.sum(mask), 1.0)


def _pixel_ce(target, prob, weights=None):
    """Cross-entropy per pixel, ``(..., 1)``; binary for one channel, categorical otherwise.

    ``weights`` (one per class; background first for a sigmoid) scale each term.
    """
    if prob.shape[-1] == 1:
        w_bg, w_fg = (1.0, 1.0) if weights is None else (weights[0], weights[1])
        return -(w_fg * target * ops.log(prob) + w_bg * (1.0 - target) * ops.log(1.0 - prob))
    terms = target * ops.log(prob)
    if weights is not None:
        terms = terms * weights
    return -ops.sum(terms, axis=-1, keepdims=True)


def masked_bce(y_true, y_pred):
    """Binary (sigmoid) or categorical (softmax) cross-entropy over annotated pixels."""
    target, mask, prob = _split(y_true, y_pred)
    return _masked_mean(_pixel_ce(target, prob), mask)


def _both_classes(target, prob):
    """A sigmoid channel as two classes (background, foreground); a softmax as it is."""
    if prob.shape[-1] == 1:
        return ops.concatenate([1.0 - target, target], axis=-1), ops.concatenate([1.0 - prob, prob], axis=-1)
    return target, prob


def _per_class_sums(a, b, mask):
    """Sum over all but the class axis of ``a * b * mask``."""
    axes = tuple(range(len(a.shape) - 1))
    return ops.sum(a * b * mask, axis=axes)


def masked_dice_loss(y_true, y_pred):
    """1 - soft Dice over annotated pixels, averaged over every class, background included.

    Background counts so that a thin minority class labelled 0 (membranes between
    cells labelled 1, say) still drives the loss, whichever way round it was painted.
    """
    target, mask, prob = _split(y_true, y_pred)
    target, prob = _both_classes(target, prob)
    ones = ops.ones_like(target)
    intersection = _per_class_sums(target, prob, mask)
    total = _per_class_sums(target, ones, mask) + _per_class_sums(prob, ones, mask)
    dice = (2.0 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return 1.0 - ops.mean(dice)


def masked_bce_dice(y_true, y_pred):
    """Cross-entropy plus soft Dice loss."""
    return masked_bce(y_true, y_pred) + masked_dice_loss(y_true, y_pred)


def weighted_ce(class_weights):
    """Class-weighted cross-entropy: the weighted mean over annotated pixels.

    ``class_weights`` has one weight per class (background first); a sigmoid
    model takes two (background, foreground). The sum of the weighted terms is
    divided by the sum of the weights of the annotated pixels, so uniform
    weights give plain cross-entropy.
    """
    weights = np.asarray(class_weights, np.float32).ravel()
    if weights.size < 2 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            "class_weights must be at least two finite, non-negative numbers (background first), "
            f"got {class_weights!r}."
        )

    def loss(y_true, y_pred):
        target, mask, prob = _split(y_true, y_pred)
        w = ops.convert_to_tensor(weights)
        if prob.shape[-1] != 1 and prob.shape[-1] != weights.size:
            raise ValueError(
                f"weighted_ce has {weights.size} class weights but the model has {prob.shape[-1]} classes."
            )
        if prob.shape[-1] == 1:
            pixel_weight = w[0] * (1.0 - target) + w[1] * target
        else:
            pixel_weight = ops.sum(target * w, axis=-1, keepdims=True)
        numerator = ops.sum(_pixel_ce(target, prob, w) * mask)
        return numerator / ops.maximum(ops.sum(pixel_weight * mask), EPSILON)

    loss.__name__ = "weighted_ce"
    return loss


def inverse_frequency_weights(class_pixel_counts) -> np.ndarray:
    """Weights ``total / (n_classes * count)``: each class then weighs the same in total.

    Classes without pixels get weight 1 (they contribute nothing anyway).
    """
    counts = np.asarray(class_pixel_counts, np.float64).ravel()
    present = counts > 0
    if not present.any():
        raise ValueError("No annotated pixels to compute class weights from.")
    weights = np.ones_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


# Name (as in TrainConfig.loss) -> loss; "weighted_ce" maps to the factory that takes the class weights.
LOSS_FUNCTIONS = {
    "bce": masked_bce,
    "dice": masked_dice_loss,
    "bce_dice": masked_bce_dice,
    "weighted_ce": weighted_ce,
}


def masked_mse(y_true, y_pred):
    """Mean squared error over the masked pixels: a reconstruction loss (pretraining), not a
    segmentation one, so it is not among ``LOSS_FUNCTIONS``."""
    y_true = ops.cast(y_true, "float32")
    target, mask = y_true[..., :-1], y_true[..., -1:]
    return _masked_mean(ops.square(ops.cast(y_pred, "float32") - target), mask)


def get_loss(name: str, n_classes: int, *, class_weights=None):
    """The loss function called ``name`` for a model with ``n_classes`` outputs.

    For softmax models ``"bce"`` is categorical cross-entropy. ``"weighted_ce"``
    needs ``class_weights`` (``n_classes`` of them, or 2 for a sigmoid model).
    """
    if name not in LOSS_FUNCTIONS:
        raise ValueError(f"Unknown loss {name!r}: choose one of {list(LOSS_FUNCTIONS)}.")
    if name == "weighted_ce":
        expected = 2 if n_classes == 1 else n_classes
        if class_weights is None or len(class_weights) != expected:
            raise ValueError(
                f"weighted_ce needs {expected} class weights (background first) for {n_classes} output(s), "
                f"got {class_weights!r}; see inverse_frequency_weights."
            )
        return weighted_ce(class_weights)
    return LOSS_FUNCTIONS[name]


# -------------------------------------------------------------------- metrics


def _hard_foreground(y_true, y_pred, threshold=0.5):
    """0/1 prediction and target for the foreground classes, and the mask."""
    y_true = ops.cast(y_true, "float32")
    target, mask = y_true[..., :-1], y_true[..., -1:]
    prob = ops.cast(y_pred, "float32")
    if prob.shape[-1] == 1:
        pred = ops.cast(prob > threshold, "float32")
        return ops.cast(target > 0.5, "float32"), pred, mask
    k = prob.shape[-1]
    pred = ops.one_hot(ops.argmax(prob, axis=-1), k)
    true = ops.one_hot(ops.argmax(target, axis=-1), k)
    return true[..., 1:], pred[..., 1:], mask


def _mean_over_present(scores, denominators):
    """Mean over classes found in the prediction or the target; 1.0 if none was."""
    present = ops.cast(denominators > 0, "float32")
    n_present = ops.sum(present)
    mean = ops.sum(scores * present) / ops.maximum(n_present, 1.0)
    return ops.where(n_present > 0, mean, 1.0)


def dice_coef(y_true, y_pred):
    """Dice of the thresholded (sigmoid) or argmax (softmax) prediction on annotated pixels.

    Averaged over the foreground classes present in the prediction or the target.
    """
    true, pred, mask = _hard_foreground(y_true, y_pred)
    ones = ops.ones_like(true)
    intersection = _per_class_sums(true, pred, mask)
    total = _per_class_sums(true, ones, mask) + _per_class_sums(pred, ones, mask)
    return _mean_over_present(2.0 * intersection / ops.maximum(total, EPSILON), total)


def iou(y_true, y_pred):
    """Intersection over union, like ``dice_coef``."""
    true, pred, mask = _hard_foreground(y_true, y_pred)
    ones = ops.ones_like(true)
    intersection = _per_class_sums(true, pred, mask)
    union = _per_class_sums(true, ones, mask) + _per_class_sums(pred, ones, mask) - intersection
    return _mean_over_present(intersection / ops.maximum(union, EPSILON), union)

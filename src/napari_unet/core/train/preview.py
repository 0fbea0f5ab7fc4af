"""Live preview while training: the slice the viewer shows, predicted with the current weights.

The parent says which slice it wants as one integer (``encode_request``), written into a tiny
shared array the trainer reads between batches: one aligned 8-byte write, so the trainer never
sees half of an update, and nothing to drain or block on either side. The answer is an
``events.Preview`` carrying the slice's labels and foreground probability as uint8 arrays:
a slice is small (a 1024 x 1024 slice is 2 MiB in all) and bounded by ``MAX_PREVIEW_PIXELS``,
and in the event it arrives with its axis and index, so the parent never mixes up slices.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core import data, events
from napari_unet.core.nn.fitting import predict_on_batch
from napari_unet.core.predict.postprocess import labels_from_probs

NO_REQUEST = -1
# Larger slices are not previewed: the event (labels + probability) must stay a few MiB.
MAX_PREVIEW_PIXELS = 2048 * 2048
# Seconds between previews within an epoch (each epoch end makes one too), and the shortest
# wait before following the user to another slice.
PREVIEW_INTERVAL_S = 5.0
FOLLOW_INTERVAL_S = 1.0


def encode_request(axis: int, index: int) -> int:
    """One integer for "slice ``index`` along ``axis`` (0, 1 or 2) of the training image"."""
    if axis not in (0, 1, 2) or index < 0:
        return NO_REQUEST
    return int(index) * 3 + int(axis)


def decode_request(code: int) -> tuple[int, int] | None:
    """``(axis, index)``, or None when no preview is wanted."""
    code = int(code)
    return None if code < 0 else (code % 3, code // 3)


def slice_of(image_zyxc, axis: int, index: int):
    """Slice ``index`` along ``axis`` of a (Z, Y, X, C) image as (H, W, C); None when outside it."""
    if not 0 <= index < image_zyxc.shape[axis]:
        return None
    return np.asarray(image_zyxc[(slice(None),) * axis + (index,)])


def central_window(slice_shape, n_slices: int, *, max_pixels: int, min_side: int = 64) -> tuple[slice, slice]:
    """The central Y/X crop whose ``n_slices`` slices hold at most ``max_pixels`` pixels (sides of at
    least ``min_side`` where the slice has them): what a prediction of many slices can afford."""
    side = max(min_side, int((max_pixels / max(1, n_slices)) ** 0.5))
    y, x = (slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + min(n, side)) for n in slice_shape[:2])
    return y, x


def predict_slice(model, image_hwc, norm: dict, size_multiple: int) -> np.ndarray:
    """Class probabilities (H, W, K) of one slice, padded to the model's size multiple and back."""
    x = data.normalize(image_hwc, norm)
    x, crop = data.pad_to_multiple(x, size_multiple, mode="reflect" if min(x.shape[:2]) > 1 else "edge")
    probs = predict_on_batch(model, x[None])[0]
    return np.asarray(probs[crop[:2]], np.float32)


def foreground(probs: np.ndarray) -> np.ndarray:
    """The probability of "not background" as uint8 (0..255)."""
    p = probs[..., 0] if probs.shape[-1] == 1 else 1.0 - probs[..., 0]
    return np.round(np.clip(p, 0.0, 1.0) * 255).astype(np.uint8)


def make_preview(model, image_zyxc, norm, size_multiple, axis, index, epoch) -> events.Preview | None:
    """The preview event of a slice, or None for a slice outside the image or too large."""
    image = slice_of(image_zyxc, axis, index)
    if image is None or image.shape[0] * image.shape[1] > MAX_PREVIEW_PIXELS:
        return None
    probs = predict_slice(model, image, norm, size_multiple)
    return events.Preview(axis=axis, index=index, epoch=epoch, labels=labels_from_probs(probs),
                          probability=foreground(probs))

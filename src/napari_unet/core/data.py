"""Training data: normalisation, annotation semantics, targets, splits and patches.

Numpy, scipy and scikit-image only, so the GUI can import it.

Shapes: images are ``(Z, Y, X, C)`` (channels last) once passed through
``as_zyxc``; labels are integer ``(Z, Y, X)``. A 2-D image or label map is a
volume with one slice.

Label conventions (``TrainConfig.annotation_mode``):

- ``"full_slices"``: a slice with any non-zero label is annotated and 0 there
  is background; slices without labels are ignored. Softmax class ``k`` is
  label value ``k``.
- ``"scribbles"``: 0 is unlabelled (never background), 1 is background and
  2..K are classes; softmax class ``k`` is label value ``k + 1``.
- ``instances=True`` (full slices only): labels are object ids; the model
  learns 3 classes: 0 background, 1 object interior, 2 object boundary.

Targets carry a mask (1 where a pixel enters the loss); ``sample_batch`` and
``validation_arrays`` append it as the last channel of ``y``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_unet.core.config import TrainConfig

# --------------------------------------------------------------------- shapes


def as_zyxc(image, channels: bool | None = None):
    """Return ``image`` as ``(Z, Y, X, C)``.

    ``channels=None`` reads 2-D as ``(Y, X)``, 3-D as ``(Z, Y, X)`` and 4-D as
    ``(Z, Y, X, C)``; pass ``channels=True`` for a single ``(Y, X, C)`` image
    (``as_training_pair`` decides this from the labels' shape).
    """
    a = image if hasattr(image, "reshape") and hasattr(image, "ndim") else np.asarray(image)
    has_c = a.ndim == 4 if channels is None else bool(channels)
    spatial = a.ndim - 1 if has_c else a.ndim
    if spatial not in (2, 3) or (a.ndim == 4 and not has_c):
        kind = "(Y, X, C) or (Z, Y, X, C)" if has_c else "(Y, X), (Z, Y, X) or (Z, Y, X, C)"
        raise ValueError(f"Image must be {kind}, got shape {tuple(a.shape)}.")
    shape = tuple(a.shape)
    if spatial == 2:
        shape = (1,) + shape
    if not has_c:
        shape = shape + (1,)
    return a.reshape(shape)


def as_zyx(labels):
    """Return labels as ``(Z, Y, X)``; a 2-D label map becomes one slice."""
    a = np.asarray(labels)
    if a.ndim == 2:
        return a[np.newaxis]
    if a.ndim != 3:
        raise ValueError(f"Labels must be (Y, X) or (Z, Y, X), got shape {a.shape}.")
    return a


def as_training_pair(image, labels):
    """``(image (Z, Y, X, C), labels (Z, Y, X))``; an image with one more axis
    than the labels has channels last (e.g. RGB). Raises if the shapes differ."""
    labels = np.asarray(labels)
    has_c = getattr(image, "ndim", np.ndim(image)) == labels.ndim + 1
    image_shape = tuple(np.shape(image))
    spatial = image_shape[:-1] if has_c else image_shape
    if spatial != labels.shape:
        raise ValueError(
            f"Image shape {image_shape} and labels shape {labels.shape} differ: pick the Labels "
            "layer that was drawn on this image (or create a new Labels layer from it)."
        )
    return as_zyxc(image, channels=has_c), as_zyx(labels)


PadMode = Literal["constant", "edge", "reflect", "symmetric", "wrap"]  # the numpy.pad modes accepted


def pad_to_multiple(x, multiple: int, *, axes=(0, 1), mode: PadMode = "reflect", **pad_kwargs):
    """Pad the end of ``axes`` up to a multiple of ``multiple``.

    Returns ``(padded, crop)`` with ``padded[crop]`` equal to ``x``.
    Extra keywords go to ``numpy.pad`` (e.g. ``constant_values``).
    """
    if int(multiple) < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}.")
    x = np.asarray(x)
    widths = [(0, 0)] * x.ndim
    crop = [slice(None)] * x.ndim
    for ax in axes:
        n = x.shape[ax]
        widths[ax] = (0, -n % multiple)
        crop[ax] = slice(0, n)
    if any(w[1] for w in widths):
        x = np.pad(x, widths, mode=mode, **pad_kwargs)
    return x, tuple(crop)


# -------------------------------------------------------------- normalisation


def compute_normalization(image_zyxc, *, percentiles=(1, 99.8), max_samples: int = 10**7, seed: int = 0) -> dict:
    """Per-channel percentiles of the image, stored with a model to reuse on new data.

    Large images are subsampled (``intensity_sample``), which keeps lazy arrays lazy.
    Non-finite values are ignored.
    """
    image_zyxc = as_zyxc(image_zyxc)
    z, y, x, c = image_zyxc.shape
    sample = intensity_sample(lambda k: image_zyxc[k], z, (y, x, c), max_samples=max_samples, seed=seed)
    return normalization_from_sample(sample, percentiles)


def intensity_sample(read_slice, n_slices: int, slice_shape, *, max_samples: int = 10**7, seed: int = 0):
    """``(N, C)`` float64 pixels of at most about ``max_samples``: random slices, then a regular
    pixel grid with a random start. ``read_slice(k)`` gives slice ``k`` as ``(Y, X, C)``."""
    y, x, c = slice_shape
    rng = np.random.default_rng(seed)
    zs = np.arange(n_slices)
    if n_slices * y * x > max_samples:
        zs = np.sort(rng.choice(n_slices, min(n_slices, max(1, max_samples // (y * x))), replace=False))
    step = max(1, math.ceil(math.sqrt(len(zs) * y * x / max_samples)))
    oy, ox = (int(rng.integers(step)), int(rng.integers(step))) if step > 1 else (0, 0)
    return np.concatenate(
        [np.asarray(read_slice(int(k))[oy::step, ox::step]).reshape(-1, c) for k in zs]
    ).astype(np.float64)


def normalization_from_sample(sample, percentiles=(1, 99.8)) -> dict:
    low, high = [], []
    for ch in range(sample.shape[-1]):
        v = sample[:, ch]
        v = v[np.isfinite(v)]
        lo, hi = np.percentile(v, percentiles) if v.size else (0.0, 1.0)
        low.append(float(lo))
        high.append(float(hi) if hi > lo else float(lo) + 1.0)
    return {"method": "percentile", "percentiles": [float(p) for p in percentiles], "low": low, "high": high}


# A new volume whose percentile range, mapped by the training normalisation, is wider or narrower
# than the training range by more than this factor (or moved by more than one range) is "different".
RANGE_FACTOR = 3.0


def intensity_mismatch(own: dict, stored: dict) -> str:
    """Why a volume's own percentiles differ strongly from the stored training ones; "" if they do not."""
    for ch, (lo, hi, own_lo, own_hi) in enumerate(zip(stored["low"], stored["high"], own["low"], own["high"])):
        a, b = (own_lo - lo) / (hi - lo), (own_hi - lo) / (hi - lo)
        if not 1 / RANGE_FACTOR <= b - a <= RANGE_FACTOR or abs((a + b) / 2 - 0.5) > 1:
            which = "" if len(stored["low"]) == 1 else f" (channel {ch})"
            return (f"this volume's intensities{which} run from {own_lo:g} to {own_hi:g} "
                    f"(1st-99.8th percentile), the training image's from {lo:g} to {hi:g}")
    return ""


def nonfinite_message(count: int, where: str = "The image") -> str:
    return (f"{where} has {count} NaN or infinite pixels: replace them first "
            "(e.g. numpy.nan_to_num, or fill with the median intensity).")


def constant_message(value) -> str:
    return (f"The image is constant (every pixel is {value:g}): there is nothing to learn or segment; "
            "pick another image or channel.")


def _value_check_planes(image_zyxc):
    """Every slice where pixels can be NaN (float images); else the normalisation's bounded
    sample, enough to tell a constant image, so a large or lazy stack is not read whole (the
    Train dock runs this check on every change of its inputs)."""
    z, y, x, c = image_zyxc.shape
    if np.dtype(image_zyxc.dtype).kind in "fc":
        return (image_zyxc[k] for k in range(z))
    return [intensity_sample(lambda k: image_zyxc[k], z, (y, x, c))]


def check_image_values(planes) -> None:
    """Refuse NaN or infinite pixels and a constant image, in the same words for training and
    prediction. ``planes``: arrays (slices, or a sample) that together make the image."""
    bad, low, high = 0, math.inf, -math.inf
    for plane in planes:
        plane = np.asarray(plane)
        if plane.dtype.kind in "fc":
            finite = np.isfinite(plane)
            bad += int(plane.size - np.count_nonzero(finite))
            plane = plane[finite]
        if plane.size:
            low, high = min(low, float(plane.min())), max(high, float(plane.max()))
    if bad:
        raise ValueError(nonfinite_message(bad))
    if low >= high:
        raise ValueError(constant_message(low))


def normalize(x, norm: dict):
    """``(x - low) / (high - low)`` per channel (last axis), float32, no clipping."""
    low = np.asarray(norm["low"], np.float32)
    scale = np.float32(1.0) / (np.asarray(norm["high"], np.float32) - low)
    out = np.array(x, dtype=np.float32)  # a copy, so the in-place steps never touch x
    out -= low
    out *= scale
    return out


# ------------------------------------------------------ annotation semantics


def _check_mode(mode, instances=False):
    modes = TrainConfig.CHOICES["annotation_mode"]
    if mode not in modes:
        raise ValueError(f"annotation mode must be one of {sorted(modes)}, got {mode!r}.")
    if instances and mode != "full_slices":
        raise ValueError(
            "Instance labels (one id per object) need fully annotated slices: "
            "switch the annotation mode to 'full_slices' or turn instances off."
        )


def _no_annotation_message(mode):
    if mode == "full_slices":
        return (
            "No annotated slice: in 'full_slices' mode paint every object of at least one "
            "slice with a non-zero label (0 there is background), or switch to 'scribbles'."
        )
    return (
        "No scribbles found: in 'scribbles' mode paint some background with label 1 and "
        "objects with label 2 (3, 4, ... for more classes); 0 stays unlabelled."
    )


def annotated_slices(labels_zyx, mode: str) -> np.ndarray:
    """Indices of the slices holding any non-zero label (the annotated ones, in both modes)."""
    _check_mode(mode)
    labels = as_zyx(labels_zyx)
    return np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1)).astype(np.int64)


MAX_CLASSES = 255  # the largest label value a class model accepts
MAX_CLASS_VALUES = 32  # more distinct values than this are taken for object ids


def annotated_object_count(labels_zyx, mode: str) -> int:
    """Distinct non-zero ids on the annotated slices (objects, for instance labels)."""
    labels = as_zyx(labels_zyx)
    idx = annotated_slices(labels, mode)
    return int(np.count_nonzero(np.unique(labels[idx]))) if idx.size else 0


TILE_GAP_PX = 6  # background this close to an object is a gap between objects (membranes)
TILE_SHARE = 0.9  # ... and when this share of it is, the objects tile the image


def objects_tile_the_image(labels_zyx, mode: str) -> bool:
    """Whether the annotated background is mostly thin gaps between objects (EM membranes:
    94 % within 6 px on ISBI 2012) rather than space (cells or nuclei in a dish: 49-65 %)."""
    labels = as_zyx(labels_zyx)
    near = total = 0
    for z in annotated_slices(labels, mode):
        background = labels[z] == 0
        distance = ndi.distance_transform_edt(background)[background]
        near += int((distance <= TILE_GAP_PX).sum())
        total += distance.size
    return total > 0 and near / total >= TILE_SHARE


def class_count(labels_zyx, mode: str, *, instances: bool = False) -> int:
    """Number of model outputs the labels need.

    - instances: 3 (background, interior, boundary; softmax).
    - full_slices: 1 (sigmoid, any non-zero label is foreground) when the
      annotated slices hold a single non-zero value; otherwise ``max + 1``
      (softmax, class k = label value k, 0 = background).
    - scribbles: 1 (sigmoid) when the labels go up to 2 (background 1 and one
      class 2); otherwise ``max`` (softmax, class k = label k + 1, 0 = background).
    """
    _check_mode(mode, instances)
    labels = as_zyx(labels_zyx)
    idx = annotated_slices(labels, mode)
    if idx.size == 0:
        raise ValueError(_no_annotation_message(mode))
    return class_count_of_values(np.unique(labels[idx]), mode, instances=instances)


def class_count_of_values(values, mode: str, *, instances: bool = False) -> int:
    """``class_count`` from the distinct label values of the annotated slices (of one or
    several label volumes)."""
    _check_mode(mode, instances)
    values = np.asarray(values)
    nonzero = values[values != 0]
    if nonzero.size == 0:
        raise ValueError(_no_annotation_message(mode))
    if instances:
        return 3
    top = int(nonzero.max())
    if top > MAX_CLASSES or nonzero.size > MAX_CLASS_VALUES:
        raise ValueError(
            f"The annotations hold {nonzero.size} different labels (up to {top}): they look like object ids, "
            "one per object. Turn on instances ('Objects have own ids' in the dock, --instances on the "
            "command line) to learn the objects, or use one value per class."
        )
    if mode == "full_slices":
        return 1 if nonzero.size == 1 else top + 1
    return 1 if top <= 2 else top


def instance_boundaries(labels, width: int = 1) -> np.ndarray:
    """Object pixels within ``width`` px of their object's edge (touching objects: 2 x width)."""
    ring = find_boundaries(labels, mode="inner")
    if width > 1:
        # A dilated ring reaches other objects only within width - 1 px of their own edge.
        ring = ndi.binary_dilation(ring, iterations=width - 1)
    return ring & (labels > 0)


def _one_hot(class_map, n_classes):
    return (class_map[..., np.newaxis] == np.arange(n_classes)).astype(np.float32)


def make_targets(labels_2d, mode: str, n_classes: int, *, instances: bool = False, boundary_width: int = 1):
    """``(target (Y, X, n_classes) float32, mask (Y, X) float32)`` for one slice.

    ``n_classes == 1`` gives one 0/1 foreground channel, otherwise one-hot.
    The mask is 1 on pixels that enter the loss: the whole slice in
    full_slices mode if it holds any label (else nothing), the painted pixels
    in scribbles mode. With ``instances``, the boundary class is the ring of each object's
    pixels within ``boundary_width`` px of its edge.
    """
    _check_mode(mode, instances)
    labels = np.asarray(labels_2d)
    if labels.ndim != 2:
        raise ValueError(f"make_targets needs one 2-D slice, got shape {labels.shape}.")
    top = int(labels.max()) if labels.size else 0
    if mode == "scribbles":
        mask = labels > 0
        if n_classes == 1:
            if top > 2:
                raise ValueError(f"Label {top} found but the model has one output (labels 1 and 2 only).")
            target = (labels == 2)[..., np.newaxis].astype(np.float32)
        else:
            if top > n_classes:
                raise ValueError(
                    f"Label {top} found but the model has only {n_classes} classes (labels 1..{n_classes}).")
            target = _one_hot(labels.astype(np.int64) - 1, n_classes)  # label 0 -> -1 -> all zeros
        return target, mask.astype(np.float32)

    mask = np.full(labels.shape, float(top > 0), np.float32)
    if instances:
        if n_classes != 3:
            raise ValueError(
                f"Instance targets have 3 classes (background, interior, boundary), got n_classes={n_classes}.")
        boundary = instance_boundaries(labels, boundary_width)
        return _one_hot(np.where(boundary, 2, (labels > 0).astype(np.int64)), 3), mask
    if n_classes == 1:
        nonzero = labels[labels != 0]
        if nonzero.size and (nonzero != nonzero[0]).any():
            raise ValueError(
                "Several non-zero labels found but the model has one output: use class_count() "
                "for n_classes, or turn on instances if each object has its own id."
            )
        return (labels != 0)[..., np.newaxis].astype(np.float32), mask
    if top >= n_classes:
        raise ValueError(f"Label {top} found but the model has only {n_classes} classes (labels 0..{n_classes - 1}).")
    return _one_hot(labels, n_classes), mask


def loss_weights(weights, labels_shape) -> np.ndarray | None:
    """``weights`` as float32 ``(Z, Y, X)``: one finite, non-negative loss weight per label pixel
    (``labels_shape``, 2-D or 3-D), multiplied into the loss masks; None stays None (all 1)."""
    if weights is None:
        return None
    w = np.asarray(weights, np.float32)
    problem = ""
    if w.shape != tuple(labels_shape):
        problem = f"shape {w.shape}"
    elif not np.isfinite(w).all():
        problem = f"{int(w.size - np.count_nonzero(np.isfinite(w)))} NaN or infinite values"
    elif w.size and float(w.min()) < 0:
        problem = f"a negative value ({float(w.min()):g})"
    if problem:
        raise ValueError(f"Loss weights must be one finite, non-negative number per label pixel, shape "
                         f"{tuple(labels_shape)}; got {problem}.")
    return as_zyx(w)


def validate_training_pair(image, labels, mode: str, *, instances: bool = False) -> None:
    """Raise ``ValueError`` saying what to fix if the pair cannot be trained on."""
    _check_mode(mode, instances)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu":
        raise ValueError(
            f"Labels must be integers, got {labels.dtype}: use a Labels layer "
            "(or convert with labels.astype(int))."
        )
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError(
            f"Labels must not be negative (found {int(labels.min())}): "
            "0 is background or unlabelled, objects and classes are 1, 2, ..."
        )
    image_zyxc, labels_zyx = as_training_pair(image, labels)
    check_image_values(_value_check_planes(image_zyxc))
    idx = annotated_slices(labels_zyx, mode)
    if idx.size == 0:
        raise ValueError(_no_annotation_message(mode))
    values = np.unique(labels_zyx[idx])
    if mode == "scribbles":
        values = values[values != 0]
        if values.size < 2:
            which = "background (label 1)" if values[0] == 1 else f"label {values[0]}"
            raise ValueError(
                f"Only {which} is painted: scribbles need at least two classes, so paint "
                "background with label 1 and objects with label 2."
            )
    elif values.size < 2:
        raise ValueError(
            f"The annotated slices hold only label {values[0]}: leave or paint some background "
            "(0) around the objects so the model sees two classes."
        )


# ------------------------------------------------------------ validation split


def split_validation(annotated_idx, labels_zyx, val_fraction: float, *, seed: int = 0, by: str = "slices"):
    """Split annotated data into ``(train_items, val_items)`` of ``(z, (y0, y1, x0, x1))``.

    ``by="slices"``: ``max(1, round(val_fraction * n))`` whole slices are held out (at least one
    is kept for training). ``by="strips"``: a vertical strip of about ``val_fraction`` of each
    slice's width, placed where both it and the rest hold labelled pixels; a slice with no such
    place trains whole. One slice is always split by a strip; a fraction of 0 holds nothing out.
    """
    labels = as_zyx(labels_zyx)
    idx = [int(z) for z in np.asarray(annotated_idx).ravel()]
    train, val = split_slices([labels[z] for z in idx], val_fraction, seed=seed, by=by)
    by_z = lambda items: sorted((idx[i], box) for i, box in items)  # noqa: E731
    return by_z(train), by_z(val)


def split_slices(label_slices, val_fraction: float, *, seed: int = 0, by: str = "slices"):
    """``split_validation`` for a list of annotated 2-D label slices, which may differ in size
    (slices of several images); items are ``(position in the list, (y0, y1, x0, x1))``."""
    if not len(label_slices):
        raise ValueError("split_validation needs at least one annotated slice.")
    if by not in ("slices", "strips"):
        raise ValueError(f"split by {by!r}: use 'slices' or 'strips'.")
    rng = np.random.default_rng(seed)
    n = len(label_slices)
    if n == 1 or by == "strips":
        train, val = [], []
        for i, labels_2d in enumerate(label_slices):
            kept, held = _split_one_slice(np.asarray(labels_2d), val_fraction, rng)
            train += [(i, box) for _, box in kept]
            val += [(i, box) for _, box in held]
        return train, val
    n_val = 0 if val_fraction <= 0 else min(n - 1, max(1, round(val_fraction * n)))
    val_set = set(int(i) for i in rng.choice(n, n_val, replace=False))

    def whole(i):
        return (i, (0, label_slices[i].shape[0], 0, label_slices[i].shape[1]))

    return [whole(i) for i in range(n) if i not in val_set], [whole(i) for i in sorted(val_set)]


def _split_one_slice(labels_2d, val_fraction: float, rng):
    """A vertical strip of one slice held out for validation (see ``split_validation``)."""
    h, w = labels_2d.shape
    if val_fraction <= 0 or w < 2:
        return [(0, (0, h, 0, w))], []
    strip = min(w - 1, max(1, round(val_fraction * w)))
    cumulative = np.concatenate([[0], np.cumsum(np.count_nonzero(labels_2d, axis=0))])
    total = cumulative[-1]
    held = cumulative[strip:] - cumulative[:-strip]  # labelled pixels in the strip at each x0
    possible = (held > 0) & (held < total)
    near_fraction = possible & (np.abs(held / max(total, 1) - val_fraction) <= val_fraction / 2)
    choices = np.flatnonzero(near_fraction if near_fraction.any() else possible)
    if choices.size == 0:
        return [(0, (0, h, 0, w))], []
    x0 = int(rng.choice(choices))
    x1 = x0 + strip
    train = [(0, (0, h, a, b)) for a, b in ((0, x0), (x1, w)) if b > a]
    return train, [(0, (0, h, x0, x1))]

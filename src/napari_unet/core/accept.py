"""Accept a prediction as annotation: copy one slice of it into the annotations, to edit
rather than draw. Numpy only; the annotations the user already made are kept unless asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_unet.core.bundle_meta import BundleMeta


class SliceAnnotatedError(ValueError):
    """The slice already holds annotations and ``overwrite`` was not asked for."""


def label_values_of(meta: BundleMeta):
    """Per class, the annotation value that trained it (``meta.classes.label_values``);
    None when predictions are copied as they are (object ids, or no mapping stored)."""
    if meta.instances or meta.classes is None:
        return None
    values = meta.classes.label_values
    return None if not values or any(v is None for v in values) else [int(v) for v in values if v is not None]


def _as_annotation_values(prediction_slice, label_values, dtype) -> np.ndarray:
    predicted = np.asarray(prediction_slice)
    if label_values is not None:
        if predicted.size and int(predicted.max()) >= len(label_values):
            raise ValueError(f"The prediction holds class {int(predicted.max())} but the model has "
                             f"{len(label_values)} classes: pick the prediction made by this model.")
        predicted = np.asarray(label_values)[predicted]
    if predicted.size and np.dtype(dtype).kind in "iu" and int(predicted.max()) > np.iinfo(dtype).max:
        raise ValueError(f"The prediction holds label {int(predicted.max())}, more than the annotations' "
                         f"type {np.dtype(dtype)} can hold: convert the annotations to uint32 first.")
    return predicted.astype(dtype, copy=False)


def accept_slice(prediction, annotations, *, index=None, overwrite: bool = False, label_values=None) -> int:
    """Copy slice ``index`` (axis 0; None for 2-D arrays) of ``prediction`` into ``annotations``
    in place; returns how many annotation pixels changed.

    ``label_values[k]`` is the annotation value of predicted class ``k`` (scribbles: background
    is 1); None copies the values as they are (object ids). A slice that already holds non-zero
    annotations is refused (``SliceAnnotatedError``) unless ``overwrite``; the other slices are
    never touched.
    """
    if tuple(np.shape(prediction)) != tuple(np.shape(annotations)):
        raise ValueError(f"The prediction has shape {tuple(np.shape(prediction))} but the annotations "
                         f"{tuple(np.shape(annotations))}: pick the prediction of the annotated image.")
    ndim = len(np.shape(annotations))
    if (ndim == 3) != (index is not None) or ndim not in (2, 3):
        raise ValueError(f"accept_slice takes a slice index for 3-D annotations only, got index={index!r} "
                         f"for shape {tuple(np.shape(annotations))}.")
    where = Ellipsis if index is None else int(index)
    if index is not None and not 0 <= int(index) < np.shape(annotations)[0]:
        raise ValueError(f"Slice {index} is outside the stack (0 to {np.shape(annotations)[0] - 1}).")
    current = np.asarray(annotations[where])
    painted = int(np.count_nonzero(current))
    if painted and not overwrite:
        raise SliceAnnotatedError(f"Slice {0 if index is None else index} already has {painted} annotated pixels; "
                                  "they are kept (overwrite=True replaces them).")
    new = _as_annotation_values(prediction[where], label_values, current.dtype)
    changed = int(np.count_nonzero(new != current))
    annotations[where] = new
    return changed

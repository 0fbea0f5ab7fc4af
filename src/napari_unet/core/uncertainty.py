"""Where to annotate next: rank slices by how unsure a model is about them.

Numpy only (the GUI may import it). The score of a slice is the mean entropy of its class
probabilities, divided by the largest possible entropy, so it lies in [0, 1]: 0 where the
model is certain of every pixel, 1 where every pixel is a coin toss. A live preview can call
``slice_uncertainty`` on the probabilities it already has.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from napari_unet.core import data, events

# Ranking predicts at most this many unannotated slices, evenly spaced, so a 2000-slice stack
# is ranked in the time of 32 slices; the suggestion is then the best of that sample.
MAX_RANKED_SLICES = 32
_TINY = 1e-7  # keeps log(0) out of the entropy


def slice_uncertainty(probs) -> float:
    """Mean normalised entropy of ``probs`` ``(..., K)``: K = 1 sigmoid, K > 1 softmax classes."""
    p = np.clip(np.asarray(probs, np.float64), _TINY, 1.0 - _TINY)
    if p.shape[-1] == 1:
        q = p[..., 0]
        entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2)
    else:
        entropy = -(p * np.log(p)).sum(axis=-1) / np.log(p.shape[-1])
    return float(np.clip(entropy.mean(), 0.0, 1.0)) if entropy.size else 0.0


def unannotated_slices(labels_zyx) -> np.ndarray:
    """Indices of the slices of ``labels_zyx`` ``(Z, Y, X)`` with no non-zero label."""
    labels = data.as_zyx(labels_zyx)
    return np.setdiff1d(np.arange(labels.shape[0]), data.annotated_slices(labels, "full_slices"))


def candidate_slices(labels_zyx, max_slices: int = MAX_RANKED_SLICES) -> tuple[list[int], int]:
    """``(slices to rank, number of unannotated slices)``: all unannotated slices, or at most
    ``max_slices`` of them evenly spaced through the stack."""
    if max_slices < 1:
        raise ValueError(f"max_slices must be at least 1, got {max_slices}.")
    free = unannotated_slices(labels_zyx)
    if free.size <= max_slices:
        return [int(z) for z in free], int(free.size)
    picks = np.unique(np.round(np.linspace(0, free.size - 1, max_slices)).astype(int))
    return [int(free[i]) for i in picks], int(free.size)


def rank(scores: dict) -> list[tuple[int, float]]:
    """``[(slice, score), ...]``, most uncertain first (ties: the lower slice first)."""
    return sorted(((int(z), float(s)) for z, s in scores.items()), key=lambda item: (-item[1], item[0]))


class SliceSubset:
    """Slices ``slices`` of a volume along its first axis, read one at a time (lazy volumes stay
    lazy): what ``core.predict.predict_volume`` needs to predict only those slices."""

    def __init__(self, volume, slices):
        self.volume, self.slices = volume, [int(z) for z in slices]
        self.shape = (len(self.slices),) + tuple(volume.shape[1:])
        self.dtype = volume.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        return self.volume[(self.slices[int(index[0])],) + index[1:]]


class _Discard:
    """An ``out_labels`` that keeps nothing: ranking needs the probabilities only."""

    dtype = np.dtype(np.uint8)

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __setitem__(self, index, value) -> None:
        pass


class UncertaintySink:
    """Takes the place of ``predict_volume``'s ``out_probs`` (all classes): each slice written
    is scored and dropped, so ranking holds one slice of probabilities at a time."""

    def __init__(self, n_slices: int, slice_shape, n_classes: int):
        self.shape = (int(n_slices),) + tuple(slice_shape) + (int(n_classes),)
        self.scores: dict[int, float] = {}

    def __setitem__(self, index, probs) -> None:
        self.scores[int(index[0])] = slice_uncertainty(probs)


def rank_slices(volume, slices, predict: Callable[..., Iterator[events.Event]], n_classes: int
                ) -> Iterator[events.Event]:
    """Predict ``slices`` of ``volume`` ``(Z, Y, X[, C])`` and rank them; a generator of events.

    ``predict(subset, out_labels=..., out_probs=...)`` runs the model (e.g. ``predict_volume``
    with its settings bound) and yields its events. Yields ``events.Progress`` per slice, then
    ``events.Ranked`` (most uncertain first), or the prediction's ``events.Stopped``.
    """
    if len(volume.shape) < 3:
        raise ValueError("Ranking slices needs a 3-D stack; this image is a single slice.")
    if not slices:
        yield events.Ranked()
        return
    subset = SliceSubset(volume, slices)
    sink = UncertaintySink(len(slices), subset.shape[1:3], n_classes)
    for event in predict(subset, out_labels=_Discard(subset.shape[:3]), out_probs=sink):
        if isinstance(event, events.Slice):
            yield events.Progress(axis=0, index=event.index, n_slices=event.n_slices)
        elif isinstance(event, events.Stopped):
            yield events.Stopped(message=event.message)
            return
        elif isinstance(event, events.Warn):
            yield event
    scores = {subset.slices[i]: score for i, score in sink.scores.items()}
    yield events.Ranked(ranking=tuple((z, score) for z, score in rank(scores)))

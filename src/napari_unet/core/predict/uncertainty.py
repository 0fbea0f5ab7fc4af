"""Rank slices by how unsure a model is about them (``napari-unet suggest``). As picks of the slice
to annotate next neither ranking beat random ones (benchmarks/annotation_efficiency.py), so the
Train dock suggests none.

Numpy and scipy only (the GUI may import it). Two rankings (``METHODS``):

- ``"entropy"``: the mean entropy of a slice's class probabilities, divided by the largest
  possible entropy, so it lies in [0, 1]: 0 where the model is certain of every pixel, 1 where
  every pixel is a coin toss. It points at slices that are hard, wherever the doubt is.
- ``"disagreement"``: each slice is predicted twice, as it is and turned by 180 degrees; the
  score is how much the two passes disagree (mean total-variation distance of their class
  probabilities) in a band around either pass's predicted boundaries, where a boundary that
  moves, appears or vanishes splits or merges objects; doubt inside a uniform region changes
  no object and does not count. It is multiplied by a spread weight, ``1 - exp(-d / s)``, with
  ``d`` the distance in slices to the nearest annotated slice and ``s`` half the gap that the
  annotations would leave if spread evenly through the stack: a slice next to one the user
  just painted teaches little that slice did not. Twice the prediction of ``"entropy"``.

A live preview can call ``slice_uncertainty`` on the probabilities it already has.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import ndimage as ndi

from napari_unet.core import data, events

METHODS = ("entropy", "disagreement")
# Pixels either side of a predicted boundary that count for "disagreement": a pass that moves a
# boundary by a pixel or two changes the objects there.
BOUNDARY_BAND_PX = 2
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


def slice_disagreement(probs, probs_turned_back) -> float:
    """Mean total-variation distance, in [0, 1], between two passes' class probabilities
    ``(Y, X, K)`` over the band around either pass's predicted boundaries; 0 without boundaries."""
    a, b = _two_or_more_classes(probs), _two_or_more_classes(probs_turned_back)
    band = boundary_band(a.argmax(axis=-1), b.argmax(axis=-1))
    if not band.any():
        return 0.0
    distance = 0.5 * np.abs(a - b).sum(axis=-1)
    return float(np.clip(distance[band].mean(), 0.0, 1.0))


def boundary_band(labels_a, labels_b, *, width: int = BOUNDARY_BAND_PX) -> np.ndarray:
    """Pixels within ``width`` of a change of label in either 2-D labelling."""
    edges = _edges(labels_a) | _edges(labels_b)
    return ndi.binary_dilation(edges, iterations=width) if width and edges.any() else edges


def _edges(labels) -> np.ndarray:
    """Pixels with a 4-neighbour of another label."""
    edges = np.zeros(labels.shape, bool)
    down, right = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    edges[1:] |= down
    edges[:-1] |= down
    edges[:, 1:] |= right
    edges[:, :-1] |= right
    return edges


def _two_or_more_classes(probs) -> np.ndarray:
    """``(..., K)`` probabilities; a sigmoid (K = 1) as its two classes."""
    p = np.asarray(probs, np.float32)
    return np.concatenate([1.0 - p, p], axis=-1) if p.shape[-1] == 1 else p


def spread_weights(slices, annotated, n_slices: int) -> dict[int, float]:
    """``{slice: 1 - exp(-d / s)}``: ``d`` slices to the nearest of ``annotated``, ``s`` half the
    gap between ``len(annotated)`` slices spread evenly through ``n_slices``; 1 with none annotated."""
    annotated = np.asarray(sorted(int(z) for z in annotated))
    if annotated.size == 0:
        return {int(z): 1.0 for z in slices}
    scale = max(n_slices / (2.0 * (annotated.size + 1)), 0.5)
    return {int(z): float(1.0 - np.exp(-np.abs(annotated - int(z)).min() / scale)) for z in slices}


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

    passes = 1  # predictions per slice

    def __init__(self, volume, slices):
        self.volume, self.slices = volume, [int(z) for z in slices]
        self.shape = (len(self.slices),) + tuple(volume.shape[1:])
        self.dtype = volume.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        return self.volume[(self.slices[int(index[0])],) + index[1:]]


class TurnedPairs(SliceSubset):
    """Each slice of ``slices`` twice, as it is then turned by 180 degrees in Y and X: position
    ``2 i`` and ``2 i + 1`` are slice ``slices[i]`` (what "disagreement" predicts)."""

    passes = 2

    def __init__(self, volume, slices):
        super().__init__(volume, slices)
        self.shape = (2 * len(self.slices),) + tuple(volume.shape[1:])

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        position = int(index[0])
        image = np.asarray(self.volume[self.slices[position // 2]])
        if position % 2:
            image = image[::-1, ::-1]
        return image[index[1:]]


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


class DisagreementSink(UncertaintySink):
    """``out_probs`` of ``TurnedPairs``: keeps a slice's first pass until its turned pass
    arrives, scores the pair (``slice_disagreement``) and drops both."""

    def __init__(self, n_slices: int, slice_shape, n_classes: int):
        super().__init__(n_slices, slice_shape, n_classes)
        self._first: np.ndarray | None = None

    def __setitem__(self, index, probs) -> None:
        position = int(index[0])
        if position % 2 == 0:
            self._first = np.array(probs, np.float32)  # a copy: the writer may reuse its buffer
            return
        self.scores[position // 2] = slice_disagreement(self._first, np.asarray(probs)[::-1, ::-1])
        self._first = None


def rank_slices(volume, slices, *, predict: Callable[..., Iterator[events.Event]], n_classes: int,
                method: str = "entropy", annotated=()) -> Iterator[events.Event]:
    """Predict ``slices`` of ``volume`` ``(Z, Y, X[, C])`` and rank them; a generator of events.

    ``predict(subset, out_labels=..., out_probs=...)`` runs the model (e.g. ``predict_volume``
    with its settings bound, without test-time augmentation) and yields its events. ``method``:
    one of ``METHODS`` (see the module's docstring); ``annotated``: the slices already annotated,
    which "disagreement" keeps its suggestions away from. Yields ``events.Progress`` per slice,
    then ``events.Ranked`` (highest score first), or the prediction's ``events.Stopped``.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown ranking method {method!r}: use one of {', '.join(METHODS)}.")
    if len(volume.shape) < 3:
        raise ValueError("Ranking slices needs a 3-D stack; this image is a single slice.")
    if not slices:
        yield events.Ranked()
        return
    subset = (TurnedPairs if method == "disagreement" else SliceSubset)(volume, slices)
    sink = (DisagreementSink if method == "disagreement" else UncertaintySink)(
        subset.shape[0], subset.shape[1:3], n_classes)
    for event in predict(subset, out_labels=_Discard(subset.shape[:3]), out_probs=sink):
        if isinstance(event, events.Slice) and (event.index + 1) % subset.passes == 0:
            yield events.Progress(axis=0, index=event.index // subset.passes, n_slices=len(slices))
        elif isinstance(event, events.Stopped):
            yield events.Stopped(message=event.message)
            return
        elif isinstance(event, events.Warn):
            yield event
    scores = {subset.slices[i]: score for i, score in sink.scores.items()}
    if method == "disagreement":
        weights = spread_weights(scores, annotated, volume.shape[0])
        scores = {z: score * weights[z] for z, score in scores.items()}
    yield events.Ranked(ranking=tuple((z, score) for z, score in rank(scores)))

"""Slice-by-slice, tiled prediction of a 2-D model through a volume.

The model is any callable ``predict_fn(batch (N, H, W, C) float32) -> (N, H, W, K)``
probabilities (K = 1 sigmoid or K softmax classes), so this module needs no
deep-learning library (with Keras: ``lambda x: model.predict_on_batch(x)``).

Memory stays flat in the volume size: the volume is read one slice at a time
(numpy, memmap, zarr or dask all work), and at most one batch of tiles, plus
the slices they come from, is held at once. Results are written slice by slice
into ``out_labels`` / ``out_probs`` (numpy, memmap or zarr), or into numpy arrays
allocated here. The one exception is ``three_axis``, documented below.

Outputs:

- labels: uint8 classes, by ``threshold`` (K = 1) or argmax (K > 1, 0 = background).
- instances (``cfg.output == "instances"``): uint32 object ids from a seeded
  watershed on the probabilities (``core.objects``). ``cfg.objects == "3d"``
  (default): one id per object through the volume, found in slabs of
  ``cfg.block_slices`` slices with a halo and joined across slabs, so labels are
  written slab by slab, a little behind the predicted slices. Large slices get
  thinner slabs, labelled in Y/X tiles, within ``objects.MEMORY_BUDGET``. ``"2d"``: objects
  per slice (ids unique across the volume); ``"linked"``: per slice, then linked
  to the previous slice by overlap.
- probabilities: float32. If ``out_probs`` has a channel axis (last, of length K)
  all K are written; otherwise one map per pixel: the foreground probability for
  K = 1, the largest foreground-class probability (classes 1..K-1) for K > 1.
  Allocated here (without a channel axis) only if ``cfg.return_probabilities``.

``cfg.three_axis`` averages the probabilities of passes along all three axes of a
3-D volume. This needs the whole probability volume: a float32 accumulator of
``Z * Y * X * K * 4`` bytes is allocated, so use it only when that fits in memory.
During the three passes it yields ``events.Progress``; the ``events.Slice`` events follow
once the labels are written.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from napari_unet.core import events
from napari_unet.core.config import MAX_3D_ANISOTROPY, PredictConfig
from napari_unet.core.data import (
    check_image_values, intensity_mismatch, intensity_sample, nonfinite_message, normalization_from_sample, normalize,
)
from napari_unet.core.objects import StreamingObjects, object_maps
from napari_unet.core.postprocess import labels_from_probs
from napari_unet.core.tiling import pad_for_tiles, round_up, stitch, tile_slices


def predict_volume(
    volume,
    predict_fn: Callable,
    cfg: PredictConfig,
    *,
    n_classes: int,
    size_multiple: int,
    normalization: dict,
    channel_axis: int | None = None,
    out_labels=None,
    out_probs=None,
    stop_event=None,
    boundary_model: bool = False,
    objects_tile: bool = False,
    min_tile: int | None = None,
) -> Iterator[events.Event]:
    """Predict ``volume`` slice by slice along ``cfg.axis``; a generator of events.

    ``volume``: ``(Y, X)`` or ``(Z, Y, X)``, plus a channel axis at ``channel_axis``
    if given (``cfg.axis`` then counts the spatial axes only).
    ``boundary_model``: the model's 3 classes are background, interior, boundary.
    ``objects_tile``: the training objects tiled the image (``cfg.fill_background="auto"``
    then lets objects take the background too).
    ``min_tile``: smallest tile the model can use (default ``size_multiple``).

    Events: ``events.Slice`` after each slice is written (in order); ``events.Stopped``
    (with ``done_slices``) if ``stop_event.is_set()`` (checked before each batch); finally
    ``events.Done`` with ``outputs={"labels", "probs"}``. Bad input raises ``ValueError``
    here, before any slice is read.
    """
    volume = volume if hasattr(volume, "shape") and hasattr(volume, "__getitem__") else np.asarray(volume)
    channel_axis = _check_channel_axis(volume, channel_axis)
    spatial_shape = tuple(n for ax, n in enumerate(volume.shape) if ax != channel_axis)
    _check_volume(volume, spatial_shape, channel_axis, normalization)
    if boundary_model and n_classes != 3:
        raise ValueError(
            f"A boundary model has 3 classes (background, interior, boundary), got n_classes={n_classes}."
        )
    axis = _check_axis(cfg, spatial_shape)
    multiple = int(size_multiple)
    min_tile = multiple if min_tile is None else int(min_tile)
    if round_up(cfg.tile_size, multiple) < min_tile:
        raise ValueError(
            f"tile_size {cfg.tile_size} is smaller than the smallest tile this model can use ({min_tile} px): "
            f"set tile_size to at least {min_tile}."
        )
    axes = (0, 1, 2) if cfg.three_axis else (axis,)
    plans = {a: tile_slices(_slice_shape(spatial_shape, a), cfg.tile_size, cfg.tile_overlap, multiple) for a in axes}

    instances = cfg.output == "instances"
    if out_labels is None:
        out_labels = np.zeros(spatial_shape, np.uint32 if instances else np.uint8)
    if out_probs is None and cfg.return_probabilities:
        out_probs = np.zeros(spatial_shape, np.float32)
    _check_output("out_labels", out_labels, [spatial_shape])
    _check_output("out_probs", out_probs, [spatial_shape, spatial_shape + (n_classes,)])

    # Last, as it reads a sample of the volume: NaN/inf, constant images and intensities.
    normalization, warnings = _choose_normalization(volume, spatial_shape, channel_axis, normalization, cfg)
    reader = _SliceReader(volume, channel_axis, normalization)
    predict_batch = _BatchPredictor(predict_fn, n_classes, cfg.tta)
    objects = _object_builder(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile) if instances else None
    fill = cfg.fill_background == "yes" or (cfg.fill_background == "auto" and objects_tile)
    writer = _SliceWriter(cfg, out_labels, out_probs, n_classes, objects, _model_kind(n_classes, boundary_model), fill)
    passes = dict(reader=reader, predict_batch=predict_batch, batch_size=cfg.batch_size, stop_event=stop_event)
    if cfg.three_axis:
        return _after(warnings, _three_axis_events(spatial_shape, axis, plans, writer, n_classes, passes))
    return _after(warnings, _events(spatial_shape, axis, plans[axis], writer, passes))


def _after(first: list, events):
    yield from first
    yield from events


# ------------------------------------------------------------ intensities


def _choose_normalization(volume, spatial_shape, channel_axis, stored: dict, cfg):
    """``(normalization, warning events)``: the volume's own percentiles or the stored training
    ones (``cfg.normalize``), after refusing NaN/inf and constant images as training does. A
    volume far from the training intensities, mapped by the stored values, gets a warning."""
    read = _SliceReader(volume, channel_axis, None)
    first_axis = 0 if len(spatial_shape) == 3 else None
    n_slices = spatial_shape[0] if first_axis == 0 else 1
    slice_shape = _slice_shape(spatial_shape, first_axis) + (1 if channel_axis is None else volume.shape[channel_axis],)
    sample = intensity_sample(lambda k: read(first_axis, k), n_slices, slice_shape)
    check_image_values([sample])
    own = normalization_from_sample(sample, stored.get("percentiles", (1.0, 99.8)))
    if cfg.normalize == "volume":
        return own, []
    mismatch = intensity_mismatch(own, stored)
    if not mismatch:
        return stored, []
    return stored, [events.Warn(
        f"The intensities differ strongly from the training data: {mismatch}, so the labels may be all "
        "foreground or all background. Normalise by the volume's own percentiles (normalize='volume'; "
        "--normalize volume on the command line; 'Intensities' in the Segment dock).")]


# ------------------------------------------------------------------ checks


def _check_channel_axis(volume, channel_axis):
    if channel_axis is None:
        return None
    ndim = len(volume.shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) or not -ndim <= channel_axis < ndim:
        raise ValueError(
            f"channel_axis={channel_axis!r} is not an axis of a volume of shape {tuple(volume.shape)}: "
            f"use an index from {-ndim} to {ndim - 1}, or None for a single channel."
        )
    return int(channel_axis) % ndim


def _check_volume(volume, spatial_shape, channel_axis, normalization):
    shape = tuple(volume.shape)
    if len(spatial_shape) not in (2, 3):
        hint = " (pass channel_axis for a multi-channel image)" if channel_axis is None else ""
        raise ValueError(
            f"Volume must be 2-D (Y, X) or 3-D (Z, Y, X) besides its channel axis, got shape {shape}{hint}."
        )
    if 0 in shape:
        raise ValueError(f"Volume is empty: shape {shape} has an axis of length 0; pick a non-empty image layer.")
    try:
        n_norm = len(normalization["low"])
        if len(normalization["high"]) != n_norm:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"normalization must be a dict with equally long 'low' and 'high' lists (one value per channel), "
            f"got {normalization!r}."
        ) from None
    n_channels = 1 if channel_axis is None else shape[channel_axis]
    if n_channels != n_norm:
        raise ValueError(
            f"The volume has {n_channels} channel(s) but the model was trained on {n_norm} "
            f"(its normalization has {n_norm} values): pick an image with {n_norm} channel(s)"
            f"{' and set channel_axis' if n_norm > 1 else ' or check channel_axis'}."
        )


def _check_axis(cfg, spatial_shape):
    """The slicing axis of a 3-D volume (as 0..2); None for a 2-D image."""
    if len(spatial_shape) == 2:
        if cfg.three_axis:
            raise ValueError("three_axis needs a 3-D volume; this image is 2-D: turn three_axis off.")
        return None
    if not -3 <= cfg.axis <= 2:
        raise ValueError(f"axis must be 0, 1 or 2 (or -3..-1) for a 3-D volume, got {cfg.axis}.")
    return cfg.axis % 3


def _check_output(name, out, shapes):
    if out is not None and tuple(out.shape) not in shapes:
        raise ValueError(
            f"{name} has shape {tuple(out.shape)} but must be {' or '.join(map(str, shapes))} for this volume."
        )


# ----------------------------------------------------------- slice access


def _slice_shape(spatial_shape, axis):
    if axis is None:
        return spatial_shape
    return tuple(n for ax, n in enumerate(spatial_shape) if ax != axis)


def _n_slices(spatial_shape, axis):
    return 1 if axis is None else spatial_shape[axis]


def _index(axis, i):
    """Index of slice ``i`` along ``axis`` of an output (``...`` for a 2-D image)."""
    return Ellipsis if axis is None else (slice(None),) * axis + (i,)


class _SliceReader:
    """Reads one normalised ``(H, W, C)`` slice at a time, never the whole volume."""

    def __init__(self, volume, channel_axis, normalization):
        self.volume = volume
        self.channel_axis = channel_axis
        self.spatial_axes = [ax for ax in range(len(volume.shape)) if ax != channel_axis]
        self.normalization = normalization

    def __call__(self, axis, i):
        index = [slice(None)] * len(self.volume.shape)
        channel_axis = self.channel_axis
        if axis is not None:
            real_axis = self.spatial_axes[axis]
            index[real_axis] = i
            if channel_axis is not None and channel_axis > real_axis:
                channel_axis -= 1
        image = np.asarray(self.volume[tuple(index)])
        image = image[..., np.newaxis] if channel_axis is None else np.moveaxis(image, channel_axis, -1)
        if self.normalization is None:  # raw intensities, for the checks
            return image
        if image.dtype.kind in "fc" and not np.isfinite(image).all():  # a sample may have missed it
            raise ValueError(nonfinite_message(int(image.size - np.count_nonzero(np.isfinite(image))),
                                               f"Slice {i} of the image"))
        return normalize(image, self.normalization)


# ------------------------------------------------------------- prediction


def _dihedral(x, k):
    """The k-th of the 8 flips/rotations of a batch (N, H, W, C), k in 0..7."""
    return np.rot90(x[:, :, ::-1] if k >= 4 else x, k % 4, axes=(1, 2))


def _undo_dihedral(y, k):
    y = np.rot90(y, -(k % 4), axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


class _BatchPredictor:
    def __init__(self, predict_fn, n_classes, tta):
        self.predict_fn = predict_fn
        self.n_classes = n_classes
        self.tta = tta

    def _call(self, x):
        y = np.asarray(self.predict_fn(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
        expected = x.shape[:3] + (self.n_classes,)
        if y.shape != expected:
            raise ValueError(
                f"The model returned shape {y.shape} for a batch of shape {x.shape}; expected {expected}: "
                f"check that n_classes ({self.n_classes}) and size_multiple match the model."
            )
        return y

    def __call__(self, x):
        if not self.tta:
            return self._call(x)
        total = np.array(self._call(x))  # a copy: a model may hand back its input
        for k in range(1, 8):
            total += _undo_dihedral(self._call(_dihedral(x, k)), k)
        return total / 8


def _probability_slices(axis, n_slices, tiles, n_classes, reader, predict_batch, batch_size, stop_event):
    """Yield ``(i, probs (H, W, K))`` for each slice in order, batching tiles of
    one or several slices; yield ``(None, None)`` and return when stopped."""
    pending = {}  # slice index -> [probabilities, tiles still to predict]
    batch = []  # (slice index, tile, tile pixels)
    next_out = 0

    def run_batch():
        nonlocal next_out
        preds = predict_batch(np.stack([pixels for _, _, pixels in batch]))
        for (i, tile, _), pred in zip(batch, preds):
            stitch(pending[i][0], tile, pred)
            pending[i][1] -= 1
        batch.clear()
        finished = []
        while next_out in pending and pending[next_out][1] == 0:
            finished.append((next_out, pending.pop(next_out)[0]))
            next_out += 1
        return finished

    for i in range(n_slices):
        image = reader(axis, i)
        pending[i] = [np.empty(image.shape[:2] + (n_classes,), np.float32), len(tiles)]
        image = pad_for_tiles(image, tiles)
        for tile in tiles:
            batch.append((i, tile, image[tile.source]))
            if len(batch) == batch_size or (i == n_slices - 1 and tile is tiles[-1]):
                if stop_event is not None and stop_event.is_set():
                    yield None, None
                    return
                yield from run_batch()


def _passes(axis, spatial_shape, tiles, n_classes, passes):
    return _probability_slices(axis, _n_slices(spatial_shape, axis), tiles, n_classes, **passes)


def _events(spatial_shape, axis, tiles, writer, passes):
    n = _n_slices(spatial_shape, axis)
    done = []
    for i, probs in _passes(axis, spatial_shape, tiles, writer.n_classes, passes):
        if i is None:
            yield stopped_event(done, n)
            return
        for j in writer(axis, i, probs):
            done.append(j)
            yield events.Slice(index=j, n_slices=n)
    for j in writer.flush(axis):
        yield events.Slice(index=j, n_slices=n)
    yield writer.done_event(n)


def stopped_event(done_slices, n_slices) -> events.Stopped:
    """A stop keeps the slices written so far; the others stay 0."""
    return events.Stopped(done_slices=tuple(done_slices), n_slices=n_slices,
                          message=f"Stopped after {len(done_slices)} of {n_slices} slices; the other slices are 0.")


def _three_axis_events(spatial_shape, axis, plans, writer, n_classes, passes):
    total = np.zeros(spatial_shape + (n_classes,), np.float32)
    for a in (0, 1, 2):
        for i, probs in _passes(a, spatial_shape, plans[a], n_classes, passes):
            if i is None:
                yield stopped_event([], spatial_shape[axis])
                return
            total[_index(a, i)] += probs
            yield events.Progress(axis=a, index=i, n_slices=spatial_shape[a])
    total /= 3
    n = spatial_shape[axis]
    for i in range(n):
        for j in writer(axis, i, total[_index(axis, i)]):
            yield events.Slice(index=j, n_slices=n)
    for j in writer.flush(axis):
        yield events.Slice(index=j, n_slices=n)
    yield writer.done_event(n)


# ----------------------------------------------------------------- output


def _model_kind(n_classes, boundary_model):
    if boundary_model:
        return "boundary"
    return "binary" if n_classes == 1 else "classes"


def _object_builder(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile):
    """The streaming object finder for this volume (2-D images: one slice)."""
    if cfg.objects_from == "background" and n_classes != 1:
        raise ValueError(
            "objects_from='background' (regions enclosed by the painted class) needs a model with one "
            f"output class; this one has {n_classes}: use objects_from='foreground'."
        )
    slice_shape = _slice_shape(spatial_shape, axis)
    sampling = None
    if cfg.voxel_size and axis is not None:
        size = cfg.voxel_size
        sampling = (size[axis],) + tuple(size[a] for a in range(3) if a != axis)
    elif cfg.voxel_size:
        sampling = (1.0,) + tuple(cfg.voxel_size[1:])
    mode = object_mode(cfg.objects, sampling, axis)
    return StreamingObjects(
        _n_slices(spatial_shape, axis), slice_shape,
        mode=mode, block_slices=cfg.block_slices, halo=cfg.halo,
        threshold=cfg.threshold, seeds=cfg.seeds, seed_distance=cfg.seed_distance,
        min_size=cfg.min_object_size, sampling=sampling,
        # Boundary evidence (a boundary model, or membranes around cells) rejoins the pieces of
        # one object in a slice (ISBI: adapted Rand error 0.128 -> 0.054). Not in 3-D, where
        # flooding across slices makes false contacts (synthetic cells: 0.106 -> 0.976).
        join_pieces=(boundary_model or objects_tile or cfg.objects_from == "background") and mode != "3d",
    )


def object_mode(mode: str, sampling, axis) -> str:
    """Resolve "auto": objects in 3-D, unless slices lie more than MAX_3D_ANISOTROPY pixels
    apart (ISBI's 50 nm sections of 4 nm pixels: 3-D flooding splits cells across sections)."""
    if axis is None:
        return "2d"
    if mode != "auto":
        return mode
    if sampling and sampling[0] / min(sampling[1:]) > MAX_3D_ANISOTROPY:
        return "linked"
    return "3d"


class _SliceWriter:
    """Writes one slice's labels (or, for objects, the slices whose objects are final) and probabilities."""

    def __init__(self, cfg, out_labels, out_probs, n_classes, objects, kind, fill):
        self.cfg = cfg
        self.out_labels = out_labels
        self.out_probs = out_probs
        self.n_classes = n_classes
        self.objects = objects
        self.kind = kind
        self.fill = fill  # objects take the background pixels too
        self.all_channels = out_probs is not None and len(out_probs.shape) == len(out_labels.shape) + 1

    def __call__(self, axis, i, probs) -> list:
        """Write slice ``i``; returns the indices of the slices whose labels are now written."""
        self._write_probs(_index(axis, i), probs)
        if self.objects is None:
            self._write_labels(_index(axis, i), labels_from_probs(probs, self.cfg.threshold))
            return [i]
        if self.cfg.objects_from == "background":
            probs = 1.0 - probs
        maps = object_maps(probs, self.kind, self.cfg.threshold)
        if self.fill:
            maps[..., 0] = 1.0  # every pixel belongs to some object
        return self._write_objects(axis, self.objects.push(0 if axis is None else i, maps))

    def flush(self, axis) -> list:
        return [] if self.objects is None else self._write_objects(axis, self.objects.flush())

    def _write_objects(self, axis, finished) -> list:
        for j, labels in finished:
            self._write_labels(_index(axis, j), labels)
        return [j for j, _ in finished]

    def _write_labels(self, index, labels):
        dtype = np.dtype(getattr(self.out_labels, "dtype", np.uint32))
        if dtype.kind in "iu" and labels.size and labels.max() > np.iinfo(dtype).max:
            raise ValueError(
                f"Object id {labels.max()} does not fit in out_labels of type {dtype}: use uint32 labels."
            )
        self.out_labels[index] = labels

    def _write_probs(self, index, probs):
        if self.out_probs is None:
            return
        if self.all_channels:
            self.out_probs[index] = probs
        elif self.n_classes == 1:
            self.out_probs[index] = probs[..., 0]
        else:
            self.out_probs[index] = probs[..., 1:].max(axis=-1)

    def done_event(self, n):
        return events.Done(n_slices=n, outputs={"labels": self.out_labels, "probs": self.out_probs})

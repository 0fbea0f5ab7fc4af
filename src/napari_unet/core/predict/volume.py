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
  thinner slabs, labelled in Y/X tiles, within ``objects.slabs.MEMORY_BUDGET``. ``"2d"``: objects
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

The work is split in three parts, each replaceable: reading (``predict_read.SliceReader``),
batching through the model (``predict_batch``) and writing (``predict_write.SliceWriter``);
this module checks the inputs, plans the tiles and runs the three in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from napari_unet.core import events
from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.config import PredictConfig
from napari_unet.core.predict.batch import BatchPredictor, probability_slices
from napari_unet.core.predict.read import (
    SliceReader,
    check_channel_axis,
    check_volume,
    choose_normalization,
    n_slices_along,
    slice_index,
    slice_shape,
)
from napari_unet.core.predict.tiling import round_up, tile_slices
from napari_unet.core.predict.write import SliceWriter, model_kind, object_builder


def predict_volume(
    volume,
    predict_fn: Callable,
    *,
    cfg: PredictConfig,
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
    objects_options: dict | None = None,
    tiles: list | None = None,
) -> Iterator[events.Event]:
    """Predict ``volume`` slice by slice along ``cfg.axis``; a generator of events.

    ``volume``: ``(Y, X)`` or ``(Z, Y, X)``, plus a channel axis at ``channel_axis``
    if given (``cfg.axis`` then counts the spatial axes only).
    ``boundary_model``: the model's 3 classes are background, interior, boundary.
    ``objects_tile``: the training objects tiled the image (``cfg.fill_background="auto"``
    then lets objects take the background too).
    ``min_tile``: smallest tile the model can use (default ``size_multiple``).
    ``objects_options``: more keywords for ``objects.streaming.StreamingObjects`` (a memory budget, a plan).
    ``tiles``: the model tiles of a slice, instead of planning them (a Y/X window of a larger
    slice predicted in that slice's tiles: ``core.blocks.region_tiles``).

    Events: ``events.Slice`` after each slice is written (in order); ``events.Stopped``
    (with ``done_slices``) if ``stop_event.is_set()`` (checked before each batch); finally
    ``events.Done`` with ``outputs={"labels", "probs"}``. Bad input raises ``ValueError``
    here, before any slice is read.
    """
    volume = volume if hasattr(volume, "shape") and hasattr(volume, "__getitem__") else np.asarray(volume)
    channel_axis = check_channel_axis(volume, channel_axis)
    spatial_shape = tuple(n for ax, n in enumerate(volume.shape) if ax != channel_axis)
    check_volume(volume, spatial_shape, channel_axis, normalization)
    axis = _check_axis(cfg, spatial_shape)
    plans = _tile_plans(cfg, spatial_shape, axis, n_classes, boundary_model, int(size_multiple), min_tile)
    if tiles is not None:
        plans[axis] = tiles
    out_labels, out_probs = _outputs(cfg, spatial_shape, n_classes, out_labels, out_probs)
    # Last, as it reads a sample of the volume: NaN/inf, constant images and intensities.
    normalization, warnings = choose_normalization(volume, spatial_shape, channel_axis, normalization, cfg)
    passes = dict(reader=SliceReader(volume, channel_axis, normalization),
                  predict_batch=BatchPredictor(predict_fn, n_classes, cfg.tta),
                  batch_size=cfg.batch_size, stop_event=stop_event)
    writer = _writer(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile, out_labels, out_probs,
                     objects_options)
    if cfg.three_axis:
        return _after(warnings, _three_axis_events(spatial_shape, axis, plans, writer, n_classes, passes))
    return _after(warnings, _events(spatial_shape, axis, plans[axis], writer, passes))


def bundle_predictor(model, meta: BundleMeta, *, cfg: PredictConfig, **kwargs) -> Callable[..., Iterator[events.Event]]:
    """``predict_volume`` bound to a loaded model folder (``core.bundle.load_bundle``): its model,
    classes, size multiple, normalisation and object settings; call it with the volume (and
    ``kwargs`` such as outputs, ``channel_axis`` or ``stop_event``)."""
    model_cfg = meta.model_cfg
    return partial(predict_volume, predict_fn=model.predict_on_batch, cfg=cfg, n_classes=model_cfg.n_classes,
                   size_multiple=model_cfg.size_multiple, normalization=meta.normalization.model_dump(),
                   boundary_model=meta.instances, objects_tile=meta.objects_tile, **kwargs)


def _tile_plans(cfg, spatial_shape, axis, n_classes, boundary_model, multiple, min_tile) -> dict:
    """The tiles of a slice, for each axis the volume is sliced along."""
    if boundary_model and n_classes != 3:
        raise ValueError(
            f"A boundary model has 3 classes (background, interior, boundary), got n_classes={n_classes}."
        )
    min_tile = multiple if min_tile is None else int(min_tile)
    if round_up(cfg.tile_size, multiple) < min_tile:
        raise ValueError(
            f"tile_size {cfg.tile_size} is smaller than the smallest tile this model can use ({min_tile} px): "
            f"set tile_size to at least {min_tile}."
        )
    axes = (0, 1, 2) if cfg.three_axis else (axis,)
    return {a: tile_slices(slice_shape(spatial_shape, a), cfg.tile_size, cfg.tile_overlap, multiple) for a in axes}


def _outputs(cfg, spatial_shape, n_classes, out_labels, out_probs) -> tuple:
    """The given outputs, checked, or new in-memory ones."""
    if out_labels is None:
        out_labels = np.zeros(spatial_shape, np.uint32 if cfg.output == "instances" else np.uint8)
    if out_probs is None and cfg.return_probabilities:
        out_probs = np.zeros(spatial_shape, np.float32)
    _check_output("out_labels", out_labels, [spatial_shape])
    _check_output("out_probs", out_probs, [spatial_shape, spatial_shape + (n_classes,)])
    return out_labels, out_probs


def _writer(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile, out_labels, out_probs, options):
    objects = None
    if cfg.output == "instances":
        objects = object_builder(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile, **(options or {}))
    fill = cfg.fill_background == "yes" or (cfg.fill_background == "auto" and objects_tile)
    return SliceWriter(cfg, out_labels, out_probs, n_classes, objects, model_kind(n_classes, boundary_model), fill)


def _after(first: list, events):
    yield from first
    yield from events


# ------------------------------------------------------------------ checks


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


def _passes(axis, spatial_shape, tiles, n_classes, passes):
    return probability_slices(axis, n_slices_along(spatial_shape, axis), tiles, n_classes, **passes)


def _events(spatial_shape, axis, tiles, writer, passes):
    n = n_slices_along(spatial_shape, axis)
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
            total[slice_index(a, i)] += probs
            yield events.Progress(axis=a, index=i, n_slices=spatial_shape[a])
    total /= 3
    n = spatial_shape[axis]
    for i in range(n):
        for j in writer(axis, i, total[slice_index(axis, i)]):
            yield events.Slice(index=j, n_slices=n)
    for j in writer.flush(axis):
        yield events.Slice(index=j, n_slices=n)
    yield writer.done_event(n)



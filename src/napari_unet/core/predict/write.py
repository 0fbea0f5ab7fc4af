"""Prediction, writing: each slice's probabilities become labels (classes, or objects found as
slices stream in) written into the outputs, which may be numpy, shared memory or zarr.

Another exporter plugs in by offering the outputs, or a writer with ``__call__``, ``flush`` and
``done_event``.
"""

from __future__ import annotations

import numpy as np

from napari_unet.core import events
from napari_unet.core.config import MAX_3D_ANISOTROPY
from napari_unet.core.objects.maps import object_maps
from napari_unet.core.objects.streaming import StreamingObjects
from napari_unet.core.predict.postprocess import labels_from_probs
from napari_unet.core.predict.read import n_slices_along, slice_index, slice_shape


def model_kind(n_classes, boundary_model):
    if boundary_model:
        return "boundary"
    return "binary" if n_classes == 1 else "classes"


def object_builder(cfg, spatial_shape, axis, n_classes, boundary_model, objects_tile, **options):
    """The streaming object finder for this volume (2-D images: one slice); ``options``: more
    keywords of ``StreamingObjects`` (``memory_budget``, ``plan``, ``tile_sink``)."""
    if cfg.objects_from == "background" and n_classes != 1:
        raise ValueError(
            "objects_from='background' (regions enclosed by the painted class) needs a model with one "
            f"output class; this one has {n_classes}: use objects_from='foreground'."
        )
    shape = slice_shape(spatial_shape, axis)
    sampling = object_sampling(cfg, axis)
    mode = object_mode(cfg.objects, sampling, axis)
    settings = cfg.objects_config()
    return StreamingObjects(
        n_slices_along(spatial_shape, axis), shape,
        mode=mode, block_slices=cfg.block_slices, halo=cfg.halo,
        threshold=settings.threshold, seeds=settings.seeds, seed_distance=settings.seed_distance,
        min_size=settings.min_object_size, sampling=sampling,
        # Boundary evidence (a boundary model, or membranes around cells) rejoins the pieces of
        # one object in a slice (ISBI: adapted Rand error 0.128 -> 0.054). Not in 3-D, where
        # flooding across slices makes false contacts (synthetic cells: 0.106 -> 0.976).
        join_pieces=(boundary_model or objects_tile or cfg.objects_from == "background") and mode != "3d",
        **options,
    )


def object_sampling(cfg, axis):
    """The voxel size along (slices, y, x) of the slicing ``axis``; None when unknown."""
    if not cfg.voxel_size:
        return None
    size = cfg.voxel_size
    if axis is None:
        return (1.0,) + tuple(size[1:])
    return (size[axis],) + tuple(size[a] for a in range(3) if a != axis)


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


class SliceWriter:
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
        self._write_probs(slice_index(axis, i), probs)
        if self.objects is None:
            self._write_labels(slice_index(axis, i), labels_from_probs(probs, self.cfg.threshold))
            return [i]
        if self.cfg.objects_from == "background":
            probs = 1.0 - probs
        maps = object_maps(probs, self.kind, threshold=self.cfg.threshold)
        if self.fill:
            maps[..., 0] = 1.0  # every pixel belongs to some object
        return self._write_objects(axis, self.objects.push(0 if axis is None else i, maps))

    def flush(self, axis) -> list:
        return [] if self.objects is None else self._write_objects(axis, self.objects.flush())

    def _write_objects(self, axis, finished) -> list:
        written = []
        finished.reverse()
        while finished:  # each plane dropped once written: planes on disk are mapped until then
            j, labels = finished.pop()
            self._write_labels(slice_index(axis, j), labels)
            written.append(j)
            del labels
        return written

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

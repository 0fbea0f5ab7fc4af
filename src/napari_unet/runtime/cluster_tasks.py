"""What a dask.distributed worker runs for ``runtime.cluster``: one block of slices, one face
between two blocks, one block's final ids. Each task writes whole slices of zarr arrays (one
chunk per slice), so a task that runs again (a retry, a lost worker) rewrites the same chunks.

Like ``runtime.worker``, this module imports Keras only inside the tasks, and the model of a
folder once per worker process (``worker.MODEL_CACHE``); ``MODEL_LOADS`` counts the loads.
"""

from __future__ import annotations

import os
import time

import numpy as np

from napari_unet.core.blocks import (
    BlockLabels, BlockOutput, block_config, block_extent, face_links, face_overlaps, objects_budget,
)
from napari_unet.runtime.worker import MODEL_CACHE, _stderr_to_log, load_model_cached

MODEL_LOADS = 0  # model folders this worker process loaded (the tests count them)
# Set for local clusters: the log file the workers' stderr (TensorFlow's start-up lines) goes to,
# so that the terminal shows only the command's own lines.
LOG_ENV = "NAPARI_UNET_CLUSTER_LOG"
_logging_to_file = False


def _stderr_to_cluster_log() -> None:
    global _logging_to_file
    if not _logging_to_file and os.environ.get(LOG_ENV):
        _stderr_to_log(os.environ[LOG_ENV])
        _logging_to_file = True


_stderr_to_cluster_log()  # on import: the workers import this module (cluster.check_workers) before Keras


def loaded_models() -> int:
    return MODEL_LOADS


def _model(model_dir):
    """The folder's model, loaded once per worker process (again only if the folder changes)."""
    global MODEL_LOADS
    before = set(MODEL_CACHE)
    model, meta = load_model_cached(model_dir)
    if set(MODEL_CACHE) - before:
        MODEL_LOADS += 1
    return model, meta


class _Timer:
    """Seconds spent per stage, summed over a block's calls."""

    def __init__(self):
        self.seconds = {"read": 0.0, "predict": 0.0, "write": 0.0}

    def timed(self, stage, function):
        def run(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.seconds[stage] += time.perf_counter() - start
        return run


class _TimedReads:
    """The (lazy) input, read one slice at a time, timing each read."""

    def __init__(self, array, timer):
        self.array, self.read = array, timer.timed("read", lambda index: np.asarray(array[index]))

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: len(self.array.shape))

    def __getitem__(self, index):
        return self.read(index)


class _TimedModel:
    def __init__(self, model, timer):
        self.predict_on_batch = timer.timed("predict", model.predict_on_batch)


class _TimedWrites:
    def __init__(self, array, timer):
        self.shape, self.dtype = array.shape, array.dtype
        self.write = timer.timed("write", array.__setitem__)

    def __setitem__(self, index, value):
        self.write(index, value)


def _open(spec):
    import zarr

    from napari_unet.io.images import open_lazy

    volume, _ = open_lazy(spec["image"])
    arrays = {name: zarr.open_array(path, mode="r+") for name, path in spec["arrays"].items()}
    return volume, arrays


def _extent_of(volume, spec, extent):
    """The input's slices ``extent`` along the slicing axis (lazy: nothing is read here)."""
    axis = spec["axis"]
    if axis is None:
        return volume
    real = [ax for ax in range(len(volume.shape)) if ax != spec["channel_axis"]][axis]
    return volume[(slice(None),) * real + (slice(*extent),)]


def run_block(spec: dict, block: tuple) -> dict:
    """Predict one block (and its halo) into the outputs; returns what joining needs and timings."""
    import dask

    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict import bundle_predictor

    started, timer = time.perf_counter(), _Timer()
    plan, axis = spec["plan"], spec["axis"]
    extent = block_extent(plan, block) if axis is not None else (0, 1)
    with dask.config.set(scheduler="synchronous"):  # reads stay in this task, not on the cluster
        volume, arrays = _open(spec)
        model, meta = _model(spec["model_dir"])
        cfg = block_config(PredictConfig.from_dict(spec["cfg"]), plan, extent)
        labels = _labels_output(spec, arrays, extent, block, timer)
        probs = None
        if "probs" in arrays:
            probs = BlockOutput(_TimedWrites(arrays["probs"], timer), axis, extent, block, spec["spatial_shape"])
        predict = bundle_predictor(_TimedModel(model, timer), dict(meta, normalization=spec["normalization"]), cfg,
                                   channel_axis=spec["channel_axis"], out_labels=labels, out_probs=probs,
                                   objects_budget=objects_budget(plan, extent, spec["spatial_shape"], axis))
        for _ in predict(_TimedReads(_extent_of(volume, spec, extent), timer)):
            pass
        record = labels.record() if isinstance(labels, BlockLabels) else {"block": tuple(block)}
        if isinstance(labels, BlockLabels) and labels.zone:
            zone = slice(block[0] - len(labels.zone), block[0])
            arrays["zone"][_along(axis, zone)] = np.stack(labels.zone, axis=axis)
    record["seconds"] = dict(timer.seconds, total=time.perf_counter() - started)
    return record


def _labels_output(spec, arrays, extent, block, timer):
    """Objects go to the scratch array of block ids (relabelled once all blocks are joined),
    classes straight into the output."""
    axis, shape = spec["axis"], spec["spatial_shape"]
    if spec["plan"]["mode"] is None:
        return BlockOutput(_TimedWrites(arrays["labels"], timer), axis, extent, block, shape)
    return BlockLabels(_TimedWrites(arrays["local"], timer), axis, extent, block, shape, spec["plan"])


def run_face(spec: dict, block: tuple, before: dict, this: dict):
    """Face data between ``block`` and the block before it (``core.blocks.face_overlaps`` / ``face_links``);
    ``before`` and ``this`` are their records, passed so that both blocks are written first."""
    import zarr

    start, halo = block[0], spec["plan"]["halo"]
    local = zarr.open_array(spec["arrays"]["local"], mode="r")
    axis = spec["axis"]
    if spec["plan"]["mode"] == "linked":
        return face_links(local[_along(axis, start)], local[_along(axis, start - 1)])
    zone = zarr.open_array(spec["arrays"]["zone"], mode="r")
    before_block = _along(axis, slice(start - halo, start))
    return face_overlaps(zone[before_block], local[before_block])


def _along(axis, index):
    """Index ``index`` (an int or a slice) along the slicing axis; everything of a 2-D image."""
    return Ellipsis if axis is None else (slice(None),) * axis + (index,)


def run_relabel(spec: dict, block: tuple, lookup: np.ndarray) -> float:
    """Write the block's final ids (``lookup`` of its block ids), slice by slice; returns the seconds."""
    import zarr

    started = time.perf_counter()
    local = zarr.open_array(spec["arrays"]["local"], mode="r")
    labels = zarr.open_array(spec["arrays"]["labels"], mode="r+")
    for i in range(*block):
        labels[_along(spec["axis"], i)] = lookup[local[_along(spec["axis"], i)]]
    return time.perf_counter() - started

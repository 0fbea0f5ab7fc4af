"""What a dask.distributed worker runs for ``runtime.cluster``: one block of slices, the join
data of one block (its 3-D objects' zones, or the face of objects per slice), one block's final
ids. Each task writes whole chunks of zarr arrays (a slice of the output, a slice of a unit's
labels), so a task that runs again (a retry, a lost worker) rewrites the same chunks.

Like ``runtime.worker``, this module imports Keras only inside the tasks, and the model of a
folder once per worker process (``worker.MODEL_CACHE``); ``MODEL_LOADS`` counts the loads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from napari_unet.core.objects.stitching import joint_counts
from napari_unet.core.predict.blocks import (
    BlockLabels,
    BlockOutput,
    BlockPlan,
    block_config,
    block_extent,
    face_links,
    in_unit,
    region_tiles,
    slab_slice,
    unit_record,
    unit_slab_plan,
    unit_zone,
)
from napari_unet.runtime.worker import MODEL_CACHE, _stderr_to_log, leave_terminal_signals, load_model_cached

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


@dataclass(frozen=True)
class ClusterSpec:
    """What every task of a cluster run gets (``cluster.predict_distributed`` makes it)."""

    image: str  # the image file blocks read: the input, or its copy in chunks of one slice
    model_dir: str
    cfg: dict  # ``PredictConfig.to_dict()``
    plan: BlockPlan
    axis: int | None  # the slicing axis among the spatial ones; None for a 2-D image
    spatial_shape: tuple
    channel_axis: int | None
    normalization: dict  # the whole volume's intensity mapping, computed once
    arrays: dict  # zarr paths of what the tasks write: "labels", "local" (block ids), "probs"
    units: str  # the folder of the 3-D objects' unit arrays


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

    volume, _ = open_lazy(spec.image)
    arrays = {name: zarr.open_array(path, mode="r+") for name, path in spec.arrays.items()}
    return volume, arrays


def _extent_of(volume, spec, extent):
    """The input's slices ``extent`` along the slicing axis (lazy: nothing is read here)."""
    axis = spec.axis
    if axis is None:
        return volume
    real = [ax for ax in range(len(volume.shape)) if ax != spec.channel_axis][axis]
    return volume[(slice(None),) * real + (slice(*extent),)]


def _window_of(volume, spec, window):
    """The input's Y/X ``window`` of each slice (lazy); the whole slices when None."""
    if window is None:
        return volume
    in_slice = [ax for ax in range(len(spec.spatial_shape)) if ax != spec.axis]
    real = [ax for ax in range(len(volume.shape)) if ax != spec.channel_axis]
    index = [slice(None)] * len(volume.shape)
    for ax, w in zip(in_slice, window):
        index[real[ax]] = w
    return volume[tuple(index)]


def _region_tiles(spec, cfg, meta, region_index):
    """(window, model tiles) of a Y/X region's block; (None, None) for whole slices."""
    from napari_unet.core.predict.read import slice_shape
    from napari_unet.core.predict.tiling import tile_slices

    if len(spec.plan.regions) == 1:
        return None, None
    shape = slice_shape(spec.spatial_shape, spec.axis)
    tiles = tile_slices(shape, cfg.tile_size, cfg.tile_overlap, meta.model_cfg.size_multiple)
    return region_tiles(tiles, spec.plan.regions[region_index])


def run_block(spec: ClusterSpec, block: tuple, *, region_index: int = 0) -> dict:
    """Predict one block (and its halo; for classes, Y/X region ``region_index`` of its slices)
    into the outputs; returns what joining needs and timings."""
    import dask

    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict.volume import bundle_predictor

    started, timer = time.perf_counter(), _Timer()
    plan, axis = spec.plan, spec.axis
    extent = block_extent(plan, block) if axis is not None else (0, 1)
    with dask.config.set(scheduler="synchronous"):  # reads stay in this task, not on the cluster
        volume, arrays = _open(spec)
        model, meta = _model(spec.model_dir)
        cfg = block_config(PredictConfig.from_dict(spec.cfg), plan, extent)
        window, tiles = _region_tiles(spec, cfg, meta, region_index)
        region = plan.regions[region_index] if window is not None else None
        labels = _labels_output(spec, arrays, extent, block, timer, region, window)
        units = _UnitWriter(spec, block, timer) if plan.mode == "3d" else None
        probs = None
        if "probs" in arrays:
            probs = BlockOutput(_TimedWrites(arrays["probs"], timer), axis, extent, block, spec.spatial_shape,
                                region=region, window=window)
        options = None if units is None else {"plan": unit_slab_plan(plan, extent), "tile_sink": units}
        predict = bundle_predictor(_TimedModel(model, timer), meta.replace(normalization=spec.normalization), cfg=cfg,
                                   channel_axis=spec.channel_axis, out_labels=labels, out_probs=probs,
                                   objects_options=options, tiles=tiles)
        for _ in predict(_TimedReads(_window_of(_extent_of(volume, spec, extent), spec, window), timer)):
            pass
    record = {"block": tuple(block), "region": region_index}
    if units is not None:
        record["units"] = units.records
    elif isinstance(labels, BlockLabels):
        record = labels.record()
    record["seconds"] = dict(timer.seconds, total=time.perf_counter() - started)
    return record


def _labels_output(spec, arrays, extent, block, timer, region=None, window=None):
    """Objects per slice go to the scratch array of block ids (relabelled once all blocks are
    joined), classes straight into the output; 3-D objects write units (``_UnitWriter``), no slice."""
    axis, shape, mode = spec.axis, spec.spatial_shape, spec.plan.mode
    if mode in ("linked", "2d"):
        return BlockLabels(_TimedWrites(arrays["local"], timer), axis, extent, block, shape)
    return BlockOutput(_TimedWrites(arrays["labels"], timer), axis, extent, block, shape, region=region, window=window)


def _unit_path(spec, unit):
    return f"{spec.units}/{unit[0]}_{unit[1]}"


class _UnitWriter:
    """The ``tile_sink`` of a block's 3-D objects: each unit's own labels (the block's extent x
    the tile's window) into a zarr array of its own, and its ``unit_record``."""

    def __init__(self, spec, block, timer):
        self.spec, self.records = spec, []
        self.index = spec.plan.blocks.index(tuple(block))
        self.write = timer.timed("write", self._write)

    def __call__(self, tile, labels):
        unit = (self.index, tile)
        self.write(unit, labels)
        self.records.append(unit_record(labels, self.spec.plan, unit))

    def _write(self, unit, labels):
        import zarr

        array = zarr.open_array(_unit_path(self.spec, unit), mode="w", shape=labels.shape, dtype=np.uint32,
                                chunks=(1,) + labels.shape[1:], fill_value=0, zarr_format=3)
        array[:] = labels


def run_zones(spec: ClusterSpec, block_index: int) -> dict:
    """3-D objects: ``objects.joint_counts`` of each unit of a block against the units that
    labelled its zone (all written: this runs after every block)."""
    import zarr

    plan, counts, arrays = spec.plan, {}, {}

    def labels_of(unit):  # each unit's array opened once
        if unit not in arrays:
            arrays[unit] = zarr.open_array(_unit_path(spec, unit), mode="r")
        return arrays[unit]

    for tile in range(len(plan.tiles)):
        unit = (block_index, tile)
        counts[unit] = [(owner, joint_counts(labels_of(unit)[in_unit(plan, unit, region)],
                                             labels_of(owner)[in_unit(plan, owner, region)]))
                        for owner, region in unit_zone(plan, unit)]
    return counts


def run_face(spec: ClusterSpec, block: tuple, before: dict, this: dict):
    """Objects per slice: ``core.blocks.face_links`` between ``block`` and the block before it;
    ``before`` and ``this`` are their records, passed so that both blocks are written first."""
    import zarr

    start, axis = block[0], spec.axis
    local = zarr.open_array(spec.arrays["local"], mode="r")
    return face_links(local[_along(axis, start)], local[_along(axis, start - 1)])


def _along(axis, index):
    """Index ``index`` (an int or a slice) along the slicing axis; everything of a 2-D image."""
    return Ellipsis if axis is None else (slice(None),) * axis + (index,)


def run_relabel(spec: ClusterSpec, block: tuple, lookup) -> float:
    """Write the block's final ids, slice by slice: ``lookup`` of its block ids (objects per
    slice), or per unit of the block (3-D objects); returns the seconds."""
    import zarr

    started, axis = time.perf_counter(), spec.axis
    labels = zarr.open_array(spec.arrays["labels"], mode="r+")
    if spec.plan.mode == "3d":
        index = spec.plan.blocks.index(tuple(block))
        tiles = {unit[1]: zarr.open_array(_unit_path(spec, unit), mode="r") for unit in lookup}
        for i in range(*block):
            labels[_along(axis, i)] = slab_slice(spec.plan, index, i, lambda t, depth: tiles[t][depth], lookup)
    else:
        local = zarr.open_array(spec.arrays["local"], mode="r")
        for i in range(*block):
            labels[_along(axis, i)] = lookup[local[_along(axis, i)]]
    return time.perf_counter() - started


def run_block_unless_stopped(spec: ClusterSpec, block: tuple, region_index: int, stop_file: str):
    """``run_block``, unless the run was stopped before the block began (``stop_file`` exists,
    ``cluster_stop.StopOnSignal``): then None, and its part of the output stays 0. A block that began
    runs whole, so a stopped run keeps whole blocks (regions of blocks) only."""
    if os.path.exists(stop_file):
        return None
    return run_block(spec, block, region_index=region_index)


def dask_setup(worker) -> None:
    """Run by each worker of a local cluster as it starts (``cluster.connect`` preloads this
    module): like the one-process worker, it leaves the terminal's process group, so that Ctrl-C,
    SIGTERM and SIGHUP reach the command alone, which stops gracefully; a worker they ended would
    lose its running block halfway through. (An orphaned worker still ends: dask closes it.)"""
    leave_terminal_signals()

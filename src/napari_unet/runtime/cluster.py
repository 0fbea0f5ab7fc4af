"""Prediction on a dask.distributed cluster: blocks of slices (``core.blocks``) as tasks.

``predict_distributed(image, model_dir, out, cfg, client=...)`` cuts the volume into blocks of
slices along the prediction axis (for classes, maybe also into Y/X regions); each block is one
task (``cluster_tasks.run_block``: the worker opens the image file itself and runs
``predict_volume`` on the block, the model loaded once per worker process) writing its part of
a zarr output. Objects are then joined: 3-D objects unit by unit as one process labels them
(``cluster_tasks.run_zones``, ``core.blocks.join_units``), objects per slice across block faces
(``cluster_tasks.run_face``, ``core.blocks.join_blocks``); then each block's final ids are
written (``cluster_tasks.run_relabel``). Everything goes into ``OUT.partial.zarr``
(owned, like the single-process outputs, so a later run reclaims a killed one's), renamed to
``OUT`` at the end: a lost worker's blocks are simply run again and rewrite the same chunks.

dask is an engine: the scheduling, retries (``retries=``) and lost workers are its own. This
process reads only a sample of the image (the intensity percentiles) and never imports Keras.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_unet.core.bundle import read_bundle_meta
from napari_unet.core.objects.planes import disk_room
from napari_unet.core.predict.blocks import block_plan, join_blocks, join_units, units
from napari_unet.core.predict.read import choose_normalization
from napari_unet.io import images, leftovers, omezarr
from napari_unet.runtime import cluster_tasks, interrupts, spawning
from napari_unet.runtime.cluster_stop import STOP_FILE, StopOnSignal, keep_stopped, polling
from napari_unet.runtime.cluster_tasks import ClusterSpec
from napari_unet.runtime.logs import new_log_path

CONNECT_TIMEOUT_S = 5  # an unreachable scheduler fails after this, instead of hanging
# What every worker must import: checked once before any block, so a worker without the
# plugin's environment is named at once, not after the retries of every block.
WORKER_MODULES = ("napari_unet.runtime.cluster_tasks", "keras", "zarr")
# Input chunks holding several slices and more than this are rechunked to one slice per chunk
# first: otherwise every slice read decodes the whole chunk.
RECHUNK_BYTES = 64 * 2**20


# A local worker holds TensorFlow and the model: about 1.1 GB each in the runs of docs/benchmarks.md.
WORKER_MEMORY_BYTES = 1 << 30


def check_local_workers(workers: int) -> None:
    """Refuse, before any cluster starts, more local workers than this machine's cores or memory
    can run (too many hang while starting)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = _available_memory()
    fit = max(1, min(cores, cores if memory is None else memory // WORKER_MEMORY_BYTES))
    if workers > fit:
        room = "" if memory is None else f" and {memory / 2**30:.1f} GiB of free memory (a worker needs about 1 GiB)"
        raise ValueError(f"--workers {workers} is more than this machine can run: it has {cores} core(s){room}. "
                         f"Use --workers {fit} or fewer, or --scheduler for a larger cluster.")


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


class ClusterError(RuntimeError):
    """One line: what went wrong on the cluster (a block's slices, the scheduler's address) and the fix."""


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: of the scheduler at ``scheduler``, else of a new local cluster of
    ``workers`` processes (one thread each; closed on exit)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("dask.distributed is not installed: pip install \"napari-slice-unet[distributed]\" "
                           "(or pip install distributed).") from None
    if scheduler:
        client = _client_at(Client, scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    log = new_log_path("cluster")
    spawning.ensure_tracker()  # the workers' tracker, with its stderr in the log folder too
    with warnings.catch_warnings():  # "Port 8787 is already in use" when another cluster runs: it takes another
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR,
                               env=_worker_env(int(workers or 1), log), preload=[cluster_tasks.__name__])
    try:
        with cluster, Client(cluster) as client:
            yield client
    except ClusterError as exc:
        if log is None or not log.exists():
            raise
        raise ClusterError(f"{exc} Workers' output: {log}") from None
    if log is not None:  # kept only when the run failed (an exception skips this)
        log.unlink(missing_ok=True)


def _client_at(client_class, address: str):
    try:
        return client_class(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"Cannot reach the dask scheduler at {address} within {CONNECT_TIMEOUT_S} s "
                           f"({type(exc).__name__}): start it (dask scheduler) or check the address.") from None


def _worker_env(workers: int, log) -> dict:
    """The cores shared out among the local workers, so that their TensorFlow threads do not fight;
    their stderr (TensorFlow's start-up lines) goes to the log file ``log``."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads,
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if log is not None:
        env[cluster_tasks.LOG_ENV] = str(log)
    return env


def predict_distributed(image, model_dir, *, out, cfg, client, prob=None, channel_axis=None, retries: int = 2,
                        block_yx: int = 0, scale=None, axes=None, units=None, on_message=print,
                        on_block=None, keep=None) -> dict:
    """Segment the image file ``image`` (TIFF, zarr, OME-Zarr) with the model folder ``model_dir``
    on ``client``'s cluster into ``out`` (``.zarr``, ``.ome.zarr`` or ``.tif``; never replaced),
    and the probabilities into ``prob`` if given. ``scale``, ``axes`` and ``units`` (of the
    spatial axes) go into the OME-Zarr metadata. ``on_block(done, total)`` follows the blocks.
    ``block_yx``: classes and probabilities in Y/X regions of this size (``core.blocks.yx_regions``;
    0: whole slices up to 4096 x 4096).

    Returns ``n_blocks`` (of slices), ``n_regions`` (Y/X regions of a block of classes), ``n_tiles``
    (Y/X tiles of a block's 3-D objects), ``n_workers``,
    ``seconds``, ``merge_seconds``, per block ``blocks``
    (slices and seconds reading, predicting, writing, in all) and ``stopped`` (None). Failures
    raise ``ClusterError`` (one line), bad input ``ValueError`` before any block runs.

    Inside ``interrupts.handled`` (the command line), a first Ctrl-C, SIGTERM or SIGHUP while the
    blocks run stops the run: no block starts any more, the running ones finish. Classes and
    probabilities then keep the finished blocks' parts (the rest is 0) in ``keep(path)`` of
    each output (default: the output itself); objects need every block joined and keep nothing.
    The summary's ``stopped`` is then the signal, ``done`` the finished ``(block, region index)``,
    ``kept`` the outputs written, ``n_slices`` the slices in all. A second Ctrl-C raises
    ``interrupts.Interrupted`` at once, keeping nothing."""
    started = time.perf_counter()
    finals = {Path(out): True, **({Path(prob): False} if prob else {})}
    meta = read_bundle_meta(model_dir)
    volume, _ = images.open_lazy(image)
    spatial = tuple(n for ax, n in enumerate(volume.shape) if ax != channel_axis)
    _refuse(cfg, finals, spatial)
    axis = cfg.axis % 3 if len(spatial) == 3 else None
    normalization = _normalization(volume, spatial, channel_axis, meta, cfg, on_message)
    # The slabs one process here would use.
    plan = block_plan(cfg, spatial, axis, disk_room=disk_room(), block_yx=block_yx)
    check_workers(client)
    tmps = {path: path.with_name(path.name + ".partial.zarr") for path in finals}
    _refuse_live(tmps, finals)
    try:
        _start(tmps, finals, axes or "ZYX"[-len(spatial):], scale, units)  # inside: a full disk leaves nothing
        spec = _spec(image, model_dir, cfg, plan, axis, spatial, channel_axis, normalization, tmps, finals)
        spec = dataclasses.replace(spec, image=_input_for_blocks(client, volume, spec, tmps[Path(out)], on_message))
        records, futures, stopped = _run_blocks(client, spec, plan, retries, on_block,
                                                tmps[Path(out)] / STOP_FILE, on_message)
        if all(record is not None for record in records):
            stopped = None  # every block had started before the signal and ran whole: the output is complete
        if stopped is None:
            merge = _finish_whole(client, spec, plan, records, futures, cfg, retries, tmps, finals, scale, axes)
            extra = {"stopped": None}
        else:
            merge, done = 0.0, [task for task, record in zip(_tasks(plan), records) if record is not None]
            extra = {"stopped": stopped, "done": done, "n_slices": spatial[axis] if axis is not None else 1,
                     "kept": keep_stopped(tmps, finals, done, plan, keep, scale, axes)}
    finally:
        for tmp in tmps.values():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"n_blocks": len(plan.blocks), "n_regions": len(plan.regions),
            "n_tiles": len(plan.tiles or [None]),
            "n_workers": len(client.scheduler_info()["workers"]),
            "seconds": time.perf_counter() - started, "merge_seconds": merge,
            "blocks": [{"slices": list(r["block"]), **r["seconds"]} for r in records if r is not None], **extra}


def _finish_whole(client, spec, plan, records, futures, cfg, retries, tmps, finals, scale, axes) -> float:
    """Join the blocks' objects (if any) and put every output in place; returns the join's seconds."""
    merge = _join(client, spec, plan, records, futures, cfg, retries) if plan.mode else 0.0
    with interrupts.deferred():  # every block is done: a signal now is too late to stop the run
        omezarr.finish_outputs([(tmp, path, finals[path]) for path, tmp in tmps.items()], scale=scale, axes=axes)
        interrupts.output_whole()  # a signal while the cluster closes must not interrupt its closing
    return merge


def _refuse(cfg, finals, spatial) -> None:
    if cfg.three_axis:
        raise ValueError("three_axis averages passes along all three axes of the whole volume, which blocks "
                         "of slices cannot: predict without --workers/--scheduler, or turn it off.")
    if len(spatial) not in (2, 3):
        raise ValueError(f"Expected a 2-D or 3-D image (plus an optional channel axis), got spatial shape {spatial}.")
    for path in finals:
        if path.exists():
            raise FileExistsError(f"{path} exists; pick another name or delete it first.")
        if not path.name.lower().endswith((".zarr", ".tif", ".tiff")):
            raise ValueError(f"{path} must end in .zarr, .ome.zarr, .tif or .tiff.")


def _normalization(volume, spatial, channel_axis, meta, cfg, on_message) -> dict:
    """The intensity mapping of the whole volume, computed here once (blocks would each find
    their own percentiles), as one process computes it."""
    import dask

    stored = meta.normalization.model_dump()
    with dask.config.set(scheduler="synchronous"):  # a sample of slices, read here
        normalization, warnings = choose_normalization(volume, spatial, channel_axis, stored, cfg)
    for warning in warnings:
        on_message("warning: " + warning.message)
    return normalization


def check_workers(client) -> None:
    """Every worker imports ``WORKER_MODULES``; one that cannot is named with the missing package."""
    if not client.scheduler_info()["workers"]:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S * 6)
    for module in WORKER_MODULES:
        try:
            client.run(exec, f"import {module}")
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            raise ClusterError(f"A worker of the cluster cannot import {module} (no module {missing!r}): install "
                               "napari-slice-unet, with the same versions as here, into the workers' "
                               "environment.") from None


def _refuse_live(tmps, finals) -> None:
    """A killed run's temporary group is reclaimed, a live run's refused (never removed)."""
    for path, tmp in tmps.items():
        if tmp.exists() and not leftovers.remove_stale_folder(tmp):
            raise FileExistsError(f"{tmp} exists: another run is writing {path} now; wait for it, or delete "
                                  f"{tmp} if no run is.")


def _start(tmps, finals, axes, scale, units) -> None:
    """Each output's temporary group."""
    for path, tmp in tmps.items():
        omezarr.start_output(tmp, axes=axes, scale=scale, units=units, labels=finals[path], name=path.name)


def _spec(image, model_dir, cfg, plan, axis, spatial, channel_axis, normalization, tmps, finals) -> ClusterSpec:
    """What every task gets: paths, settings and the arrays it writes (created here, one chunk per slice)."""
    out = next(path for path, labels in finals.items() if labels)
    region = iter(r.stop - r.start for r in plan.regions[0])  # chunks of whole slices or regions
    chunks = tuple(1 if ax == axis else next(region) for ax in range(len(spatial)))
    arrays = {"labels": tmps[out] / "0"}
    if plan.mode in ("linked", "2d"):
        arrays["local"] = tmps[out] / "_local"
    probs = [path for path, labels in finals.items() if not labels]
    if probs:
        arrays["probs"] = tmps[probs[0]] / "0"
    for name, path in arrays.items():
        dtype = np.float32 if name == "probs" else np.uint32 if plan.mode else np.uint8
        omezarr.create_array(path, spatial, dtype, chunks)
    return ClusterSpec(image=str(image), model_dir=str(model_dir), cfg=cfg.to_dict(), plan=plan, axis=axis,
                       spatial_shape=spatial, channel_axis=channel_axis, normalization=normalization,
                       arrays={name: str(path) for name, path in arrays.items()}, units=str(tmps[out] / "_units"))


def _input_for_blocks(client, volume, spec, tmp, on_message) -> str:
    """The image path blocks read: the input, or (chunks of many slices and many bytes, e.g. one
    chunk of the whole volume) a copy rechunked to one slice per chunk, made on the cluster."""
    import dask.array as da

    chunks, axis = getattr(volume, "chunksize", None), spec.axis
    if chunks is None or axis is None:
        return spec.image
    real = [ax for ax in range(volume.ndim) if ax != spec.channel_axis][axis]
    nbytes = int(np.prod(chunks)) * volume.dtype.itemsize
    if chunks[real] <= 1 or nbytes <= RECHUNK_BYTES:
        return spec.image
    target = tmp / "_input.zarr"
    on_message(f"The input's chunks ({' x '.join(map(str, chunks))}, {nbytes / 2**20:.0f} MiB each) hold "
               f"{chunks[real]} slices each: rechunking it to one slice per chunk first, into {target}.")
    single = tuple(1 if ax == real else n for ax, n in enumerate(volume.shape))
    client.compute(da.to_zarr(volume.rechunk(single), str(target), compute=False)).result()
    return str(target)


def _run_blocks(client, spec, plan, retries, on_block, stop_file, on_message):
    """Every block (region of a block) as a task; returns their records in ``_tasks`` order (None for
    one a signal kept from starting), their futures, and the signal that stopped the run (None)."""
    tasks = _tasks(plan)
    futures = [client.submit(cluster_tasks.run_block_unless_stopped, spec, block, r, str(stop_file),
                             retries=retries, pure=False)
               for block, r in tasks]
    names = {future.key: f"the block of slices {a}-{b - 1}" + _region_name(plan, r)
             for future, ((a, b), r) in zip(futures, tasks)}
    stop = StopOnSignal(stop_file, on_message)
    try:
        with interrupts.deferred():
            results = _collect(client, futures, names, retries, on_done=on_block, stop=stop)
            if not plan.mode and all(results[future.key] is not None for future in futures):
                interrupts.output_whole()  # no join left: only putting the output in place, which no signal stops
    except interrupts.Interrupted:
        client.cancel(futures)
        raise
    return [results[future.key] for future in futures], futures, stop.signum


def _tasks(plan) -> list:
    """``(block, region index)`` of every block task, in order."""
    return [(block, r) for block in plan.blocks for r in range(len(plan.regions))]


def _region_name(plan, r) -> str:
    if len(plan.regions) == 1:
        return ""
    y, x = plan.regions[r]
    return f", y {y.start}-{y.stop - 1}, x {x.start}-{x.stop - 1}"


def _join(client, spec, plan, records, block_futures, cfg, retries) -> float:
    """Objects joined, then each block's final ids written; returns the seconds."""
    started = time.perf_counter()
    blocks = plan.blocks
    if plan.mode == "3d":
        lookups = _join_units(client, spec, plan, records, cfg, retries)
    else:
        lookups = _join_faces(client, spec, plan, records, block_futures, retries)
    futures = [client.submit(cluster_tasks.run_relabel, spec, block, lookup, retries=retries, pure=False)
               for block, lookup in zip(blocks, lookups)]
    _collect(client, futures, {f.key: f"the final ids of slices {a}-{b - 1}" for f, (a, b) in zip(futures, blocks)},
             retries)
    return time.perf_counter() - started


def _join_units(client, spec, plan, records, cfg, retries) -> list:
    """3-D objects: each block's zone counts on the cluster, then the units joined here in order;
    per block, the lookups of its units."""
    blocks = plan.blocks
    futures = [client.submit(cluster_tasks.run_zones, spec, k, retries=retries, pure=False)
               for k in range(len(blocks))]  # after every block: the units they read are written
    regions = {f.key: f"joining the objects of slices {a}-{b - 1}" for f, (a, b) in zip(futures, blocks)}
    results = _collect(client, futures, regions, retries)
    counts = {unit: owners for f in futures for unit, owners in results[f.key].items()}
    lookups = join_units([unit for r in records for unit in r["units"]], counts, min_size=cfg.min_object_size)
    return [{unit: lookups[unit] for unit in units(plan) if unit[0] == k} for k in range(len(blocks))]


def _join_faces(client, spec, plan, records, block_futures, retries) -> list:
    """Objects per slice: linked across block faces (on the cluster), numbered here."""
    blocks, faces = plan.blocks, [None] * len(plan.blocks)
    if plan.mode == "linked":
        face_futures = {k: client.submit(cluster_tasks.run_face, spec, blocks[k], block_futures[k - 1],
                                         block_futures[k], retries=retries, pure=False)
                        for k in range(1, len(blocks))}
        regions = {f.key: f"joining the objects at slice {blocks[k][0]}" for k, f in face_futures.items()}
        results = _collect(client, list(face_futures.values()), regions, retries)
        faces = [None] + [results[face_futures[k].key] for k in range(1, len(blocks))]
    return join_blocks(records, faces)


def _collect(client, futures, regions, retries, on_done=None, stop=None) -> dict:
    """Results by future key, as they finish; the first failure (after dask's retries) raises
    ``ClusterError`` naming its region, and the other tasks are cancelled. ``on_done(n, total)``
    follows the tasks that returned something (not None); ``stop()``, if given, is called at least
    every ``cluster_stop.POLL_S`` meanwhile."""
    from distributed import as_completed

    results, returned = {}, 0
    for future in as_completed(futures) if stop is None else polling(futures, stop):
        if future.status != "finished":
            exc = future.exception()
            client.cancel(futures)
            raise ClusterError(_failure_line(exc, regions[future.key], retries)) from None
        results[future.key] = future.result()
        returned += results[future.key] is not None
        if on_done is not None and results[future.key] is not None:
            on_done(returned, len(futures))
    return results


def _failure_line(exc, region, retries) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ImportError):
        return (f"A worker cannot import what {region} needs ({text}): install napari-slice-unet into the "
                "workers' environment.")
    if type(exc).__name__ == "KilledWorker":
        return (f"The workers running {region} died again and again (out of memory?): give the workers more "
                "memory, or use smaller --block-slices.")
    return f"{region[0].upper()}{region[1:]} failed after {retries + 1} tries: {type(exc).__name__}: {text}"

"""What each ``napari-unet`` sub-command does. Jobs run in the worker process via the engine."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from napari_unet.cli.args import cluster_config, parse_slices, predict_config, train_configs, write_json
from napari_unet.core import events
from napari_unet.core.bundle import (
    check_model_name,
    check_stored_normalization,
    check_target,
    read_bundle_meta,
    reclaim_stale_saves,
)
from napari_unet.core.objects import defaults as object_defaults
from napari_unet.core.predict.uncertainty import candidate_slices
from napari_unet.core.train.pairs import check_same_channels, model_config_for
from napari_unet.io import disk, images, leftovers, omezarr, tiff
from napari_unet.io.meta import ImageMeta
from napari_unet.runtime import engine, interrupts, present
from napari_unet.runtime.jobs.predict import output_nbytes, prediction_outputs, start_prediction
from napari_unet.runtime.jobs.rank import start_ranking
from napari_unet.runtime.jobs.train import start_training
from napari_unet.runtime.shm import LazyFile


def _channels_last(array, meta: ImageMeta):
    """Move a channel ('C') or RGB sample ('S') axis last; returns (array, has_channels)."""
    axes = meta.axes
    for name in ("S", "C"):
        if name in axes and array.ndim == len(axes):
            return np.moveaxis(array, axes.index(name), -1), True
    return array, False


def spatial_units(meta: ImageMeta):
    """The units of the spatial axes (None when the file has none)."""
    units, axes = meta.units, meta.axes
    if not units or len(axes) != len(units):
        return None
    return tuple(u for u, name in zip(units, axes) if name not in "SC")


def spatial_scale(meta: ImageMeta):
    """The voxel size of the spatial axes: a channel ('C') or RGB sample ('S') axis has none."""
    scale, axes = meta.scale, meta.axes
    if scale is None or len(axes) != len(scale):
        return scale
    return tuple(s for s, name in zip(scale, axes) if name not in "SC")


def load_image(path) -> tuple[np.ndarray, ImageMeta, bool]:
    array, meta = tiff.read_array(path)
    array, has_channels = _channels_last(array, meta)
    return np.asarray(array), meta, has_channels


def follow(job, on_event=None, desc="Working", unit="step") -> dict:
    """Run a job to its end with a terminal progress bar.

    Ctrl-C, SIGTERM and SIGHUP ask it to stop gracefully (see ``runtime.interrupts``); a second
    Ctrl-C kills the worker.
    """
    bar = tqdm(total=1, desc=desc, unit=unit, dynamic_ncols=True)

    def show(event):
        if on_event is not None:
            on_event(event, bar)

    try:
        with interrupts.deferred():
            job.start()
            return engine.run_to_end(job, on_event=show, after_poll=_SignalAnswer(job, bar), idle_s=0.05)
    finally:
        bar.close()


class _SignalAnswer:
    """Called after each poll: asks the job to stop at the first signal, kills it at a second Ctrl-C."""

    def __init__(self, job, bar):
        self.job, self.bar = job, bar
        self.stopping = False

    def __call__(self) -> None:
        for signum in interrupts.take():
            if self.stopping and signum == signal.SIGINT:
                self.job.kill()
                raise interrupts.Interrupted(signum)
            if not self.stopping:
                self.stopping = True
                self.bar.write(f"{interrupts.signal_name(signum)}: stopping after the current batch"
                               f"{interrupts.again_hint(signum, 'to kill')}...")
                self.job.stop()


class JobFailed(RuntimeError):
    """A job that failed in the worker; its text is the one line the user sees."""


def _raise_on_error(final: events.Final, what: str):
    if isinstance(final, events.Error):
        raise JobFailed(present.failed_line(final, what))


def train_with_progress(image, labels, model_cfg, train_cfg, out_dir, resume=None,
                        overwrite=False, extra_pairs=()) -> events.Final:
    model_cfg = None if resume else model_config_for(  # continuing keeps the model's architecture
        model_cfg, [(image, labels), *extra_pairs], train_cfg.annotation_mode, instances=train_cfg.instances)
    job = start_training(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=str(out_dir),
                         resume_from=resume, overwrite=overwrite, extra_pairs=extra_pairs)

    def show(event, bar):
        if isinstance(event, events.Start):
            bar.total = 100  # percent: the steps or the time cap, whichever ends training first
            bar.write(present.start_line(event))
        elif isinstance(event, events.Batch):
            bar.update(round(event.progress * bar.total) - bar.n)  # steps or time, whichever ends first
            bar.set_postfix(**present.batch_fields(event))
        elif isinstance(event, events.Epoch):
            bar.write(present.epoch_line(event))
        elif isinstance(event, events.Warn):
            bar.write(present.warning_line(event), file=sys.stderr)

    with job:
        final = follow(job, show, desc="Training", unit="%")
    _raise_on_error(final, "Training")
    return final


def _show_stage(bar, desc: str, total: int) -> None:
    """Restart the bar when a new stage (a pass, the writing) begins."""
    if bar.desc != desc:
        bar.reset(total=total)
        bar.set_description(desc, refresh=False)
    elif bar.total != total:
        bar.total = total


def predict_with_progress(volume, model_dir, cfg, channel_axis=None, **outputs):
    """Predict; returns (final event, labels, probs, slices written): arrays are copies unless written to disk."""
    job = start_prediction(volume, str(model_dir), cfg, channel_axis=channel_axis, **outputs)

    written = []

    def show(event, bar):
        if isinstance(event, events.Progress):  # three-axis: the passes along each axis come first
            _show_stage(bar, present.pass_name(event), event.n_slices)
            bar.update(1)
        elif isinstance(event, events.Slice):
            _show_stage(bar, "Writing" if cfg.three_axis else "Segmenting", event.n_slices)
            bar.update(1)
            written.append(event.index)
        elif isinstance(event, events.Warn):
            bar.write(present.warning_line(event), file=sys.stderr)

    with job:
        final = follow(job, show, desc="Segmenting", unit="slice")
        _raise_on_error(final, "Segmentation")
        labels = None if outputs.get("out_path") else np.array(job.output("labels"))
        probs = None
        if cfg.return_probabilities and not outputs.get("prob_path"):
            probs = np.array(job.output("probs"))
    return final, labels, probs, len(written)  # slices written: known even when the worker was ended


# -- sub-commands ---------------------------------------------------------------------------
def _tidy_model_folder(path) -> None:
    """Say what killed saves left beside a model folder, and tidy it (it may put a model back)."""
    for line in reclaim_stale_saves(path):
        print(line)


def _say_why_unfinished(message: str) -> None:
    """The failure line on stderr; after a signal, the command line's "stopped by ..." is that
    line, and this one, saying what was kept, goes to stdout."""
    print(message, file=sys.stdout if interrupts.last_signal() is not None else sys.stderr)


def run_train(args) -> int:
    check_model_name(args.out, "--out")  # first: a name too long for the disk fails even to be looked up
    _tidy_model_folder(args.out)
    check_target(args.out, overwrite=args.overwrite)  # fail before loading anything
    pairs = _read_training_pairs(args.image, args.labels)
    model_cfg, train_cfg = train_configs(args)
    final = train_with_progress(*pairs[0], model_cfg, train_cfg, args.out, resume=args.resume,
                                overwrite=args.overwrite, extra_pairs=pairs[1:])
    result = final.training
    if result is None or not result.model_saved:
        _say_why_unfinished(final.message if result is None else result.message)
        return 130 if isinstance(final, events.Stopped) else 1
    dice = result.best_val_dice
    if result.message:  # saved, but not where asked (its disk refused it)
        print("warning: " + result.message, file=sys.stderr)
    print(f"Model saved to {result.model_dir}")
    print("Validation Dice: " + ("n/a (no validation data)" if dice is None else f"{dice:.4f}")
          + f" (best epoch {result.best_epoch})")
    for line in (result.objects, result.cut_short):
        if line:
            print(line)
    return 0


def _read_training_pairs(images, labels) -> list:
    """``[(image, labels), ...]`` from the repeated --image/--labels; channels must agree."""
    if len(images) != len(labels):
        raise ValueError(f"Give one --labels per --image: got {len(images)} image(s) and {len(labels)} labels.")
    pairs = [(load_image(image)[0], np.asarray(tiff.read_array(label)[0])) for image, label in zip(images, labels)]
    check_same_channels(pairs, names=[f"{image} / {label}" for image, label in zip(images, labels)])
    return pairs


def run_suggest(args) -> int:
    image, _, has_channels = load_image(args.image)
    labels = np.asarray(tiff.read_array(args.labels)[0])
    if labels.ndim != 3 or image.shape[:3] != labels.shape:
        raise ValueError(f"--image {args.image} and --labels {args.labels} must be one 3-D stack and its "
                         f"annotations (shapes {image.shape} and {labels.shape}).")
    slices, free = candidate_slices(labels, args.max_slices)
    job = start_ranking(image, args.model, slices, channel_axis=3 if has_channels else None)

    def show(event, bar):
        if isinstance(event, events.Progress):
            bar.total = event.n_slices
            bar.update(1)

    with job:
        final = follow(job, show, desc="Ranking", unit="slice")
    _raise_on_error(final, "Ranking")
    if not isinstance(final, events.Ranked):
        return 130
    sample = f" (an even sample of {len(slices)} of the {free} unannotated)" if len(slices) < free else ""
    print(f"Slices the model is least sure of, most uncertain first{sample}:")
    for z, score in final.ranking[: args.top or None]:
        print(f"slice {z:5d}  uncertainty {score:.3f}")
    return 0


OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")


def check_new_output(path, option: str, inputs=()) -> Path:
    """Refuse, before any work, an output that is an input, exists, has no usable suffix, whose
    folder is missing or not writable, or whose name (or a temporary name made from it) is too long."""
    path = Path(path)
    if not path.name.lower().endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"{option} {path} must end in {', '.join(OUTPUT_SUFFIXES)}.")
    disk.check_name_length(path.name, _internal_names(path), path.parent, option)  # first: else lookups fail
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise ValueError(f"{option} {path} is one of the inputs; pick a new file name.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Output folder {path.parent} does not exist; create it first.")
    disk.check_writable(path.parent, f"{option} {path.name}")
    if path.exists():
        raise FileExistsError(f"{path} exists; pick another name or delete it first.")
    return path


def _internal_names(path: Path) -> list[str]:
    """The longest names a prediction may give ``path``'s files on its way: the temporary zarr,
    the name a cancelled run keeps (``incomplete_name``), and a TIFF's ``.part`` while written."""
    kept = f"{path.name[: -len(path.suffix)]}.{INCOMPLETE}-99{path.suffix}"
    names = [_temporary(path).name, kept]
    if path.suffix.lower() != ".zarr":
        names.append(f".{kept}.{'x' * 8}.part")  # tiff._atomic_imwrite's mkstemp name
    return names


def run_predict(args) -> int:
    _tidy_model_folder(args.model)
    inputs = (args.image, args.model)
    out = check_new_output(args.out, "--out", inputs)
    prob = check_new_output(args.prob, "--prob", inputs + (args.out,)) if args.prob else None
    cluster = cluster_config(args)  # --workers 0 and the like: refused before any work
    read_bundle_meta(args.model)  # a file, a missing folder or a broken model: say so before any work
    array, meta = images.open_lazy(args.image)
    _, has_channels = _channels_last(array, meta)
    channel_axis = meta.channel_axis if has_channels else None
    spatial = check_image_axes(array.shape, meta, channel_axis, args.image)
    scale = spatial_scale(meta)
    cfg = predict_config(args, return_probabilities=bool(args.prob),
                         **_object_settings(args, _channels_last(array, meta)[0], scale, len(spatial)))
    scale = cfg.voxel_size or scale  # objects carry the voxel size they were found with
    _check_normalization(cfg, args.model)
    finals = {out: _temporary(out)}
    if prob:
        finals[prob] = _temporary(prob)
    for tmp in finals.values():
        _reclaim_partial(tmp)
    _check_disk_space(finals, spatial, cfg)
    axes = _spatial_axes(meta, len(spatial))
    units = spatial_units(meta)
    if cluster is not None:
        return _predict_on_cluster(args, cluster, finals, cfg, channel_axis, scale, axes, units)
    _refuse_live_outputs(finals)
    try:
        _start_outputs(finals, out, axes, scale, units)  # inside: a full disk here leaves no folder
        with interrupts.deferred():  # the job answers signals; once every slice is done, they come too late
            final, _, _, written = predict_with_progress(
                LazyFile(str(args.image)), args.model, cfg, channel_axis=channel_axis,
                out_path=str(finals[out] / "0"), **({"prob_path": str(finals[prob] / "0")} if prob else {}))
            if isinstance(final, events.Stopped):
                return _keep_incomplete(written, finals, out, scale,
                                        n_slices=spatial[cfg.axis] if len(spatial) == 3 else 1, axes=axes)
            omezarr.finish_outputs([(tmp, path, path == out) for path, tmp in finals.items()], scale=scale, axes=axes)
            interrupts.output_whole()  # from here on a signal is too late, even while tidying up
    finally:
        for tmp in finals.values():
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    _say_written(f"Labels written to {out}" + (f", probabilities to {prob}" if prob else ""))
    return 0


def _say_written(line: str) -> None:
    """The outputs are whole: a signal that came too late to stop the run changes nothing (exit 0)."""
    late = interrupts.output_whole()
    print(line + (f" ({interrupts.signal_name(late)} came too late to stop it: the output is whole.)"
                  if late is not None else ""))


def _check_normalization(cfg, model) -> None:
    """The stored percentiles must be usable when asked for (``--normalize model``), before any work."""
    if cfg.normalize == "model":
        check_stored_normalization(read_bundle_meta(model).normalization, model)


def _predict_on_cluster(args, cluster, finals, cfg, channel_axis, scale, axes, units) -> int:
    """``predict --workers N`` / ``--scheduler ADDRESS``: blocks of slices on dask.distributed."""
    from napari_unet.runtime import cluster as dist

    out, prob = list(finals)[0], next(iter(list(finals)[1:]), None)
    bars, summary = [], None  # bars: made at the first finished block, so a failure before shows none

    def on_block(done, total):
        if not bars:
            bars.append(tqdm(total=total, desc="Blocks", unit="block", dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    try:
        with dist.connect(scheduler=args.scheduler, workers=cluster.workers) as client:
            summary = dist.predict_distributed(args.image, args.model, out, cfg, client=client, prob=prob,
                                               channel_axis=channel_axis, retries=cluster.retries,
                                               block_yx=cluster.block_yx, scale=scale,
                                               axes=axes, units=units, on_message=tqdm.write, on_block=on_block,
                                               keep=incomplete_name)
    except dist.ClusterError as exc:
        raise JobFailed(f"Segmentation failed: {exc}") from None
    except interrupts.Interrupted:
        if summary is None:  # before or while the blocks ran, or a second Ctrl-C: nothing kept
            for tmp in finals.values():  # again: the local cluster is closed now, its blocks no longer write
                shutil.rmtree(tmp, ignore_errors=True)
            _say_why_unfinished(_nothing_kept(finals, cfg, "Cancelled"))
            raise
        # while the cluster closed: the outputs are already in place, say what they are
    finally:
        for bar in bars:
            bar.close()
    if summary["stopped"] is not None:
        _say_why_unfinished(_kept_of_cluster(summary, finals, cfg))
        return 130
    _say_written(f"Labels written to {out}" + (f", probabilities to {prob}" if prob else "")
          + f" ({summary['n_blocks']} block(s) of slices on {summary['n_workers']} worker(s), "
            f"{summary['seconds']:.1f} s)")
    return 0


def _kept_of_cluster(summary: dict, finals: dict, cfg) -> str:
    """One line: what a cluster run stopped by a signal kept (``cluster.predict_distributed``)."""
    n_regions, regions_done = summary["n_regions"], {}
    for block, r in summary["done"]:
        regions_done.setdefault(tuple(block), set()).add(r)
    whole = [block for block, done in regions_done.items() if len(done) == n_regions]
    finished = sum(b - a for a, b in whole)
    if not summary["kept"]:
        return _nothing_kept(finals, cfg, f"Cancelled after {finished} of {summary['n_slices']} slices")
    partial = [f"slices {_ranges([block])} in {len(done)} of their {n_regions} Y/X regions"
               for block, done in sorted(regions_done.items()) if len(done) < n_regions]
    finished_parts = (f"slices ({_ranges(whole)})" if not partial else
                      f"parts ({'; '.join(([f'slices {_ranges(whole)}'] if whole else []) + partial)})")
    kept = ", ".join(map(str, summary["kept"].values()))
    asked = ", ".join(map(str, finals))
    return (f"Cancelled after {finished} of {summary['n_slices']} slices: the finished {finished_parts} are in "
            f"{kept} (the {'other slices are' if not partial else 'rest is'} 0); {asked} "
            f"{'was' if len(finals) == 1 else 'were'} not written.")


def _nothing_kept(finals: dict, cfg, stopped: str) -> str:
    """One line: a cluster run stopped with nothing to keep, and its temporary folders gone."""
    tmps = list(finals.values())
    left = [str(tmp) for tmp in tmps if tmp.exists()]
    why = "objects need every block joined, so " if cfg.output == "instances" else ""
    folders = f"the temporary folder{'s' if len(tmps) > 1 else ''} {', '.join(map(str, tmps))}"
    return (f"{stopped}: {why}nothing was written, and {folders} "
            + (f"could not be removed: blocks still running wrote into it after the stop; delete {', '.join(left)}."
               if left else f"{'were' if len(tmps) > 1 else 'was'} removed."))


def _ranges(blocks) -> str:
    """Blocks of slices ``(start, stop)`` as ranges, adjacent ones merged: ``0-7, 12-15``."""
    merged = []
    for a, b in sorted(blocks):
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return ", ".join(f"{a}-{b - 1}" if b - a > 1 else f"{a}" for a, b in merged)


def _refuse_live_outputs(finals: dict) -> None:
    """A temporary group that exists belongs to a live run (a killed run's was reclaimed above),
    so it is refused, never removed."""
    for path, tmp in finals.items():
        if tmp.exists():
            raise FileExistsError(f"{tmp} exists: another run is writing {path} now; wait for it, or delete "
                                  f"{tmp} if no run is.")


def _start_outputs(finals: dict, out, axes, scale, units=None) -> None:
    """Each output's temporary group (its array goes to ``tmp/0``)."""
    for path, tmp in finals.items():
        omezarr.start_output(tmp, axes=axes, scale=scale, units=units, labels=path == out, name=path.name)


def _spatial_axes(meta: ImageMeta, ndim: int) -> str:
    axes = "".join(a for a in meta.axes if a not in "SC")
    return axes if len(axes) == ndim else "ZYX"[-ndim:]


def _reclaim_partial(path) -> None:
    """Remove the unfinished output of a killed run, which would block this one."""
    if path is not None and path.exists() and leftovers.remove_stale_folder(path):
        print(f"Removed {path}, the unfinished output of a killed run.")


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".partial.zarr")


def check_image_axes(shape, meta: ImageMeta, channel_axis, path) -> tuple:
    """The spatial shape; refuses what is not one 2-D or 3-D image (time series, positions)."""
    spatial = tuple(n for axis, n in enumerate(shape) if axis != channel_axis)
    if len(spatial) not in (2, 3):
        raise ValueError(
            f"--image {path} has axes {meta.axes} (shape {tuple(shape)}), but one 2-D or 3-D image "
            "is segmented at a time (YX or ZYX, plus at most one channel or RGB axis): save each time point "
            "or position as its own TIFF (e.g. in Fiji: Image > Duplicate)."
        )
    return spatial


def _check_disk_space(finals: dict, spatial, cfg) -> None:
    """Outputs (uncompressed: the most they take) must fit; a TIFF is written from a temporary zarr
    beside it, so it needs twice that."""
    need = {}
    for path, (shape, dtype) in zip(finals, prediction_outputs(spatial, cfg).values()):
        copies = 1 if path.suffix == ".zarr" else 2
        need[path.parent] = need.get(path.parent, 0) + copies * output_nbytes(shape, dtype)
    n_slices = spatial[cfg.axis] if len(spatial) == 3 else 1
    for folder, nbytes in need.items():
        disk.check_free_space(folder, nbytes, "the outputs")
        # Each output's temporary zarr holds a file per chunk (a slice, or a Y/X part of one).
        disk.check_free_files(folder, len(finals) * (2 * n_slices + FILES_PER_OUTPUT), "the outputs")


FILES_PER_OUTPUT = 16  # a zarr's metadata, owner and scratch files
INCOMPLETE = "incomplete"  # marks the file that keeps a cancelled prediction's finished slices


def incomplete_name(path: Path) -> Path:
    """``mask.tif`` -> ``mask.incomplete.tif`` (``-2``, ``-3``, ... if that exists too)."""
    stem, suffix = path.name[: -len(path.suffix)], path.suffix
    candidate, n = path.with_name(f"{stem}.{INCOMPLETE}{suffix}"), 2
    while candidate.exists():
        candidate, n = path.with_name(f"{stem}.{INCOMPLETE}-{n}{suffix}"), n + 1
    return candidate


def _keep_incomplete(done: int, finals: dict, out: Path, scale, n_slices: int, axes=None) -> int:
    """A cancelled run keeps its ``done`` finished slices in files named as incomplete, never the asked names."""
    if done == 0:
        _say_why_unfinished("Cancelled before any slice was finished: nothing was written.")
        return 130
    kept = [incomplete_name(path) for path in finals]
    omezarr.finish_outputs([(tmp, where, path == out) for (path, tmp), where in zip(finals.items(), kept)],
                           scale=scale, axes=axes)  # all or nothing, even after a second Ctrl-C
    asked = ", ".join(map(str, finals))
    _say_why_unfinished(f"Cancelled after {done} of {n_slices} slices: the finished slices are in "
                        f"{', '.join(map(str, kept))} (the other slices are 0); {asked} "
                        f"{'was' if len(finals) == 1 else 'were'} not written.")
    return 130


def _object_settings(args, volume, scale, spatial_ndim: int) -> dict:
    """Output kind from the model (objects for a model trained on ids); for objects, the settings
    of ``object_defaults.resolve``, each choice not given said in one line."""
    meta = read_bundle_meta(args.model)
    output = args.output or ("instances" if meta.instances else "labels")
    predict_config(args, output=output)  # the values given are refused, in one line, before anything is said
    if output != "instances":
        return {"output": output}
    fields, lines = object_defaults.resolve(meta, vars(args), volume=volume, scale=scale, is_3d=spatial_ndim == 3)
    say(lines)
    return {"output": output, **fields}


def say(lines) -> None:
    """Lines for the user: warnings on stderr, the rest on stdout."""
    for text in lines:
        print(text, file=sys.stderr if text.startswith("warning") else sys.stdout)


def run_evaluate(args) -> int:
    from napari_unet.core.metrics import object_report, segmentation_report

    if args.json and Path(args.json).exists():
        raise FileExistsError(f"--json {args.json} exists; pick another name or delete it first.")

    _tidy_model_folder(args.model)
    read_bundle_meta(args.model)
    image, meta, has_channels = load_image(args.image)
    spatial = check_image_axes(image.shape, meta, image.ndim - 1 if has_channels else None, args.image)
    gt, _ = tiff.read_array(args.labels)
    gt = np.asarray(gt)
    if tuple(gt.shape) != tuple(spatial):
        raise ValueError(f"--labels shape {gt.shape} differs from --image shape {spatial}.")
    chosen = parse_slices(args.slices)
    if chosen is not None:
        index = (slice(None),) * args.axis + (chosen,)
        image, gt = image[index], gt[index]
        if gt.shape[args.axis] == 0:
            raise ValueError(f"--slices {args.slices} selects no slice of the {spatial[args.axis]} along axis "
                             f"{args.axis}: give START:STOP with START < STOP, e.g. 0:{spatial[args.axis]}.")
    cfg = predict_config(args, **_object_settings(args, image, spatial_scale(meta), len(spatial)))
    _check_normalization(cfg, args.model)
    _, pred, _, _ = predict_with_progress(image, args.model, cfg,
                                       channel_axis=image.ndim - 1 if has_channels else None)
    if cfg.output == "instances":
        report = object_report(pred, gt, per_slice=args.per_slice)
    else:
        report = segmentation_report(pred, gt)
    report["slices"] = args.slices or "all"
    for key, value in report.items():
        print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.json:
        write_json(Path(args.json), report)
    return 0

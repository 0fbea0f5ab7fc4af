"""``napari-unet predict``: a stack segmented in the worker (or on a cluster) and written to disk."""

from __future__ import annotations

import shutil

from napari_unet.cli.args import cluster_config, predict_config
from napari_unet.cli.cluster import predict_on_cluster
from napari_unet.cli.images import channels_last, check_image_axes, spatial_axes, spatial_scale, spatial_units
from napari_unet.cli.model_folder import check_normalization, object_settings, tidy_model_folder
from napari_unet.cli.outputs import (
    check_disk_space,
    check_new_output,
    keep_incomplete,
    reclaim_partial,
    refuse_live_outputs,
    say_written,
    start_outputs,
    temporary,
)
from napari_unet.cli.progress import predict_with_progress
from napari_unet.core import events
from napari_unet.core.bundle import read_bundle_meta
from napari_unet.io import images, omezarr
from napari_unet.runtime import interrupts
from napari_unet.runtime.shm import LazyFile


def run_predict(args) -> int:
    tidy_model_folder(args.model)
    inputs = (args.image, args.model)
    out = check_new_output(args.out, "--out", inputs)
    prob = check_new_output(args.prob, "--prob", inputs + (args.out,)) if args.prob else None
    cluster = cluster_config(args)  # --workers 0 and the like: refused before any work
    read_bundle_meta(args.model)  # a file, a missing folder or a broken model: say so before any work
    array, meta = images.open_lazy(args.image)
    _, has_channels = channels_last(array, meta)
    channel_axis = meta.channel_axis if has_channels else None
    spatial = check_image_axes(array.shape, meta, channel_axis, args.image)
    scale = spatial_scale(meta)
    cfg = predict_config(args, return_probabilities=bool(args.prob),
                         **object_settings(args, channels_last(array, meta)[0], scale, len(spatial)))
    scale = cfg.voxel_size or scale  # objects carry the voxel size they were found with
    check_normalization(cfg, args.model)
    finals = {out: temporary(out)}
    if prob:
        finals[prob] = temporary(prob)
    for tmp in finals.values():
        reclaim_partial(tmp)
    check_disk_space(finals, spatial, cfg)
    axes = spatial_axes(meta, len(spatial))
    units = spatial_units(meta)
    if cluster is not None:
        return predict_on_cluster(args, cluster, finals, cfg, channel_axis, scale, axes, units)
    refuse_live_outputs(finals)
    try:
        start_outputs(finals, out, axes, scale, units)  # inside: a full disk here leaves no folder
        with interrupts.deferred():  # the job answers signals; once every slice is done, they come too late
            final, _, _, written = predict_with_progress(
                LazyFile(str(args.image)), args.model, cfg, channel_axis=channel_axis,
                out_path=str(finals[out] / "0"), **({"prob_path": str(finals[prob] / "0")} if prob else {}))
            if isinstance(final, events.Stopped):
                return keep_incomplete(written, finals, out, scale,
                                       n_slices=spatial[cfg.axis] if len(spatial) == 3 else 1, axes=axes)
            omezarr.finish_outputs([(tmp, path, path == out) for path, tmp in finals.items()], scale=scale, axes=axes)
            interrupts.output_whole()  # from here on a signal is too late, even while tidying up
    finally:
        for tmp in finals.values():
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    say_written(f"Labels written to {out}" + (f", probabilities to {prob}" if prob else ""))
    return 0

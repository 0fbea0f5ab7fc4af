"""``napari-unet evaluate``: a model's segmentation of an annotated stack, scored against its labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_unet.cli.args import parse_slices, predict_config, write_json
from napari_unet.cli.images import check_image_axes, load_image, spatial_scale
from napari_unet.cli.model_folder import check_normalization, object_settings, tidy_model_folder
from napari_unet.cli.progress import predict_with_progress
from napari_unet.core.bundle import read_bundle_meta
from napari_unet.io import tiff


def run_evaluate(args) -> int:
    from napari_unet.core.metrics import object_report, segmentation_report

    if args.json and Path(args.json).exists():
        raise FileExistsError(f"--json {args.json} exists; pick another name or delete it first.")

    tidy_model_folder(args.model)
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
    cfg = predict_config(args, **object_settings(args, image, spatial_scale(meta), len(spatial)))
    check_normalization(cfg, args.model)
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

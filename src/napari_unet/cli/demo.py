"""``napari-unet demo``: train on a partly annotated volume, segment all of it, write the results."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from napari_unet.cli.args import train_configs, write_json
from napari_unet.cli.images import load_image, spatial_scale
from napari_unet.cli.progress import predict_with_progress, say, train_with_progress
from napari_unet.core.bundle import check_target, read_bundle_meta
from napari_unet.core.config import PredictConfig
from napari_unet.core.data import annotated_slices
from napari_unet.core.objects import defaults as object_defaults
from napari_unet.io import tiff
from napari_unet.runtime import present


def _demo_data(args):
    """(image, partial labels, ground-truth objects or None, scale, name).

    The built-in sample trains on the cell ids of its annotated slices (instances), and its
    3-D cell ids are the truth the objects are scored against.
    """
    if args.image or args.labels:
        if not (args.image and args.labels):
            raise ValueError("Give both --image and --labels, or neither for the built-in sample.")
        image, meta, _ = load_image(args.image)
        labels, _ = tiff.read_array(args.labels)
        return image, np.asarray(labels), None, spatial_scale(meta), Path(args.image).stem
    from napari_unet.samples.synthetic import make_cells_volume

    sample = make_cells_volume()
    labels = np.where(sample["labels"] != 0, sample["instances"], 0).astype(np.uint32)
    return sample["image"], labels, sample["instances"], sample["scale"], "synthetic cells"


DEMO_FILES = ("masks.tif", "metrics.json", "overview.png")
MODEL_FOLDER = "model"


def check_demo_outputs(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace what an earlier run (or the user) left in ``out``."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder; pick a folder name.")
    for path in [out / MODEL_FOLDER] + [out / name for name in DEMO_FILES]:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; rerun with --overwrite to replace the demo's outputs, "
                                  "or pick another --out folder.")
    check_target(out / MODEL_FOLDER, overwrite=overwrite)  # even with --overwrite, only a model folder


def _predict_config(image, scale, model_dir, objects: bool, is_3d: bool) -> PredictConfig:
    """Classes, or objects as `napari-unet predict` settles them: tuned on the annotations, the
    voxel size known or estimated (said in one line each)."""
    if not objects:
        return PredictConfig(output="labels")
    fields, lines = object_defaults.resolve(read_bundle_meta(model_dir), {}, volume=image, scale=scale, is_3d=is_3d)
    say([line for line in lines if not line.startswith("objects tuned")])  # training has just said it
    return PredictConfig(output="instances", **fields)


def run_demo(args) -> int:
    out = Path(args.out)
    check_demo_outputs(out, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    image, labels, truth, scale, name = _demo_data(args)
    model_cfg, train_cfg = train_configs(args)
    if truth is not None:
        train_cfg = train_cfg.replace(instances=True)
    annotated = annotated_slices(labels, train_cfg.annotation_mode)
    print(f"{name}: volume {image.shape}, annotated slices {annotated.tolist()}; writing to {out}/")

    start = time.perf_counter()
    final = train_with_progress(image, labels, model_cfg, train_cfg, out / MODEL_FOLDER,
                                overwrite=args.overwrite)
    train_seconds = time.perf_counter() - start
    result = final.training
    if result is None or not result.model_saved:
        raise RuntimeError(final.message if result is None else result.message)
    say(present.result_notes(result))

    start = time.perf_counter()
    cfg = _predict_config(image, scale, result.model_dir, train_cfg.instances, labels.ndim == 3)
    voxel_size = cfg.voxel_size
    _, pred, _, _ = predict_with_progress(image, result.model_dir, cfg,
                                       channel_axis=image.ndim - 1 if image.ndim == 4 else None)
    predict_seconds = time.perf_counter() - start

    mask_path = tiff.write_labels_tiff(out / "masks.tif", pred, scale=scale)
    metrics = {
        "volume_shape": list(image.shape),
        "annotated_slices": annotated.tolist(),
        "train_seconds": round(train_seconds, 1),
        "predict_seconds": round(predict_seconds, 1),
        "best_val_dice": result.best_val_dice,
        "best_epoch": result.best_epoch,
    }
    unannotated = np.setdiff1d(np.arange(labels.shape[0]), annotated)
    if truth is not None:
        metrics.update(_object_scores(image, labels, pred, truth, voxel_size))
    write_json(out / "metrics.json", metrics)
    overview = _overview_png(out / "overview.png", image, pred, truth, unannotated if unannotated.size
                             else np.arange(labels.shape[0]))

    print(f"\nTrained in {train_seconds:.0f} s, segmented {labels.shape[0]} slices in {predict_seconds:.1f} s.")
    for key in ("unet", "baseline"):
        if key in metrics:
            report = metrics[key]
            print(f"{report['method']:>34}: " + ", ".join(
                f"{name} {report[name]:.3f}" for name in SHOWN_SCORES))
    print(f"Model:    {result.model_dir}\nMasks:    {mask_path}\n"
          f"Metrics:  {out / 'metrics.json'}\nOverview: {overview}")
    if args.view:
        _view(image, labels, pred, scale, name)
    return 0


SHOWN_SCORES = ("adapted_rand_error", "voi", "f1", "mean_matched_iou", "foreground_dice")


def _object_scores(image, labels, pred, truth, voxel_size) -> dict:
    """3-D object scores of the U-Net and of a classical watershed on the same volume."""
    from napari_unet.core.metrics import dice, object_report
    from napari_unet.samples.baselines import choose_polarity, watershed_objects

    polarity = choose_polarity(image, labels)
    baseline = watershed_objects(image, polarity=polarity, sampling=voxel_size or None)
    scores = {}
    for key, method, objects in (("unet", "U-Net, 3-D objects", pred),
                                 ("baseline", f"Gaussian + Otsu ({polarity}) + watershed", baseline)):
        report = object_report(objects, truth)
        report.update(method=method, foreground_dice=dice(objects > 0, truth > 0, label=True))
        scores[key] = report
    return scores


def _overview_png(path: Path, image, pred, truth, slices) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab20").with_extremes(bad="black")
    picks = slices[np.linspace(0, len(slices) - 1, min(3, len(slices))).astype(int)]
    cols = 3 if truth is not None else 2
    fig, axes = plt.subplots(len(picks), cols, figsize=(3.2 * cols, 3.2 * len(picks)), squeeze=False)
    for row, z in zip(axes, picks):
        row[0].imshow(image[z] if image.ndim == 3 else image[z, ..., 0], cmap="gray")
        row[0].set_title(f"image, slice {z}", fontsize=9)
        row[1].imshow(_id_colours(pred[z]), cmap=colours, interpolation="nearest", vmin=1, vmax=20)
        row[1].set_title("prediction", fontsize=9)
        if truth is not None:
            row[2].imshow(_id_colours(truth[z]), cmap=colours, interpolation="nearest", vmin=1, vmax=20)
            row[2].set_title("ground truth", fontsize=9)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _id_colours(ids):
    """Object ids folded onto 20 colours; the background is masked (drawn black)."""
    return np.ma.masked_equal(np.where(ids > 0, ids % 20 + 1, 0), 0)


def _view(image, labels, pred, scale, name):
    import napari

    viewer = napari.Viewer(title="napari-unet demo")
    viewer.add_image(image, name=name, scale=scale)
    viewer.add_labels(labels, name="annotations", scale=scale)
    viewer.add_labels(pred, name="prediction", scale=scale)
    napari.run()

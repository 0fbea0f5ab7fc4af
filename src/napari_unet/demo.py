"""``napari-unet demo``: train on a partly annotated volume, segment all of it, write the results."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import io
from .cli import train_configs, write_json
from .cli_commands import load_image, predict_with_progress, train_with_progress
from .core.config import PredictConfig
from .core.data import annotated_slices


def _demo_data(args):
    """(image, partial labels, ground truth or None, scale, name)."""
    if args.image or args.labels:
        if not (args.image and args.labels):
            raise ValueError("Give both --image and --labels, or neither for the built-in sample.")
        image, meta, _ = load_image(args.image)
        labels, _ = io.read_array(args.labels)
        return image, np.asarray(labels), None, meta.get("scale"), Path(args.image).stem
    from .core.synthetic import make_cells_volume

    sample = make_cells_volume()
    return sample["image"], sample["labels"], sample["labels_full"], sample["scale"], "synthetic cells"


def run_demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image, labels, truth, scale, name = _demo_data(args)
    model_cfg, train_cfg = train_configs(args)
    annotated = annotated_slices(labels, train_cfg.annotation_mode)
    print(f"{name}: volume {image.shape}, annotated slices {annotated.tolist()}; writing to {out}/")

    start = time.perf_counter()
    # The demo owns its output folder: rerunning it replaces its own model there.
    final = train_with_progress(image, labels, model_cfg, train_cfg, out / "model", overwrite=True)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    has_channels = image.ndim == 4
    _, pred, _ = predict_with_progress(image, final["model_dir"], PredictConfig(),
                                       channel_axis=image.ndim - 1 if has_channels else None)
    predict_seconds = time.perf_counter() - start

    mask_path = io.write_labels_tiff(out / "masks.tif", pred, scale=scale)
    metrics = {
        "volume_shape": list(image.shape),
        "annotated_slices": annotated.tolist(),
        "train_seconds": round(train_seconds, 1),
        "predict_seconds": round(predict_seconds, 1),
        "best_val_dice": final.get("best_val_dice"),
        "best_epoch": final.get("best_epoch"),
    }
    unannotated = np.setdiff1d(np.arange(labels.shape[0]), annotated)
    if truth is not None and unannotated.size:
        from .core.metrics import segmentation_report

        metrics["unannotated_slices"] = segmentation_report(pred[unannotated], truth[unannotated])
    write_json(out / "metrics.json", metrics)
    overview = _overview_png(out / "overview.png", image, pred, truth, unannotated if unannotated.size
                             else np.arange(labels.shape[0]))

    print(f"\nTrained in {train_seconds:.0f} s, segmented {labels.shape[0]} slices in {predict_seconds:.1f} s.")
    if "unannotated_slices" in metrics:
        report = metrics["unannotated_slices"]
        print("On the slices nobody annotated: "
              + ", ".join(f"{k} {v:.3f}" for k, v in report.items() if isinstance(v, float)))
    print(f"Model:    {final['model_dir']}\nMasks:    {mask_path}\n"
          f"Metrics:  {out / 'metrics.json'}\nOverview: {overview}")
    if args.view:
        _view(image, labels, pred, scale, name)
    return 0


def _overview_png(path: Path, image, pred, truth, slices) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = slices[np.linspace(0, len(slices) - 1, min(3, len(slices))).astype(int)]
    cols = 3 if truth is not None else 2
    fig, axes = plt.subplots(len(picks), cols, figsize=(3.2 * cols, 3.2 * len(picks)), squeeze=False)
    for row, z in zip(axes, picks):
        row[0].imshow(image[z] if image.ndim == 3 else image[z, ..., 0], cmap="gray")
        row[0].set_title(f"image, slice {z}", fontsize=9)
        row[1].imshow(pred[z], cmap="viridis", interpolation="nearest")
        row[1].set_title("prediction", fontsize=9)
        if truth is not None:
            row[2].imshow(truth[z], cmap="viridis", interpolation="nearest")
            row[2].set_title("ground truth", fontsize=9)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _view(image, labels, pred, scale, name):
    import napari

    viewer = napari.Viewer(title="napari-unet demo")
    viewer.add_image(image, name=name, scale=scale)
    viewer.add_labels(labels, name="annotations", scale=scale)
    viewer.add_labels(pred, name="prediction", scale=scale)
    napari.run()

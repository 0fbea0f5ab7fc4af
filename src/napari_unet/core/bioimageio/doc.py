"""The Markdown documentation of an exported package (no Keras, no bioimageio imports)."""

from __future__ import annotations

from pathlib import Path

from napari_unet.core.bundle_meta import BundleMeta, TrainingData, Validation


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _validation(meta: BundleMeta, image_name) -> list[str]:
    val = meta.validation or Validation()
    data = meta.training_data
    loss = meta.train_cfg.loss if meta.train_cfg else "?"
    epoch = "n/a" if val.best_epoch is None else val.best_epoch
    lines = ["# Validation", "",
             "Scores of the saved weights on the held-out validation regions of the annotated slices "
             f"(best epoch {epoch}, chosen by {val.monitor or 'val_loss'}):", "",
             "| metric | value |", "|---|---|",
             f"| Dice | {_score(val.best_val_dice)} |",
             f"| IoU | {_score(val.best_val_iou)} |",
             f"| loss ({loss}) | {_score(val.best_val_loss)} |", "",
             "## Training data", ""]
    if image_name:
        lines.append(f"- Image: `{image_name}`")
    lines += [f"- Image shape: {_of(data, 'image_shape', 'unknown')}",
              f"- Annotated slices: {_of(data, 'annotated_slices', 'unknown')} "
              f"({meta.annotation_mode or '?'} mode"
              + (", object ids" if meta.instances else "") + ")",
              f"- Training / validation regions: {_of(data, 'train_regions', '?')} / {_of(data, 'val_regions', '?')}",
              "", "The validation regions come from the same stack as the training regions, so these scores "
              "say how well the model learned this stack, not how it does on other data.", ""]
    return lines


def _of(data: TrainingData | None, name: str, missing: str):
    return missing if data is None else getattr(data, name)


def render(meta: BundleMeta, model_dir: Path, *, image_name, minimum: int, step: int, formats) -> str:
    cfg, norm = meta.model_cfg, meta.normalization
    low, high = norm.percentiles
    activation, names = (meta.classes.activation, meta.classes.names) if meta.classes else ("", None)
    lines = [f"# napari-unet model: {model_dir.name}", "",
             f"A 2-D U-Net (depth {cfg.depth}, {cfg.n_filters} base filters) trained with "
             "[napari-unet](https://github.com/napari-unet/napari-unet) on a few annotated slices of a 3-D "
             "stack. It segments the stack slice by slice.", "",
             "## Inputs and outputs", "",
             f"- Input `input`: (batch, channel, y, x), {cfg.in_channels} channel(s); y and x of "
             f"{minimum} + n x {step} pixels. Give the slices of a volume as the batch.",
             f"- Preprocessing: `scale_range` with the {low}th and {high}th percentiles per channel over batch, "
             "y and x: with the whole volume as the batch this is napari-unet's default (each volume mapped by "
             "its own percentiles). The training image's values are kept in `config.napari_unet.bundle."
             f"normalization` (low {norm.low}, high {norm.high}).",
             f"- Output `probabilities`: (batch, channel, y, x), {activation} over the "
             f"classes {names}; a tile's outer halo of pixels should be cropped when tiling.",
             "- Postprocessing: none (the network ends with its sigmoid or softmax). napari-unet thresholds "
             "(binary) or takes the argmax" + (", then finds objects by a seeded watershed on the interior "
                                               "and boundary classes." if meta.instances else "."), "",
             f"Weights: {', '.join(formats)}.", "",
             "## Use in napari-unet", "",
             "`napari-unet predict --model THIS.zip --image stack.tif --out labels.tif`, or pick the .zip in the "
             "*Segment with U-Net* dock: the settings of the model folder are stored under `config.napari_unet`.",
             ""]
    lines += _validation(meta, image_name)
    train = meta.train_cfg.model_dump(mode="json") if meta.train_cfg else None
    lines += ["## Training configuration", "", "```json", _json(train), "```", ""]
    return "\n".join(lines)


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)

"""The Markdown documentation of an exported package (no Keras, no bioimageio imports)."""

from __future__ import annotations

from pathlib import Path


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _validation(meta: dict, image_name) -> list[str]:
    val = meta.get("validation") or {}
    data = meta.get("training_data") or {}
    train = meta.get("train_config") or {}
    lines = ["# Validation", "",
             "Scores of the saved weights on the held-out validation regions of the annotated slices "
             f"(best epoch {val.get('best_epoch', 'n/a')}, chosen by {val.get('monitor', 'val_loss')}):", "",
             "| metric | value |", "|---|---|",
             f"| Dice | {_score(val.get('best_val_dice'))} |",
             f"| IoU | {_score(val.get('best_val_iou'))} |",
             f"| loss ({train.get('loss', '?')}) | {_score(val.get('best_val_loss'))} |", "",
             "## Training data", ""]
    if image_name:
        lines.append(f"- Image: `{image_name}`")
    lines += [f"- Image shape: {data.get('image_shape', 'unknown')}",
              f"- Annotated slices: {data.get('annotated_slices', 'unknown')} "
              f"({meta.get('annotation_mode', '?')} mode"
              + (", object ids" if meta.get("instances") else "") + ")",
              f"- Training / validation regions: {data.get('train_regions', '?')} / {data.get('val_regions', '?')}",
              "", "The validation regions come from the same stack as the training regions, so these scores "
              "say how well the model learned this stack, not how it does on other data.", ""]
    return lines


def render(meta: dict, model_dir: Path, image_name, minimum: int, step: int, formats) -> str:
    cfg = meta.get("model_config") or {}
    classes = meta.get("classes") or {}
    norm = meta.get("normalization") or {}
    low, high = norm.get("percentiles", [1.0, 99.8])
    lines = [f"# napari-unet model: {model_dir.name}", "",
             f"A 2-D U-Net (depth {cfg.get('depth')}, {cfg.get('n_filters')} base filters) trained with "
             "[napari-unet](https://github.com/napari-unet/napari-unet) on a few annotated slices of a 3-D "
             "stack. It segments the stack slice by slice.", "",
             "## Inputs and outputs", "",
             f"- Input `input`: (batch, channel, y, x), {cfg.get('in_channels')} channel(s); y and x of "
             f"{minimum} + n x {step} pixels. Give the slices of a volume as the batch.",
             f"- Preprocessing: `scale_range` with the {low}th and {high}th percentiles per channel over batch, "
             "y and x: with the whole volume as the batch this is napari-unet's default (each volume mapped by "
             "its own percentiles). The training image's values are kept in `config.napari_unet.bundle."
             f"normalization` (low {norm.get('low')}, high {norm.get('high')}).",
             f"- Output `probabilities`: (batch, channel, y, x), {classes.get('activation', '')} over the "
             f"classes {classes.get('names')}; a tile's outer halo of pixels should be cropped when tiling.",
             "- Postprocessing: none (the network ends with its sigmoid or softmax). napari-unet thresholds "
             "(binary) or takes the argmax" + (", then finds objects by a seeded watershed on the interior "
                                               "and boundary classes." if meta.get("instances") else "."), "",
             f"Weights: {', '.join(formats)}.", "",
             "## Use in napari-unet", "",
             "`napari-unet predict --model THIS.zip --image stack.tif --out labels.tif`, or pick the .zip in the "
             "*Segment with U-Net* dock: the settings of the model folder are stored under `config.napari_unet`.",
             ""]
    lines += _validation(meta, image_name)
    lines += ["## Training configuration", "", "```json", _json(meta.get("train_config")), "```", ""]
    return "\n".join(lines)


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)

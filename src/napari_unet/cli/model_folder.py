"""A model folder as the sub-commands read it: tidied first, then the prediction settings it gives."""

from __future__ import annotations

from napari_unet.cli.args import predict_config
from napari_unet.cli.progress import say
from napari_unet.core.bundle import check_stored_normalization, read_bundle_meta, reclaim_stale_saves
from napari_unet.core.objects import defaults as object_defaults


def tidy_model_folder(path) -> None:
    """Say what killed saves left beside a model folder, and tidy it (it may put a model back)."""
    for line in reclaim_stale_saves(path):
        print(line)


def check_normalization(cfg, model) -> None:
    """The stored percentiles must be usable when asked for (``--normalize model``), before any work."""
    if cfg.normalize == "model":
        check_stored_normalization(read_bundle_meta(model).normalization, model)


def object_settings(args, volume, scale, spatial_ndim: int) -> dict:
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

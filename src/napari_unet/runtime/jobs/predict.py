"""Segmenting a volume with a saved model: ``start_prediction`` (parent) and ``predict_job`` (worker)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from napari_unet.core.bundle import read_bundle_meta  # JSON only: no Keras here
from napari_unet.core.events import Done
from napari_unet.runtime.engine import Job
from napari_unet.runtime.shm import LazyFile, ZarrOutput
from napari_unet.runtime.spawning import worker_env
from napari_unet.runtime.warm import WarmWorker
from napari_unet.runtime.worker import load_model_cached


def start_prediction(image, model_dir, *, predict_cfg, channel_axis=None, out_path=None, prob_path=None,
                     all_classes=False, worker: WarmWorker | None = None) -> Job:
    """A (not yet started) job that segments ``image`` with the model saved in ``model_dir``.

    Outputs: "labels" (uint8, or uint32 for instances) and, with ``return_probabilities``,
    "probs" (float32), both of the image's spatial shape (``all_classes``: "probs" gets a last
    axis with every class). They live in shared memory, or in new zarr arrays at ``out_path``
    / ``prob_path`` for volumes larger than memory.
    """
    read_bundle_meta(model_dir)  # a missing folder, a file or a broken bundle is refused here
    spatial = _spatial_shape(_shape_of(image), channel_axis)
    slice_axis = predict_cfg.axis % 3 if len(spatial) == 3 else None
    classes = (read_bundle_meta(model_dir).model_cfg.n_classes,) if all_classes else ()
    shapes = prediction_outputs(spatial, predict_cfg, prob_classes=classes)
    outputs = {name: _output_spec(shape, dtype, path, slice_axis)
               for (name, (shape, dtype)), path in zip(shapes.items(), (out_path, prob_path))}
    _check_disk_space(outputs)
    params = {
        "model_dir": str(model_dir),
        "predict_cfg": predict_cfg.to_dict(),
        "channel_axis": channel_axis,
        "source_path": image.path if isinstance(image, LazyFile) else None,
    }
    return Job(predict_job, params, arrays={"volume": image}, outputs=outputs, env=worker_env(), worker=worker)


def prediction_outputs(spatial_shape, predict_cfg, *, prob_classes=()) -> dict:
    """``{name: (shape, dtype)}`` of what a prediction writes: "labels", and "probs" when asked."""
    spatial_shape = tuple(spatial_shape)
    outputs = {"labels": (spatial_shape, np.dtype(np.uint32 if predict_cfg.output == "instances" else np.uint8))}
    if predict_cfg.return_probabilities:
        outputs["probs"] = (spatial_shape + tuple(prob_classes), np.dtype(np.float32))
    return outputs


def output_nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _check_disk_space(outputs: dict) -> None:
    """Outputs written to disk must fit there (uncompressed: the most they can take)."""
    need: dict[Path, int] = {}
    for spec in outputs.values():
        if isinstance(spec, ZarrOutput):
            folder = Path(spec.path).absolute().parent
            need[folder] = need.get(folder, 0) + output_nbytes(spec.shape, spec.dtype)
    for folder, nbytes in need.items():
        from napari_unet.io.disk import check_free_space

        check_free_space(folder, nbytes, "the prediction")


def _shape_of(image) -> tuple:
    if isinstance(image, LazyFile):
        from napari_unet.io.images import open_lazy  # reads the header only

        return tuple(open_lazy(image.path)[0].shape)
    return tuple(np.shape(image))


def _spatial_shape(shape, channel_axis) -> tuple:
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            raise ValueError(f"channel_axis {channel_axis} is out of range for an image of shape {shape}.")
        shape = shape[: channel_axis % len(shape)] + shape[channel_axis % len(shape) + 1:]
    if len(shape) not in (2, 3):
        hint = ("set channel_axis for a multichannel image" if channel_axis is None and len(shape) == 4
                else "pass one time point or position at a time")
        raise ValueError(
            f"Expected a 2-D or 3-D image (plus an optional channel axis), got spatial shape {shape}: {hint}."
        )
    return tuple(shape)


def _output_spec(shape, dtype, path, slice_axis):
    if path is None:
        return (shape, dtype)
    # One chunk per slice, so each finished slice is one write.
    chunks = tuple(1 if axis == slice_axis else n for axis, n in enumerate(shape))
    return ZarrOutput(str(path), shape, np.dtype(dtype).str, chunks)


def predict_job(arrays, outputs, stop_event, model_dir, predict_cfg, *, channel_axis=None, source_path=None):
    """Segment ``arrays["volume"]`` with a saved model into ``outputs``; yields one event per slice.

    ``source_path``: the file a lazy volume is read from, named in its read errors.
    """
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict.volume import bundle_predictor
    from napari_unet.io.tiff import NamedReads

    volume = arrays["volume"] if source_path is None else NamedReads(arrays["volume"], source_path)
    model, meta = load_model_cached(model_dir)
    predict = bundle_predictor(model, meta, cfg=PredictConfig.from_dict(predict_cfg), channel_axis=channel_axis,
                               out_labels=outputs["labels"], out_probs=outputs.get("probs"), stop_event=stop_event)
    for event in predict(volume):
        # The finished arrays are already in the outputs; never send them through the queue.
        yield dataclasses.replace(event, outputs=None) if isinstance(event, Done) else event

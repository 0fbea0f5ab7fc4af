"""Training a U-Net: ``start_training`` (parent) and ``train_job`` (worker)."""

from __future__ import annotations

import numpy as np

from napari_unet.runtime.engine import Job
from napari_unet.runtime.spawning import worker_env
from napari_unet.runtime.warm import WarmWorker

PREVIEW_REQUEST = "preview_request"  # the live input the parent writes the previewed slice into


def start_training(image, labels, *, model_cfg, train_cfg, out_dir, resume_from=None, overwrite=False,
                   extra_pairs=(), worker: WarmWorker | None = None, preview: int | None = None) -> Job:
    """A (not yet started) job that trains a U-Net and saves it to ``out_dir``.

    ``preview``: ask for live previews, starting with this request (``core.train.preview.encode_request``;
    ``NO_REQUEST`` for none yet); the caller changes it with ``job.live_input("preview_request")[0] = ...``.
    ``worker``: a warm worker to run on when it is free.

    ``model_cfg=None`` lets the trainer pick the class and channel counts the data needs.
    ``extra_pairs``: more ``(image, labels)`` pairs, each shared with the worker like the first.
    An ``out_dir`` that may not be replaced, or cannot be written, is refused here.
    """
    from napari_unet.core.bundle import check_model_name, check_target  # no Keras: only the folder is looked at

    check_model_name(out_dir)  # first: a name too long for the disk fails even to be looked up
    check_target(out_dir, overwrite)
    params = {
        "model_cfg": None if model_cfg is None else model_cfg.to_dict(),
        "train_cfg": train_cfg.to_dict(),
        "out_dir": str(out_dir),
        "resume_from": None if resume_from is None else str(resume_from),
        "overwrite": bool(overwrite),
        "extra_pairs": len(extra_pairs),
    }
    arrays = {"image": image, "labels": labels}
    for k, (extra_image, extra_labels) in enumerate(extra_pairs, start=1):
        arrays.update({f"image_{k}": extra_image, f"labels_{k}": extra_labels})
    live = ()
    if preview is not None:
        arrays[PREVIEW_REQUEST], live = np.array([preview], np.int64), (PREVIEW_REQUEST,)
    return Job(train_job, params, arrays=arrays, env=worker_env(), worker=worker, live_inputs=live)


def train_job(arrays, outputs, stop_event, model_cfg, train_cfg, out_dir, *, resume_from=None, overwrite=False,
              extra_pairs=0):
    """Train a U-Net on ``arrays["image"]`` / ``arrays["labels"]`` and ``extra_pairs`` more pairs
    (``image_1`` / ``labels_1``, ...); yields the trainer's events. With a live input
    ``arrays["preview_request"]`` (one int64 the parent writes), it previews that slice too."""
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.core.nn.hardware import configure_device
    from napari_unet.core.train.loop import train
    from napari_unet.core.train.preview import decode_request

    request = arrays.get(PREVIEW_REQUEST)

    train_cfg = TrainConfig.from_dict(train_cfg)
    configure_device(train_cfg)
    yield from train(
        arrays["image"],
        arrays["labels"],
        model_cfg=None if model_cfg is None else ModelConfig.from_dict(model_cfg),
        train_cfg=train_cfg,
        out_dir=out_dir,
        stop_event=stop_event,
        resume_from=resume_from,
        overwrite=overwrite,
        extra_pairs=[(arrays[f"image_{k}"], arrays[f"labels_{k}"]) for k in range(1, extra_pairs + 1)],
        preview_request=None if request is None else (lambda: decode_request(request[0])),
    )

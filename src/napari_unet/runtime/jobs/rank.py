"""Slices ranked by the model's uncertainty: ``start_ranking`` (parent) and ``rank_job`` (worker)."""

from __future__ import annotations

from napari_unet.core.bundle import read_bundle_meta  # JSON only: no Keras here
from napari_unet.runtime.engine import Job
from napari_unet.runtime.spawning import worker_env
from napari_unet.runtime.warm import WarmWorker
from napari_unet.runtime.worker import load_model_cached


def start_ranking(image, model_dir, *, slices, channel_axis=None, worker: WarmWorker | None = None) -> Job:
    """A (not yet started) job that ranks ``slices`` of ``image`` (axis 0) by the model's
    uncertainty: its "done" event has ``ranking``, ``[[slice, score], ...]``, most uncertain first."""
    read_bundle_meta(model_dir)
    params = {"model_dir": str(model_dir), "slices": [int(z) for z in slices], "channel_axis": channel_axis}
    return Job(rank_job, params, arrays={"volume": image}, env=worker_env(), worker=worker)


def rank_job(arrays, outputs, stop_event, model_dir, slices, *, channel_axis=None):
    """Rank ``slices`` of ``arrays["volume"]`` by the model's uncertainty (``core.predict.uncertainty``);
    yields ``events.Progress`` per slice, then ``events.Ranked``."""
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.predict.uncertainty import rank_slices
    from napari_unet.core.predict.volume import bundle_predictor

    model, meta = load_model_cached(model_dir)
    # The training image's intensity mapping: the slices ranked are a sample of that image.
    predict = bundle_predictor(model, meta, cfg=PredictConfig(normalize="model"), channel_axis=channel_axis,
                               stop_event=stop_event)
    yield from rank_slices(arrays["volume"], slices, predict=predict, n_classes=meta.model_cfg.n_classes)

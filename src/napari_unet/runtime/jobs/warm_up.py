"""The warm worker's first job (``warm.WarmWorker.prewarm``): Keras imported before it is needed."""

from __future__ import annotations


def warm_up_job(arrays, outputs, stop_event):
    """Import Keras (and its backend) now, so that the next job of this warm worker starts fast.

    GPUs get memory growth first, as training sets it, so the warm-up takes no GPU memory up front.
    """
    from napari_unet.core.config import TrainConfig
    from napari_unet.core.nn.hardware import configure_device

    configure_device(TrainConfig())
    return
    yield  # a generator that sends nothing: the worker adds the Done

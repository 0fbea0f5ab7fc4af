"""Keras model files: a U-Net's weights file, a whole ``.keras`` model, and the versions that wrote them.

Keras is imported inside the functions: ``core/bundle.py`` and ``core/bioimageio/package.py``
import this module in the napari process, which reads model folders without Keras.
"""

from __future__ import annotations

from napari_unet.core.config import ModelConfig

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def backend_versions() -> dict:
    """The versions of Keras and of its backend (``backend_version`` None when unknown)."""
    import keras

    backend = keras.backend.backend()
    try:
        backend_version = __import__(BACKEND_MODULES[backend]).__version__
    except (KeyError, ImportError, AttributeError):
        backend_version = None
    return {"keras": keras.__version__, "backend": backend, "backend_version": backend_version}


def save_weights(model, path) -> None:
    """Write ``model``'s weights to the file ``path`` (``.weights.h5``)."""
    model.save_weights(str(path))


def unet_with_weights(model_cfg: ModelConfig, path):
    """The U-Net of ``model_cfg`` holding the weights of the file ``path``."""
    from napari_unet.core.nn.model import build_unet

    model = build_unet(model_cfg)
    model.load_weights(str(path))
    return model


def load_whole_model(path):
    """A whole model saved as a ``.keras`` file, not compiled."""
    import keras

    return keras.saving.load_model(str(path), compile=False)

"""The 2-D U-Net (Keras 3), padded prediction and a FLOP count.

Only ``keras.layers`` and ``keras.ops`` are used, so the model runs on the
TensorFlow, JAX and PyTorch backends. Every layer has an explicit name: the
weights file is keyed by layer names, so a bundle loads into a model built in
any process, whatever other models were built there first.
"""

from __future__ import annotations

import keras
import numpy as np

from .config import ModelConfig
from .data import pad_to_multiple


def _conv_block(x, filters, cfg: ModelConfig, name: str):
    """Two 3x3 convolutions, each followed by (batch norm and) the activation."""
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not cfg.batch_norm,  # batch norm has its own offset
            kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        if cfg.batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation(cfg.activation, name=f"{name}_act{i}")(x)
    return x


def _upsample(x, filters, cfg: ModelConfig, name: str):
    if cfg.upsampling == "transpose":
        return keras.layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    return keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal", name=f"{name}_upconv")(x)


def build_unet(cfg: ModelConfig) -> keras.Model:
    """A U-Net with ``cfg.depth`` poolings; input ``(None, None, in_channels)``.

    Spatial sizes must be multiples of ``cfg.size_multiple`` (see
    ``predict_padded``). Filters double at each level from ``cfg.n_filters``.
    Dropout is applied at the bottleneck. The output is one sigmoid channel
    (``n_classes == 1``) or a softmax over ``n_classes``, always float32 so
    that mixed precision keeps the probabilities (and the loss) accurate.
    """
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"build_unet needs a ModelConfig, got {type(cfg).__name__}.")
    inputs = keras.Input((None, None, cfg.in_channels), name="image")
    x = inputs
    skips = []
    for level in range(cfg.depth):
        x = _conv_block(x, cfg.n_filters * 2**level, cfg, f"enc{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = _conv_block(x, cfg.n_filters * 2**cfg.depth, cfg, "bottleneck")
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(cfg.depth)):
        filters = cfg.n_filters * 2**level
        x = _upsample(x, filters, cfg, f"dec{level}")
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = _conv_block(x, filters, cfg, f"dec{level}")
    logits = keras.layers.Conv2D(cfg.n_classes, 1, name="logits")(x)
    activation = "sigmoid" if cfg.n_classes == 1 else "softmax"
    outputs = keras.layers.Activation(activation, dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="unet")


def predict_padded(model, x, multiple: int, batch_size: int = 8) -> np.ndarray:
    """Predict a batch ``(B, H, W, C)`` of any spatial size.

    Each image is mirror-padded at the bottom/right up to a multiple of
    ``multiple`` and the output cropped back to ``(B, H, W, K)``.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"predict_padded needs a batch (B, H, W, C), got shape {x.shape}; add a batch axis.")
    padded, crop = pad_to_multiple(x, multiple, axes=(1, 2))
    parts = [
        np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(padded[i : i + batch_size])))
        for i in range(0, len(padded), max(1, int(batch_size)))
    ]
    if not parts:
        return np.zeros(x.shape[:3] + (model.output_shape[-1],), np.float32)
    return np.concatenate(parts)[crop].astype(np.float32, copy=False)


def count_conv_flops(model, height: int, width: int) -> float:
    """Forward FLOPs of the convolutions for one ``height x width`` input.

    Conv2D: ``2 * k * k * Cin * Cout * H_out * W_out``. Conv2DTranspose scatters
    each input pixel through the kernel, so it is counted per input pixel:
    ``2 * k * k * Cin * Cout * H_in * W_in``. Other layers are ignored.
    """
    sized = keras.models.clone_model(model, input_tensors=keras.Input((height, width, model.input_shape[-1])))
    flops = 0.0
    for layer in sized.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            cin, cout = layer.input.shape[-1], layer.filters
            ref = layer.input if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output
            h, w = ref.shape[1], ref.shape[2]
            flops += 2.0 * kh * kw * cin * cout * h * w
    return flops

"""The 2-D U-Net (Keras 3).

Only ``keras.layers`` and ``keras.ops`` are used, so the model runs on the
TensorFlow, JAX and PyTorch backends. Every layer has an explicit name: the
weights file is keyed by layer names, so a bundle loads into a model built in
any process, whatever other models were built there first.
"""

from __future__ import annotations

import keras

from napari_unet.core.config import ModelConfig


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

    Spatial sizes must be multiples of ``cfg.size_multiple`` (prediction pads
    its tiles to them). Filters double at each level from ``cfg.n_filters``.
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

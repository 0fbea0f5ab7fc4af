import keras
import numpy as np
import pytest

from napari_unet.core.config import ModelConfig
from napari_unet.core.nn.model import build_unet

TINY = ModelConfig(n_filters=4, depth=2)


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_sigmoid_unet_maps_images_to_probabilities(upsampling):
    model = build_unet(TINY.replace(upsampling=upsampling, depth=3))
    x = np.random.default_rng(0).normal(size=(2, 40, 24, 1)).astype(np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (2, 40, 24, 1)
    assert ((y > 0) & (y < 1)).all()
    kinds = layer_types(model)
    assert kinds.count("MaxPooling2D") == 3
    assert kinds.count("Concatenate") == 3
    assert ("Conv2DTranspose" in kinds) == (upsampling == "transpose")
    assert ("UpSampling2D" in kinds) == (upsampling == "bilinear")


def test_softmax_unet_with_two_channels_sums_to_one():
    model = build_unet(TINY.replace(in_channels=2, n_classes=4))
    y = keras.ops.convert_to_numpy(model(np.ones((1, 16, 16, 2), np.float32)))
    assert y.shape == (1, 16, 16, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_batch_norm_dropout_and_activation_follow_the_config():
    plain = build_unet(TINY.replace(batch_norm=False, activation="elu"))
    assert "BatchNormalization" not in layer_types(plain) and "Dropout" not in layer_types(plain)
    assert {layer.get_config()["activation"] for layer in plain.layers if layer.name.endswith("_act1")} == {"elu"}
    regular = build_unet(TINY.replace(dropout=0.3))
    assert layer_types(regular).count("BatchNormalization") == 2 * (2 * 2 + 1)
    dropout = [layer for layer in regular.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropout) == 1 and dropout[0].rate == 0.3


def test_filters_double_with_depth():
    model = build_unet(ModelConfig(n_filters=8, depth=3))
    assert model.get_layer("enc0_conv1").filters == 8
    assert model.get_layer("enc2_conv1").filters == 32
    assert model.get_layer("bottleneck_conv2").filters == 64
    assert model.get_layer("dec0_conv2").filters == 8


def test_mixed_precision_keeps_float32_probabilities():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_unet(TINY)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("enc0_conv1").compute_dtype == "float16"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert keras.ops.convert_to_numpy(model(np.ones((1, 8, 8, 1), np.float32))).dtype == np.float32


def test_build_unet_needs_a_model_config():
    with pytest.raises(ValueError, match="ModelConfig"):
        build_unet({"depth": 2})

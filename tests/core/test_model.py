import keras
import numpy as np
import pytest

from napari_unet.core.config import ModelConfig
from napari_unet.core.model import build_unet, count_conv_flops, predict_padded

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


def test_predict_padded_handles_odd_sizes_and_crops_back():
    model = build_unet(TINY.replace(n_classes=3))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 37, 29, 1)).astype(np.float32)
    y = predict_padded(model, x, TINY.size_multiple, batch_size=2)
    assert y.shape == (3, 37, 29, 3) and y.dtype == np.float32
    padded = np.pad(x, [(0, 0), (0, 3), (0, 3), (0, 0)], mode="reflect")  # to 40 x 32
    expected = keras.ops.convert_to_numpy(model.predict_on_batch(padded))[:, :37, :29]
    # GPU convolutions (TF32, kernels chosen by batch size) differ by ~1e-4; a wrong pad or
    # crop differs by ~1e-1.
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-3)
    # A size that is already a multiple is not padded at all.
    ok = x[:, :32, :28]
    np.testing.assert_allclose(
        predict_padded(model, ok, 4), keras.ops.convert_to_numpy(model.predict_on_batch(ok)), rtol=1e-3, atol=1e-3
    )


def test_predict_padded_rejects_unbatched_input():
    with pytest.raises(ValueError, match="batch"):
        predict_padded(build_unet(TINY), np.zeros((16, 16, 1)), 4)


def test_conv_flops_match_a_hand_count():
    model = build_unet(TINY.replace(batch_norm=False))
    h = w = 32

    def conv(cin, cout, size, k=3):
        return 2 * k * k * cin * cout * size * size

    expected = (
        conv(1, 4, 32) + conv(4, 4, 32)  # level 0
        + conv(4, 8, 16) + conv(8, 8, 16)  # level 1
        + conv(8, 16, 8) + conv(16, 16, 8)  # bottleneck
        + conv(16, 8, 8, k=2) + conv(16, 8, 16) + conv(8, 8, 16)  # up to level 1 (per input pixel)
        + conv(8, 4, 16, k=2) + conv(8, 4, 32) + conv(4, 4, 32)  # up to level 0
        + conv(4, 1, 32, k=1)  # output
    )
    assert count_conv_flops(model, h, w) == expected
    assert count_conv_flops(model, 64, 64) == 4 * expected


def test_build_unet_needs_a_model_config():
    with pytest.raises(ValueError, match="ModelConfig"):
        build_unet({"depth": 2})

"""Keras for the bioimage.io export: the U-Net wrapped to take and give channels first, and that
model as a TensorFlow SavedModel. Keras is imported inside the functions."""

from __future__ import annotations

TENSORFLOW = "tensorflow"


def channels_first_model(model, in_channels: int, inner_name: str):
    """The U-Net taking and giving ``(batch, channel, y, x)``; ``model`` is its layer ``inner_name``."""
    import keras

    inputs = keras.Input((in_channels, None, None), name="input")
    x = keras.layers.Permute((2, 3, 1), name="to_channels_last")(inputs)
    if model.name != inner_name:  # a reader finds the channels-last model by this name
        model = keras.Model(model.inputs, model.outputs, name=inner_name)
    x = model(x)
    outputs = keras.layers.Permute((3, 1, 2), name="to_channels_first", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="napari_unet_bcyx")


def write_saved_model(wrapped, in_channels: int, folder) -> bool:
    """Write ``wrapped`` as a TensorFlow SavedModel folder whose ``serve`` endpoint returns
    ``{"probabilities": ...}``; False, writing nothing, off the TensorFlow backend."""
    import keras

    if keras.backend.backend() != TENSORFLOW:
        return False
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(wrapped)
    archive.add_endpoint(
        name="serve", fn=lambda x: {"probabilities": wrapped(x, training=False)},
        input_signature=[tf.TensorSpec(shape=(None, in_channels, None, None), dtype=tf.float32)])
    archive.write_out(str(folder), verbose=False)
    return True

"""Keras work that runs in the benchmarks' spawned helper process (see ``_common.keras_helper``).

Each function imports Keras in its body, so importing this module stays light.
"""

from __future__ import annotations

import os
import time

import numpy as np


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def conv_flops(model_cfg: dict, height: int, width: int) -> dict:
    """Forward convolution FLOPs of one ``height x width`` input, and the parameter count."""
    _keras()
    from napari_unet.core.config import ModelConfig
    from napari_unet.core.nn.model import build_unet

    model = build_unet(ModelConfig.from_dict(model_cfg))
    return {"forward_flops": count_conv_flops(model, height, width), "params": int(model.count_params())}


def raw_predict_speed(model_dir: str, volume, batch_size: int, repeats: int = 2) -> dict:
    """Slices/s of the bare ``model.predict_on_batch`` on the normalised ``volume`` (Z, Y, X).

    The first pass makes the same calls as the engine's steady state, from the same state:
    a freshly loaded model runs the first batch (which builds the TensorFlow graph, timed
    apart), then the remaining batches are timed. Further passes show the warmed-up rate
    (TensorFlow's CPU kernels keep speeding up over the first few calls).
    """
    keras = _keras()
    from napari_unet.core.bundle import load_bundle
    from napari_unet.core.data import normalize

    start = time.perf_counter()
    model, meta = load_bundle(model_dir)
    load_s = time.perf_counter() - start
    x = normalize(np.asarray(volume)[..., np.newaxis], meta.normalization.model_dump())
    batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    run = lambda b: keras.ops.convert_to_numpy(model.predict_on_batch(b))  # noqa: E731

    start = time.perf_counter()
    run(batches[0])
    first_batch_s = time.perf_counter() - start
    rest = batches[1:] or batches
    n_rest = sum(len(b) for b in rest)
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in rest:
            run(b)
        passes.append(time.perf_counter() - start)
    return {
        "load_s": load_s,
        "first_batch_s": first_batch_s,
        "slices_per_s": n_rest / passes[0],  # matches the engine's steady state
        "warm_slices_per_s": n_rest / min(passes),
        "n_slices_timed": n_rest,
        "batch_size": batch_size,
    }


def score_bundle(model_dir: str, volume, truth_cells, predict_cfg: dict) -> dict:
    """Membrane scores of ``model_dir`` on ``volume`` (Z, Y, X), whose cell probabilities
    are resized to the shape of ``truth_cells`` before thresholding."""
    keras = _keras()
    from napari_unet.core.bundle import load_bundle
    from napari_unet.core.config import PredictConfig
    from napari_unet.core.metrics import evaluate_membrane
    from napari_unet.core.predict.volume import predict_volume

    from _common import cell_mask

    model, meta = load_bundle(model_dir)
    cfg = PredictConfig.from_dict(predict_cfg).replace(return_probabilities=True)
    probs = np.zeros(np.shape(volume), np.float32)
    start = time.perf_counter()
    for _ in predict_volume(
        volume,
        lambda b: keras.ops.convert_to_numpy(model.predict_on_batch(b)),
        cfg=cfg,
        n_classes=meta.model_cfg.n_classes,
        size_multiple=meta.model_cfg.size_multiple,
        normalization=meta.normalization.model_dump(),
        out_probs=probs,
    ):
        pass
    seconds = time.perf_counter() - start
    truth_cells = np.asarray(truth_cells)
    scores = evaluate_membrane(cell_mask(probs, truth_cells.shape[1:], cfg.threshold), truth_cells)
    return dict(scores, predict_s=seconds)


def make_tiny_bundle(out_dir: str, seed: int = 0) -> str:
    """A real but tiny model bundle (4 base filters, depth 2, no batch norm), trained for a
    few steps: cheap per pixel, so that reading and writing the volume dominate."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (2, 64, 64), dtype=np.uint8)
    return _train_tiny(image, (image > 127).astype(np.uint8), out_dir, seed, instances=False)


def _train_tiny(image, labels, out_dir: str, seed: int, instances: bool) -> str:
    """A few steps of a 4-filter, depth-2 U-Net without batch norm; returns the model folder."""
    _keras()
    from napari_unet.core import events
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.core.train.loop import train

    model_cfg = ModelConfig(n_classes=3 if instances else 1, n_filters=4, depth=2, batch_norm=False)
    train_cfg = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, patch_size=32, instances=instances,
                            val_fraction=0.0, augment=False, seed=seed)
    final = None
    for event in train(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=out_dir, overwrite=True):
        final = event
    if not isinstance(final, events.Done):
        raise RuntimeError(f"Training the tiny model did not finish: {final}")
    return final.training.model_dir


def count_conv_flops(model, height: int, width: int) -> float:
    """Forward FLOPs of the convolutions for one ``height x width`` input.

    Conv2D: ``2 * k * k * Cin * Cout * H_out * W_out``. Conv2DTranspose scatters
    each input pixel through the kernel, so it is counted per input pixel:
    ``2 * k * k * Cin * Cout * H_in * W_in``. Other layers are ignored.
    """
    keras = _keras()
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


def make_tiny_instance_bundle(out_dir: str, seed: int = 0) -> str:
    """As ``make_tiny_bundle``, but an instance model (background, interior, boundary),
    trained on the ids of smooth blobs: what 3-D object output is made for."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((2, 64, 64), np.float32), (0, 3, 3))
    image = ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
    labels = np.stack([ndi.label(plane > np.median(plane))[0] for plane in field]).astype(np.uint16)
    return _train_tiny(image, labels, out_dir, seed, instances=True)


def policy_predict_speed(policy: str, batch: int, size: int, repeats: int = 3) -> dict:
    """Patches/s of ``model.predict_on_batch`` for the default U-Net built under the dtype
    ``policy`` ("float32", "mixed_bfloat16"), on ``batch`` random ``size`` x ``size`` tiles: the
    first call (tracing) timed apart, then the best of ``repeats`` calls."""
    keras = _keras()
    from napari_unet.core.config import ModelConfig
    from napari_unet.core.nn.model import build_unet

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_unet(ModelConfig())
    finally:
        keras.config.set_dtype_policy(previous)
    x = np.random.default_rng(0).normal(0, 1, (batch, size, size, 1)).astype(np.float32)
    start = time.perf_counter()
    keras.ops.convert_to_numpy(model.predict_on_batch(x))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(model.predict_on_batch(x))
        times.append(time.perf_counter() - start)
    return {"policy": policy, "batch": batch, "size": size, "first_call_s": first,
            "patches_per_s": batch / min(times), "backend": keras.backend.backend()}

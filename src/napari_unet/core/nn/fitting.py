"""Keras for the training loop: the dtype policy, the seed, compiling a model (or reusing the last
one compiled), prediction in batches, and backend values read back as numbers.

Keras is imported inside the functions, so that the modules calling these load without it.
"""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def dtype_policy(policy: str):
    """Keras' global dtype ``policy`` ("float32", "mixed_float16", "mixed_bfloat16") inside,
    the previous one again after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and the backend's random numbers."""
    import keras

    keras.utils.set_random_seed(seed)


def jit_compile_of(xla: str):
    """Keras' ``compile(jit_compile=...)`` for ``TrainConfig.xla``. On JAX it stays Keras' "auto":
    JAX always compiles the step, and ``False`` there would run it op by op."""
    import keras

    if keras.backend.backend() == "jax":
        return "auto"
    return {"auto": "auto", "on": True, "off": False}[xla]


# The last compiled model and its optimizer's starting state, by what its train step depends on.
# A warm worker's next training of the same architecture reuses it: tracing the train step
# takes seconds on a CPU, resetting the weights and the optimizer a fraction of one.
_COMPILED: dict = {}


def compile_or_reuse(model, key, loss_fn, learning_rate: float, xla: str):
    """``model`` compiled (Adam at ``learning_rate``); or, when the last model compiled had the same
    ``key``, that one given ``model``'s weights and its optimizer's starting state. A ``key`` of
    None compiles ``model`` and keeps nothing for reuse."""
    if key is not None and key in _COMPILED:
        reused, optimizer_start = _COMPILED[key]
        reused.set_weights(model.get_weights())
        for variable, value in zip(reused.optimizer.variables, optimizer_start):
            variable.assign(value)
        return reused
    compile_model(model, loss_fn, learning_rate, xla)
    _COMPILED.clear()
    if key is not None:
        _COMPILED[key] = (model, [to_numpy(v) for v in model.optimizer.variables])
    return model


def compile_model(model, loss_fn, learning_rate: float, xla: str) -> None:
    """Compile ``model`` (Adam at ``learning_rate``) without keeping it for reuse."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss_fn, jit_compile=jit_compile_of(xla))
    model.optimizer.build(model.trainable_variables)  # its slots now, to record their start


def to_numpy(value) -> np.ndarray:
    """A backend tensor (or variable) as a NumPy array."""
    import keras

    return keras.ops.convert_to_numpy(value)


def to_float(value) -> float:
    """A backend scalar (a loss, a metric, a learning rate) as a Python float."""
    return float(to_numpy(value))


def learning_rate_of(model) -> float:
    """The learning rate the optimizer of a compiled ``model`` uses now."""
    return to_float(model.optimizer.learning_rate)


def predict_on_batch(model, x) -> np.ndarray:
    """The model's output for one batch ``x``, as a NumPy array."""
    return to_numpy(model.predict_on_batch(x))


def predict_in_batches(model, x, batch_size: int) -> np.ndarray:
    """The model's output for ``x``, ``batch_size`` samples at a time, as one float32 array."""
    # Under a MirroredStrategy every replica predicts the whole (undistributed) batch and the
    # outputs come back concatenated: the first ``len(chunk)`` rows are the answer.
    parts = [
        predict_on_batch(model, x[i : i + batch_size])[: len(x[i : i + batch_size])]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)

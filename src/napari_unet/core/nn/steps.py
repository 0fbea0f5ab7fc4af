"""Training steps whose loss stays on the device until progress needs it.

``model.train_on_batch`` converts its logs to Python floats, which makes the host wait for the
device to finish every step before it can queue the next one. ``train_step_loss`` runs the same
Keras step (same optimizer update, same metrics reset) but returns the loss as the backend's
tensor; ``StepLosses`` keeps an epoch's losses that way and reads them back, all pending at once,
only when a progress event or the epoch's end needs them. The values read are the ones
``train_on_batch`` would have returned, so the running mean and the events are unchanged.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def _as_is(logs):
    return logs


def _trainer_module():
    """The Keras backend's trainer module, where ``train_on_batch`` looks up ``pythonify_logs``;
    None when this Keras has no such name (then the loss is read back at every step, as before)."""
    import keras

    module = sys.modules.get(f"keras.src.backend.{keras.backend.backend()}.trainer")
    return module if module is not None and hasattr(module, "pythonify_logs") else None


def train_step_loss(model, x, y):
    """One ``train_on_batch`` step; returns its loss unread (a backend tensor, or a float when the
    Keras in use offers no way to leave it on the device)."""
    module = _trainer_module()
    if module is None:
        return float(model.train_on_batch(x, y))
    convert = module.pythonify_logs
    module.pythonify_logs = _as_is
    try:
        logs = model.train_on_batch(x, y, return_dict=True)
    finally:
        module.pythonify_logs = convert
    return logs["loss"]


def distribute(strategy, array):
    """``array`` (a batch) split along its first axis over the replicas of a ``tf.distribute``
    strategy, in order (replica k gets the k-th part)."""
    import tensorflow as tf

    parts = np.array_split(array, strategy.num_replicas_in_sync)
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(parts[context.replica_id_in_sync_group]))


class StepLosses:
    """One epoch's per-step losses: tensors until ``read``, then Python floats."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._pending: list = []

    @property
    def count(self) -> int:
        return len(self.values) + len(self._pending)

    def add(self, loss) -> None:
        self._pending.append(loss)

    def read(self, epoch: int) -> list[float]:
        """Every loss of the epoch so far as floats (one device read for all pending ones).

        Raises ``ValueError`` naming the first batch whose loss is not finite."""
        if self._pending:
            self.values.extend(_to_floats(self._pending))
            self._pending = []
        for batch, loss in enumerate(self.values, start=1):
            if not math.isfinite(loss):
                raise ValueError(
                    f"Training diverged: the loss is {loss} at epoch {epoch}, batch {batch}. "
                    "Lower the learning rate (e.g. to a tenth).")
        return self.values


def _to_floats(losses: list) -> list[float]:
    if all(isinstance(v, float) for v in losses):
        return list(losses)
    import keras

    stacked = keras.ops.stack([keras.ops.cast(v, "float32") for v in losses])
    return [float(v) for v in np.asarray(keras.ops.convert_to_numpy(stacked))]

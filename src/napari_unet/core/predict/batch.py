"""Prediction, batching: tiles of one or several slices go through the model in batches, and
come back as whole slices of class probabilities, in order.

Another executor plugs in by replacing ``predict_batch`` (a batch of tiles to probabilities).
"""

from __future__ import annotations

import numpy as np

from napari_unet.core.predict.tiling import pad_for_tiles, stitch


def _dihedral(x, k):
    """The k-th of the 8 flips/rotations of a batch (N, H, W, C), k in 0..7."""
    return np.rot90(x[:, :, ::-1] if k >= 4 else x, k % 4, axes=(1, 2))


def _undo_dihedral(y, k):
    y = np.rot90(y, -(k % 4), axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


class BatchPredictor:
    def __init__(self, predict_fn, n_classes, tta):
        self.predict_fn = predict_fn
        self.n_classes = n_classes
        self.tta = tta

    def _call(self, x):
        y = np.asarray(self.predict_fn(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)
        expected = x.shape[:3] + (self.n_classes,)
        if y.shape != expected:
            raise ValueError(
                f"The model returned shape {y.shape} for a batch of shape {x.shape}; expected {expected}: "
                f"check that n_classes ({self.n_classes}) and size_multiple match the model."
            )
        return y

    def __call__(self, x):
        if not self.tta:
            return self._call(x)
        total = np.array(self._call(x))  # a copy: a model may hand back its input
        for k in range(1, 8):
            total += _undo_dihedral(self._call(_dihedral(x, k)), k)
        return total / 8


def probability_slices(axis, n_slices, tiles, n_classes, reader, predict_batch, batch_size, stop_event):
    """Yield ``(i, probs (H, W, K))`` for each slice in order, batching tiles of
    one or several slices; yield ``(None, None)`` and return when stopped."""
    pending = {}  # slice index -> [probabilities, tiles still to predict]
    batch = []  # (slice index, tile, tile pixels)
    next_out = 0

    def run_batch():
        nonlocal next_out
        preds = predict_batch(np.stack([pixels for _, _, pixels in batch]))
        for (i, tile, _), pred in zip(batch, preds):
            stitch(pending[i][0], tile, pred)
            pending[i][1] -= 1
        batch.clear()
        finished = []
        while next_out in pending and pending[next_out][1] == 0:
            finished.append((next_out, pending.pop(next_out)[0]))
            next_out += 1
        return finished

    for i in range(n_slices):
        image = reader(axis, i)
        pending[i] = [np.empty(image.shape[:2] + (n_classes,), np.float32), len(tiles)]
        image = pad_for_tiles(image, tiles)
        for tile in tiles:
            batch.append((i, tile, image[tile.source]))
            if len(batch) == batch_size or (i == n_slices - 1 and tile is tiles[-1]):
                if stop_event is not None and stop_event.is_set():
                    yield None, None
                    return
                yield from run_batch()

"""The tiny test data most tests use: bright discs on a dark noisy background (``disc_volume``),
an RGB pair (``rgb_pair``) and a model folder with no weights (``model_folder_without_weights``).

Importable from every test folder (tests/conftest.py puts tests/ on sys.path): ``from volumes import
disc_volume``. Volumes whose geometry is the point of a test (a ball crossing block faces, touching
discs that grow with z) are written out where they are used.
"""

from __future__ import annotations

import json

import numpy as np

# (y, x, squared radius) of each disc, the same on every slice.
TWO_DISCS = ((20, 24, 100), (36, 12, 40))  # a large disc and a small one, apart
ONE_DISC = ((20, 24, 120),)


def disc_volume(shape=(6, 48, 48), seed=0, annotated=(1, 4), discs=TWO_DISCS, ids=False):
    """(image, labels, truth), all uint8 of ``shape`` (Z, Y, X).

    ``truth`` is 1 inside the ``discs`` (with ``ids``: the disc's number, 1, 2, ... in their
    order), 0 elsewhere; ``image`` is 160 on the discs and 40 around them, plus normal noise of
    sigma 10 drawn from ``np.random.default_rng(seed)``, clipped to 0..255; ``labels`` is
    ``truth`` on the ``annotated`` slices and 0 on the others.
    """
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    truth = np.zeros(shape, np.uint8)
    for number, (cy, cx, r2) in enumerate(discs, 1):
        truth[((y - cy) ** 2 + (x - cx) ** 2) < r2] = number if ids else 1
    image = ((truth > 0) * 120 + 40 + rng.normal(0, 10, shape)).clip(0, 255).astype(np.uint8)
    labels = np.zeros_like(truth)
    labels[list(annotated)] = truth[list(annotated)]
    return image, labels, truth


def rgb_pair(shape):
    """An RGB image of ``shape`` (Y, X) or (Z, Y, X) and labels 1 and 4 on it: 3 channels, 5 outputs."""
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    labels = np.zeros(shape, np.uint8)
    labels[..., :8, :] = 1
    labels[..., 8:16, :] = 4
    return image, labels


def model_folder_without_weights(folder):
    """A model folder as far as the parent process and the docks read it: bundle.json only (a
    job would need weights)."""
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({
        "format_version": 1, "model_config": {"in_channels": 1, "n_classes": 1},
        "normalization": {"low": [0.0], "high": [255.0]}}))
    return folder

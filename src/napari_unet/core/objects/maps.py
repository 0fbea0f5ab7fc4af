"""A model's probabilities ``(..., K)`` as the two maps the object step reads, foreground and
interior probability ``(..., 2)``, whatever the kind of model. numpy only."""

from __future__ import annotations

import numpy as np

from napari_unet.core.objects.checks import check_channels, check_choice, check_threshold

MODEL_KINDS = ("boundary", "binary", "classes")


def object_maps(probs, kind: str, *, threshold: float = 0.5) -> np.ndarray:
    """Foreground and interior probability maps ``(..., 2)`` float32 from ``probs (..., K)``.

    - ``"boundary"``: K == 3 softmax (background, interior, boundary);
      foreground = interior + boundary, interior = interior.
    - ``"binary"``: K == 1 sigmoid; foreground = interior = the probability.
    - ``"classes"``: K >= 2 softmax, class 0 = background;
      foreground = interior = 1 - background.

    ``threshold`` is only checked here; it is applied by ``seeded_watershed``.
    """
    check_choice("kind", kind, MODEL_KINDS)
    check_threshold(threshold)
    probs = np.asarray(probs, dtype=np.float32)
    n_channels = probs.shape[-1] if probs.ndim else 0
    if kind == "boundary":
        check_channels(kind, probs, n_channels == 3, "3 channels (background, interior, boundary)")
        foreground, interior = probs[..., 1] + probs[..., 2], probs[..., 1]
    elif kind == "binary":
        check_channels(kind, probs, n_channels == 1, "1 channel (a sigmoid)")
        foreground = interior = probs[..., 0]
    else:
        check_channels(kind, probs, n_channels >= 2, "at least 2 channels (background first)")
        foreground = interior = 1.0 - probs[..., 0]
    # Softmax sums can leave [0, 1] by a rounding error.
    return np.clip(np.stack([foreground, interior], axis=-1), 0.0, 1.0).astype(np.float32)

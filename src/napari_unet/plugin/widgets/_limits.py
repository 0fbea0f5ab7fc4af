"""Spin box ranges read from the configs, so a dock never repeats (and drifts from) a bound."""

from __future__ import annotations

import math

from napari_unet.core.config import limits


def spin_range(config_cls, name: str) -> dict:
    """``min=`` and ``max=`` for a spin box that edits the config field ``name``."""
    lo, hi = limits(config_cls, name)
    return {"min": lo, "max": hi}


def decimals_to_show(smallest: float) -> int:
    """Decimals a float spin box needs to show ``smallest`` (> 0): Qt rounds its bounds to them."""
    return max(0, -math.floor(math.log10(smallest)))

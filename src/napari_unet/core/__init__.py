"""Numpy + Keras core, usable without Qt or napari.

Submodules import Keras only where they need it, so ``core.config``,
``core.data`` and ``core.metrics`` stay cheap to import.
"""

"""Numpy + Keras core, usable without Qt or napari.

Shared records and rules live here (config, bundle, events, data, metrics); the network is in
``nn`` (the only place that imports Keras), then ``train``, ``predict``, ``objects`` and
``bioimageio``.
"""

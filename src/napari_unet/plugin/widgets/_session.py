"""Models trained in this napari session, so the Segment widget can offer them."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class TrainedModels:
    changed = Signal()

    def __init__(self):
        self._paths: list[Path] = []

    def add(self, path) -> None:
        path = Path(path)
        if path in self._paths:
            self._paths.remove(path)
        self._paths.insert(0, path)
        self.changed.emit()

    @property
    def paths(self) -> list[Path]:
        return [p for p in self._paths if p.exists()]


TRAINED_MODELS = TrainedModels()

"""Models trained in this napari session, so both docks can offer them (fine-tuned ones too)."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class TrainedModels:
    changed = Signal()

    def __init__(self):
        self._paths: list[Path] = []
        self._sources: dict[Path, Path] = {}  # a fine-tuned model -> the model it continued

    def add(self, path, fine_tuned_from=None) -> None:
        path = Path(path)
        if path in self._paths:
            self._paths.remove(path)
        self._paths.insert(0, path)
        if fine_tuned_from is not None:
            self._sources[path] = Path(fine_tuned_from)
        self.changed.emit()

    @property
    def paths(self) -> list[Path]:
        return [p for p in self._paths if p.exists()]

    def describe(self, path) -> str:
        """"unet-2 (this session, fine-tuned from unet)": how the docks list a model."""
        path = Path(path)
        source = self._sources.get(path)
        return f"{path.name} (this session" + (f", fine-tuned from {source.name})" if source else ")")

    def choices(self) -> list[tuple[str, str]]:
        """``(label, folder)`` of every model trained in this session, newest first."""
        return [(self.describe(p), str(p)) for p in self.paths]


TRAINED_MODELS = TrainedModels()

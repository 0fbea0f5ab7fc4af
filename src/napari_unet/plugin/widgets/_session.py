"""What the docks of one napari session share: the models trained in it (both docks offer
them, fine-tuned ones too) and the warm worker their jobs run on."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import PushButton
from napari.utils.notifications import show_info, show_warning
from psygnal import Signal

from napari_unet.runtime.engine import WarmWorker
from napari_unet.runtime.spawning import worker_env


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
        """"unet-2 (this session, fine-tuned from unet)": how the docks list a model; a folder name
        that two of this session's models share comes with its parent ("a/unet"), since a
        choice box keeps one entry per label."""
        path = Path(path)
        source = self._sources.get(path)
        shared = sum(p.name == path.name for p in self.paths) > 1
        name = f"{path.parent.name}/{path.name}" if shared else path.name
        return f"{name} (this session" + (f", fine-tuned from {source.name})" if source else ")")

    def choices(self) -> list[tuple[str, str]]:
        """``(label, folder)`` of every model trained in this session, newest first."""
        return [(self.describe(p), str(p)) for p in self.paths]


TRAINED_MODELS = TrainedModels()


# One warm worker per napari session: a second job starts in a second, not after a new
# TensorFlow import. Jobs started while it is busy get a process of their own.
WARM_WORKER = WarmWorker()
PREWARM = True  # start it (and import Keras in it) as soon as a dock opens; tests turn it off
_open_docks = 0


def use_warm_worker(dock_native) -> WarmWorker:
    """Count a dock as a user of the session's worker (warming it up); the worker ends once
    the last dock is closed, or at exit, after an idle timeout and on Release."""
    global _open_docks
    _open_docks += 1
    dock_native.destroyed.connect(_dock_closed)
    if PREWARM:
        WARM_WORKER.prewarm(worker_env())  # in a thread: the dock opens at once
    return WARM_WORKER


def _dock_closed(*_):
    global _open_docks
    _open_docks -= 1
    if _open_docks <= 0:
        WARM_WORKER.release()


def release_button() -> PushButton:
    """"Release worker": end the idle worker now, handing back its (GPU) memory."""
    button = PushButton(text="Release worker (free GPU memory)")
    button.changed.connect(release_worker)
    return button


def release_worker(_value=None) -> None:
    if WARM_WORKER.busy:
        show_warning("A job is running in the worker; stop it first, then release it.")
    elif WARM_WORKER.release():
        show_info("The worker was ended and its memory handed back; the next job starts a new one.")
    else:
        show_info("No worker is running; nothing to release.")

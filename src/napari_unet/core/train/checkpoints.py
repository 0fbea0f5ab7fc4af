"""The best epoch of a run and where it is written: its weights are kept in memory, written when
training ends and, on improvement, when the last write is ``CHECKPOINT_INTERVAL_S`` old; a save
its disk refuses goes to the temporary folder instead.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from napari_unet.core.bundle import save_bundle

CHECKPOINT_INTERVAL_S = 60.0


@dataclass
class Best:
    """The best epoch so far and its weights (kept in memory until written)."""

    score: tuple | None = None
    epoch: int | None = None
    weights: list | None = None
    val_loss: float | None = None
    val_dice: float | None = None
    val_iou: float | None = None


@dataclass
class Saving:
    """Where the model is written, and when it last was."""

    folder: Path
    overwrite: bool  # False until the first write: from then on the folder is ours
    at: float
    note: str | None = None  # the first rescued save's explanation for the user

    def checkpoint_due(self) -> bool:
        """Whether the last write is old enough for an improvement to be written now."""
        return time.monotonic() - self.at >= CHECKPOINT_INTERVAL_S

    def write(self, model, meta) -> None:
        """Save the bundle (or rescue it, ``save_or_rescue``); from then on the folder is ours."""
        self.folder, note = save_or_rescue(self.folder, model, meta, overwrite=self.overwrite)
        self.overwrite, self.at = True, time.monotonic()
        self.note = self.note or note


@contextlib.contextmanager
def weights_set(model, weights):
    """``model`` holds ``weights`` inside, and its own weights again after."""
    current = model.get_weights()
    model.set_weights(weights)
    try:
        yield
    finally:
        model.set_weights(current)


def rescue_folder(out_dir) -> Path:
    """Where a model goes when its own folder cannot take it: the temporary folder."""
    import tempfile

    # The name cut to 64 characters: a rescue must fit where the asked name did not.
    return Path(tempfile.gettempdir()) / f"{Path(out_dir).name[:64]}-rescued-{time.strftime('%Y%m%d-%H%M%S')}"


def save_or_rescue(out_dir, model, meta, overwrite: bool) -> tuple[Path, str | None]:
    """Save the bundle; if its disk refuses (full, read-only), save it to ``rescue_folder``
    instead, so hours of training are not lost. Returns ``(folder, note for the user or None)``."""
    try:
        save_bundle(out_dir, model, meta=meta, overwrite=overwrite)
        return Path(out_dir), None
    except OSError as exc:
        rescue = rescue_folder(out_dir)
        save_bundle(rescue, model, meta=meta)  # a second failure is reported as the job's error
        return rescue, (f"The model could not be saved to {out_dir} ({exc.strerror or exc}); "
                        f"it was saved to {rescue} instead: move it where you want it.")


def nothing_saved_message(out_dir, replacing: bool) -> str:
    """What a run that ended before its first epoch tells the user: nothing was written."""
    kept = f" {out_dir} was left as it was." if replacing and Path(out_dir).exists() else ""
    return f"Training ended before the first epoch finished: no model was saved.{kept}"

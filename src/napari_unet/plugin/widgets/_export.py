"""The Train dock's *Export…* button: the trained model as a bioimage.io package, made in the worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import PushButton
from napari.utils.notifications import show_error, show_info

from napari_unet.core import events
from napari_unet.core.bundle import BundleError
from napari_unet.plugin.widgets._job_poller import JobPoller
from napari_unet.plugin.widgets._layers import layer_array
from napari_unet.runtime import present
from napari_unet.runtime.jobs.export import start_export


class ExportButton:
    """Enabled once the dock has a trained model; asks where to save, then exports.

    The test tensors and cover come from the dock's image layer (the training image).
    """

    def __init__(self, dock):
        self.dock = dock
        self.button = PushButton(text="Export…", enabled=False,
                                 tooltip="Save the trained model as a bioimage.io model package (.zip)")
        self.button.changed.connect(self.ask_and_export)
        self.poller = None

    def model_ready(self, model_dir) -> None:
        self.button.enabled = model_dir is not None and not self.busy

    @property
    def busy(self) -> bool:
        return self.poller is not None and self.poller.active

    def ask_and_export(self, _value=None):
        from qtpy.QtWidgets import QFileDialog

        model_dir = self.dock.last_model_dir
        suggested = str(model_dir.with_suffix(".zip")) if model_dir else ""
        path, _ = QFileDialog.getSaveFileName(self.dock.native, "Export to bioimage.io", suggested,
                                              "bioimage.io package (*.zip)")
        if path:  # the dialog has asked before replacing an existing file
            self.export_to(Path(path) if path.lower().endswith(".zip") else Path(path + ".zip"),
                           overwrite=Path(path).exists())

    def export_to(self, path, overwrite: bool = False) -> bool:
        """Start exporting the dock's last model to ``path``; False (and a message) if refused."""
        image = self.dock.image.value
        if self.dock.last_model_dir is None or image is None:
            show_error("Train a model first, with its image layer still open: the package's test data comes from it.")
            return False
        try:
            job = start_export(self.dock.last_model_dir, path, image=np.asarray(layer_array(image)),
                                      overwrite=overwrite, image_name=image.name)
        except (BundleError, ValueError, FileExistsError, FileNotFoundError) as exc:
            self._say(str(exc), error=True)
            return False
        self.button.enabled = False
        self._say(f"Exporting to {path} (then bioimage.io's test runs)...")
        self.poller = JobPoller(job, self._on_event, self._on_finished).start()
        return True

    def _say(self, text: str, error: bool = False) -> None:
        self.dock.status.value = text[:200]
        if error:
            show_error(text)

    def _on_event(self, event: events.Event):
        if isinstance(event, events.Stage):
            self._say(present.stage_line(event))

    def _on_finished(self, final: events.Final):
        self.button.enabled = True
        if isinstance(final, events.Exported):
            self._say(present.exported_line(final))
            show_info(self.dock.status.value)
        elif isinstance(final, events.Error):
            line = present.failed_line(final, "Export")
            self._say(line)
            show_error(line)
        else:
            self._say(present.EXPORT_STOPPED)

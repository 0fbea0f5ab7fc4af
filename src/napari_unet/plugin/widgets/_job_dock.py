"""What the Train and Segment docks share: enabling Run only for valid inputs, and reporting."""

from __future__ import annotations

from magicgui.widgets import Container
from napari.layers import Image
from napari.utils.notifications import show_error

from napari_unet.plugin.widgets._layers import is_preview
from napari_unet.runtime import present
from napari_unet.runtime.engine import failure_line


class JobDock(Container):
    """A dock with a run button, a status label, an optional napari progress and a job poller.

    Subclasses set ``run_button``, ``status``, ``ready_text`` and implement ``_input_problem``.
    """

    ready_text = "Ready."

    def __init__(self, viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self.poller = None
        self._napari_progress = None
        self._showing_problem = True

    def _input_problem(self) -> str:
        raise NotImplementedError

    def _layers_changed(self, _event=None):
        raise NotImplementedError

    def _image_choices(self, _widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, Image) and not is_preview(layer)]

    def _follow_layers(self):
        """Refresh the layer choices now and whenever layers are added or removed."""
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._layers_changed)
        self._layers_changed()

    @property
    def busy(self) -> bool:
        return self.poller is not None and self.poller.active

    def _check_inputs(self, _value=None, *, keep_status: bool = False) -> str:
        """Enable Run only when the inputs make sense; show why not otherwise.

        ``keep_status`` keeps a finished run's message unless there is a problem to show.
        """
        problem = self._input_problem()
        self.run_button.enabled = not problem and not self.busy
        if not self.busy and (problem or not keep_status or self._showing_problem):
            self.status.value = problem or self.ready_text
            self._showing_problem = bool(problem)
        return problem

    def _close_progress(self):
        if self._napari_progress is not None:
            self._napari_progress.close()
            self._napari_progress = None

    def _report_failure(self, final, what: str):
        line = failure_line(final, what)  # the same line the command line prints
        self.status.value = "Failed: " + line[:200]
        show_error(present.failed_line(final, what))

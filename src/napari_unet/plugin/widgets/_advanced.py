"""One collapsible *Advanced* section per dock: the expert settings behind one click, as
napari-convpaint, cellpose's GUI and ilastik lead with the few choices that matter.
Whether it was open is remembered per dock (Qt settings), across docks and sessions."""

from __future__ import annotations

from magicgui.widgets import Container, PushButton
from qtpy.QtCore import QSettings

SETTINGS = ("napari-slice-unet", "docks")


class Advanced:
    """A toggle button and, below it, a container of ``widgets`` shown only while open."""

    def __init__(self, dock_name: str, widgets):
        self.key = f"{dock_name}/advanced_open"
        self.box = Container(widgets=list(widgets), labels=True)
        self.box.margins = (0, 0, 0, 0)
        self.toggle = PushButton(text="")
        self.toggle.changed.connect(lambda *_: self.set_open(not self.is_open, remember=True))
        self.set_open(bool(QSettings(*SETTINGS).value(self.key, False, type=bool)))

    @property
    def is_open(self) -> bool:
        return not self.box.native.isHidden()

    def set_open(self, value: bool, remember: bool = False) -> None:
        self.box.native.setHidden(not value)
        self.toggle.text = "Advanced \u25be (hide)" if value else "Advanced \u25b8 (more settings)"
        if remember:
            QSettings(*SETTINGS).setValue(self.key, value)

    def add_to(self, dock) -> None:
        """Append the button and the section to ``dock``'s layout, after everything else."""
        for widget in (self.toggle, self.box):
            dock.native.layout().addWidget(widget.native)

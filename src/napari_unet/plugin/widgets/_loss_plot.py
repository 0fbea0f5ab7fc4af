"""A small live plot of training/validation loss and validation Dice for the dock."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

SERIES = ("loss", "val_loss", "val_dice")


class LossPlot:
    """Matplotlib canvas with loss (left axis) and validation Dice (right axis) per epoch.

    Lines are created once and only their data change, so a redraw stays cheap enough
    (tens of ms) not to stall napari's event loop.
    """

    def __init__(self):
        self.figure = Figure(figsize=(3.6, 2.4), dpi=90)
        self.figure.subplots_adjust(left=0.16, right=0.84, bottom=0.2, top=0.95)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        ax = self.figure.add_subplot(111)
        ax2 = ax.twinx()
        self.lines = {
            "loss": ax.plot([], [], "o-", color="tab:blue", ms=3, label="train loss")[0],
            "val_loss": ax.plot([], [], "o-", color="tab:orange", ms=3, label="val loss")[0],
            "val_dice": ax2.plot([], [], "s-", color="tab:green", ms=3, label="val Dice")[0],
        }
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax2.set_ylabel("Dice", fontsize=8)
        ax2.set_ylim(0, 1)
        for axis in (ax, ax2):
            axis.tick_params(labelsize=7)
        ax.legend(list(self.lines.values()), [line.get_label() for line in self.lines.values()],
                  fontsize=7, loc="center right")
        self.ax_loss, self.ax_dice = ax, ax2
        self.history: dict[str, list[float]] = {}
        self.clear()

    def clear(self):
        self.history = {"epoch": [], **{key: [] for key in SERIES}}
        self._redraw()

    def add_epoch(self, event):
        """Add the point of an ``events.Epoch``."""
        self.history["epoch"].append(event.epoch)
        for key in SERIES:
            value = getattr(event, key)
            self.history[key].append(float("nan") if value is None else float(value))
        self._redraw()

    @property
    def n_points(self) -> int:
        return len(self.history["epoch"])

    def _redraw(self):
        for key, line in self.lines.items():
            line.set_data(self.history["epoch"], self.history[key])
        self.ax_loss.relim()
        self.ax_loss.autoscale_view()
        n = max(self.n_points, 1)
        self.ax_loss.set_xlim(0.5, n + 0.5)
        self.canvas.draw_idle()

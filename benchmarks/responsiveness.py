"""Does napari stay responsive while the Train widget trains?

Opens a napari viewer (under Xvfb when there is no display) with the "Train U-Net" widget,
loads the plugin's sample, clicks Train, and while training runs records every tick of a
50 ms QTimer in the napari process. A blocked event loop shows up as a long gap between
ticks. After ``--seconds`` it clicks Stop and waits for the worker to finish.
With ``--preview`` the live preview (labels and probability) is on, and the slider moves to
another slice every ``SLIDER_EVERY_S`` seconds, so the preview follows it.

    python benchmarks/responsiveness.py --seconds 60 --out bench_output [--preview]

Writes ``responsiveness[_preview].json`` and ``responsiveness[_preview]_table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, machine_info, markdown_table, write_json, write_text  # noqa: E402

TICK_MS = 50
TARGET_MAX_GAP_MS = 200
SLIDER_EVERY_S = 2.0
_UNDER_XVFB = "NAPARI_UNET_BENCH_UNDER_XVFB"


def ensure_display(argv) -> None:
    """Re-run this script under ``xvfb-run -a`` when there is no display to draw on."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get(_UNDER_XVFB):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        raise SystemExit("No display and no xvfb-run: install Xvfb (e.g. apt install xvfb) or run with a display.")
    env = dict(os.environ, **{_UNDER_XVFB: "1"})
    os.execvpe(xvfb, [xvfb, "-a", sys.executable, str(Path(__file__).resolve()), *argv], env)


class Ticker:
    """Records the time of every tick of a precise repeating QTimer."""

    def __init__(self, interval_ms: int):
        from qtpy.QtCore import Qt, QTimer

        self.times = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def last_before(self, t: float) -> float:
        return max((x for x in self.times if x <= t), default=t)

    def longest_gaps(self, origin: float, n: int = 5) -> list:
        """The ``n`` longest gaps as ``{"ms", "ends_at_s"}``, their end in seconds after ``origin``."""
        t = np.array(self.times)
        gaps = np.diff(t)
        top = np.argsort(gaps)[::-1][:n]
        return [{"ms": float(gaps[i] * 1000), "ends_at_s": float(t[i + 1] - origin)} for i in top]

    def gaps_ms(self, start: float, stop: float) -> np.ndarray:
        t = np.array([x for x in self.times if start <= x <= stop])
        return np.diff(t) * 1000 if t.size > 1 else np.zeros(0)


def gap_stats(gaps) -> dict:
    if len(gaps) == 0:
        return {"ticks": 0, "max_ms": None, "p99_ms": None, "median_ms": None}
    return {
        "ticks": int(len(gaps) + 1),
        "max_ms": float(np.max(gaps)),
        "p99_ms": float(np.percentile(gaps, 99)),
        "median_ms": float(np.median(gaps)),
        "over_200ms": int(np.sum(np.asarray(gaps) > TARGET_MAX_GAP_MS)),
    }


def add_sample(viewer):
    """The plugin's sample, as File > Open Sample adds it."""
    from napari_unet.plugin.sample_data import make_sample_data

    return [getattr(viewer, f"add_{kind}")(data, **kwargs) for data, kwargs, kind in make_sample_data()]


class PreviewWatch:
    """Counts the previews the dock draws and times each drawing; moves the slider meanwhile."""

    def __init__(self, viewer, widget):
        from qtpy.QtCore import QTimer

        self.viewer, self.widget, self.draw_ms = viewer, widget, []
        show = widget.preview.show

        def timed_show(event):
            start = time.perf_counter()
            show(event)
            self.draw_ms.append((time.perf_counter() - start) * 1000)

        widget.preview.show = timed_show
        self.slider = QTimer()
        self.slider.setInterval(int(SLIDER_EVERY_S * 1000))
        self.slider.timeout.connect(self.move)

    def move(self):
        n = self.viewer.dims.nsteps[0]
        self.viewer.dims.set_current_step(0, (self.viewer.dims.current_step[0] + 7) % n)

    def summary(self) -> dict:
        ms = self.draw_ms
        return {"previews_drawn": len(ms), "draw_max_ms": max(ms) if ms else None,
                "draw_median_ms": float(np.median(ms)) if ms else None, "slider_every_s": SLIDER_EVERY_S}


def run(seconds: float, out: Path, settle_s: float = 3.0, timeout_extra_s: float = 180.0,
        preview: bool = False) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_unet.plugin.widgets.train_widget import TrainWidget

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    model_root = Path(tempfile.mkdtemp(prefix="napari-unet-responsiveness-"))
    viewer = napari.Viewer(show=True)
    image_layer, labels_layer = add_sample(viewer)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train U-Net")
    widget.image.value = image_layer
    widget.labels.value = labels_layer
    widget.epochs.value = 100000  # runs until Stop
    widget.model_dir.value = model_root / "model"
    widget.replace.value = True
    widget.live_preview.value = widget.preview_probability.value = preview
    preview_watch = PreviewWatch(viewer, widget) if preview else None
    app = QApplication.instance()

    marks = {}
    ticker = Ticker(TICK_MS)

    def click_train():
        log(f"clicking Train (image {image_layer.data.shape}); measuring for {seconds:g} s")
        marks["click"] = time.perf_counter()
        widget.train_button.native.click()
        marks["click_returned"] = time.perf_counter()
        if widget.poller is None:
            marks["failed"] = f"Training did not start: {widget.status.value}"
            app.quit()

    def click_stop():
        if preview_watch is not None:
            preview_watch.slider.stop()
        marks["stop"] = time.perf_counter()
        marks["progress_at_stop"] = int(widget.progress_bar.value)
        marks["status_at_stop"] = str(widget.status.value)
        log(f"clicking Stop; status: {widget.status.value}")
        widget.stop_button.native.click()

    def watch():
        now = time.perf_counter()
        if "click" in marks and "first_batch" not in marks and widget.progress_bar.value > 0:
            # The worker has started, imported TensorFlow and run its first batch.
            marks["first_batch"] = now
            log(f"first batch done {now - marks['click']:.1f} s after the click; training for {seconds:g} s")
            QTimer.singleShot(int(seconds * 1000), click_stop)
            if preview_watch is not None:
                preview_watch.slider.start()
        if "click" in marks and widget.poller is not None and not widget.poller.active and "finished" not in marks:
            marks["finished"] = now
            marks["status_at_end"] = str(widget.status.value)
            log(f"training ended; status: {widget.status.value}")
            QTimer.singleShot(1000, app.quit)  # a last second of ticks after the job
        elif now - marks["begin"] > settle_s + seconds + timeout_extra_s and "finished" not in marks:
            marks["failed"] = f"Training did not start and stop in time; status: {widget.status.value}"
            if widget.poller is not None:
                widget.poller.job.kill()
            app.quit()

    watcher = QTimer()
    watcher.setInterval(100)
    watcher.timeout.connect(watch)
    marks["begin"] = time.perf_counter()
    ticker.timer.start()
    watcher.start()
    QTimer.singleShot(int(settle_s * 1000), click_train)
    app.exec()
    ticker.timer.stop()
    watcher.stop()
    marks["end"] = time.perf_counter()

    loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    try:
        viewer.close()
    except RuntimeError:
        pass  # quitting the application already deleted the window
    shutil.rmtree(model_root, ignore_errors=True)
    if "failed" in marks:
        raise RuntimeError(marks["failed"])
    if "first_batch" not in marks:
        raise RuntimeError(f"Training ended before its first batch: {marks.get('status_at_end')}")

    # Each phase starts at the last tick of the one before, so no gap is lost between them.
    phases = {
        "idle_before_train": gap_stats(ticker.gaps_ms(marks["begin"], marks["click"])),
        "click_to_first_batch": gap_stats(ticker.gaps_ms(ticker.last_before(marks["click"]), marks["first_batch"])),
        "training": gap_stats(ticker.gaps_ms(ticker.last_before(marks["first_batch"]), marks["stop"])),
        "stopping": gap_stats(ticker.gaps_ms(ticker.last_before(marks["stop"]), marks["finished"])),
        "click_to_end": gap_stats(ticker.gaps_ms(ticker.last_before(marks["click"]), marks["end"])),
    }
    name = "responsiveness_preview" if preview else "responsiveness"
    report = {
        "benchmark": name,
        "preview": preview_watch.summary() if preview_watch is not None else None,
        "machine": machine_info(),
        "tick_ms": TICK_MS,
        "train_seconds": seconds,
        "train_click_ms": (marks["click_returned"] - marks["click"]) * 1000,
        "click_to_first_batch_s": marks["first_batch"] - marks["click"],
        "stop_to_finished_s": marks["finished"] - marks["stop"],
        "batches_done_at_stop": marks["progress_at_stop"],
        "status_at_stop": marks["status_at_stop"],
        "status_at_end": marks["status_at_end"],
        "tensorflow_or_keras_in_napari_process": loaded,
        "phases": phases,
        "longest_gaps": ticker.longest_gaps(marks["click"]),
        "target_max_gap_ms": TARGET_MAX_GAP_MS,
        "meets_target": bool(phases["training"]["max_ms"] is not None
                             and phases["training"]["max_ms"] < TARGET_MAX_GAP_MS),
    }
    header = ["phase", "ticks", "max gap (ms)", "p99 gap (ms)", "median gap (ms)", f"gaps > {TARGET_MAX_GAP_MS} ms"]
    ms = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    rows = [[name.replace("_", " "), s["ticks"], ms(s["max_ms"]), ms(s["p99_ms"]), ms(s["median_ms"]),
             s.get("over_200ms")] for name, s in phases.items()]
    text = markdown_table(header, rows) + (
        f"\n\n{TICK_MS} ms QTimer in the napari process. The worker ran its first batch "
        f"{report['click_to_first_batch_s']:.1f} s after the Train click; training then ran {seconds:g} s "
        f"({report['batches_done_at_stop']} batches) and took {report['stop_to_finished_s']:.1f} s to end "
        f"after Stop. The Train click itself blocked for {report['train_click_ms']:.0f} ms. Max gap while "
        f"training: {fmt_ms(phases['training']['max_ms'])} (target < {TARGET_MAX_GAP_MS} ms: "
        f"{'met' if report['meets_target'] else 'NOT met'}); from the click to the end: "
        f"{fmt_ms(phases['click_to_end']['max_ms'])}. TensorFlow/Keras loaded in the napari process: "
        f"{', '.join(loaded) if loaded else 'no'}."
    )
    if preview_watch is not None:
        p = report["preview"]
        text += (f" Live preview on (labels + probability), the slider moved every {SLIDER_EVERY_S:g} s: "
                 f"{p['previews_drawn']} previews drawn, drawing one took {fmt_ms(p['draw_median_ms'])} "
                 f"(median), {fmt_ms(p['draw_max_ms'])} at most.")
    report["table_markdown"] = text
    write_json(out / f"{name}.json", report)
    write_text(out / f"{name}_table.md", text + "\n")
    print("\n" + text + "\n", flush=True)
    log(f"wrote {out / (name + '.json')} and {out / (name + '_table.md')}")
    return report


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to train (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    parser.add_argument("--preview", action="store_true", help="with the live preview on, moving the slider")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    ensure_display(argv)
    run(args.seconds, args.out, preview=args.preview)
    return 0


if __name__ == "__main__":
    sys.exit(main())

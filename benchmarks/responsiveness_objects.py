"""napari while the Segment dock finds 3-D objects: the longest stall of the event loop.

A model is first trained on the synthetic cells sample in the worker (not measured). Then a
viewer opens the sample stacked ``--repeats`` times along Z (so the run lasts), the Segment dock
is set to objects in 3-D and Run is clicked, while a 50 ms ``QTimer`` in the napari process
records every tick until the job ends. Target: no gap over 200 ms.

    xvfb-run -a .venv/bin/python benchmarks/responsiveness_objects.py --repeats 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, markdown_table, run_engine_job, write_json, write_text  # noqa: E402
from responsiveness import TARGET_MAX_GAP_MS, TICK_MS, Ticker, gap_stats  # noqa: E402

from napari_unet.runtime.jobs.train import start_training  # noqa: E402
from napari_unet.core.config import TrainConfig  # noqa: E402
from napari_unet.samples.synthetic import make_cells_volume  # noqa: E402


def train_model(sample: dict, folder: Path, seconds: float) -> str:
    labels = np.where(sample["labels"] != 0, sample["instances"], 0).astype(np.uint32)
    cfg = TrainConfig(instances=True, max_seconds=seconds)
    job = start_training(sample["image"], labels, model_cfg=None, train_cfg=cfg, out_dir=str(folder / "model"))
    return run_engine_job(job)["final"]["model_dir"]


def segment_and_tick(volume, scale, model_dir: str, timeout_s: float = 900.0) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_unet.plugin.widgets.segment_widget import FROM_DISK, SegmentWidget

    viewer = napari.Viewer(show=True)
    viewer.add_image(volume, name="cells", scale=scale)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment with U-Net")
    widget.model.value = FROM_DISK
    widget.model_file.value = model_dir
    widget.output.value = "instances"
    widget.objects.value = "3d"
    app = QApplication.instance()
    ticker, marks = Ticker(TICK_MS), {}

    def click_run():
        marks["click"] = time.perf_counter()
        widget.run_button.native.click()
        marks["click_returned"] = time.perf_counter()

    def watch():
        if "click" in marks and widget.poller is not None and not widget.poller.active and "end" not in marks:
            marks["end"] = time.perf_counter()
            # Read the dock now: quitting the application deletes its widgets.
            marks["status"] = str(widget.status.value)
            marks["result"] = np.asarray(widget.result_layer.data).copy()
            QTimer.singleShot(500, app.quit)
        elif time.perf_counter() - marks.get("click", time.perf_counter()) > timeout_s:
            widget.poller.job.kill()
            app.quit()

    watcher = QTimer()
    watcher.setInterval(100)
    watcher.timeout.connect(watch)
    ticker.timer.start()
    watcher.start()
    QTimer.singleShot(2000, click_run)
    app.exec()
    ticker.timer.stop()
    watcher.stop()
    try:
        viewer.close()
    except RuntimeError:
        pass  # quitting the application already deleted the window
    if "end" not in marks:
        raise RuntimeError("Segmentation did not end in time.")
    status, result = marks["status"], marks["result"]
    return {"status": status, "seconds": marks["end"] - marks["click"],
            "gaps": gap_stats(ticker.gaps_ms(ticker.last_before(marks["click"]), marks["end"])),
            "click_ms": (marks["click_returned"] - marks["click"]) * 1000,
            "longest_gaps": ticker.longest_gaps(marks["click"]),
            "gaps_after_click": gap_stats(ticker.gaps_ms(marks["click_returned"], marks["end"])),
            "n_objects": int(len(np.unique(result[result > 0]))),
            "tensorflow_or_keras_in_napari_process": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="copies of the 32-slice sample along Z")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        raise SystemExit("No display: run it under Xvfb (xvfb-run -a .venv/bin/python benchmarks/responsiveness_objects.py).")
    sample = make_cells_volume()
    with tempfile.TemporaryDirectory() as folder:
        log(f"training a model for at most {args.train_seconds:g} s (not measured)")
        model_dir = train_model(sample, Path(folder), args.train_seconds)
        volume = np.concatenate([sample["image"]] * args.repeats)
        log(f"segmenting 3-D objects in {volume.shape} from the Segment dock")
        report = segment_and_tick(volume, sample["scale"], model_dir)
    gaps = report["gaps"]
    report.update(volume_shape=list(volume.shape), target_max_gap_ms=TARGET_MAX_GAP_MS,
                  meets_target=bool(gaps["max_ms"] is not None and gaps["max_ms"] < TARGET_MAX_GAP_MS))
    text = markdown_table(
        ["volume", "objects", "run (s)", "ticks", "max gap (ms)", "p99 gap (ms)", "median gap (ms)", "gaps > 200 ms"],
        [["x".join(map(str, volume.shape)), report["n_objects"], report["seconds"], gaps["ticks"],
          gaps["max_ms"], gaps["p99_ms"], gaps["median_ms"], gaps["over_200ms"]]],
    ) + (f"\n\nThe Run click itself blocked for {report['click_ms']:.0f} ms (adding the output layer; "
         f"the worker starts in the poller's next tick); after it returned, the largest gap was "
         f"{report['gaps_after_click']['max_ms']:.0f} ms. "
         f"Longest gaps (ms, s after the click): "
         + ", ".join(f"{g['ms']:.0f} at {g['ends_at_s']:.1f}" for g in report["longest_gaps"][:3])
         + f". Segment dock, 3-D objects; target max gap < {TARGET_MAX_GAP_MS} ms: "
         f"{'met' if report['meets_target'] else 'NOT met'}. TensorFlow/Keras in the napari process: "
         f"{', '.join(report['tensorflow_or_keras_in_napari_process']) or 'no'}.")
    print(text)
    write_json(args.out / "responsiveness_objects.json", report)
    write_text(args.out / "responsiveness_objects_table.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate docs/screenshot.png: napari with the nuclei sample, trained on its object ids and
segmented into 3-D objects through the docks; then docs/screenshot_advanced.png, the same with
both docks' Advanced sections open.

Run under a display or Xvfb:  xvfb-run -a .venv/bin/python docs/make_screenshot.py [out.png]
It drives the widgets as a person would (press Train, wait, press Run, wait).
"""

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_unet.plugin.sample_data import NUCLEI_NAME, make_nuclei_sample_data
from napari_unet.plugin.widgets.segment_widget import SegmentWidget
from napari_unet.plugin.widgets.train_widget import TrainWidget


def wait_for(widget, app, timeout=900):
    start = time.perf_counter()
    while widget.poller is not None and widget.poller.active:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the job did not finish in time")


def main(out: Path):
    viewer = napari.Viewer(title="napari-unet")
    viewer.window._qt_window.resize(1500, 950)
    for data, kwargs, kind in make_nuclei_sample_data():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    app = QApplication.instance()
    train = TrainWidget(viewer)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train U-Net", area="right")
    viewer.window.add_dock_widget(segment, name="Segment with U-Net", area="right")
    train.model_dir.value = Path(tempfile.mkdtemp()) / "nuclei-unet"
    train.instances.value = True  # the annotations are one id per nucleus
    train.live_preview.value = True  # the shown slice is predicted while training
    train.time_limit.value = 2.0  # minutes: enough for the picture
    viewer.dims.set_point(0, 12)
    train.train_button.clicked.emit()
    wait_for(train, app)
    print("train:", train.status.value, train.score.value, flush=True)
    segment.image.value = viewer.layers[NUCLEI_NAME]
    segment.run_button.clicked.emit()
    wait_for(segment, app)
    print("segment:", segment.status.value, flush=True)
    viewer.layers[f"{NUCLEI_NAME} annotations"].visible = False
    viewer.layers[f"{NUCLEI_NAME} [preview]"].visible = False  # the objects are the picture
    viewer.dims.set_point(0, 12)
    viewer.reset_view()
    settle(app)
    viewer.window._qt_window.grab().save(str(out))
    print("saved", out)
    for dock in (train, segment):
        dock.advanced.set_open(True)  # not remembered: the user's own choice stays as it was
    settle(app)
    advanced = out.with_name(out.stem + "_advanced" + out.suffix)
    viewer.window._qt_window.grab().save(str(advanced))
    print("saved", advanced)
    viewer.close()


def settle(app, seconds=1.0):
    for _ in range(int(seconds / 0.02)):
        app.processEvents()
        time.sleep(0.02)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("screenshot.png"))

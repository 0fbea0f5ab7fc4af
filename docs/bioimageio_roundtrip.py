"""Round trip under Xvfb: train (tiny) in the Train dock, Export… to a zip, segment from the zip in the
Segment dock; screenshot to /tmp/bx/gui_roundtrip.png."""
import sys
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_unet.plugin.widgets.segment_widget import FROM_PACKAGE, SegmentWidget
from napari_unet.plugin.widgets.train_widget import TrainWidget
from napari_unet.samples.synthetic import make_cells_volume

out = Path("/tmp/bx/gui")
out.mkdir(exist_ok=True)
viewer = napari.Viewer(show=True)
s = make_cells_volume()
viewer.add_image(s["image"], name="cells", scale=s["scale"])
viewer.add_labels(np.where(s["labels"] != 0, s["instances"], 0).astype(np.uint32), name="annotations", scale=s["scale"])
train = TrainWidget(viewer)
viewer.window.add_dock_widget(train, name="Train U-Net")
seg = SegmentWidget(viewer)
viewer.window.add_dock_widget(seg, name="Segment with U-Net")
train.instances.value = True
train.auto_sizes.value = False  # the patch size below is used as given
train.epochs.value, train.steps.value, train.patch_size.value = 3, 10, 64
train.depth.value, train.n_filters.value = 2, 8
train.model_dir.value = str(out / "model")
train.replace.value = True
app = QApplication.instance()

def wait(cond, timeout):
    t = time.time()
    while not cond() and time.time() - t < timeout:
        app.processEvents()
        time.sleep(0.05)
    assert cond(), "timed out"

train.train_button.clicked.emit()
wait(lambda: train.poller is not None and not train.poller.active, 600)
print("train:", train.status.value)
assert train.export.button.enabled
zip_path = out / "model.zip"
zip_path.unlink(missing_ok=True)
assert train.export.export_to(zip_path)
wait(lambda: not train.export.busy, 300)
print("export:", train.status.value)
seg.model.value = FROM_PACKAGE
seg.model_file.value = str(zip_path)
app.processEvents()
print("segment dock:", seg.status.value, "|", seg.summary.value, "| file label:", seg.model_file.label)
seg.run_button.clicked.emit()
wait(lambda: seg.poller is not None and not seg.poller.active, 600)
print("segment:", seg.status.value)
layer = viewer.layers[f"cells [{zip_path.name}]"]
print("objects:", len(np.unique(layer.data)) - 1)
viewer.dims.set_point(0, 16 * s["scale"][0])
for _ in range(20):
    app.processEvents()
    time.sleep(0.05)
viewer.window.screenshot("/tmp/bx/gui_roundtrip.png", canvas_only=False)
print("tensorflow in GUI process:", "tensorflow" in sys.modules, "keras:", "keras" in sys.modules)
viewer.close()

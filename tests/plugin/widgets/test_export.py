"""Export… in the Train dock, then the Segment dock on the package: the labels of the folder."""

import sys

import numpy as np
import pytest

from napari_unet.plugin.widgets.segment_widget import FROM_DISK, FROM_PACKAGE, SegmentWidget
from napari_unet.plugin.widgets.train_widget import TrainWidget

pytestmark = pytest.mark.slow
pytest.importorskip("bioimageio.core", reason="the bioimageio extra (part of the testing extra) is not installed")


def _segment(viewer, qtbot, choice, path):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = choice
    widget.model_file.value = path
    widget.output.value = "labels"
    assert widget.run_button.enabled, widget.status.value
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    return np.array(widget.result_layer.data)


def test_export_then_segment_from_the_package_gives_the_folder_s_labels(make_napari_viewer, qtbot, tmp_path,
                                                                        tiny_volume, tiny_model_dir):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img")
    viewer.add_labels(labels, name="ann")
    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.last_model_dir = tiny_model_dir
    dock.export.model_ready(tiny_model_dir)
    assert dock.export.button.enabled

    package = tmp_path / "tiny.zip"
    assert dock.export.export_to(package)
    qtbot.waitUntil(lambda: not dock.export.busy, timeout=300_000)
    assert "passed bioimageio.core's test_model" in dock.status.value, dock.status.value  # the CLI's line
    assert package.is_file()

    from_folder = _segment(viewer, qtbot, FROM_DISK, tiny_model_dir)
    from_package = _segment(viewer, qtbot, FROM_PACKAGE, package)
    assert from_folder.any()
    np.testing.assert_array_equal(from_package, from_folder)
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_export_refuses_an_existing_file_unasked(make_napari_viewer, tmp_path, tiny_volume, tiny_model_dir,
                                                 monkeypatch):
    from napari_unet.plugin.widgets import _export

    viewer = make_napari_viewer()
    viewer.add_image(tiny_volume[0], name="img")
    dock = TrainWidget(viewer)
    dock.last_model_dir = tiny_model_dir
    errors = []
    monkeypatch.setattr(_export, "show_error", errors.append)
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"keep me")
    assert not dock.export.export_to(taken)
    assert taken.read_bytes() == b"keep me"
    assert len(errors) == 1 and "exists" in errors[0], errors

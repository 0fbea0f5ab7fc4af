"""The Train dock's live preview and the session's warm worker."""

import sys

import numpy as np
import pytest

from napari_unet.core.events import Preview
from napari_unet.core.train.preview import decode_request
from napari_unet.plugin.widgets import _job_dock, _session
from napari_unet.plugin.widgets._preview import LivePreview, shown_slice
from napari_unet.plugin.widgets.train_widget import TrainWidget


def preview_event(index, shape=(48, 48), value=1, axis=0):
    return Preview(axis=axis, index=index, epoch=1, labels=np.full(shape, value, np.uint8),
                   probability=np.full(shape, 200, np.uint8))


@pytest.fixture
def viewer_with_data(make_napari_viewer, tiny_volume):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img", scale=(2.0, 0.5, 0.5))
    viewer.add_labels(labels, name="ann", scale=(2.0, 0.5, 0.5))
    return viewer


def test_previews_fill_their_own_layers_and_skip_what_no_longer_fits(viewer_with_data, qtbot):
    viewer = viewer_with_data
    annotations = viewer.layers["ann"].data.copy()
    preview = LivePreview(viewer)
    viewer.dims.set_current_step(0, 3)
    assert decode_request(preview.request_for(viewer.layers["img"])) == (0, 3)
    preview.start(viewer.layers["img"], with_probability=True, job=None)
    preview.show(preview_event(3, value=2))  # before its layers are made (next turns): nothing to draw yet
    assert "img [preview]" not in viewer.layers  # not in the click that started training
    qtbot.waitUntil(lambda: "img [preview probability]" in viewer.layers, timeout=5000)
    assert viewer.layers.selection.active is viewer.layers["img"]
    labels, probability = viewer.layers["img [preview]"], viewer.layers["img [preview probability]"]
    preview.show(preview_event(3, value=2))
    assert (labels.data[3] == 2).all() and (probability.data[3] == 200).all() and not labels.data[2].any()
    preview.show(preview_event(9))  # a slice outside the volume: skipped
    preview.show(preview_event(1, shape=(30, 30)))  # of another shape: skipped
    preview.show(preview_event(5, shape=(6, 48), axis=1))  # along another axis
    assert (labels.data[:, 5] == 1).all() and not np.delete(labels.data[1], 5, axis=0).any()
    np.testing.assert_array_equal(viewer.layers["ann"].data, annotations)  # the user's layers untouched
    preview.stop()
    widget = TrainWidget(viewer)  # the preview layers are offered neither as data nor as pairs
    assert [name for name, _ in widget._image_choices()] == ["img"]
    assert [name for name, _ in widget._labels_choices()] == ["ann"]
    assert widget._extra_pair_choices() == []


def test_a_deleted_preview_layer_ends_the_preview_quietly(viewer_with_data, qtbot):
    viewer = viewer_with_data
    preview = LivePreview(viewer)
    preview.start(viewer.layers["img"], with_probability=False, job=None)
    qtbot.waitUntil(lambda: "img [preview]" in viewer.layers, timeout=5000)
    viewer.layers.remove("img [preview]")
    preview.show(preview_event(2))
    assert not preview.active and [layer.name for layer in viewer.layers] == ["img", "ann"]


class RequestOnly:
    """Stands in for a training job: only its live input."""

    def __init__(self):
        self.request = np.array([-1], np.int64)

    def live_input(self, name):
        assert name == "preview_request"
        return self.request


def test_moving_the_slider_sends_the_new_slice_and_stop_withdraws_it(viewer_with_data):
    viewer, job = viewer_with_data, RequestOnly()
    preview = LivePreview(viewer)
    preview.start(viewer.layers["img"], with_probability=False, job=job)
    viewer.dims.set_current_step(0, 5)
    assert decode_request(job.request[0]) == (0, 5)
    preview.stop()
    viewer.dims.set_current_step(0, 1)
    assert decode_request(job.request[0]) is None


def test_the_shown_slice_follows_the_slider_on_any_axis(viewer_with_data):
    viewer = viewer_with_data
    image = viewer.layers["img"]
    viewer.dims.set_current_step(0, 4)
    assert shown_slice(viewer, image) == (0, 4)
    viewer.dims.order = (1, 0, 2)  # Y sliced, Z and X shown
    viewer.dims.set_current_step(1, 10)
    assert shown_slice(viewer, image) == (1, 10)
    viewer.dims.ndisplay = 3
    assert shown_slice(viewer, image) is None


@pytest.mark.slow
def test_the_preview_follows_the_slider_during_training_on_the_warm_worker(viewer_with_data, qtbot, tmp_path,
                                                                           set_tiny_training, monkeypatch):
    viewer = viewer_with_data
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    seen = []
    show = widget.preview.show
    monkeypatch.setattr(widget.preview, "show", lambda event: (seen.append(event), show(event)))
    set_tiny_training(widget, tmp_path / "model", epochs=500)
    widget.live_preview.value = widget.preview_probability.value = True
    viewer.dims.set_current_step(0, 2)
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: "img [preview probability]" in viewer.layers, timeout=5000)  # just after the click
    probability = viewer.layers["img [preview probability]"]
    qtbot.waitUntil(lambda: probability.data[2].any(), timeout=180_000)
    assert (seen[0].axis, seen[0].index) == (0, 2)
    viewer.dims.set_current_step(0, 4)
    qtbot.waitUntil(lambda: probability.data[4].any(), timeout=60_000)
    assert (seen[-1].axis, seen[-1].index) == (0, 4)
    first_pid = widget.poller.job.pid
    widget.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=60_000)
    assert widget.status.value.startswith("Training stopped"), widget.status.value

    # A second training runs in the same worker process.
    set_tiny_training(widget, tmp_path / "model-2", epochs=1)
    widget.live_preview.value = False
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    assert widget.status.value.startswith("Training finished"), widget.status.value
    assert widget.poller.job.on_warm_worker and _session.WARM_WORKER.pid == first_pid
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


@pytest.mark.slow
def test_deleting_the_preview_layer_mid_training_stops_only_the_preview(viewer_with_data, qtbot, tmp_path,
                                                                         set_tiny_training, monkeypatch):
    viewer = viewer_with_data
    errors = []
    monkeypatch.setattr(_job_dock, "show_error", errors.append)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    set_tiny_training(widget, tmp_path / "model", epochs=4)
    widget.live_preview.value = True
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.plot.n_points >= 1 and "img [preview]" in viewer.layers, timeout=180_000)
    viewer.layers.remove("img [preview]")
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    assert widget.status.value.startswith("Training finished"), widget.status.value
    assert errors == [] and not widget.preview.active and widget.plot.n_points == 4


def test_opening_a_dock_warms_the_worker_up_without_keras_here(viewer_with_data, monkeypatch):
    monkeypatch.setattr(_session, "PREWARM", True)
    started = []
    monkeypatch.setattr(_session.WARM_WORKER, "prewarm", lambda env: started.append(env))
    TrainWidget(viewer_with_data)
    assert started and started[0]["KERAS_BACKEND"]
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules

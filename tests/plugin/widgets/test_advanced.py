"""Both docks lead with the few choices that matter; the rest sits in one Advanced section."""

import pytest

from napari_unet.plugin.widgets.segment_widget import SegmentWidget
from napari_unet.plugin.widgets.train_widget import TrainWidget


def _dock(viewer, cls):
    widget = cls(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def test_advanced_starts_collapsed_and_is_remembered(make_napari_viewer):
    viewer = make_napari_viewer()
    train, segment = _dock(viewer, TrainWidget), _dock(viewer, SegmentWidget)
    for dock, lead, expert in ((train, train.instances, train.learning_rate), (segment, segment.output, segment.tta)):
        assert not dock.advanced.is_open
        assert lead.native.isVisibleTo(dock.native) and not expert.native.isVisibleTo(dock.native)
        dock.advanced.toggle.clicked.emit()
        assert dock.advanced.is_open and expert.native.isVisibleTo(dock.native)
    again = _dock(viewer, TrainWidget)  # a dock opened later opens as the user left the last one
    assert again.advanced.is_open
    again.advanced.toggle.clicked.emit()
    assert not _dock(viewer, TrainWidget).advanced.is_open
    viewer.window.remove_dock_widget("all")


@pytest.mark.slow
def test_the_lead_controls_train_and_segment_with_advanced_closed(make_napari_viewer, qtbot, tiny_volume, tmp_path,
                                                                   set_tiny_training):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img")
    viewer.add_labels(labels, name="ann")
    train = _dock(viewer, TrainWidget)
    set_tiny_training(train, tmp_path / "model", epochs=1)  # short, as a script would set it: the section stays shut
    assert train.train_button.enabled and not train.advanced.is_open, train.status.value
    train.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not train.poller.active, timeout=180_000)
    assert train.status.value.startswith("Training finished"), train.status.value

    segment = _dock(viewer, SegmentWidget)
    segment.image.value = viewer.layers["img"]
    assert str(segment.model.value) == str(train.last_model_dir)  # the model just trained is picked
    assert segment.run_button.enabled and not segment.advanced.is_open, segment.status.value
    segment.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not segment.poller.active, timeout=120_000)
    assert segment.status.value.startswith("Done"), segment.status.value
    assert not train.advanced.is_open and not segment.advanced.is_open
    viewer.window.remove_dock_widget("all")  # the session's model list outlives this test: let go of it

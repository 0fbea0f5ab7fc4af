"""Human in the loop in the docks: Accept, continue training, extra pairs."""

import json
import sys

import numpy as np
import pytest

from napari_unet.plugin.widgets import _loop, train_widget
from napari_unet.plugin.widgets._session import TRAINED_MODELS
from napari_unet.plugin.widgets.segment_widget import SegmentWidget
from napari_unet.plugin.widgets.train_widget import TrainWidget


@pytest.fixture
def docks(make_napari_viewer, tiny_volume):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img", scale=(2.0, 0.5, 0.5))
    viewer.add_labels(labels, name="ann", scale=(2.0, 0.5, 0.5))
    train, segment = TrainWidget(viewer), SegmentWidget(viewer)
    viewer.window.add_dock_widget(train)
    viewer.window.add_dock_widget(segment)
    return viewer, train, segment


def _messages(monkeypatch):
    said = {"info": [], "warning": [], "error": []}
    for kind in said:
        monkeypatch.setattr(train_widget, f"show_{kind}", said[kind].append)
    return said


def _fake_model(folder, n_classes=1, mode="full_slices"):
    """A model folder's bundle.json (no weights): enough for the docks' checks."""
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps({
        "format_version": 1, "model_config": {"n_filters": 4, "depth": 2, "in_channels": 1, "n_classes": n_classes},
        "normalization": {"low": [0.0], "high": [255.0]}, "annotation_mode": mode, "instances": False}))
    return folder


def _train(train, qtbot, set_tiny_training, model_dir):
    set_tiny_training(train, model_dir)
    assert train.train_button.enabled, train.status.value
    train.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not train.poller.active, timeout=180_000)
    assert train.status.value.startswith("Training finished"), train.status.value


@pytest.mark.slow
def test_train_segment_accept_and_continue(docks, qtbot, tmp_path, set_tiny_training, monkeypatch):
    viewer, train, segment = docks
    said = _messages(monkeypatch)
    _train(train, qtbot, set_tiny_training, tmp_path / "model")
    z = 3  # an unannotated slice (1 and 4 are annotated)
    viewer.dims.set_point(0, float(viewer.layers["ann"].data_to_world([z, 0, 0])[0]))  # the layers are scaled
    assert _loop.current_slice(viewer, viewer.layers["ann"]) == z

    # The Segment dock offers the model; Accept copies its prediction of the shown slice only.
    assert segment.model.value == str(tmp_path / "model")
    segment.threshold.value = 0.0  # every pixel predicted foreground: a visible, known result
    segment.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not segment.poller.active, timeout=120_000)
    assert train.prediction.value is segment.result_layer
    before = viewer.layers["ann"].data.copy()
    train.accept_button.clicked.emit()
    after = viewer.layers["ann"].data
    assert (after[z] == 1).all() and "Accepted slice" in said["info"][-1]
    others = [k for k in range(6) if k != z]
    np.testing.assert_array_equal(after[others], before[others])
    viewer.layers["ann"].undo()  # through napari's history
    np.testing.assert_array_equal(viewer.layers["ann"].data, before)

    # The slice is annotated once accepted again: a second Accept keeps it as it is.
    train.accept_button.clicked.emit()
    edited = viewer.layers["ann"].data.copy()
    train.accept_button.clicked.emit()
    assert "already has annotations" in said["warning"][-1]
    np.testing.assert_array_equal(viewer.layers["ann"].data, edited)

    # Continue training from the model just trained, with the corrected annotations.
    train.continue_from.value = str(tmp_path / "model")
    assert not train.n_filters.enabled and train.train_button.enabled, train.status.value
    train.model_dir.value = tmp_path / "tuned"
    train.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not train.poller.active, timeout=180_000)
    assert train.status.value.startswith("Training finished"), train.status.value
    meta = json.loads((tmp_path / "tuned" / "bundle.json").read_text())
    assert meta["resumed_from"] == str(tmp_path / "model")
    assert meta["training_data"]["annotated_slices"] == sorted([1, 4, z])  # the accepted slice is learned
    k = segment.model.choices.index(str(tmp_path / "tuned"))
    assert segment.model.native.itemText(k) == "tuned (this session, fine-tuned from model)"
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_accept_without_a_prediction_says_what_to_do(docks, monkeypatch):
    viewer, train, _ = docks
    said = _messages(monkeypatch)
    before = viewer.layers["ann"].data.copy()
    assert train.prediction.value is None
    train.accept_button.clicked.emit()
    assert len(said["warning"]) == 1 and "No prediction yet" in said["warning"][0]
    np.testing.assert_array_equal(viewer.layers["ann"].data, before)


def test_continuing_a_model_of_other_classes_is_refused_with_the_reason(docks, tmp_path):
    viewer, train, _ = docks
    train.patch_size.value = 32
    three = _fake_model(tmp_path / "three", n_classes=3)
    train.continue_from.value = _loop.FROM_DISK
    assert not train.train_button.enabled and "model folder to continue" in train.status.value
    train.continue_file.value = three
    assert not train.train_button.enabled
    assert "has 3 output(s) but these labels need 1" in train.status.value
    train.continue_file.value = _fake_model(tmp_path / "scribbles", mode="scribbles")
    assert train.mode.value == "scribbles"  # the dock takes the model's annotation mode ...
    assert not train.train_button.enabled and "Only" in train.status.value  # ... which these labels break
    train.continue_from.value = _loop.NEW_MODEL
    train.mode.value = "full_slices"
    assert train.train_button.enabled and train.n_filters.enabled, train.status.value


def test_extra_pairs_whose_channels_differ_are_refused(docks, tiny_volume):
    viewer, train, _ = docks
    train.patch_size.value = 32
    image, labels, _ = tiny_volume
    viewer.add_image(np.repeat(image[:3, :40, :, None], 3, axis=-1), name="rgb", rgb=True)
    viewer.add_labels(labels[:3, :40], name="rgb ann")
    viewer.add_image(image[:3, :40], name="small")
    choices = {f"{a.name} + {b.name}": (a, b) for a, b in train.extra_pairs.choices}
    assert set(choices) == {"rgb + rgb ann", "small + rgb ann"}
    train.extra_pairs.value = [choices["small + rgb ann"]]
    assert train.train_button.enabled, train.status.value
    train.extra_pairs.value = [choices["rgb + rgb ann"]]
    assert not train.train_button.enabled
    assert "pair 2 (rgb + rgb ann) has 3 channel(s) but the first image has 1" in train.status.value


def test_both_docks_offer_the_session_and_fine_tuned_models(docks, tmp_path):
    _, train, segment = docks
    # Names no other test's model has: the session's list outlives each test, and a shared name is
    # listed with its parent folder.
    first, tuned = _fake_model(tmp_path / "offered_first"), _fake_model(tmp_path / "offered_tuned")
    TRAINED_MODELS.add(first)
    TRAINED_MODELS.add(tuned, fine_tuned_from=first)
    offered = {str(tuned): "offered_tuned (this session, fine-tuned from offered_first)",
               str(first): "offered_first (this session)"}
    for combo in (segment.model, train.continue_from):
        texts = {value: combo.native.itemText(i) for i, value in enumerate(combo.choices)}
        assert {value: texts.get(value) for value in offered} == offered
    assert train.continue_from.native.itemText(0) == _loop.NEW_MODEL and _loop.FROM_DISK in segment.model.choices


def test_models_sharing_a_folder_name_are_listed_apart(tmp_path):
    from napari_unet.plugin.widgets._session import TrainedModels

    models = TrainedModels()
    for parent in ("a", "b"):
        models.add(_fake_model(tmp_path / parent / "unet"))
    labels = [label for label, _ in models.choices()]
    assert labels == ["b/unet (this session)", "a/unet (this session)"]  # one entry each in a choice box

import json
import sys

import numpy as np
import pytest

from napari_unet.core.config import ObjectsConfig, limits
from napari_unet.plugin.widgets._session import TRAINED_MODELS
from napari_unet.plugin.widgets.segment_widget import FROM_DISK, SegmentWidget

from volumes import model_folder_without_weights

pytestmark = pytest.mark.slow


def _widget(viewer, model_dir):
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = FROM_DISK
    widget.model_file.value = model_dir
    return widget


def test_segment_fills_a_new_labels_layer_with_the_image_scale(make_napari_viewer, qtbot, tiny_volume, tiny_model_dir):
    viewer = make_napari_viewer()
    image, labels, truth = tiny_volume
    viewer.add_image(image, name="img", scale=(2.0, 0.5, 0.5), translate=(0, 10, 10))
    viewer.add_labels(labels, name="ann")
    widget = _widget(viewer, tiny_model_dir)
    assert "channel" in widget.summary.value
    assert widget.run_button.enabled, widget.status.value
    widget.run_button.clicked.emit()
    name = f"img [{tiny_model_dir.name}]"
    assert name in viewer.layers
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    result = viewer.layers[name]
    assert result.data.shape == image.shape
    np.testing.assert_allclose(result.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(result.translate, (0, 10, 10))
    assert result.data.any(), "no slice was filled in"
    np.testing.assert_array_equal(viewer.layers["ann"].data, labels)  # user's layer untouched

    # A rerun reuses the plugin's own layer instead of adding another one.
    n_layers = len(viewer.layers)
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert len(viewer.layers) == n_layers and viewer.layers[name] is result
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_cancel_keeps_finished_slices(make_napari_viewer, qtbot, tiny_model_dir):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (200, 48, 48), dtype=np.uint8)
    viewer.add_image(volume, name="big")
    widget = _widget(viewer, tiny_model_dir)
    widget.threshold.value = 0.0  # every predicted pixel becomes 1, so finished slices show
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.progress_bar.value >= 1, timeout=120_000)
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=60_000)
    assert widget.status.value.startswith("Cancelled"), widget.status.value
    filled = viewer.layers[f"big [{tiny_model_dir.name}]"].data.reshape(200, -1).any(axis=1)
    assert 1 <= filled.sum() < 200
    assert f"{filled.sum()} of 200 slices" in widget.status.value, widget.status.value


def test_model_trained_in_session_is_offered(make_napari_viewer, tiny_model_dir):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    TRAINED_MODELS.add(tiny_model_dir)
    assert widget.model.value == str(tiny_model_dir)
    assert widget.model_path() == tiny_model_dir


def test_run_disabled_with_reason_for_channel_mismatch(make_napari_viewer, tiny_model_dir):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32, 3), np.uint8), name="rgb", rgb=True)
    widget = _widget(viewer, tiny_model_dir)
    assert not widget.run_button.enabled
    assert "expects 1 channel" in widget.status.value


def test_missing_model_folder_is_reported(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="img")
    widget = _widget(viewer, tmp_path / "nothing here")
    assert not widget.run_button.enabled
    assert "nothing here" in widget.status.value


def _objects_run(widget, qtbot, mode):
    widget.output.value = "instances"
    widget.objects.value = mode
    widget.min_size.value = 0  # keep the tiny model's small objects
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    return np.array(widget.result_layer.data)


def test_3d_objects_keep_one_id_through_the_slices(make_napari_viewer, qtbot, tiny_volume, tiny_model_dir):
    viewer = make_napari_viewer()
    image, _, truth = tiny_volume  # two discs, each running through all 6 slices
    viewer.add_image(image, name="img")
    widget = _widget(viewer, tiny_model_dir)
    # A class model segments classes unless objects are asked for; then their options show.
    assert widget.output.value == "labels" and widget.objects.native.isHidden()
    objects_3d = _objects_run(widget, qtbot, "3d")
    assert not widget.objects.native.isHidden() and not widget.seeds.native.isHidden()
    objects_2d = _objects_run(widget, qtbot, "2d")
    assert len(viewer.layers) == 2, "the rerun must reuse the plugin's own layer"
    ids_3d, ids_2d = np.unique(objects_3d[objects_3d > 0]), np.unique(objects_2d[objects_2d > 0])
    assert ids_3d.size >= 1 and ids_2d.size >= 6
    # Each 3-D object continues through the slices: far fewer ids than one set per slice.
    largest = np.bincount(objects_3d.ravel())[1:].argmax() + 1
    assert (objects_3d == largest).reshape(6, -1).any(axis=1).all()
    assert ids_3d.size < ids_2d.size
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


def test_three_axis_passes_show_in_the_dock(make_napari_viewer, qtbot, tiny_volume, tiny_model_dir):
    viewer = make_napari_viewer()
    viewer.add_image(tiny_volume[0], name="img")
    widget = _widget(viewer, tiny_model_dir)
    widget.three_axis.value = True
    statuses, show_pass = [], widget._show_pass

    def record(event):  # what the dock says after each pass event
        show_pass(event)
        statuses.append(widget.status.value)

    widget._show_pass = record
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    assert all(any(s.startswith(f"Pass {a} of 3") for s in statuses) for a in (1, 2, 3)), statuses[:5]


def test_intensities_far_from_the_training_data_are_warned_about(make_napari_viewer, qtbot, tiny_volume,
                                                                 tiny_model_dir, monkeypatch):
    from napari_unet.plugin.widgets import segment_widget

    viewer = make_napari_viewer()
    image, _, _ = tiny_volume
    viewer.add_image(image.astype(np.uint16) * 257, name="16-bit")  # the training data were 8-bit
    widget = _widget(viewer, tiny_model_dir)
    assert widget.intensities.value == "volume"  # the default needs no warning
    warnings = []
    monkeypatch.setattr(segment_widget, "show_warning", warnings.append)
    widget.intensities.value = "model"
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    assert len(warnings) == 1 and "differ strongly" in warnings[0] and "'Intensities'" in warnings[0]


def _tuned_copy(model_dir, folder, settings):
    """A copy of ``model_dir`` whose bundle holds an object step tuned to ``settings``."""
    import shutil

    from napari_unet.core.objects.tuning import Tuning

    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "bundle.json").read_text())
    meta["object_tuning"] = Tuning(settings=settings, error=0.1, default_error=0.3, n_slices=4, ids_3d=False,
                                   z_spacing=4.0, tried=12, seconds=2.0).to_dict()
    (folder / "bundle.json").write_text(json.dumps(meta))
    return folder


def test_voxel_size_of_a_bare_layer_is_estimated_shown_editable_and_kept(make_napari_viewer, qtbot,
                                                                         tiny_model_dir, tmp_path):
    from scipy import ndimage as ndi

    from napari_unet.core.objects.tuning import ObjectSettings

    model = _tuned_copy(tiny_model_dir, tmp_path / "tuned", ObjectSettings(objects="linked", min_object_size=0))
    viewer = make_napari_viewer()
    field = ndi.gaussian_filter(np.random.default_rng(0).standard_normal((96, 48, 48)), 4)[::4]  # slices 4 px apart
    viewer.add_image(((field - field.min()) / np.ptp(field) * 255).astype(np.uint8), name="img")  # scale 1, 1, 1
    widget = _widget(viewer, model)
    widget.output.value = "instances"
    # The model's tuned object step is the dock's default, and the summary says so.
    assert widget.objects.value == "linked" and widget.min_size.value == 0
    assert "objects tuned on your annotations: linked" in widget.summary.value
    z = float(widget.voxel_size.value.split(",")[0])
    assert z == pytest.approx(4, rel=0.3) and "estimated" in widget.voxel_note.value
    assert not widget.voxel_size.native.isHidden()
    widget.voxel_size.value = "3, 1, 1"  # the user's edit wins
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=120_000)
    assert widget.status.value.startswith("Done"), widget.status.value
    result = widget.result_layer
    assert tuple(result.metadata["voxel_size"]) == (3.0, 1.0, 1.0)
    np.testing.assert_allclose(result.scale, (1, 1, 1))  # still overlays the image
    widget.voxel_size.value = "3, 0, 1"
    widget.run_button.clicked.emit()  # refused in one line, nothing started
    assert not widget.cancel_button.enabled


def test_the_spacing_of_a_bare_layer_is_estimated_once_per_layer(make_napari_viewer, tiny_model_dir, monkeypatch):
    """The estimate reads slices on the GUI thread: changing the model, output or assembly reuses it."""
    from napari_unet.core.objects import defaults as object_defaults

    calls = []
    estimate = object_defaults.z_spacing_from_image
    monkeypatch.setattr(object_defaults, "z_spacing_from_image", lambda volume: calls.append(1) or estimate(volume))
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 255, (8, 32, 32), dtype=np.uint8), name="a")
    widget = _widget(viewer, tiny_model_dir)
    widget.output.value = "instances"
    for objects in ("linked", "3d", "linked"):
        widget.objects.value = objects
    assert len(calls) == 1 and widget.voxel_size.value
    viewer.add_image(rng.integers(0, 255, (8, 32, 32), dtype=np.uint8), name="b")
    widget.image.value = viewer.layers["b"]
    assert len(calls) == 2

@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_threshold_objects_cannot_use_is_refused_in_one_line_before_any_work(make_napari_viewer, tmp_path,
                                                                                monkeypatch, threshold):
    from napari_unet.plugin.widgets import segment_widget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.uint8), name="img")  # 2-D: no voxel size to give
    widget = _widget(viewer, model_folder_without_weights(tmp_path / "model"))
    errors = []
    monkeypatch.setattr(segment_widget, "show_error", errors.append)
    widget.output.value = "instances"
    widget.threshold.value = threshold  # the spin box allows it: classes take 0 and 1
    widget.run_button.clicked.emit()
    assert errors == [f"threshold must be strictly between 0 and 1 for objects, got {threshold!r}"]
    assert [layer.name for layer in viewer.layers] == ["img"] and widget.run_button.enabled  # no job started


@pytest.mark.parametrize("box, name", [("seed_distance", "seed_distance"), ("min_size", "min_object_size")])
def test_object_settings_outside_the_objects_config_cannot_be_entered(make_napari_viewer, box, name):
    lo, hi = limits(ObjectsConfig, name)
    spin = getattr(SegmentWidget(make_napari_viewer()), box)
    assert (spin.min, spin.max) == (lo, hi)
    for bad in (lo - 0.25 if isinstance(lo, float) else lo - 1, hi + 1):
        with pytest.raises(ValueError):
            spin.value = bad

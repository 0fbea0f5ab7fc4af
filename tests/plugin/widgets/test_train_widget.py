import sys

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_unet.core.events import Error, Stopped, TrainingResult
from napari_unet.plugin.widgets import train_widget as train_widget_module
from napari_unet.plugin.widgets._session import TRAINED_MODELS
from napari_unet.plugin.widgets.train_widget import TrainWidget


@pytest.fixture
def widget_with_data(make_napari_viewer, tiny_volume):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img", scale=(2.0, 0.5, 0.5))
    viewer.add_labels(labels, name="ann", scale=(2.0, 0.5, 0.5))
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


@pytest.mark.slow
def test_train_widget_trains_and_saves_model_without_loading_tensorflow(
    widget_with_data, qtbot, tmp_path, set_tiny_training
):
    viewer, widget = widget_with_data
    set_tiny_training(widget, tmp_path / "model")
    assert widget.image.value.name == "img" and widget.labels.value.name == "ann"
    assert widget.train_button.enabled, widget.status.value
    labels_before = viewer.layers["ann"].data.copy()

    plotted = []  # at each tick of a timer on the same event loop while the job runs: the epochs plotted

    def tick():
        if widget.busy:
            plotted.append(widget.plot.n_points)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(50)
    widget.train_button.clicked.emit()
    assert widget.stop_button.enabled and not widget.train_button.enabled
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    timer.stop()

    assert widget.status.value.startswith("Training finished"), widget.status.value
    assert widget.plot.n_points == 2
    assert (tmp_path / "model" / "bundle.json").is_file()
    assert widget.last_model_dir == tmp_path / "model"
    assert TRAINED_MODELS.paths[0] == tmp_path / "model"
    assert widget.device.value.startswith(("CPU", "GPU"))
    assert widget.score.value.startswith("Dice")
    np.testing.assert_array_equal(viewer.layers["ann"].data, labels_before)
    # The event loop kept running while the worker trained: training in this process would hold
    # it from the job's first poll to its end, so the timer could not tick in between. It ticked
    # many times while the job ran, the first before any epoch had arrived, and the plot only grew.
    # How long a tick may wait (the 200 ms target) is measured by benchmarks/responsiveness.py.
    assert len(plotted) > 10 and plotted[0] == 0 and plotted == sorted(plotted), plotted
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules


@pytest.mark.slow
def test_stop_ends_training_early_and_keeps_a_model(widget_with_data, qtbot, tmp_path, set_tiny_training):
    _, widget = widget_with_data
    set_tiny_training(widget, tmp_path / "model", epochs=500)
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.plot.n_points >= 1, timeout=180_000)
    widget.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=60_000)
    assert widget.status.value.startswith("Training stopped"), widget.status.value
    assert widget.plot.n_points < 500
    assert (tmp_path / "model" / "bundle.json").is_file()


@pytest.mark.slow
def test_time_limit_ends_training_and_fills_the_progress_bar(widget_with_data, qtbot, tmp_path, set_tiny_training):
    _, widget = widget_with_data
    set_tiny_training(widget, tmp_path / "model", epochs=100000, time_limit=0.1)  # 6 s
    assert widget._configs()[1].max_seconds == pytest.approx(6.0)
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    assert widget.status.value.startswith("Training finished"), widget.status.value
    assert 1 <= widget.plot.n_points < 100000
    assert widget.progress_bar.value == widget.progress_bar.max
    assert (tmp_path / "model" / "bundle.json").is_file()


@pytest.mark.slow
def test_one_annotated_slice_trains_and_the_dock_names_the_slice_to_paint_next(
    make_napari_viewer, tiny_volume, qtbot, tmp_path, set_tiny_training, monkeypatch
):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    one_slice = np.zeros_like(labels)
    one_slice[4] = labels[4]
    viewer.add_image(image, name="img")
    viewer.add_labels(one_slice, name="ann")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    infos = []
    monkeypatch.setattr(train_widget_module, "show_info", infos.append)
    set_tiny_training(widget, tmp_path / "model")
    assert widget.train_button.enabled, widget.status.value  # one slice is enough to train
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=180_000)
    line = widget.status.value.splitlines()[-1]
    assert widget.status.value.startswith("Training finished"), widget.status.value
    assert line.startswith("Only slice 4 is annotated") and line.endswith(
        "Slice 1, for example, spreads the annotations through the stack."), line  # 6 slices: 1 is farthest-reaching
    assert line in infos


def test_existing_model_folder_is_not_replaced_unasked(widget_with_data, tmp_path):
    _, widget = widget_with_data
    existing = tmp_path / "model"
    existing.mkdir()
    (existing / "bundle.json").write_text("{}")
    widget.model_dir.value = existing
    assert widget._output_dir() == tmp_path / "model-2"
    widget.replace.value = True
    assert widget._output_dir() == existing


def test_train_disabled_with_reason_for_bad_inputs(make_napari_viewer, tiny_volume):
    viewer = make_napari_viewer()
    image, labels, _ = tiny_volume
    viewer.add_image(image, name="img")
    widget = TrainWidget(viewer)
    widget.patch_size.value = 32
    assert not widget.train_button.enabled
    assert "Labels" in widget.status.value

    # Labels of another shape are not offered at all.
    viewer.add_labels(np.zeros((6, 40, 48), np.uint8), name="wrong shape")
    assert widget.labels.value is None and not widget.train_button.enabled

    viewer.add_labels(np.zeros_like(labels), name="empty")
    assert widget.labels.value.name == "empty"
    assert not widget.train_button.enabled and "annotated" in widget.status.value

    viewer.add_labels(labels, name="ann")
    widget.labels.value = viewer.layers["ann"]
    assert widget.train_button.enabled, widget.status.value

    widget.auto_sizes.value = False
    widget.patch_size.value = 64  # larger than the 48 x 48 slices
    assert not widget.train_button.enabled and "Patch size" in widget.status.value
    widget.auto_sizes.value = True  # an automatic patch is fitted to the image
    assert widget.train_button.enabled, widget.status.value
    widget.patch_size.value = 32

    bad = image.astype(np.float32)
    bad[0, 0, 0] = np.nan
    viewer.add_image(bad, name="nan image")
    widget.image.value = viewer.layers["nan image"]
    widget.labels.value = viewer.layers["ann"]
    assert not widget.train_button.enabled and "NaN" in widget.status.value


def test_a_run_that_saved_no_model_says_so(widget_with_data, tmp_path):
    _, widget = widget_with_data
    widget.patch_size.value = 32  # valid inputs: the dock keeps the run's message
    before = list(TRAINED_MODELS.paths)
    message = f"Training ended before the first epoch finished: no model was saved. {tmp_path} was left as it was."
    result = TrainingResult(model_dir=None, model_saved=False, best_epoch=None, best_val_dice=None,
                            best_val_iou=None, best_val_loss=None, history={}, seconds=1.0, message=message)
    widget._on_finished(Stopped(message=message, training=result))
    assert widget.status.value == message
    assert widget.last_model_dir is None and TRAINED_MODELS.paths == before


def test_an_unwritable_model_folder_is_refused_before_training(widget_with_data, read_only_folder, monkeypatch):
    from napari_unet.plugin.widgets import train_widget

    _, widget = widget_with_data
    widget.patch_size.value = 32
    widget.model_dir.value = read_only_folder / "model"
    errors = []
    monkeypatch.setattr(train_widget, "show_error", errors.append)
    widget.start_training()
    assert widget.poller is None  # no worker was started
    assert len(errors) == 1 and "not writable" in errors[0] and "\n" not in errors[0]


def test_pretraining_is_asked_in_the_dock_and_shown_while_it_runs(widget_with_data, monkeypatch):
    from napari_unet.core import events
    from napari_unet.plugin.widgets import train_widget

    _, widget = widget_with_data
    assert widget.pretrain_share.value == 0 and widget._configs()[1].pretrain_share == 0
    widget.pretrain_share.value = 0.25
    assert widget._configs()[1].pretrain_share == pytest.approx(0.25)
    errors = []
    monkeypatch.setattr(train_widget, "show_error", errors.append)
    widget.time_limit.value = 0  # no time limit: no share of it to pretrain in
    widget.start_training()
    assert widget.poller is None  # no worker was started
    assert len(errors) == 1 and errors[0].startswith("Pretraining needs a time limit") and "\n" not in errors[0]
    widget._on_event(events.Stage(message="Pretraining on 6 slices (self-supervised) for 75 s", index=1, total=2))
    assert widget.status.value == "Pretraining on 6 slices (self-supervised) for 75 s"
    widget.progress_bar.max = 100  # as Train sets it: percent
    widget._on_event(events.Batch(epoch=0, batch=3, steps=3, loss=0.0123, progress=0.1, seconds_left=270.0))
    assert widget.progress_bar.value == 10
    assert "Training U-Net: pretraining, loss 0.012" in widget._napari_progress.desc
    widget._close_progress()


@pytest.mark.slow
def test_a_killed_worker_is_one_line_in_the_dock_as_in_the_cli(widget_with_data, qtbot, tmp_path,
                                                                set_tiny_training, monkeypatch):
    import os
    import signal

    from napari_unet.plugin.widgets import _job_dock
    from napari_unet.runtime.engine import failure_line

    _, widget = widget_with_data
    errors = []
    monkeypatch.setattr(_job_dock, "show_error", errors.append)
    set_tiny_training(widget, tmp_path / "model", epochs=500)
    widget.train_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.poller.job.pid is not None and widget.progress_bar.value > 0, timeout=180_000)
    os.kill(widget.poller.job.pid, signal.SIGKILL)  # as the out-of-memory killer would
    qtbot.waitUntil(lambda: not widget.poller.active, timeout=60_000)
    final = widget.poller.job.final_event
    assert isinstance(final, Error) and "SIGKILL" in final.message
    assert errors == [f"Training failed: {failure_line(final, 'Training')}"]
    assert len(errors[0].splitlines()) == 1 and "Traceback" not in errors[0]
    assert widget.status.value.startswith("Failed: ")


def test_batch_and_patch_default_to_auto_and_the_run_shows_device_sizes_and_data_wait(make_napari_viewer):
    from napari_unet.core import events
    from napari_unet.core.config import TrainConfig

    dock = TrainWidget(make_napari_viewer())
    assert dock.auto_sizes.value and "auto" in dock.auto_sizes.label
    assert not dock.batch_size.enabled and not dock.patch_size.enabled
    _, cfg = dock._configs()
    assert (cfg.batch_size, cfg.patch_size, cfg.mixed_precision) == (None, None, TrainConfig().mixed_precision)
    dock.auto_sizes.value = False
    dock.batch_size.value, dock.precision.value = 8, "bfloat16"
    assert dock.batch_size.enabled and dock._configs()[1].batch_size == 8
    assert dock._configs()[1].patch_size == 96 and dock._configs()[1].mixed_precision == "bfloat16"
    dock.auto_sizes.value = True

    dock._on_event(events.Start(device="GPU: NVIDIA H200, 0.5 of 141 GiB used", n_train_slices=4, n_val_slices=1,
                                n_classes=1, epochs=5, steps_per_epoch=10, params=1000, mixed_precision=True,
                                precision="mixed_bfloat16", replicas=2, batch_size=32, patch_size=256))
    assert dock.device.value == "GPU: NVIDIA H200, 0.5 of 141 GiB used, mixed_bfloat16, batch split over 2"
    assert "batches of 32 x 256 px" in dock.status.value
    assert (dock.batch_size.value, dock.patch_size.value) == (32, 256)  # what "auto" chose, shown
    dock._on_event(events.Epoch(epoch=1, epochs=5, loss=0.5, val_loss=0.4, val_dice=0.8, val_iou=0.7, seconds=2.0,
                                best_epoch=1, learning_rate=1e-3, data_wait_share=0.123,
                                gpu_peak_bytes=3 * 1024**3))
    assert dock.status.value == "Epoch 1/5: loss 0.500, val Dice 0.800 (12 % of it waiting for data)"
    assert dock.device.value.endswith("; training peak 3.0 GiB")
    dock._on_event(events.Start(device="CPU (2 threads)", n_train_slices=1, n_val_slices=1, n_classes=1, epochs=1,
                                steps_per_epoch=1, params=10, mixed_precision=False, batch_size=4, patch_size=96))
    assert dock.device.value == "CPU (2 threads)"

"""The presenter: events to the text the command line and the docks show."""

from napari_unet.core import events
from napari_unet.runtime import present


def _start(**changes) -> events.Start:
    values = dict(device="GPU: NVIDIA H200, 0.5 of 141 GiB used", n_train_slices=4, n_val_slices=1, n_classes=1,
                  epochs=5, steps_per_epoch=10, params=12345, mixed_precision=False, batch_size=32, patch_size=256)
    return events.Start(**{**values, **changes})


def _epoch(**changes) -> events.Epoch:
    values = dict(epoch=3, epochs=10, loss=0.123456, val_loss=0.2, val_dice=0.81234, val_iou=0.7, seconds=2.345,
                  best_epoch=3, learning_rate=1e-3, data_wait_share=0.123)
    return events.Epoch(**{**values, **changes})


def _batch(seconds_left) -> events.Batch:
    return events.Batch(epoch=2, batch=5, steps=10, loss=0.45678, progress=0.5, seconds_left=seconds_left)


def test_device_line_adds_precision_replicas_and_peak_only_when_they_say_something():
    assert present.device_line(_start()) == "GPU: NVIDIA H200, 0.5 of 141 GiB used"
    both = _start(precision="mixed_bfloat16", replicas=2)
    assert present.device_line(both) == "GPU: NVIDIA H200, 0.5 of 141 GiB used, mixed_bfloat16, batch split over 2"
    assert present.device_line(_start(replicas=1, precision="mixed_float16")).endswith(", mixed_float16")
    assert present.device_line(_start(), 3 * 1024**3) == "GPU: NVIDIA H200, 0.5 of 141 GiB used; training peak 3.0 GiB"


def test_data_line_and_the_command_line_s_start_line():
    assert present.data_line(_start()) == ("4 training and 1 validation slice(s); 12,345 weights; "
                                           "batches of 32 x 256 px")
    start = _start(device="CPU (2 threads)", precision="mixed_bfloat16")
    assert present.start_line(start) == ("Device: CPU (2 threads), mixed_bfloat16; 4 training and 1 validation "
                                         "slice(s); 12,345 weights; batches of 32 x 256 px")
    strips = _start(n_train_slices=2, n_val_slices=2, val_strips=True)
    assert present.data_line(strips).startswith("2 annotated slice(s), a strip of each held out for validation; ")


def test_time_left_rounds_to_the_second_in_both_forms():
    assert present.clock(0) == "0:00"
    assert present.clock(245.4) == "4:05"
    assert present.clock(59.6) == "1:00"
    assert present.time_left(None) == "-"
    assert present.time_left(245) == "4:05 at most (ends sooner once validation stops improving)"


def test_batch_fields_and_line():
    assert present.batch_fields(_batch(None)) == {"epoch": 2, "loss": "0.457"}
    assert present.batch_fields(_batch(61.0)) == {"epoch": 2, "loss": "0.457", "time_left": "1:01"}
    assert present.batch_line(_batch(None)) == "epoch 2, loss 0.457"


def test_epoch_line_and_status():
    assert present.epoch_line(_epoch()) == ("epoch   3/10  loss 0.1235  val_loss 0.2000  val_dice 0.8123  "
                                            "(2.3 s, 12 % waiting for data)")
    assert present.epoch_line(_epoch(val_loss=None, val_dice=None)) == ("epoch   3/10  loss 0.1235  "
                                                                        "(2.3 s, 12 % waiting for data)")
    assert present.epoch_status(_epoch()) == "Epoch 3/10: loss 0.123, val Dice 0.812 (12 % of it waiting for data)"
    assert present.epoch_status(_epoch(val_dice=None)) == "Epoch 3/10: loss 0.123 (12 % of it waiting for data)"


def test_warning_and_prediction_passes():
    assert present.warning_line(events.Warn(message="slow disk")) == "warning: slow disk"
    progress = events.Progress(axis=1, index=4, n_slices=40)
    assert present.pass_name(progress) == "Pass 2 of 3"
    assert present.pass_line(progress) == "Pass 2 of 3: slice 5 of 40"


def test_export_lines_and_the_failure_line():
    assert present.stage_line(events.Stage(message="packaging", index=2, total=4)) == "Export: packaging..."
    exported = events.Exported(path="/m/unet.zip", weights=("keras_hdf5", "onnx"))
    assert present.exported_line(exported) == ("Package written to /m/unet.zip (weights: keras_hdf5, onnx); "
                                               "it passed bioimageio.core's test_model.")
    assert present.EXPORT_STOPPED == "Export stopped: nothing was written."
    error = events.Error(message="Disk full.\nmore", hint="Free some space.", log="/logs/x.log")
    assert present.failed_line(error, "Export") == "Export failed: Disk full. Free some space. (details: /logs/x.log)"
    assert present.failed_line(events.Error(message=""), "Training") == "Training failed: Training failed."

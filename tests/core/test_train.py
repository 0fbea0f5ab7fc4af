import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.bundle import load_bundle, read_bundle_meta
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.nn.hardware import configure_device
from napari_unet.core.train import checkpoints, settings
from napari_unet.core.train import loop as train_module
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2)
TINY_TRAIN = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, patch_size=32, augment=False)


@pytest.fixture(scope="module", autouse=True)
def batch_event_every_step():
    """A Batch event after every step, as before events were spaced in time: these tests check
    each batch (tests/core/test_steps.py checks the spaced events against these)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "BATCH_EVENT_INTERVAL_S", 0.0)
        yield


@pytest.fixture(scope="module")
def volume():
    """6 x 48 x 48 bright discs on a dark noisy background: (image, truth with disc ids 1 and 2)."""
    image, _, truth = disc_volume(ids=True)
    return image, truth


def binary_labels(truth, slices=(1, 4)):
    labels = np.zeros_like(truth)
    labels[list(slices)] = truth[list(slices)] > 0
    return labels


def run(image, labels, out_dir, model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, **kwargs):
    return list(train(image, labels, model_cfg=model_cfg, train_cfg=train_cfg, out_dir=out_dir, **kwargs))


@pytest.fixture(scope="module")
def binary_run(volume, tmp_path_factory):
    image, truth = volume
    out = tmp_path_factory.mktemp("binary") / "model"
    return out, run(image, binary_labels(truth), out)


def test_events_come_in_order_with_their_fields(binary_run):
    out, events = binary_run
    kinds = [e.kind for e in events]
    assert kinds == ["start"] + (["batch"] * 3 + ["epoch"]) * 2 + ["done"]
    start = events[0]
    assert start.device.startswith(("CPU", "GPU"))
    assert (start.n_train_slices, start.n_val_slices, start.n_classes, start.val_strips) == (1, 1, 1, False)
    assert (start.epochs, start.steps_per_epoch) == (2, 3) and start.params > 1000
    batches = [e for e in events if e.kind == "batch"]
    assert [(e.epoch, e.batch, e.steps) for e in batches] == [(ep, b, 3) for ep in (1, 2) for b in (1, 2, 3)]
    assert all(np.isfinite(e.loss) and e.loss > 0 for e in batches)
    epochs = [e for e in events if e.kind == "epoch"]
    for e in epochs:
        assert e.epochs == 2 and e.seconds > 0
        assert np.isfinite(e.val_loss) and 0 <= e.val_dice <= 1 and 0 <= e.val_iou <= e.val_dice + 1e-6
    assert epochs[0].loss == pytest.approx(np.mean([e.loss for e in batches[:3]]))
    done = events[-1]
    assert done.training.model_dir == str(out) and done.finish_reason == "epochs"
    best = int(np.argmax([e.val_dice for e in epochs]))
    assert done.training.best_epoch == best + 1 and done.training.best_val_dice == epochs[best].val_dice
    assert done.training.history["loss"] == [e.loss for e in epochs]


def test_saved_bundle_describes_the_training_and_predicts(binary_run, volume):
    out, events = binary_run
    model, meta = load_bundle(out)
    assert meta.annotation_mode == "full_slices" and meta.instances is False
    assert meta.classes.activation == "sigmoid" and meta.classes.label_values == [0, 1]
    assert meta.model_cfg == TINY_MODEL
    assert meta.train_cfg == TINY_TRAIN
    assert meta.normalization.low[0] < meta.normalization.high[0] <= 255
    assert meta.validation.best_epoch == events[-1].training.best_epoch
    assert meta.validation.monitor == "val_loss"
    assert meta.history.val_dice == events[-1].training.history["val_dice"]
    assert meta.training_data.annotated_slices == [1, 4]
    prob = model.predict_on_batch(np.zeros((1, 48, 48, 1), np.float32))
    assert prob.shape == (1, 48, 48, 1) and np.isfinite(prob).all()


@pytest.fixture(scope="module")
def stopped_run(volume, tmp_path_factory):
    """The binary run again, stopped after the first batch of epoch 2."""
    image, truth = volume
    out = tmp_path_factory.mktemp("stopped") / "model"
    stop = threading.Event()
    events = []
    for event in train(image, binary_labels(truth), model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, out_dir=out,
                       stop_event=stop):
        events.append(event)
        if event.kind == "batch" and event.epoch == 2 and event.batch == 1:
            stop.set()
    return out, events


def test_stop_before_the_first_epoch_never_replaces_a_model(binary_run, volume, tmp_path):
    image, truth = volume
    existing = tmp_path / "model"
    shutil.copytree(binary_run[0], existing)
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    stop = threading.Event()
    events = []
    for event in train(image, binary_labels(truth), model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, out_dir=existing,
                       stop_event=stop, overwrite=True):
        events.append(event)
        if event.kind == "batch":
            stop.set()  # during the first epoch
    final = events[-1]
    assert final.kind == "stopped" and final.training.model_saved is False and final.training.model_dir is None
    assert "no model was saved" in final.message and str(existing) in final.message
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no stray temporary folder

    fresh = tmp_path / "fresh"
    stop.set()
    final = run(image, binary_labels(truth), fresh, stop_event=stop)[-1]
    assert final.training.model_saved is False and not fresh.exists()


def test_same_seed_gives_the_same_losses(binary_run, stopped_run):
    first = [e.loss for e in binary_run[1] if e.kind == "batch"]
    second = [e.loss for e in stopped_run[1] if e.kind == "batch"]
    assert len(second) == 4
    np.testing.assert_allclose(second, first[:4], rtol=1e-5)


def test_stop_between_batches_saves_the_model(stopped_run):
    out, events = stopped_run
    assert [e.kind for e in events] == ["start"] + ["batch"] * 3 + ["epoch", "batch", "stopped"]
    training = events[-1].training
    assert training.best_epoch == 1 and training.model_dir == str(out) and training.model_saved
    assert events[-1].training.history["epoch"] == [1]
    _, meta = load_bundle(out)
    assert meta.validation.best_epoch == 1


def test_scribbles_train_only_on_painted_pixels(volume, tmp_path):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[2, 18:23, 20:28] = 2  # a stroke inside the big disc
    labels[2, 2:5, 5:40] = 1  # and one in the background
    labels[3, 40:44, 30:46] = 1
    labels[3, 19:21, 22:26] = 2
    events = run(image, labels, tmp_path / "m", train_cfg=TINY_TRAIN.replace(annotation_mode="scribbles", epochs=1))
    assert events[-1].kind == "done"
    assert events[0].n_classes == 1 and events[0].n_train_slices + events[0].n_val_slices == 2
    meta = read_bundle_meta(tmp_path / "m")
    assert meta.annotation_mode == "scribbles" and meta.classes.label_values == [1, 2]


def test_multiclass_softmax_with_weighted_cross_entropy(volume, tmp_path):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[[1, 3, 4]] = truth[[1, 3, 4]]  # classes 0, 1, 2
    cfg = TINY_TRAIN.replace(epochs=1, loss="weighted_ce", val_fraction=0.0, mixed_precision=True)
    events = run(image, labels, tmp_path / "m", model_cfg=TINY_MODEL.replace(n_classes=3), train_cfg=cfg)
    assert events[0].n_classes == 3 and events[0].n_val_slices == 0
    on_gpu = events[0].device.startswith("GPU")
    assert events[0].mixed_precision == on_gpu
    assert any(e.kind == "warning" and "Mixed precision needs a GPU" in e.message for e in events) != on_gpu
    epoch = [e for e in events if e.kind == "epoch"][0]
    assert np.isfinite(epoch.loss) and epoch.val_dice is None
    assert events[-1].training.best_epoch == 1 and events[-1].training.best_val_dice is None
    model, meta = load_bundle(tmp_path / "m")
    assert meta.classes.activation == "softmax" and meta.validation.monitor == "loss"
    assert model.output_shape[-1] == 3


def test_default_model_config_follows_the_data(volume, tmp_path):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[[1, 4]] = truth[[1, 4]]
    rgb = np.repeat(image[..., None], 2, axis=-1)
    events = run(rgb, labels, tmp_path / "m", model_cfg=None,
                 train_cfg=TINY_TRAIN.replace(instances=True, epochs=1, steps_per_epoch=1))
    assert [e.kind for e in events] == ["start", "batch", "epoch", "done"]
    assert events[0].n_classes == 3 and events[-1].training.best_epoch == 1
    model, meta = load_bundle(tmp_path / "m")
    cfg = meta.model_cfg
    assert (cfg.in_channels, cfg.n_classes, cfg.depth) == (2, 3, ModelConfig().depth)
    assert model.input_shape[-1] == 2 and model.output_shape[-1] == 3
    assert meta.classes.names == ["background", "interior", "boundary"]


@pytest.mark.slow
def test_early_stopping_ends_when_validation_stops_improving(volume, tmp_path, monkeypatch):
    image, truth = volume
    monkeypatch.setattr(train_module, "_validate", lambda *args: (0.5, 0.5, 0.3))  # never improves
    monkeypatch.setattr(checkpoints, "CHECKPOINT_INTERVAL_S", 0.0)  # write on every improvement
    cfg = TINY_TRAIN.replace(epochs=20, steps_per_epoch=1, early_stopping_patience=2)
    events = []
    for event in train(image, binary_labels(truth), model_cfg=TINY_MODEL, train_cfg=cfg, out_dir=tmp_path / "a"):
        events.append(event)
        if event.kind == "epoch" and event.epoch == 1:
            # The improvement was written at once; the final write then replaces this run's own folder.
            assert read_bundle_meta(tmp_path / "a").validation.best_epoch == 1
    assert events[-1].finish_reason == "early_stopping" and events[-1].training.best_epoch == 1
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3]


def test_a_time_budget_spent_before_the_first_epoch_saves_nothing(volume, tmp_path):
    image, truth = volume
    cfg = TINY_TRAIN.replace(epochs=20, max_seconds=1e-6)
    events = run(image, binary_labels(truth), tmp_path / "b", train_cfg=cfg)
    assert events[-1].kind == "done" and events[-1].finish_reason == "time_limit"
    assert "epoch" not in [e.kind for e in events]
    assert events[-1].training.model_saved is False and "no model was saved" in events[-1].training.message
    assert not (tmp_path / "b").exists()


def test_fine_tuning_reuses_model_and_normalization(binary_run, volume, tmp_path):
    image, truth = volume
    source, _ = binary_run
    other = TINY_MODEL.replace(n_filters=8)
    events = run(image * 2, binary_labels(truth, (2, 3)), tmp_path / "tuned", model_cfg=other,
                 train_cfg=TINY_TRAIN.replace(epochs=1, steps_per_epoch=1), resume_from=source)
    assert events[-1].kind == "done"
    assert any(e.kind == "warning" and "architecture" in e.message for e in events)
    old, new = read_bundle_meta(source), read_bundle_meta(tmp_path / "tuned")
    assert new.normalization == old.normalization  # not recomputed on the brighter image
    assert new.model_cfg == old.model_cfg and new.resumed_from == str(source)


def test_fine_tuning_refuses_other_classes(binary_run, volume, tmp_path):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[1] = truth[1]  # two classes now
    with pytest.raises(ValueError, match="has 1 output.*need 3"):
        run(image, labels, tmp_path / "m", resume_from=binary_run[0])


def test_continuing_starts_from_the_previous_weights(binary_run, volume, tmp_path):
    """After 0 steps a continued model predicts exactly as the model it continues."""
    from napari_unet.core.train.loop import Trainer

    image, truth = volume
    source, _ = binary_run
    trainer = Trainer(image, binary_labels(truth, (2, 3)), model_cfg=None, train_cfg=TINY_TRAIN,
                      out_dir=tmp_path / "tuned", resume_from=source)
    first = next(trainer.run())  # everything is built; no step has run
    assert first.kind == "start"
    previous, meta = load_bundle(source)
    x = np.random.default_rng(3).normal(0, 1, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(trainer.model.predict_on_batch(x)),
                                  np.asarray(previous.predict_on_batch(x)))
    assert trainer.norm == meta.normalization.model_dump()


def test_continuing_refuses_another_annotation_mode(binary_run, volume, tmp_path):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[1] = (truth[1] > 0) + 1  # scribbles: background 1, class 2, as one output
    with pytest.raises(ValueError, match="trained on 'full_slices' annotations; set the annotation mode"):
        run(image, labels, tmp_path / "m", train_cfg=TINY_TRAIN.replace(annotation_mode="scribbles"),
            resume_from=binary_run[0])


def test_bad_inputs_are_explained(binary_run, volume, tmp_path):
    image, truth = volume
    labels = binary_labels(truth)
    with pytest.raises(ValueError, match="patch_size 64 is larger than the image \\(48 x 48 pixels\\).*at most 48"):
        run(image, labels, tmp_path / "m", train_cfg=TINY_TRAIN.replace(patch_size=64))
    with pytest.raises(ValueError, match="patch_size 30 must be a multiple of 4.*use 28"):
        run(image, labels, tmp_path / "m", train_cfg=TINY_TRAIN.replace(patch_size=30))
    with pytest.raises(ValueError, match="n_classes is 2 but the labels need 1.*n_classes=1"):
        run(image, labels, tmp_path / "m", model_cfg=TINY_MODEL.replace(n_classes=2))
    with pytest.raises(ValueError, match="in_channels is 3 but the image has 1"):
        run(image, labels, tmp_path / "m", model_cfg=TINY_MODEL.replace(in_channels=3))
    with pytest.raises(ValueError, match="No annotated slice"):
        run(image, np.zeros_like(labels), tmp_path / "m")
    with pytest.raises(ValueError, match="differ"):
        run(image[:, :40], labels, tmp_path / "m")
    with pytest.raises(FileExistsError, match="already exists"):
        run(image, labels, binary_run[0])
    assert not (tmp_path / "m").exists()


def test_configure_device_describes_the_device():
    text = configure_device(TrainConfig(threads=1))
    assert text.startswith(("CPU (", "GPU: "))


def test_cosine_schedule_follows_steps_or_the_time_budget():
    lr = settings.cosine_learning_rate
    final = settings.FINAL_LR_FRACTION
    cfg = TrainConfig(learning_rate=1e-3, lr_schedule="cosine", max_seconds=0.0)
    assert lr(cfg, 0.0, 0.0) == pytest.approx(1e-3)
    assert lr(cfg, 0.5, 1e6) == pytest.approx(1e-3 * (final + (1 - final) / 2))  # no budget: time is ignored
    assert lr(cfg, 1.0, 0.0) == pytest.approx(1e-3 * final)
    budget = cfg.replace(max_seconds=100.0)
    # Half the budget used after 1 % of the steps: the schedule is half way down.
    assert lr(budget, 0.01, 50.0) == pytest.approx(lr(cfg, 0.5, 0.0))
    assert lr(budget, 0.01, 150.0) == pytest.approx(1e-3 * final)
    constant = cfg.replace(lr_schedule="constant", max_seconds=100.0)
    assert lr(constant, 0.9, 90.0) == pytest.approx(1e-3)


def test_learning_rate_reaches_the_optimizer(volume, tmp_path):
    image, labels = volume
    cfg = TrainConfig(epochs=3, steps_per_epoch=2, batch_size=2, patch_size=32, learning_rate=1e-3,
                      lr_schedule="cosine", max_seconds=0.0)
    events = list(train(image, binary_labels(labels), model_cfg=TINY_MODEL, train_cfg=cfg, out_dir=tmp_path / "m"))
    rates = [e.learning_rate for e in events if e.kind == "epoch"]
    # Read back from the optimizer after each epoch's last step (steps 1, 3 and 5 of 6).
    expected = [settings.cosine_learning_rate(cfg, step / 6, 0.0) for step in (1, 3, 5)]
    assert rates == pytest.approx(expected, rel=1e-5)


def test_plateau_schedule_halves_the_rate_on_each_plateau(volume, tmp_path, monkeypatch):
    image, truth = volume
    monkeypatch.setattr(train_module, "_validate", lambda *args: (0.5, 0.5, 0.3))  # never improves
    cfg = TINY_TRAIN.replace(epochs=5, steps_per_epoch=1, lr_patience=2, early_stopping_patience=0,
                             learning_rate=1e-3, max_seconds=600.0, lr_schedule="plateau")
    events = list(train(image, binary_labels(truth), model_cfg=TINY_MODEL, train_cfg=cfg, out_dir=tmp_path / "m"))
    rates = [e.learning_rate for e in events if e.kind == "epoch"]
    # Epoch 1 is the best; plateaus end epochs 3 and 5, so epochs 4-5 run at half the rate.
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4], rel=1e-5)
    left = [e.seconds_left for e in events if e.kind == "batch"]
    assert all(0 < s <= 600 for s in left) and left == sorted(left, reverse=True)


def test_the_auto_schedule_halves_on_plateaus_and_follows_the_cosine():
    cfg = TrainConfig(learning_rate=1e-3, max_seconds=100.0, lr_schedule="auto")
    rate = settings.learning_rate
    cosine = settings.cosine_learning_rate
    assert rate(cfg, plateaus=0, step_fraction=0.0, elapsed_s=0.0) == pytest.approx(1e-3)
    assert rate(cfg, plateaus=0, step_fraction=0.01, elapsed_s=50.0) == pytest.approx(cosine(cfg, 0.01, 50.0))
    assert rate(cfg, plateaus=2, step_fraction=0.01, elapsed_s=50.0) == pytest.approx(cosine(cfg, 0.01, 50.0) / 4)
    # The time cap reached: the lowest rate of the cosine, whatever the plateaus.
    lowest = 1e-3 * settings.FINAL_LR_FRACTION
    assert rate(cfg, plateaus=0, step_fraction=0.01, elapsed_s=100.0) == pytest.approx(lowest)
    plateau = cfg.replace(lr_schedule="plateau")
    assert rate(plateau, plateaus=1, step_fraction=0.5, elapsed_s=90.0) == pytest.approx(5e-4)
    assert rate(cfg.replace(lr_schedule="cosine"), plateaus=3, step_fraction=0.01, elapsed_s=50.0) == pytest.approx(
        cosine(cfg, 0.01, 50.0))


def test_defaults_train_until_a_plateau_within_a_time_cap():
    d = TrainConfig()
    assert d.lr_schedule == "plateau" and d.early_stopping_patience > d.lr_patience > 0
    assert 60 <= d.max_seconds <= 600  # a few minutes on a CPU


def test_a_model_its_disk_refuses_is_saved_to_the_temporary_folder(volume, tmp_path, monkeypatch):
    import errno

    image, truth = volume
    wanted = tmp_path / "full_disk" / "model"
    real_save = checkpoints.save_bundle

    def save(folder, *args, **kwargs):
        if Path(folder) == wanted:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        return real_save(folder, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_bundle", save)
    monkeypatch.setattr(checkpoints, "rescue_folder", lambda out: tmp_path / "rescued" / "model")
    events = run(image, binary_labels(truth), wanted)
    final = events[-1]
    assert final.kind == "done" and final.training.model_saved
    assert final.training.model_dir == str(tmp_path / "rescued" / "model") and not wanted.exists()
    assert "No space left on device" in final.training.message
    assert str(tmp_path / "rescued" / "model") in final.training.message
    model, meta = load_bundle(final.training.model_dir)
    assert meta.validation.best_epoch == final.training.best_epoch


def test_an_image_too_small_for_any_patch_says_so(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (3, 64, 4)).astype(np.uint8)
    labels = np.zeros_like(image)
    labels[1, :10] = 1
    with pytest.raises(ValueError, match=r"64 x 4 pixels\) is too small to train on.*Check its axes"):
        run(image, labels, tmp_path / "m")


def test_instance_models_tune_their_object_step_on_the_painted_ids(volume, tmp_path, monkeypatch):
    image, truth = volume
    labels = np.zeros_like(truth)
    labels[[0, 2, 4]] = truth[[0, 2, 4]]  # 3-D ids: the two discs keep their ids through the slices
    monkeypatch.setattr(train_module, "TUNING_SHARE", 1000.0)  # search the whole list, however short the run
    events = run(image, labels, tmp_path / "m", model_cfg=TINY_MODEL.replace(n_classes=3),
                 train_cfg=TINY_TRAIN.replace(instances=True))
    result = events[-1].training
    tuning = read_bundle_meta(tmp_path / "m").object_tuning
    assert tuning.ids_3d and tuning.n_slices == 3 and tuning.tried > 5
    assert tuning.error <= tuning.default_error
    assert result.objects.startswith("objects tuned on your annotations: " + tuning.settings.objects)
    assert result.more_slices is None

    one_slice = np.zeros_like(truth)
    one_slice[2] = truth[2]
    events = run(image, one_slice, tmp_path / "one", model_cfg=TINY_MODEL.replace(n_classes=3),
                 train_cfg=TINY_TRAIN.replace(instances=True))
    assert read_bundle_meta(tmp_path / "one").object_tuning is None
    assert events[-1].training.objects == (
        "Objects not tuned (only one slice is annotated): prediction uses the fixed defaults.")
    more = events[-1].training.more_slices
    assert more.startswith("Only slice 2 is annotated") and "more slices helps most" in more


def _jit_compile_asked(monkeypatch) -> list:
    """The ``jit_compile`` of every ``tf.function`` Keras makes from now on."""
    import tensorflow as tf

    asked, make = [], tf.function

    def spy(*args, **kwargs):
        asked.append(kwargs.get("jit_compile"))
        return make(*args, **kwargs)

    monkeypatch.setattr(tf, "function", spy)
    return asked


@pytest.mark.parametrize("xla", ["on", "off", "auto"])
def test_the_xla_choice_reaches_compile_and_the_train_step(xla, monkeypatch):
    import keras

    from napari_unet.core.nn.losses import get_loss
    from napari_unet.core.nn.model import build_unet
    from napari_unet.core.nn.steps import train_step_loss

    keras_default = build_unet(TINY_MODEL)
    keras_default.compile(optimizer="adam", loss="mse")
    auto = keras_default.jit_compile  # Keras' own choice: off on a CPU-only TensorFlow
    jax = keras.backend.backend() == "jax"
    model = train_module._compiled_model(TINY_MODEL, "float32", None, get_loss("bce_dice", 1), None, 1e-3, xla=xla)
    assert model.jit_compile is (auto if jax else {"on": True, "off": False, "auto": auto}[xla])
    if jax:
        return  # JAX compiles every step whatever is asked: "off" is Keras' "auto" there
    asked = _jit_compile_asked(monkeypatch)
    x = np.zeros((2, 32, 32, 1), np.float32)
    assert np.isfinite(float(train_step_loss(model, x, np.zeros((2, 32, 32, 2), np.float32))))
    assert model.jit_compile in asked  # the step train_on_batch runs is compiled as asked


def test_the_start_event_says_whether_xla_compiles_the_step(volume, tmp_path):
    image, truth = volume
    events = run(image, binary_labels(truth), tmp_path / "m", train_cfg=TINY_TRAIN.replace(epochs=1, xla="on"))
    assert events[0].xla is True and events[-1].kind == "done"
    assert read_bundle_meta(tmp_path / "m").train_cfg.xla == "on"


def test_a_bundle_saved_before_the_xla_choice_loads_and_fine_tunes(binary_run, volume, tmp_path):
    import json

    image, truth = volume
    old = tmp_path / "old"
    shutil.copytree(binary_run[0], old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["train_config"]["xla"]
    (old / "bundle.json").write_text(json.dumps(meta))
    _, loaded = load_bundle(old)
    assert loaded.train_cfg.xla == "auto"
    events = run(image, binary_labels(truth), tmp_path / "tuned",
                 train_cfg=TINY_TRAIN.replace(epochs=1, steps_per_epoch=1), resume_from=old)
    assert events[-1].kind == "done"

import numpy as np
import pytest

from napari_unet.core import events
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.nn.model import build_unet
from napari_unet.core.train import consistency, pretrain
from napari_unet.core.train.augment import elastic_deform
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2, n_classes=3)
SMALL = TINY_MODEL


def test_plan_takes_only_unannotated_slices_and_says_why_it_skips():
    assert consistency.plan(30, [3], 0.0) == consistency.Plan(())
    chosen = consistency.plan(10, [2, 7], 0.5).slices
    assert chosen == (0, 1, 3, 4, 5, 6, 8, 9)
    spread = consistency.plan(300, [5], 0.5).slices
    assert len(spread) == pretrain.MAX_SLICES and 5 not in spread and (spread[0], spread[-1]) == (0, 299)
    small = consistency.plan(5, [0, 2], 0.5)
    assert small.slices == () and small.skip.startswith("Consistency skipped") and "3 unannotated" in small.skip
    assert "fine-tuning" in consistency.plan(30, [3], 0.5, resuming=True).skip


def test_mix_swaps_half_the_batch_for_unannotated_patches_with_the_models_targets():
    rng = np.random.default_rng(0)
    slices = [rng.random((40, 40, 1)).astype(np.float32) for _ in range(3)]
    model = build_unet(TINY_MODEL)
    mixer = consistency.Consistency(consistency.UnannotatedPatches(slices, 32, seed=0), weight=0.3, seed=0)
    x = rng.random((4, 32, 32, 1)).astype(np.float32)
    y = np.concatenate([rng.random((4, 32, 32, 3)), np.ones((4, 32, 32, 1))], axis=-1).astype(np.float32)
    x2, y2 = mixer.mix(model, x, y, progress=1.0)
    assert x2.shape == x.shape and y2.shape == y.shape
    np.testing.assert_array_equal(x2[:2], x[:2])  # the painted half is kept as it was
    np.testing.assert_array_equal(y2[:2], y[:2])
    assert not np.allclose(x2[2:], x[2:])
    np.testing.assert_allclose(y2[2:, ..., -1], 0.3)  # the mask carries the weight
    targets = y2[2:, ..., :3]
    np.testing.assert_allclose(targets.sum(axis=-1), 1.0, atol=1e-4)  # the softmax, warped
    _, early = mixer.mix(model, x, y, progress=0.1)
    np.testing.assert_allclose(early[2:, ..., -1], 0.3 * consistency.ramp_up(0.1), rtol=1e-6)


def test_the_weight_rises_over_the_first_part_of_the_run():
    weights = [consistency.ramp_up(p) for p in (0.0, 0.1, 0.2, consistency.RAMP_SHARE, 0.9)]
    assert weights[0] < 0.01 and weights[0] < weights[1] < weights[2] < weights[3] == 1.0 == weights[4]


def test_the_target_is_the_prediction_warped_as_the_patch_is():
    patch = np.random.default_rng(1).random((32, 32, 1)).astype(np.float32)
    prediction = np.stack([patch[..., 0], 1 - patch[..., 0]], axis=-1)
    view, target = consistency.student_view(patch, prediction, 0.7, np.random.default_rng(5))
    warped, expected, _ = elastic_deform(patch, prediction, np.ones((32, 32)), np.random.default_rng(5))
    np.testing.assert_array_equal(target[..., :2], expected)
    np.testing.assert_allclose(target[..., 2], 0.7)
    assert not np.allclose(view, warped)  # the student sees other intensities, and noise
    assert np.corrcoef(view.ravel(), warped.ravel())[0, 1] > 0.8


def test_a_batch_of_one_keeps_its_painted_patch():
    slices = [np.zeros((40, 40, 1), np.float32)]
    mixer = consistency.Consistency(consistency.UnannotatedPatches(slices, 32, seed=0), weight=1.0, seed=0)
    x = np.ones((1, 32, 32, 1), np.float32)
    y = np.ones((1, 32, 32, 4), np.float32)
    x2, y2 = mixer.mix(build_unet(TINY_MODEL), x, y, progress=1.0)
    assert len(x2) == 2 and np.array_equal(x2[0], x[0]) and np.array_equal(y2[0], y[0])


@pytest.fixture(scope="module")
def volume():
    image, _, truth = disc_volume(ids=True)
    labels = np.zeros_like(truth)
    labels[[1, 4]] = truth[[1, 4]]
    return image, labels


def _cfg(**changes):
    return TrainConfig(instances=True, epochs=2, steps_per_epoch=3, batch_size=2, patch_size=32,
                       consistency_weight=0.5, **changes)


def test_every_training_step_mixes_in_unannotated_patches(volume, tmp_path, monkeypatch):
    image, labels = volume
    mixed = []
    original = consistency.Consistency.mix

    def counted(self, model, x, y, progress):
        mixed.append(len(x))
        return original(self, model, x, y, progress)

    monkeypatch.setattr(consistency.Consistency, "mix", counted)
    run = list(train(image, labels, model_cfg=SMALL, train_cfg=_cfg(), out_dir=tmp_path / "m"))
    assert not any(isinstance(e, events.Warn) and "Consistency" in e.message for e in run)
    assert mixed == [2] * 6  # 2 epochs of 3 steps
    assert run[-1].kind == "done" and run[-1].training.model_saved
    assert all(np.isfinite(e.loss) for e in run if isinstance(e, events.Epoch))


def test_a_small_stack_skips_consistency_with_one_line(volume, tmp_path):
    image, labels = volume
    run = list(train(image[:5], labels[:5], model_cfg=SMALL, train_cfg=_cfg(),
                     out_dir=tmp_path / "m"))
    warnings = [e.message for e in run if isinstance(e, events.Warn)]
    assert len(warnings) == 1 and warnings[0].startswith("Consistency skipped")
    assert run[-1].kind == "done"

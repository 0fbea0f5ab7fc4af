import threading

import numpy as np
import pytest

from napari_unet.core import events
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.train import pretrain
from napari_unet.core.train.loop import train

from volumes import disc_volume

TINY_MODEL = ModelConfig(n_filters=4, depth=2)
CAP_S = 12.0
SHARE = 0.5


def test_plan_spreads_slices_and_says_why_it_skips():
    assert pretrain.plan(30, [3], 0.0) == pretrain.Plan(())
    spread = pretrain.plan(200, [3, 7], 0.25).slices
    assert len(spread) == pretrain.MAX_SLICES and (spread[0], spread[-1]) == (0, 199)
    assert pretrain.plan(6, [1, 4], 0.25).slices == tuple(range(6))
    small = pretrain.plan(5, [0, 2], 0.25)
    assert small.slices == () and "3 unannotated slice(s), too few" in small.skip
    resumed = pretrain.plan(30, [3], 0.25, resuming=True)
    assert resumed.slices == () and "fine-tuning" in resumed.skip


def test_masked_patches_blank_blocks_to_the_patch_mean_and_ask_for_them_back():
    rng = np.random.default_rng(0)
    slices = [rng.random((40, 50, 1)).astype(np.float32) * 1.4 - 0.2 for _ in range(3)]
    x, y = pretrain.MaskedPatches(slices, 32, 6, seed=1).sample_batch()
    assert x.shape == (6, 32, 32, 1) and y.shape == (6, 32, 32, 2)
    target, hidden = y[..., :1], y[..., 1:]
    assert set(np.unique(hidden)) == {0.0, 1.0}
    assert 0.2 < hidden.mean() < 0.6  # about MASKED_SHARE of the blocks
    assert target.min() >= 0.0 and target.max() <= 1.0
    for k in range(6):
        blanked = x[k][hidden[k, ..., 0] > 0]
        assert np.ptp(blanked) == 0  # one value: the patch's mean
        shown = hidden[k, ..., 0] == 0
        np.testing.assert_allclose(np.clip(x[k][shown], 0, 1), target[k][shown])


def test_hand_over_copies_every_layer_but_the_head():
    source = pretrain.reconstruction_model(TINY_MODEL, "float32", 1e-3, "off")
    from napari_unet.core.nn.model import build_unet

    target = build_unet(TINY_MODEL.replace(n_classes=3))
    copied = pretrain.hand_over(source, target)
    assert copied == sum(1 for layer in target.layers if layer.weights and layer.name != pretrain.HEAD)
    for layer in target.layers:
        if layer.weights and layer.name != pretrain.HEAD:
            for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    assert target.get_layer(pretrain.HEAD).get_weights()[0].shape[-1] == 3


@pytest.fixture(scope="module")
def volume():
    image, _, truth = disc_volume(ids=True)
    labels = np.zeros_like(truth)
    labels[[1, 4]] = truth[[1, 4]] > 0
    return image, labels


def _cfg(**changes):
    return TrainConfig(epochs=50, steps_per_epoch=3, batch_size=2, patch_size=32, augment=False,
                       max_seconds=CAP_S, pretrain_share=SHARE, **changes)


def test_pretraining_comes_first_and_its_time_counts_against_the_cap(volume, tmp_path):
    image, labels = volume
    run = list(train(image, labels, model_cfg=TINY_MODEL, train_cfg=_cfg(), out_dir=tmp_path / "m"))
    kinds = [e.kind for e in run]
    assert kinds.index("stage") < kinds.index("batch") < kinds.index("epoch")
    assert "Pretraining on 6 slices" in run[kinds.index("stage")].message
    batches = [e for e in run if isinstance(e, events.Batch)]
    assert batches[0].epoch == 0  # the pretraining's progress
    first_supervised = next(e for e in batches if e.epoch == 1)
    assert first_supervised.seconds_left <= CAP_S * (1 - SHARE)
    assert all(0 < e.progress <= 1 for e in batches)
    assert run[-1].kind == "done" and run[-1].training.model_saved


def test_stop_during_pretraining_ends_the_run_and_saves_nothing(volume, tmp_path):
    image, labels = volume
    stop = threading.Event()
    seen = []
    for event in train(image, labels, model_cfg=TINY_MODEL, train_cfg=_cfg(), out_dir=tmp_path / "m",
                       stop_event=stop):
        seen.append(event)
        if isinstance(event, events.Stage):
            stop.set()
    assert isinstance(seen[-1], events.Stopped)
    assert not any(isinstance(e, events.Epoch) for e in seen)
    assert not seen[-1].training.model_saved and not (tmp_path / "m").exists()
    assert seen[-1].training.seconds < CAP_S * SHARE


def test_a_small_stack_skips_pretraining_with_one_line(volume, tmp_path):
    image, labels = volume
    run = list(train(image[:5], labels[:5], model_cfg=TINY_MODEL, train_cfg=_cfg(), out_dir=tmp_path / "m"))
    warnings = [e.message for e in run if isinstance(e, events.Warn)]
    assert len(warnings) == 1 and warnings[0].startswith("Pretraining skipped")
    assert not any(isinstance(e, events.Stage) for e in run)


def test_pretraining_needs_a_time_cap():
    with pytest.raises(ValueError, match="Pretraining needs a time limit"):
        TrainConfig(max_seconds=0, pretrain_share=0.25)

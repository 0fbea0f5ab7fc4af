import numpy as np
import pytest

from napari_unet.core.events import Done, Ranked, Slice
from napari_unet.core.uncertainty import candidate_slices, rank, rank_slices, slice_uncertainty


def test_uncertainty_is_mean_entropy_in_zero_to_one():
    assert slice_uncertainty(np.full((4, 4, 1), 0.5)) == pytest.approx(1.0)
    assert slice_uncertainty(np.full((4, 4, 3), 1 / 3)) == pytest.approx(1.0)
    assert slice_uncertainty(np.zeros((4, 4, 1))) == pytest.approx(0.0, abs=1e-5)
    sure = np.zeros((4, 4, 3))
    sure[..., 2] = 1
    assert slice_uncertainty(sure) == pytest.approx(0.0, abs=1e-5)
    half = np.zeros((2, 2, 1))
    half[0] = 0.5  # half the pixels a coin toss, half certain
    assert slice_uncertainty(half) == pytest.approx(0.5, abs=1e-5)


def test_candidates_are_the_unannotated_slices_or_an_even_sample():
    labels = np.zeros((10, 3, 3), np.uint8)
    labels[[2, 5], 1, 1] = 1
    assert candidate_slices(labels) == ([0, 1, 3, 4, 6, 7, 8, 9], 8)
    picked, total = candidate_slices(np.zeros((100, 2, 2)), max_slices=5)
    assert total == 100 and picked == [0, 25, 50, 74, 99]
    with pytest.raises(ValueError, match="at least 1"):
        candidate_slices(labels, max_slices=0)


def test_rank_puts_the_most_uncertain_first():
    assert rank({3: 0.2, 7: 0.9, 1: 0.2}) == [(7, 0.9), (1, 0.2), (3, 0.2)]


def _fake_predict(volume, out_labels, out_probs):
    """A model that is unsure where the image is bright: probability 0.5 there, else 0."""
    for i in range(volume.shape[0]):
        image = np.asarray(volume[i])
        out_probs[(i,)] = np.where(image > 100, 0.5, 0.0)[..., None]
        yield Slice(index=i, n_slices=volume.shape[0])
    yield Done(n_slices=volume.shape[0])


def test_rank_slices_predicts_only_the_candidates_and_ranks_them():
    volume = np.zeros((5, 8, 8), np.uint8)
    volume[3] = 200  # all unsure
    volume[1, :4] = 200  # half unsure
    events = list(rank_slices(volume, [1, 3, 4], _fake_predict, n_classes=1))
    assert [e.kind for e in events] == ["progress"] * 3 + ["done"]
    ranking = events[-1].ranking
    assert [z for z, _ in ranking] == [3, 1, 4]
    assert ranking[0][1] == pytest.approx(1.0) and ranking[1][1] == pytest.approx(0.5, abs=1e-4)
    assert list(rank_slices(volume, [], _fake_predict, 1)) == [Ranked()]
    with pytest.raises(ValueError, match="3-D"):
        list(rank_slices(volume[0], [0], _fake_predict, 1))


def _discs(n_slices, seed):
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[0:n_slices, 0:48, 0:48]
    truth = (((y - 20) ** 2 + (x - 24) ** 2) < 100) | (((y - 36) ** 2 + (x - 12) ** 2) < 40)
    image = (truth * 120 + 40 + rng.normal(0, 10, truth.shape)).clip(0, 255).astype(np.uint8)
    return image, truth.astype(np.uint8)


@pytest.mark.slow
def test_noise_ranks_above_a_slice_the_model_has_learned(tmp_path):
    from functools import partial

    from napari_unet.core.bundle import load_bundle, model_config_of
    from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig
    from napari_unet.core.predict import predict_volume
    from napari_unet.core.train import train

    image, truth = _discs(4, 0)
    labels = np.zeros_like(truth)
    labels[[0, 1, 2]] = truth[[0, 1, 2]]
    cfg = TrainConfig(epochs=8, steps_per_epoch=25, batch_size=4, patch_size=32, val_fraction=0.0)
    events = list(train(image, labels, ModelConfig(n_filters=8, depth=2), cfg, tmp_path / "m"))
    assert events[-1].kind == "done"
    model, meta = load_bundle(tmp_path / "m")
    noise = np.random.default_rng(5).integers(0, 256, (48, 48), dtype=np.uint8)
    volume = np.stack([image[3], noise])  # slice 0: like the training slices; slice 1: pure noise
    n_classes = model_config_of(meta).n_classes
    predict = partial(predict_volume, predict_fn=model.predict_on_batch, cfg=PredictConfig(normalize="model"),
                      n_classes=n_classes, size_multiple=4, normalization=meta["normalization"])
    ranking = list(rank_slices(volume, [0, 1], predict, n_classes))[-1].ranking
    assert [z for z, _ in ranking] == [1, 0]
    assert ranking[0][1] > 2 * ranking[1][1]

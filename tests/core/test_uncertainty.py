import numpy as np
import pytest

from napari_unet.core.events import Done, Progress, Ranked, Slice
from napari_unet.core.predict.uncertainty import (
    candidate_slices,
    rank,
    rank_slices,
    slice_disagreement,
    slice_uncertainty,
    spread_weights,
)

from volumes import disc_volume


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
    events = list(rank_slices(volume, [1, 3, 4], predict=_fake_predict, n_classes=1))
    assert [e.kind for e in events] == ["progress"] * 3 + ["done"]
    ranking = events[-1].ranking
    assert [z for z, _ in ranking] == [3, 1, 4]
    assert ranking[0][1] == pytest.approx(1.0) and ranking[1][1] == pytest.approx(0.5, abs=1e-4)
    assert list(rank_slices(volume, [], predict=_fake_predict, n_classes=1)) == [Ranked()]
    with pytest.raises(ValueError, match="3-D"):
        list(rank_slices(volume[0], [0], predict=_fake_predict, n_classes=1))


def _disc_probs(centre_x, size=40):
    """Sigmoid probabilities (Y, X, 1) of a disc of radius 10, soft over ~3 px at its edge."""
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(y - size / 2, x - centre_x)
    return (1 / (1 + np.exp(r - 10)))[..., None]


def test_disagreement_counts_moved_boundaries_not_doubt_inside_objects():
    disc = _disc_probs(20)
    assert slice_disagreement(disc, disc) == 0.0
    moved = slice_disagreement(disc, _disc_probs(22))  # a boundary 2 px away in the other pass
    inside = disc.copy()
    inside[15:25, 15:25] = 0.7  # the other pass less sure deep inside the disc: no object changes
    assert moved > 0.1
    assert slice_disagreement(disc, inside) < moved / 10
    flat = np.full((40, 40, 1), 0.2)  # doubt everywhere, but no boundary in either pass
    assert slice_disagreement(flat, flat + 0.1) == 0.0
    as_softmax = lambda p: np.concatenate([1 - p, p], axis=-1)  # noqa: E731
    assert slice_disagreement(as_softmax(disc), as_softmax(_disc_probs(22))) == pytest.approx(moved)


def test_spread_weights_favour_slices_far_from_the_annotated_ones():
    weights = spread_weights([0, 4, 5, 6, 19], annotated=[5], n_slices=20)
    assert weights[5] == 0.0
    assert weights[4] == weights[6] < weights[0] < weights[19] < 1.0
    assert spread_weights([3, 7], annotated=[], n_slices=20) == {3: 1.0, 7: 1.0}
    # More annotations, closer gaps: a neighbour weighs more than with one annotation far away.
    assert spread_weights([6], [5, 15], 20)[6] < spread_weights([6], [5, 10, 15], 20)[6]


def _volume_with_one_informative_slice():
    """Slice 0: annotated; 1: dim and uniform (hard, but no object to get wrong); 2: discs with
    soft edges (the boundaries are in doubt); 3: crisp discs (easy)."""
    y, x = np.mgrid[0:48, 0:48]
    r = np.minimum(np.hypot(y - 16, x - 14), np.hypot(y - 32, x - 34))
    soft = 100 + 60 * np.tanh((9 - r) / 4)
    crisp = np.where(r < 9, 200, 40)
    return np.stack([crisp, np.full((48, 48), 80), soft, crisp]).astype(np.float32)


def _shaky_predict(volume, out_labels, out_probs, shake=1.5):
    """A model that is unsure near intensity 100, its doubt swayed by the pixel's column in its
    input (so a turned pass sways it elsewhere): the boundaries it draws there move."""
    for i in range(volume.shape[0]):
        image = np.asarray(volume[i], np.float64)
        columns = np.arange(image.shape[1])[None, :]
        out_probs[(i,)] = (1 / (1 + np.exp(-((image - 100) / 8 + shake * np.sin(columns / 2)))))[..., None]
        yield Slice(index=i, n_slices=volume.shape[0])
    yield Done(n_slices=volume.shape[0])


def test_disagreement_ranks_the_slice_with_doubtful_boundaries_first_where_entropy_does_not():
    volume = _volume_with_one_informative_slice()
    entropy = list(rank_slices(volume, [1, 2, 3], predict=_shaky_predict, n_classes=1))[-1].ranking
    assert entropy[0][0] == 1  # entropy points at the dim, uniform slice
    events = list(rank_slices(volume, [1, 2, 3], predict=_shaky_predict, n_classes=1, method="disagreement",
                              annotated=[0]))
    assert [e.kind for e in events] == ["progress"] * 3 + ["done"]
    assert [e.index for e in events if isinstance(e, Progress)] == [0, 1, 2]
    assert all(e.n_slices == 3 for e in events if isinstance(e, Progress))
    ranking = events[-1].ranking
    assert ranking[0][0] == 2 and ranking[0][1] > 5 * ranking[1][1]
    with pytest.raises(ValueError, match="Unknown ranking method"):
        list(rank_slices(volume, [1], predict=_shaky_predict, n_classes=1, method="margin"))


def test_a_model_that_turns_with_the_image_never_disagrees():
    from functools import partial

    volume = _volume_with_one_informative_slice()
    steady = partial(_shaky_predict, shake=0.0)  # pixel-wise: a turned pass is the same, turned
    ranking = list(rank_slices(volume, [1, 2, 3], predict=steady, n_classes=1, method="disagreement"))[-1].ranking
    assert all(score == pytest.approx(0.0, abs=1e-6) for _, score in ranking)


def test_disagreement_prefers_the_slice_far_from_the_annotated_ones():
    soft = _volume_with_one_informative_slice()[2]
    volume = np.stack([soft] * 12)
    ranking = list(rank_slices(volume, [3, 10], predict=_shaky_predict, n_classes=1, method="disagreement",
                               annotated=[2]))[-1].ranking
    assert [z for z, _ in ranking] == [10, 3]
    assert ranking[0][1] > 2 * ranking[1][1]


def _discs(n_slices, seed):
    image, _, truth = disc_volume((n_slices, 48, 48), seed, annotated=())
    return image, truth


@pytest.mark.slow
def test_noise_ranks_above_a_slice_the_model_has_learned(tmp_path):
    from functools import partial

    from napari_unet.core.bundle import load_bundle
    from napari_unet.core.config import ModelConfig, PredictConfig, TrainConfig
    from napari_unet.core.predict.volume import predict_volume
    from napari_unet.core.train.loop import train

    image, truth = _discs(4, 0)
    labels = np.zeros_like(truth)
    labels[[0, 1, 2]] = truth[[0, 1, 2]]
    cfg = TrainConfig(epochs=8, steps_per_epoch=25, batch_size=4, patch_size=32, val_fraction=0.0)
    events = list(train(image, labels, model_cfg=ModelConfig(n_filters=8, depth=2), train_cfg=cfg,
                        out_dir=tmp_path / "m"))
    assert events[-1].kind == "done"
    model, meta = load_bundle(tmp_path / "m")
    noise = np.random.default_rng(5).integers(0, 256, (48, 48), dtype=np.uint8)
    volume = np.stack([image[3], noise])  # slice 0: like the training slices; slice 1: pure noise
    n_classes = meta.model_cfg.n_classes
    predict = partial(predict_volume, predict_fn=model.predict_on_batch, cfg=PredictConfig(normalize="model"),
                      n_classes=n_classes, size_multiple=4, normalization=meta.normalization.model_dump())
    ranking = list(rank_slices(volume, [0, 1], predict=predict, n_classes=n_classes))[-1].ranking
    assert [z for z, _ in ranking] == [1, 0]
    assert ranking[0][1] > 2 * ranking[1][1]

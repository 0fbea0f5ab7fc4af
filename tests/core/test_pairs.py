import numpy as np
import pytest

from napari_unet.core.bundle import read_bundle_meta
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.train import pairs
from napari_unet.core.train.loop import train

from volumes import disc_volume


def _discs(shape, seed, value=1):
    """Bright discs on a noisy background: (image, labels annotated on slices 1 and 2)."""
    image, labels, _ = disc_volume(shape, seed, annotated=(1, 2), discs=((shape[1] // 2, shape[2] // 3, 80),))
    return image, labels * value


def test_two_pairs_of_different_sizes_train_one_model(tmp_path):
    first, second = _discs((4, 40, 48), 0), _discs((3, 64, 36), 1)
    events = list(train(*first, model_cfg=ModelConfig(n_filters=4, depth=2),
                        train_cfg=TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, patch_size=32, augment=False),
                        out_dir=tmp_path / "m", extra_pairs=[second]))
    assert events[-1].kind == "done" and events[-1].training.model_saved
    start = events[0]
    assert start.n_train_slices + start.n_val_slices == 4  # 2 annotated slices in each
    data = read_bundle_meta(tmp_path / "m").training_data
    assert data.annotated_slices == [1, 2]
    assert [pair.model_dump() for pair in data.extra_pairs] == [{"image_shape": [3, 64, 36],
                                                                 "annotated_slices": [1, 2]}]


def test_pairs_must_have_the_same_channels():
    gray = _discs((3, 40, 40), 0)
    rgb = (np.repeat(gray[0][..., None], 3, axis=-1), gray[1])
    with pytest.raises(ValueError, match=r"The image of pair 2 \(cells\) has 3 channel\(s\) but the first image "
                                         r"has 1: .*same channels"):
        pairs.validate_pairs([gray, rgb], "full_slices", names=["", "cells"])
    pairs.validate_pairs([rgb, rgb], "full_slices")
    with pytest.raises(ValueError, match="^In pair 2: .*No annotated slice"):
        pairs.validate_pairs([gray, (gray[0], np.zeros_like(gray[1]))], "full_slices")


def test_classes_and_intensities_come_from_all_pairs():
    a, b = _discs((3, 40, 40), 0), _discs((3, 20, 20), 1, value=2)
    assert pairs.class_count_of_pairs([a[1]], "full_slices") == 1
    assert pairs.class_count_of_pairs([a[1], b[1]], "full_slices") == 3  # values 1 and 2: softmax
    from napari_unet.core import data

    one = pairs.joint_normalization([data.as_zyxc(a[0])])
    assert one == data.compute_normalization(a[0])
    both = pairs.joint_normalization([data.as_zyxc(a[0]), data.as_zyxc(b[0].astype(np.int32) + 100)])
    assert both["high"][0] > one["high"][0]


def test_channels_and_classes_are_read_alike_from_raw_and_training_pairs():
    from napari_unet.core import data

    gray, labels = _discs((3, 40, 40), 0)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    two = (rgb, labels * 2)
    for found in ([(rgb, labels), two], [data.as_training_pair(*pair) for pair in [(rgb, labels), two]]):
        assert pairs.channels_and_classes(found, "full_slices") == (3, 3)
        assert pairs.channels_and_classes(found, "full_slices", instances=True) == (3, 3)
    assert pairs.channels_and_classes([(rgb[1], labels[1])], "full_slices") == (3, 1)  # one 2-D RGB slice
    assert pairs.channels_and_classes([(gray, labels)], "scribbles") == (1, 1)
    cfg = pairs.model_config_for(ModelConfig(n_filters=4), [(rgb, labels), two], "full_slices")
    assert (cfg.in_channels, cfg.n_classes, cfg.n_filters) == (3, 3, 4)

import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_unet.core import data
from napari_unet.core.train import augment

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


def _blocks(shape=(48, 48), seed=0, n_classes=3):
    """A class map made of random rectangles, so flips and warps are visible."""
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.int64)
    for _ in range(12):
        y, x = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 8)
        m[y : y + rng.integers(6, 16), x : x + rng.integers(6, 16)] = rng.integers(1, n_classes)
    return m


# ------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "shape, channels, expected",
    [
        ((8, 9), None, (1, 8, 9, 1)),
        ((3, 8, 9), None, (3, 8, 9, 1)),
        ((3, 8, 9, 2), None, (3, 8, 9, 2)),
        ((8, 9, 3), True, (1, 8, 9, 3)),
    ],
)
def test_as_zyxc_shapes(shape, channels, expected):
    assert data.as_zyxc(np.zeros(shape), channels=channels).shape == expected


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_as_zyxc_rejects_bad_ndim(shape):
    with pytest.raises(ValueError, match="Image must be"):
        data.as_zyxc(np.zeros(shape))


def test_as_training_pair_reads_rgb_from_the_labels_shape():
    image, labels = data.as_training_pair(np.zeros((8, 9, 3)), np.zeros((8, 9), int))
    assert image.shape == (1, 8, 9, 3) and labels.shape == (1, 8, 9)
    image, labels = data.as_training_pair(np.zeros((2, 8, 9)), np.zeros((2, 8, 9), int))
    assert image.shape == (2, 8, 9, 1) and labels.shape == (2, 8, 9)


def test_pad_to_multiple_round_trips():
    x = np.arange(10 * 17 * 2, dtype=float).reshape(10, 17, 2)
    padded, crop = data.pad_to_multiple(x, 8)
    assert padded.shape == (16, 24, 2)
    np.testing.assert_array_equal(padded[crop], x)
    np.testing.assert_array_equal(padded[10, :17], x[8])  # reflected, not zeros
    zeros, _ = data.pad_to_multiple(x, 8, mode="constant", constant_values=0)
    assert zeros[10:].sum() == 0
    same, crop = data.pad_to_multiple(np.zeros((16, 8)), 8)
    assert same.shape == (16, 8) and same[crop].shape == (16, 8)


# ------------------------------------------------------------ normalisation


def test_normalization_percentiles_and_constant_channel():
    rng = np.random.default_rng(1)
    ch0 = rng.uniform(100, 200, (4, 32, 32))
    image = np.stack([ch0, np.full_like(ch0, 7.0)], axis=-1)
    norm = data.compute_normalization(image, percentiles=(0, 100))
    json.dumps(norm)  # stored in the model bundle
    assert norm["method"] == "percentile" and norm["percentiles"] == [0.0, 100.0]
    assert norm["low"] == pytest.approx([ch0.min(), 7.0])
    assert norm["high"] == pytest.approx([ch0.max(), 8.0])  # constant channel: low + 1
    out = data.normalize(image, norm)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out[..., 0].min() == pytest.approx(0) and out[..., 0].max() == pytest.approx(1)
    assert np.all(out[..., 1] == 0)


def test_normalization_subsamples_and_ignores_nan():
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (6, 64, 64, 1))
    image[0, 0, 0, 0] = np.nan
    full = data.compute_normalization(image[1:], percentiles=(10, 90))
    sub = data.compute_normalization(image, percentiles=(10, 90), max_samples=3000, seed=3)
    assert np.isfinite(sub["low"] + sub["high"]).all()
    assert sub["low"][0] == pytest.approx(full["low"][0], abs=0.03)
    assert sub["high"][0] == pytest.approx(full["high"][0], abs=0.03)
    assert sub == data.compute_normalization(image, percentiles=(10, 90), max_samples=3000, seed=3)


def test_normalize_does_not_clip_or_modify_input():
    x = np.array([[0.0, 5.0, 20.0]], np.float32)[..., None]
    out = data.normalize(x, {"low": [5.0], "high": [15.0]})
    np.testing.assert_allclose(out[..., 0], [[-0.5, 0.0, 1.5]])
    assert x[0, 0, 0] == 0.0


# ---------------------------------------------------- annotation semantics


def test_annotated_slices_both_modes():
    labels = np.zeros((5, 8, 8), np.uint8)
    labels[1, 2, 2] = 1
    labels[3] = 2
    for mode in ("full_slices", "scribbles"):
        idx = data.annotated_slices(labels, mode)
        assert idx.tolist() == [1, 3] and idx.dtype.kind == "i"
    assert data.annotated_slices(np.ones((4, 4), int), "scribbles").tolist() == [0]
    with pytest.raises(ValueError, match="annotation mode"):
        data.annotated_slices(labels, "sparse")


@pytest.mark.parametrize(
    "values, mode, instances, expected",
    [
        ([0, 1], "full_slices", False, 1),
        ([0, 5], "full_slices", False, 1),  # one non-zero value: binary
        ([0, 1, 2], "full_slices", False, 3),
        ([0, 1, 3], "full_slices", False, 4),  # class k = label k
        ([0, 4, 9, 17], "full_slices", True, 3),
        ([0, 1, 2], "scribbles", False, 1),
        ([0, 1, 2, 3], "scribbles", False, 3),
        ([1, 2, 3, 4], "scribbles", False, 4),
    ],
)
def test_class_count_rule(values, mode, instances, expected):
    labels = np.zeros((3, 4, 8), np.int32)
    labels[1, 0, : len(values)] = values
    assert data.class_count(labels, mode, instances=instances) == expected


def test_class_count_errors():
    with pytest.raises(ValueError, match="No annotated slice"):
        data.class_count(np.zeros((2, 4, 4), int), "full_slices")
    with pytest.raises(ValueError, match="full_slices"):
        data.class_count(np.ones((2, 4, 4), int), "scribbles", instances=True)


def test_object_ids_without_instances_suggest_the_instances_option():
    labels = np.zeros((2, 300, 300), np.int32)
    labels[0] = np.arange(300 * 300).reshape(300, 300) % 70000  # 70,000 object ids
    with pytest.raises(ValueError, match="look like object ids.*instances"):
        data.class_count(labels, "full_slices")
    assert data.class_count(labels, "full_slices", instances=True) == 3
    assert data.annotated_object_count(labels, "full_slices") == 69999


def test_full_slice_targets_zero_is_background():
    labels = np.array([[0, 1], [1, 0]])
    target, mask = data.make_targets(labels, "full_slices", 1)
    assert target.shape == (2, 2, 1) and target.dtype == np.float32 and mask.dtype == np.float32
    np.testing.assert_array_equal(target[..., 0], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(mask, 1)  # background pixels enter the loss
    target, mask = data.make_targets(np.zeros((2, 2), int), "full_slices", 1)
    np.testing.assert_array_equal(mask, 0)  # unannotated slice: ignored


def test_full_slice_multiclass_one_hot():
    labels = np.array([[0, 1, 2]])
    target, mask = data.make_targets(labels, "full_slices", 3)
    np.testing.assert_array_equal(target[0], np.eye(3))
    np.testing.assert_array_equal(mask, 1)
    binary, _ = data.make_targets(np.array([[0, 7]]), "full_slices", 1)
    np.testing.assert_array_equal(binary[..., 0], [[0, 1]])
    with pytest.raises(ValueError, match="only 3 classes"):
        data.make_targets(np.array([[0, 3]]), "full_slices", 3)
    with pytest.raises(ValueError, match="one output"):
        data.make_targets(labels, "full_slices", 1)


def test_scribble_targets_zero_is_masked_out():
    labels = np.array([[0, 1, 2]])
    target, mask = data.make_targets(labels, "scribbles", 1)
    np.testing.assert_array_equal(mask, [[0, 1, 1]])
    np.testing.assert_array_equal(target[..., 0], [[0, 0, 1]])
    labels = np.array([[0, 1, 2, 3]])
    target, mask = data.make_targets(labels, "scribbles", 3)
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1]])
    np.testing.assert_array_equal(target[0], [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="one output"):
        data.make_targets(labels, "scribbles", 1)


def test_instance_targets_separate_touching_objects():
    labels = np.zeros((8, 12), np.int32)
    labels[1:7, 1:6] = 1
    labels[1:7, 6:11] = 2  # touches object 1
    target, mask = data.make_targets(labels, "full_slices", 3, instances=True)
    classes = target.argmax(-1)
    assert target.sum(-1).min() == 1 and mask.min() == 1
    expected_boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    np.testing.assert_array_equal(classes == 2, expected_boundary)
    assert np.all(classes[1:7, 5] == 2) and np.all(classes[1:7, 6] == 2)  # the shared edge
    np.testing.assert_array_equal(classes == 1, (labels > 0) & ~expected_boundary)
    np.testing.assert_array_equal(classes == 0, labels == 0)
    with pytest.raises(ValueError, match="3 classes"):
        data.make_targets(labels, "full_slices", 2, instances=True)


# ----------------------------------------------------------------- validation


def _valid_pair():
    image = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 4:8, 4:8] = 1
    return image, labels


def test_validate_accepts_a_good_pair_and_rgb():
    image, labels = _valid_pair()
    data.validate_training_pair(image, labels, "full_slices", instances=False)
    data.validate_training_pair(np.random.default_rng(0).random((16, 16, 3)), labels[1], "full_slices",
                                instances=False)


@pytest.mark.parametrize(
    "change, mode, instances, message",
    [
        (lambda i, lab: (i[:, :8], lab), "full_slices", False,
         r"Image shape \(3, 8, 16\) and labels shape \(3, 16, 16\) differ.*Labels"),
        (lambda i, lab: (i, lab * 0), "full_slices", False, "No annotated slice.*paint every object"),
        (lambda i, lab: (i, lab * 0), "scribbles", False, "No scribbles.*label 1.*label 2"),
        (lambda i, lab: (i, np.ones_like(lab)), "full_slices", False, "only label 1.*background"),
        (lambda i, lab: (i, lab), "scribbles", False, r"Only background \(label 1\).*label 2"),
        (lambda i, lab: (i, lab * 2), "scribbles", False, "Only label 2.*background with label 1"),
        (lambda i, lab: (np.where(lab > 0, np.nan, i), lab), "full_slices", False, "16 NaN or infinite.*nan_to_num"),
        (lambda i, lab: (i, lab.astype(float)), "full_slices", False, "must be integers.*float64"),
        (lambda i, lab: (i, lab.astype(np.int8) - 1), "full_slices", False, r"not be negative \(found -1\)"),
        (lambda i, lab: (i, lab), "scribbles", True, "switch the annotation mode to 'full_slices'"),
    ],
)
def test_validate_failure_messages(change, mode, instances, message):
    image, labels = change(*_valid_pair())
    with pytest.raises(ValueError, match=message):
        data.validate_training_pair(image, labels, mode, instances=instances)


# ---------------------------------------------------------------------- split


def test_split_whole_slices():
    labels = np.ones((10, 8, 8), int)
    idx = [0, 2, 4, 6, 8]
    train, val = data.split_validation(idx, labels, 0.4, seed=1)
    assert len(val) == 2 and len(train) == 3
    assert sorted(z for z, _ in train + val) == idx
    assert all(region == (0, 8, 0, 8) for _, region in train + val)
    assert (train, val) == data.split_validation(idx, labels, 0.4, seed=1)
    seeds = {tuple(data.split_validation(idx, labels, 0.4, seed=s)[1]) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    assert len(data.split_validation(idx, labels, 0.01, seed=0)[1]) == 1  # at least one
    assert data.split_validation(idx, labels, 0.0, seed=0) == ([(z, (0, 8, 0, 8)) for z in idx], [])
    assert len(data.split_validation([3, 5], labels, 0.9, seed=0)[0]) == 1  # keep one to train


def test_split_single_slice_holds_out_a_strip():
    labels = np.zeros((3, 20, 50), int)
    labels[1] = _blocks((20, 50), seed=4)
    train, val = data.split_validation([1], labels, 0.2, seed=0)
    (vz, (y0, y1, x0, x1)), = val
    assert vz == 1 and (y0, y1) == (0, 20) and x1 - x0 == 10
    assert labels[1, :, x0:x1].any()
    covered = np.zeros(50, int)
    for z, (ty0, ty1, tx0, tx1) in train:
        assert z == 1 and (ty0, ty1) == (0, 20)
        covered[tx0:tx1] += 1
    covered[x0:x1] += 1
    np.testing.assert_array_equal(covered, 1)  # no overlap, nothing lost
    assert (train, val) == data.split_validation([1], labels, 0.2, seed=0)
    assert data.split_validation([1], labels, 0.0, seed=0) == ([(1, (0, 20, 0, 50))], [])


def test_strips_hold_out_a_strip_of_every_slice_so_each_still_teaches():
    labels = np.stack([_blocks((20, 50), seed=s) for s in range(3)])
    train, val = data.split_validation([0, 2], labels, 0.2, seed=0, by="strips")
    assert sorted({z for z, _ in train}) == sorted({z for z, _ in val}) == [0, 2]
    assert all(x1 - x0 == 10 and (y0, y1) == (0, 20) for _, (y0, y1, x0, x1) in val)
    whole_train, whole_val = data.split_validation([0, 2], labels, 0.2, seed=0)  # the default: whole slices
    assert len(whole_val) == 1 and len(whole_train) == 1 and whole_val[0][1] == (0, 20, 0, 50)
    with pytest.raises(ValueError, match="'slices' or 'strips'"):
        data.split_validation([0, 2], labels, 0.2, by="rows")


def test_split_single_slice_strip_lands_on_scribbles():
    labels = np.zeros((1, 20, 60), int)
    labels[0, 5, 40:50] = 1  # scribbles only on the right
    labels[0, 9, 2:8] = 2
    for seed in range(5):
        train, val = data.split_validation([0], labels, 0.1, seed=seed)
        (_, (_, _, x0, x1)), = val
        assert labels[0, :, x0:x1].any()
        assert any(labels[0, :, a:b].any() for _, (_, _, a, b) in train)


# -------------------------------------------------------------- augmentation


def _encoded_patch(seed=0):
    """Image channels = 10 * class map and 10 * mask, so alignment can be read off the image.

    Structures are at least 16 px wide: nearest-neighbour resampling may drop a
    1-px line that linear interpolation still shows, which is no misalignment.
    """
    rng = np.random.default_rng(seed)
    classes = np.kron(rng.integers(0, 3, (4, 4)), np.ones((16, 16), int))
    target = np.eye(3, dtype=np.float32)[classes]
    mask = np.kron(rng.random((4, 4)) < 0.7, np.ones((16, 16))).astype(np.float32)
    image = np.stack([10.0 * classes, 10.0 * mask], axis=-1).astype(np.float32)
    return image, target, mask


def _assert_aligned(image, target, mask, tolerance_px=2):
    classes = target.argmax(-1)
    assert np.all(target.sum(-1) == 1)
    # Linear interpolation of the image blurs label edges only (a warp may stretch them a little).
    near_edge = ndi.binary_dilation(
        find_boundaries(classes, mode="thick") | find_boundaries(mask > 0, mode="thick"), iterations=tolerance_px
    )
    far = ~near_edge
    assert far.mean() > 0.3  # enough pixels left to make the check meaningful
    np.testing.assert_allclose(image[..., 0][far], 10.0 * classes[far], atol=1e-4)
    np.testing.assert_allclose(image[..., 1][far], 10.0 * mask[far], atol=1e-4)


def test_flips_and_rotations_keep_alignment():
    image, target, mask = _encoded_patch()
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        out = augment.flip_rotate(image, target, mask, rng)
        np.testing.assert_array_equal(out[0][..., 0], 10 * out[1].argmax(-1))
        np.testing.assert_array_equal(out[0][..., 1], 10 * out[2])
        seen.add(out[2].tobytes())
    assert len(seen) == 8  # all flips/rotations of the square occur


def test_elastic_deformation_keeps_alignment_and_moves_pixels():
    image, target, mask = _encoded_patch(seed=1)
    rng = np.random.default_rng(5)
    for _ in range(5):
        warped = augment.elastic_deform(image, target, mask, rng, strength=0.03)
        assert warped[0].shape == image.shape and warped[0].dtype == np.float32
        assert not np.array_equal(warped[1], target)  # it really warps
        _assert_aligned(*warped)


def test_intensity_jitter_changes_image_only():
    image, target, mask = _encoded_patch()
    rng = np.random.default_rng(3)
    out = augment.augment_patch(image, target, mask, rng, flips=False, elastic_probability=0, intensity=True)
    assert out[1] is target and out[2] is mask
    assert not np.allclose(out[0], image)
    # Order is preserved: a monotonic intensity change per channel.
    assert np.corrcoef(out[0][..., 0].ravel(), image[..., 0].ravel())[0, 1] > 0.95


def test_augment_patch_keeps_alignment():
    image, target, mask = _encoded_patch(seed=2)
    rng = np.random.default_rng(9)
    for _ in range(10):
        _assert_aligned(*augment.augment_patch(image, target, mask, rng, elastic_probability=1.0, intensity=False))


# ------------------------------------------------------------------- sampler


def _scribble_data(z_count=3, size=64):
    """Normalised image, targets and masks from sparse scribbles (2 classes + background)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((z_count, size, size), np.int32)
    labels[1, 10, 5:15] = 1
    labels[1, 50, 40:44] = 2
    labels[1, 30, 60] = 3
    image = rng.random((z_count, size, size, 1)).astype(np.float32)
    targets, masks = {}, {}
    targets[1], masks[1] = data.make_targets(labels[1], "scribbles", 3)
    return image, labels, targets, masks


def test_sampler_patches_always_hold_annotation():
    image, labels, targets, masks = _scribble_data()
    sampler = augment.PatchSampler(image, targets, masks, [(1, (0, 64, 0, 64))], 16, 8, foreground_bias=0.5, seed=1)
    for _ in range(20):
        x, y = sampler.sample_batch()
        assert x.shape == (8, 16, 16, 1) and y.shape == (8, 16, 16, 4)
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert np.all(y[..., -1].reshape(8, -1).max(axis=1) == 1)
        # Targets only where the mask is on (scribbles: unlabelled is not background).
        assert np.all(y[..., :-1].sum(-1) == y[..., -1])


def test_sampler_foreground_bias_one_centres_on_foreground():
    image, labels, targets, masks = _scribble_data()
    sampler = augment.PatchSampler(image, targets, masks, [(1, (0, 64, 0, 64))], 16, 16, foreground_bias=1.0,
                                augment=False)
    _, y = sampler.sample_batch()
    foreground = (y[..., 1:-1].sum(-1) * y[..., -1]).reshape(16, -1).max(axis=1)
    assert np.all(foreground == 1)


def test_sampler_stays_inside_regions_and_pads_small_ones():
    image = np.full((2, 64, 64, 1), -1.0, np.float32)
    image[0, 10:20, 30:42] = np.arange(120, dtype=np.float32).reshape(10, 12, 1)  # the region
    labels = np.zeros((64, 64), int)
    labels[10:20, 30:42] = 1 + (np.arange(12) >= 6)
    targets, masks = {}, {}
    targets[0], masks[0] = data.make_targets(labels, "scribbles", 1)
    region = [(0, (10, 20, 30, 42))]
    flips_only = augment.PatchSampler(image, targets, masks, region, 16, 4, seed=2, elastic_probability=0,
                                      intensity=False)
    x, y = flips_only.sample_batch()
    assert x.shape == (4, 16, 16, 1)
    assert x.min() >= 0  # nothing from outside the region
    assert np.all(y[..., -1].sum(axis=(1, 2)) == 120)  # the whole region once; padding masked out
    assert np.all(x.std(axis=(1, 2, 3)) > 0)  # mirrored image, not a constant fill
    warping = augment.PatchSampler(image, targets, masks, region, 16, 4, seed=2, elastic_probability=1, intensity=False)
    for _ in range(5):
        assert warping.sample_batch()[0].min() >= 0


def test_sampler_is_deterministic_for_a_seed():
    image, labels, targets, masks = _scribble_data()
    region = [(1, (0, 64, 0, 64))]
    make = lambda seed: augment.PatchSampler(image, targets, masks, region, 16, 4, seed=seed)  # noqa: E731
    a, b, c = make(7), make(7), make(8)
    for _ in range(3):
        xa, ya = a.sample_batch()
        xb, yb = b.sample_batch()
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(c.sample_batch()[0], a.sample_batch()[0])


def test_sampler_rejects_regions_without_annotation():
    image, labels, targets, masks = _scribble_data()
    with pytest.raises(ValueError, match="no annotated pixel"):
        augment.PatchSampler(image, targets, masks, [(1, (0, 5, 0, 5))], 16, 4)


def test_sampler_batch_shapes_and_values():
    rng = np.random.default_rng(0)
    image = rng.random((2, 256, 256, 1)).astype(np.float32)
    target, mask = data.make_targets(_blocks((256, 256), n_classes=3), "full_slices", 3)
    sampler = augment.PatchSampler(image, {0: target}, {0: mask}, [(0, (0, 256, 0, 256))], 128, 8)
    x, y = sampler.sample_batch()
    assert x.shape == (8, 128, 128, 1) and x.dtype == np.float32
    assert y.shape[:3] == (8, 128, 128) and np.isfinite(x).all()


# ---------------------------------------------------------------- validation


def test_validation_arrays_tiles_and_pads():
    rng = np.random.default_rng(0)
    image = rng.random((2, 40, 70, 1)).astype(np.float32)
    classes = _blocks((40, 70), n_classes=3)
    target, mask = data.make_targets(classes, "full_slices", 3)
    x, y = augment.validation_arrays(image, {1: target}, {1: mask}, [(1, (0, 40, 0, 70))], 16)
    assert x.shape == (1, 48, 80, 1) and y.shape == (1, 48, 80, 4)
    np.testing.assert_array_equal(x[0, :40, :70], image[1])
    np.testing.assert_array_equal(y[0, :40, :70, :3], target)
    assert y[0, 40:, :, -1].sum() == 0 and y[0, :, 70:, -1].sum() == 0 and y[0, :40, :70, -1].min() == 1

    x, y = augment.validation_arrays(image, {1: target}, {1: mask}, [(1, (0, 40, 0, 70))], 16, max_tile=32)
    assert x.shape == (6, 32, 32, 1)  # 2 x 3 tiles
    assert y[..., -1].sum() == 40 * 70  # every annotated pixel exactly once


def test_validation_arrays_drops_unannotated_tiles_and_handles_none():
    image = np.zeros((1, 32, 32, 1), np.float32)
    target, mask = data.make_targets(np.zeros((32, 32), int), "scribbles", 1)
    x, y = augment.validation_arrays(image, {0: target}, {0: mask}, [(0, (0, 32, 0, 32))], 16)
    assert x.shape == (0, 32, 32, 1) and y.shape == (0, 32, 32, 2)
    x, y = augment.validation_arrays(image, {0: target}, {0: mask}, [], 16)
    assert len(x) == 0 and len(y) == 0


def test_objects_tile_the_image_when_the_background_is_thin_gaps():
    cells = np.ones((2, 64, 64), np.int32)
    cells[0, :, ::16] = 0  # membranes 1 px wide between stripes of cells
    assert data.objects_tile_the_image(cells, "full_slices")
    dish = np.zeros((2, 64, 64), np.int32)
    dish[0, 10:20, 10:20] = 1  # one object in a wide background
    assert not data.objects_tile_the_image(dish, "full_slices")


def test_instance_boundary_width_widens_the_ring_inside_each_object():
    labels = np.zeros((20, 30), np.uint16)
    labels[4:16, 3:13] = 1
    labels[4:16, 13:25] = 2  # touches object 1 along x = 12 | 13
    for width in (1, 2, 3):
        target, _ = data.make_targets(labels, "full_slices", 3, instances=True, boundary_width=width)
        boundary = target[..., 2] > 0
        assert not boundary[labels == 0].any()
        # Along a row through both objects: width px on each outer edge, 2 x width at the contact.
        row = boundary[10]
        assert row[3:3 + width].all() and not row[3 + width]
        assert row[13 - width:13 + width].all() and not row[13 - width - 1] and not row[13 + width]
        assert row[25 - width:25].all() and not row[25 - width - 1]
        # The class map stays one-hot: interior + boundary = object pixels.
        assert np.array_equal(target[..., 1:].sum(-1) > 0, labels > 0)


def _sampler(seed):
    rng = np.random.default_rng(0)
    image = rng.random((2, 64, 64, 1)).astype(np.float32)
    target, mask = data.make_targets(_blocks((64, 64), n_classes=3), "full_slices", 3)
    return augment.PatchSampler(image, {0: target}, {0: mask}, [(0, (0, 64, 0, 64))], 32, 4, seed=seed)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_prefetched_batches_are_the_serial_batches_in_order(prefetch):
    serial = _sampler(seed=3)
    expected = [serial.sample_batch() for _ in range(6)]
    batches = augment.batches(_sampler(seed=3), prefetch)
    try:
        for x_expected, y_expected in expected:
            x, y = batches.next_batch()
            np.testing.assert_array_equal(x, x_expected)
            np.testing.assert_array_equal(y, y_expected)
    finally:
        batches.close()
    assert batches.wait_s > 0
    if prefetch:
        assert not batches._thread.is_alive()


def test_a_failing_sampler_fails_the_consumer():
    from napari_unet.core.train.augment import PrefetchedBatches

    class Broken:
        def sample_batch(self):
            raise ValueError("no annotated pixels in this region")

    batches = PrefetchedBatches(Broken())
    with pytest.raises(ValueError, match="no annotated pixels"):
        batches.next_batch()
    batches.close()

import threading

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from napari_unet.core.config import PredictConfig
from napari_unet.core.events import Stopped
from napari_unet.core.predict.postprocess import labels_from_probs
from napari_unet.core.predict.volume import predict_volume

NORM = {"low": [0.0], "high": [1.0]}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def blur_model(x):
    """Translation-equivariant fake model, receptive-field radius 8 (sigma 2, truncate 4)."""
    blurred = ndi.gaussian_filter(x.sum(-1), sigma=(0, 2, 2), mode="mirror", truncate=4.0)
    return sigmoid(8 * (blurred - 0.5))[..., np.newaxis]


def whole_slice(model, image_yx, multiple):
    """Reference: the model on the whole slice, reflect-padded to the multiple."""
    h, w = image_yx.shape
    padded = np.pad(image_yx, ((0, -h % multiple), (0, -w % multiple)), mode="reflect")
    return model(padded[np.newaxis, ..., np.newaxis].astype(np.float32))[0, :h, :w]


def run(volume, model, cfg=None, **kwargs):
    """Predict with the stored normalisation ``NORM``, so results can be checked against known intensities."""
    kwargs = {"n_classes": 1, "size_multiple": 8, "normalization": NORM, **kwargs}
    cfg = (cfg or PredictConfig(return_probabilities=True)).replace(normalize="model")
    return list(predict_volume(volume, model, cfg=cfg, **kwargs))


def test_tiles_stitch_without_seams():
    image = np.random.default_rng(0).random((70, 45)).astype(np.float32)  # odd, not multiples of 8
    cfg = PredictConfig(tile_size=32, tile_overlap=8, batch_size=3, return_probabilities=True)
    events = run(image, blur_model, cfg)
    assert [e.kind for e in events] == ["slice", "done"]
    expected = whole_slice(blur_model, image, 8)[..., 0]
    assert np.abs(events[-1].outputs["probs"] - expected).max() < 1e-5
    np.testing.assert_array_equal(events[-1].outputs["labels"], (expected > 0.5).astype(np.uint8))

    # An overlap below the receptive field leaves seams: the comparison above can fail.
    small = run(image, blur_model, cfg.replace(tile_overlap=2))
    assert np.abs(small[-1].outputs["probs"] - expected).max() > 1e-3


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_each_axis_predicts_its_slices(axis):
    volume = np.random.default_rng(1).random((5, 24, 37)).astype(np.float32)
    cfg = PredictConfig(axis=axis, tile_size=16, tile_overlap=4, batch_size=4, return_probabilities=True)
    events = run(volume, blur_model, cfg, size_multiple=4)
    n = volume.shape[axis]
    assert [e.kind for e in events] == ["slice"] * n + ["done"]
    assert [e.index for e in events[:-1]] == list(range(n))
    assert all(e.n_slices == n for e in events)
    probs, labels = events[-1].outputs["probs"], events[-1].outputs["labels"]
    assert probs.shape == labels.shape == volume.shape and labels.dtype == np.uint8
    # Overlap 4 < receptive field 8 is close but not exact; overlap 8 is exact.
    exact = run(volume, blur_model, cfg.replace(tile_size=32, tile_overlap=8), size_multiple=8)[-1].outputs["probs"]
    for i in range(n):
        image = np.take(volume, i, axis=axis)
        assert np.abs(np.take(probs, i, axis=axis) - whole_slice(blur_model, image, 4)[..., 0]).max() < 0.05
        assert np.abs(np.take(exact, i, axis=axis) - whole_slice(blur_model, image, 8)[..., 0]).max() < 1e-5


def test_pointwise_model_is_the_same_along_any_axis_and_with_channels():
    rng = np.random.default_rng(2)
    volume = rng.random((3, 2, 20, 18)).astype(np.float32) * [[[[1]], [[10]]]] + [[[[0]], [[10]]]]  # (Z, C, Y, X)
    norm = {"low": [0.0, 10.0], "high": [1.0, 20.0]}

    def difference(x):  # channel 0 minus channel 1, after normalisation
        return sigmoid(4 * (x[..., :1] - x[..., 1:]))

    expected = sigmoid(4 * (volume[:, 0] - (volume[:, 1] - 10) / 10))
    for axis in (0, 1, 2):  # the channel axis is before and after the slicing axis
        cfg = PredictConfig(axis=axis, tile_size=16, tile_overlap=4, return_probabilities=True)
        probs = run(volume, difference, cfg, normalization=norm, channel_axis=1)[-1].outputs["probs"]
        np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_multiclass_argmax_and_probability_outputs():
    image = np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(24, 20)
    centres = np.array([0.1, 0.5, 0.9], np.float32)

    def nearest(x):  # softmax that prefers the class whose centre is nearest
        logits = -50 * (x - centres) ** 2
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    all_k = np.zeros((24, 20, 3), np.float32)
    fg_max = np.zeros((24, 20), np.float32)
    cfg = PredictConfig(tile_size=16, tile_overlap=4)
    labels = run(image, nearest, cfg, n_classes=3, out_probs=all_k)[-1].outputs["labels"]
    run(image, nearest, cfg, n_classes=3, out_probs=fg_max)
    expected = np.argmin(np.abs(image[..., None] - centres), axis=-1)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(all_k, nearest(image[..., None]), atol=1e-6)
    np.testing.assert_allclose(fg_max, all_k[..., 1:].max(-1), atol=1e-6)


def test_tta_is_the_mean_of_the_eight_flips_and_rotations():
    image = np.random.default_rng(3).random((32, 48)).astype(np.float32)

    def position_dependent(x):  # not symmetric: weighs pixels by their column and row
        h, w = x.shape[1:3]
        ramp = np.linspace(0, 1, w)[None, None, :, None] + 0.3 * np.linspace(0, 1, h)[None, :, None, None]
        return sigmoid(3 * x * ramp - 1).astype(np.float32)

    cfg = PredictConfig(tile_size=64, tile_overlap=8, return_probabilities=True)  # one tile per slice
    plain = run(image, position_dependent, cfg, size_multiple=16)[-1].outputs["probs"]
    tta = run(image, position_dependent, cfg.replace(tta=True), size_multiple=16)[-1].outputs["probs"]

    def model2d(a):
        return position_dependent(a[None, ..., None])[0, ..., 0]

    means = []
    for k in range(4):
        means.append(np.rot90(model2d(np.rot90(image, k)), -k))
        means.append(np.fliplr(np.rot90(model2d(np.rot90(np.fliplr(image), k)), -k)))
    np.testing.assert_allclose(tta, np.mean(means, axis=0), atol=1e-6)
    assert np.abs(tta - plain).max() > 0.05
    # A model that hands back its own input must not corrupt the other transforms.
    identity = run(image, lambda x: x, cfg.replace(tta=True), size_multiple=16)[-1].outputs["probs"]
    np.testing.assert_allclose(identity, image, atol=1e-6)


def two_touching_discs():
    labels = np.zeros((48, 48), np.int64)
    labels[disk((24, 15), 10)] = 1
    labels[disk((24, 33), 10)] = 2  # overlaps disc 1: they touch along a line
    return labels


def boundary_oracle(x):
    """3-class model that reads object ids from the image and outputs background/interior/boundary."""
    out = np.full(x.shape[:3] + (3,), 0.1, np.float32)
    for n, ids in enumerate(np.rint(x[..., 0] * 2).astype(int)):
        classes = np.where(find_boundaries(ids, mode="inner") & (ids > 0), 2, (ids > 0).astype(int))
        np.put_along_axis(out[n], classes[..., None], 0.8, axis=-1)
    return out


def test_touching_discs_are_separated_by_the_boundary_model_with_ids_unique_across_slices():
    labels = two_touching_discs()
    volume = np.stack([labels, labels]).astype(np.float32) / 2
    cfg = PredictConfig(output="instances", objects="2d", tile_size=64, tile_overlap=8)
    events = run(volume, boundary_oracle, cfg, n_classes=3, size_multiple=16, boundary_model=True)
    instances = events[-1].outputs["labels"]
    assert instances.dtype == np.uint32
    assert set(np.unique(instances[0])) == {0, 1, 2} and set(np.unique(instances[1])) == {0, 3, 4}
    for z, offset in ((0, 0), (1, 2)):
        assert ((instances[z] > 0) == (labels > 0)).all()
        for obj in (1, 2):
            found = instances[z] == obj + offset
            assert (found & (labels == obj)).sum() / (labels == obj).sum() > 0.9
            assert (found & (labels == obj)).sum() / found.sum() > 0.9

    # A plain foreground mask of the same discs is one object: they do touch.
    assert ndi.label(labels > 0)[1] == 1

    # In 3-D (the default) each disc is one object through both slices.
    events = run(volume, boundary_oracle, cfg.replace(objects="3d"), n_classes=3, size_multiple=16,
                 boundary_model=True)
    objects = events[-1].outputs["labels"]
    assert set(np.unique(objects)) == {0, 1, 2}
    np.testing.assert_array_equal(objects[0], objects[1])
    assert sorted(e.index for e in events if e.kind == "slice") == [0, 1]


def test_cells_between_painted_membranes_are_offered_as_objects():
    membranes = np.zeros((2, 40, 40), np.float32)
    membranes[:, 20, :] = 1  # one membrane line cuts each slice into two cells
    cfg = PredictConfig(output="instances", objects_from="background", tile_size=64, tile_overlap=8)
    objects = run(membranes, lambda x: x, cfg)[-1].outputs["labels"]
    assert set(np.unique(objects)) == {0, 1, 2} and (objects[:, 20] == 0).all()
    assert len(np.unique(objects[:, :20])) == 1 and len(np.unique(objects[:, 21:])) == 1
    with pytest.raises(ValueError, match="one output class"):
        run(membranes, lambda x: np.repeat(x, 3, axis=-1), cfg, n_classes=3, boundary_model=True)


def test_instances_from_a_sigmoid_model_and_small_objects_dropped():
    image = np.zeros((20, 20), np.float32)
    image[2:8, 2:8] = 1  # 36 px
    image[12:18, 12:18] = 1  # 36 px, touches the first one nowhere
    image[0, 19] = 1  # 1 px
    cfg = PredictConfig(output="instances", tile_size=16, tile_overlap=4, min_object_size=5)
    instances = run(image, lambda x: x, cfg)[-1].outputs["labels"]
    assert instances.max() == 2 and instances[0, 19] == 0
    assert (instances[2:8, 2:8] == 1).all() and (instances[12:18, 12:18] == 2).all()


def test_instance_ids_that_overflow_the_output_type_are_refused():
    image = np.zeros((16, 64), np.float32)
    image[::2, ::2] = 1  # 256 separate one-pixel objects
    cfg = PredictConfig(output="instances", tile_size=64, tile_overlap=4, min_object_size=0)
    out = np.zeros(image.shape, np.uint8)
    with pytest.raises(ValueError, match="Object id 256 does not fit in out_labels of type uint8: use uint32"):
        run(image, lambda x: x, cfg, out_labels=out)
    assert run(image, lambda x: x, cfg)[-1].outputs["labels"].max() == 256


def test_postprocess_helpers():
    probs = np.array([[[0.2], [0.7]]], np.float32)
    np.testing.assert_array_equal(labels_from_probs(probs, 0.5), [[0, 1]])
    np.testing.assert_array_equal(labels_from_probs(probs, 0.1), [[1, 1]])
    np.testing.assert_array_equal(labels_from_probs(np.array([[[0.1, 0.3, 0.6], [0.5, 0.4, 0.1]]]), 0.5), [[2, 0]])


def test_stop_event_stops_with_the_done_slices():
    volume = np.random.default_rng(4).random((6, 16, 16)).astype(np.float32)
    out = np.full(volume.shape, 7, np.uint8)
    stop = threading.Event()
    cfg = PredictConfig(tile_size=16, tile_overlap=0, batch_size=1)
    events = []
    for event in predict_volume(
        volume, blur_model, cfg=cfg, n_classes=1, size_multiple=8, normalization=NORM, out_labels=out, stop_event=stop
    ):
        events.append(event)
        if getattr(event, "index", None) == 1:
            stop.set()
    assert events[-1] == Stopped(done_slices=(0, 1), n_slices=6,
                                 message="Stopped after 2 of 6 slices; the other slices are 0.")
    assert [e.kind for e in events] == ["slice", "slice", "stopped"]
    assert (out[2:] == 7).all() and (out[:2] != 7).any()


class CountingVolume:
    """An array-like that records how many slices have been read and not yet written back."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads, self.writes, self.max_in_flight = [], 0, 0

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        first = index[0]
        n_read = 1 if isinstance(first, int) else len(range(*first.indices(self.shape[0])))
        assert n_read <= 1, f"read more than one slice: {index}"
        if n_read:
            self.reads.append(first if isinstance(first, int) else first.start)
        self.max_in_flight = max(self.max_in_flight, len(self.reads) - self.writes)
        return self.array[index]


class CountingOutput:
    def __init__(self, array, source):
        self.array, self.source, self.shape = array, source, array.shape

    def __setitem__(self, index, value):
        self.array[index] = value
        self.source.writes += 1


@pytest.mark.parametrize("lazy", ["zarr", "dask"])
def test_lazy_volume_is_read_one_slice_at_a_time(lazy):
    data = np.random.default_rng(5).random((9, 24, 20)).astype(np.float32)
    stored = zarr.create_array(store=zarr.storage.MemoryStore(), shape=data.shape, chunks=(1, 24, 20), dtype="f4")
    stored[:] = data
    counting = CountingVolume(stored)
    volume = counting if lazy == "zarr" else da.from_array(counting, chunks=(1, 24, 20))
    out = zarr.create_array(store=zarr.storage.MemoryStore(), shape=data.shape, chunks=(1, 24, 20), dtype="u1")
    cfg = PredictConfig(tile_size=16, tile_overlap=4, batch_size=3, normalize="model")
    events = predict_volume(volume, blur_model, cfg=cfg, out_labels=CountingOutput(out, counting), **GOOD)
    counting.reads.clear()  # the intensity checks read a sample first, one slice at a time too
    counting.max_in_flight = 0
    events = list(events)
    assert events[-1].kind == "done"
    assert sorted(counting.reads) == list(range(9))
    assert counting.max_in_flight <= cfg.batch_size
    expected = run(data, blur_model, cfg)[-1].outputs["labels"]
    np.testing.assert_array_equal(out[:], expected)


def test_memmap_output(tmp_path):
    volume = np.random.default_rng(6).random((3, 16, 16)).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint8, shape=volume.shape)
    events = run(volume, blur_model, PredictConfig(tile_size=16, tile_overlap=0), out_labels=out)
    assert events[-1].outputs["labels"] is out
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), run(volume, blur_model)[-1].outputs["labels"])


def test_three_axis_is_the_mean_of_the_three_passes():
    volume = np.random.default_rng(7).random((8, 16, 24)).astype(np.float32)
    cfg = PredictConfig(tile_size=32, tile_overlap=8, return_probabilities=True)
    passes = [run(volume, blur_model, cfg.replace(axis=a))[-1].outputs["probs"] for a in (0, 1, 2)]
    events = run(volume, blur_model, cfg.replace(three_axis=True, axis=1))
    kinds = [e.kind for e in events]
    assert kinds.count("progress") == 8 + 16 + 24 and kinds.count("slice") == 16 and kinds[-1] == "done"
    mean = np.mean(passes, axis=0)
    np.testing.assert_allclose(events[-1].outputs["probs"], mean, atol=1e-5)
    np.testing.assert_array_equal(events[-1].outputs["labels"], (mean > 0.5).astype(np.uint8))
    assert np.abs(passes[0] - passes[2]).max() > 0.01  # the passes do differ


# ----------------------------------------------------------------- errors

GOOD = dict(n_classes=1, size_multiple=8, normalization=NORM)


@pytest.mark.parametrize(
    "volume, kwargs, cfg, match",
    [
        (np.zeros((0, 16, 16)), {}, PredictConfig(), r"empty: shape \(0, 16, 16\)"),
        (np.zeros((2, 16, 16)), {"normalization": {"low": [0, 0], "high": [1, 1]}}, PredictConfig(),
         r"1 channel\(s\) but the model was trained on 2"),
        (np.zeros((2, 3, 16, 16)), {"channel_axis": 1}, PredictConfig(),
         r"3 channel\(s\) but the model was trained on 1"),
        (np.zeros((2, 16, 16)), {"size_multiple": 16, "min_tile": 64}, PredictConfig(tile_size=32, tile_overlap=4),
         r"tile_size 32 is smaller .* set tile_size to at least 64"),
        (np.zeros((2, 64, 64)), {"size_multiple": 16}, PredictConfig(tile_size=48, tile_overlap=20),
         r"tile_overlap 20 leaves no room.*at most 16"),
        (np.zeros((2, 16, 16)), {"channel_axis": 3}, PredictConfig(), r"channel_axis=3 is not an axis"),
        (np.zeros((2, 2, 16, 16)), {}, PredictConfig(), r"pass channel_axis"),
        (np.zeros((16,)), {}, PredictConfig(), r"must be 2-D \(Y, X\) or 3-D"),
        (np.zeros((16, 16)), {}, PredictConfig(three_axis=True), r"three_axis needs a 3-D volume"),
        (np.zeros((2, 16, 16)), {"boundary_model": True}, PredictConfig(), r"3 classes .* got n_classes=1"),
        (np.zeros((2, 16, 16)), {"out_labels": np.zeros((2, 16, 15))}, PredictConfig(),
         r"out_labels has shape \(2, 16, 15\) but must be \(2, 16, 16\)"),
        (np.zeros((2, 16, 16)), {"normalization": {"low": [0]}}, PredictConfig(), r"normalization must be a dict"),
    ],
)
def test_bad_input_is_refused_before_reading(volume, kwargs, cfg, match):
    with pytest.raises(ValueError, match=match):
        predict_volume(volume, blur_model, cfg=cfg, **{**GOOD, **kwargs})


def test_bad_axis_is_refused_by_the_config():
    with pytest.raises(ValueError, match="axis must be between -3 and 2"):
        PredictConfig(axis=3)


def test_model_with_the_wrong_number_of_classes():
    volume = np.random.default_rng(8).random((2, 16, 16))
    events = predict_volume(volume, blur_model, cfg=PredictConfig(), **{**GOOD, "n_classes": 3})
    expected = r"returned shape \(2, 16, 16, 1\).*expected \(2, 16, 16, 3\).*n_classes \(3\)"
    with pytest.raises(ValueError, match=expected):
        list(events)


def test_no_deep_learning_library_is_imported():
    import subprocess
    import sys

    code = (
        "import sys, napari_unet.core.predict.volume, napari_unet.core.metrics; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'qtpy', 'napari') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_auto_objects_are_3d_unless_slices_lie_far_apart():
    from napari_unet.core.predict.write import object_mode

    assert object_mode("auto", None, 0) == "3d"
    assert object_mode("auto", (4.0, 1.0, 1.0), 0) == "3d"  # the synthetic stacks
    assert object_mode("auto", (50.0, 4.0, 4.0), 0) == "linked"  # ISBI's 50 nm sections, 4 nm pixels
    assert object_mode("auto", (50.0, 4.0, 4.0), None) == "2d"  # a 2-D image
    assert object_mode("2d", (1.0, 1.0, 1.0), 0) == "2d"


def test_fill_background_lets_objects_take_every_pixel():
    image = np.zeros((24, 24), np.float32)
    image[4:10, 4:10] = image[14:20, 14:20] = 1
    cfg = PredictConfig(output="instances", tile_size=32, tile_overlap=4, min_object_size=0)
    masked = run(image, lambda x: x, cfg)[-1].outputs["labels"]
    filled = run(image, lambda x: x, cfg.replace(fill_background="yes"))[-1].outputs["labels"]
    assert (masked == 0).any() and (filled > 0).all()
    assert len(np.unique(filled)) == 2  # the same two objects, grown over the background
    tiled = run(image, lambda x: x, cfg, objects_tile=True)[-1].outputs["labels"]  # "auto" follows the model
    np.testing.assert_array_equal(tiled, filled)


def _nan_volume():
    volume = np.random.default_rng(9).random((3, 16, 16)).astype(np.float32)
    volume[1, 2, 3] = np.nan
    volume[2, 5, 5] = np.inf
    return volume


@pytest.mark.parametrize("volume, match", [
    (np.full((3, 16, 16), 7, np.uint16), "constant"),
    (_nan_volume(), "2 NaN or infinite"),
])
def test_constant_and_nan_volumes_are_refused_in_the_words_of_training(volume, match):
    from napari_unet.core.data import validate_training_pair

    labels = np.zeros(volume.shape, np.uint8)
    labels[0, :8] = 1
    with pytest.raises(ValueError, match=match) as predicting:
        predict_volume(volume, blur_model, cfg=PredictConfig(), **GOOD)
    with pytest.raises(ValueError) as training:
        validate_training_pair(volume, labels, "full_slices")
    assert str(predicting.value) == str(training.value)


def test_a_volume_far_from_the_training_intensities_is_warned_about_or_normalised_by_itself():
    rng = np.random.default_rng(10)
    volume8 = (rng.random((3, 16, 16)) * 200 + 20).astype(np.uint8)
    stored = {"percentiles": [1.0, 99.8], "low": [22.0], "high": [219.0]}
    kwargs = {**GOOD, "normalization": stored}
    cfg = PredictConfig(return_probabilities=True, normalize="model")
    same = list(predict_volume(volume8, blur_model, cfg=cfg, **kwargs))
    assert "warning" not in [e.kind for e in same]

    volume16 = volume8.astype(np.uint16) * 257
    events = list(predict_volume(volume16, blur_model, cfg=cfg, **kwargs))
    assert events[0].kind == "warning" and "--normalize volume" in events[0].message
    assert "from 22 to 219" in events[0].message
    assert events[-1].outputs["labels"].mean() > 0.99  # what the warning is about: all foreground

    own = list(predict_volume(volume16, blur_model, cfg=cfg.replace(normalize="volume"), **kwargs))
    assert "warning" not in [e.kind for e in own]
    own8 = list(predict_volume(volume8, blur_model, cfg=cfg.replace(normalize="volume"), **kwargs))
    # By its own percentiles the 16-bit copy is segmented as the 8-bit volume is.
    np.testing.assert_allclose(own[-1].outputs["probs"], own8[-1].outputs["probs"], atol=1e-5)
    np.testing.assert_array_equal(own[-1].outputs["labels"], own8[-1].outputs["labels"])

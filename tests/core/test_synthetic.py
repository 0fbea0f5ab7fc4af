
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_unet.samples.synthetic import (
    DEFAULT_SHAPE,
    default_annotated_slices,
    make_cells_volume,
    make_nuclei_volume,
)

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent

SMALL = (8, 64, 64)
# An Otsu threshold must stay clearly below what a small U-Net reaches (> 0.9).
OTSU_DICE_CAP = 0.8


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def volume():
    return make_cells_volume()


def test_default_shapes_and_dtypes(volume):
    assert volume["image"].shape == DEFAULT_SHAPE
    assert volume["image"].dtype == np.uint16
    for key in ("labels_full", "labels"):
        assert volume[key].shape == DEFAULT_SHAPE
        assert volume[key].dtype == np.uint8
        assert set(np.unique(volume[key])) <= {0, 1}
    assert volume["instances"].shape == DEFAULT_SHAPE
    assert volume["instances"].dtype == np.uint32
    assert len(volume["scale"]) == 3
    # Real camera data: an offset, noise, and no saturation.
    assert 0 < volume["image"].min() and volume["image"].max() < np.iinfo(np.uint16).max
    assert volume["image"].std() > 5


def test_default_annotation_is_five_spread_slices(volume):
    slices = volume["annotated_slices"]
    assert len(slices) == 5
    assert slices[0] > 0 and slices[-1] < DEFAULT_SHAPE[0] - 1
    gaps = np.diff(slices)
    assert gaps.min() >= 5 and gaps.max() <= 8


def test_annotated_slices_are_exactly_the_non_empty_label_slices(volume):
    labelled = np.flatnonzero(volume["labels"].any(axis=(1, 2)))
    assert tuple(labelled) == volume["annotated_slices"]


def test_partial_labels_equal_ground_truth_on_annotated_slices_only(volume):
    annotated = list(volume["annotated_slices"])
    others = [z for z in range(DEFAULT_SHAPE[0]) if z not in annotated]
    np.testing.assert_array_equal(volume["labels"][annotated], volume["labels_full"][annotated])
    assert not volume["labels"][others].any()


def test_instances_match_foreground_and_continue_across_z(volume):
    instances = volume["instances"]
    np.testing.assert_array_equal(instances > 0, volume["labels_full"] == 1)
    n_cells = len(np.unique(instances)) - 1
    assert 30 <= n_cells <= 1000
    # Cells are 3-D: the typical cell shows up in several slices.
    ids_per_slice = [np.unique(plane[plane > 0]) for plane in instances]
    slices_per_cell = np.bincount(np.concatenate(ids_per_slice))
    assert np.median(slices_per_cell[slices_per_cell > 0]) >= 5


def test_foreground_fraction_is_sensible_in_every_slice(volume):
    fractions = volume["labels_full"].mean(axis=(1, 2))
    assert fractions.min() > 0.4 and fractions.max() < 0.9


def test_otsu_threshold_does_not_solve_it(volume):
    image, truth = volume["image"], volume["labels_full"]
    above = image > threshold_otsu(image)
    best = max(dice(above, truth), dice(~above, truth))
    assert best < OTSU_DICE_CAP, f"Otsu Dice {best:.3f}: the sample became trivial"


def test_same_seed_gives_same_bytes_and_other_seed_differs():
    first = make_cells_volume(SMALL, seed=3)
    second = make_cells_volume(SMALL, seed=3)
    for key in ("image", "labels_full", "labels", "instances"):
        assert first[key].tobytes() == second[key].tobytes(), key
    assert first["annotated_slices"] == second["annotated_slices"]
    other = make_cells_volume(SMALL, seed=4)
    assert other["image"].tobytes() != first["image"].tobytes()


def test_small_volume_still_holds_several_cells():
    # Small volumes (used in quick tests) shrink the cells instead of showing one.
    volume = make_cells_volume(SMALL, seed=2)
    assert len(np.unique(volume["instances"])) - 1 >= 4
    assert 0.4 < volume["labels_full"].mean() < 0.9


def test_chosen_annotated_slices_are_used():
    volume = make_cells_volume(SMALL, seed=1, annotated_slices=[5, 1, 5])
    assert volume["annotated_slices"] == (1, 5)
    assert tuple(np.flatnonzero(volume["labels"].any(axis=(1, 2)))) == (1, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (64, 64)}, "shape"),
        ({"shape": (4, 16, 64)}, "shape"),
        ({"annotated_slices": ()}, "annotated_slices"),
        ({"annotated_slices": (0, 8)}, "outside"),
        ({"scale": (1.0, 0.0, 0.25)}, "scale"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(kwargs, message):
    kwargs = {"shape": SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        make_cells_volume(**kwargs)


def test_default_annotated_slices():
    assert default_annotated_slices(32) == (3, 9, 16, 22, 28)
    assert default_annotated_slices(3) == (0, 1, 2)
    with pytest.raises(ValueError, match="n_slices"):
        default_annotated_slices(0)


# --- Densely packed nuclei ------------------------------------------------------

NUCLEI_SHAPE = (16, 128, 128)


@pytest.fixture(scope="module")
def nuclei():
    return make_nuclei_volume(NUCLEI_SHAPE, seed=0)


def touching_pairs(instances):
    """Pairs of different nuclei that share a face (no background between them)."""
    pairs = set()
    for axis in range(3):
        ids = np.moveaxis(instances, axis, 0)
        a, b = ids[:-1].ravel(), ids[1:].ravel()
        meet = (a > 0) & (b > 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[meet].tolist(), b[meet].tolist())}
    return pairs


def test_nuclei_shapes_dtypes_and_keys(nuclei):
    assert set(nuclei) == {"image", "labels_full", "labels", "instances", "annotated_slices", "scale"}
    assert nuclei["image"].shape == NUCLEI_SHAPE and nuclei["image"].dtype == np.uint16
    for key in ("labels_full", "labels"):
        assert nuclei[key].shape == NUCLEI_SHAPE and nuclei[key].dtype == np.uint8
        assert set(np.unique(nuclei[key])) <= {0, 1}
    assert nuclei["instances"].shape == NUCLEI_SHAPE and nuclei["instances"].dtype == np.uint32
    assert nuclei["scale"] == (1.0, 0.25, 0.25)
    assert nuclei["annotated_slices"] == default_annotated_slices(NUCLEI_SHAPE[0])
    assert 0 < nuclei["image"].min() and nuclei["image"].max() < np.iinfo(np.uint16).max


def test_nuclei_same_seed_gives_same_bytes_and_other_seed_differs():
    first = make_nuclei_volume(SMALL, seed=3)
    second = make_nuclei_volume(SMALL, seed=3)
    for key in ("image", "labels_full", "labels", "instances"):
        assert first[key].tobytes() == second[key].tobytes(), key
    other = make_nuclei_volume(SMALL, seed=4)
    assert other["image"].tobytes() != first["image"].tobytes()


def test_nuclei_labels_only_on_annotated_slices(nuclei):
    annotated = list(nuclei["annotated_slices"])
    others = [z for z in range(NUCLEI_SHAPE[0]) if z not in annotated]
    np.testing.assert_array_equal(nuclei["labels"][annotated], nuclei["labels_full"][annotated])
    assert not nuclei["labels"][others].any()
    assert tuple(np.flatnonzero(nuclei["labels"].any(axis=(1, 2)))) == tuple(annotated)


def test_nuclei_chosen_annotated_slices_are_used():
    volume = make_nuclei_volume(SMALL, seed=1, annotated_slices=[5, 1, 5])
    assert volume["annotated_slices"] == (1, 5)
    assert tuple(np.flatnonzero(volume["labels"].any(axis=(1, 2)))) == (1, 5)


def test_nuclei_instances_match_foreground_and_are_numbered_without_gaps(nuclei):
    instances = nuclei["instances"]
    np.testing.assert_array_equal(instances > 0, nuclei["labels_full"] == 1)
    ids = np.unique(instances)
    np.testing.assert_array_equal(ids, np.arange(len(ids)))
    assert len(ids) - 1 >= 30
    # Dense, but with some background between the groups of nuclei.
    assert 0.3 < nuclei["labels_full"].mean() < 0.75


def test_most_nuclei_touch_a_neighbour(nuclei):
    pairs = touching_pairs(nuclei["instances"])
    n_nuclei = int(nuclei["instances"].max())
    touching = {i for pair in pairs for i in pair}
    assert len(pairs) >= n_nuclei / 2
    assert len(touching) > 0.7 * n_nuclei


def test_nuclei_are_3d_objects(nuclei):
    instances = nuclei["instances"]
    ids_per_slice = [np.unique(plane[plane > 0]) for plane in instances]
    slices_per_nucleus = np.bincount(np.concatenate(ids_per_slice))[1:]
    # Nuclei cut by the top or bottom of the stack may show in fewer slices.
    assert np.median(slices_per_nucleus) >= 5
    assert np.mean(slices_per_nucleus >= 3) > 0.7


def test_otsu_threshold_merges_touching_nuclei(nuclei):
    image, n_nuclei = nuclei["image"], int(nuclei["instances"].max())
    components, _ = ndi.label(image > threshold_otsu(image))
    # Noise makes single-voxel specks; count only pieces of nucleus size.
    sizes = np.bincount(components.ravel())[1:]
    nucleus_sized = int(np.sum(sizes >= 100))
    assert nucleus_sized < n_nuclei / 3, f"{nucleus_sized} Otsu components for {n_nuclei} nuclei"


def test_small_nuclei_volume_still_holds_several_nuclei():
    volume = make_nuclei_volume(SMALL, seed=2)
    assert volume["instances"].max() >= 4
    assert 0.3 < volume["labels_full"].mean() < 0.85


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (64, 64)}, "shape"),
        ({"annotated_slices": (0, 8)}, "outside"),
        ({"scale": (1.0, 0.0, 0.25)}, "scale"),
    ],
)
def test_nuclei_bad_input_raises_value_error_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_nuclei_volume(**{"shape": SMALL, **kwargs})

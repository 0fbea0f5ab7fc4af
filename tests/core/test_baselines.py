import numpy as np
import pytest

from napari_unet.core.metrics import dice
from napari_unet.samples.baselines import choose_polarity, otsu_foreground, watershed_objects

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


def disks(centres, radius, shape=(64, 64)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def noisy(mask, bright=True, seed=0):
    """Objects at 1 (bright) or 0 (dark) on the other value, plus noise."""
    values = mask.astype(float) if bright else 1.0 - mask
    return values + np.random.default_rng(seed).normal(0, 0.15, mask.shape)


TOUCHING = disks([(32, 22), (32, 41)], radius=10)  # centres 19 px apart: the disks overlap


def test_otsu_foreground_finds_a_disk():
    disk = disks([(32, 32)], radius=12)
    foreground = otsu_foreground(noisy(disk), sigma=1.0)
    assert foreground.dtype == np.uint8 and set(np.unique(foreground)) <= {0, 1}
    assert dice(foreground, disk) > 0.95


def test_watershed_splits_touching_bright_disks():
    objects = watershed_objects(noisy(TOUCHING), sigma=1.0, seed_distance=5, min_size=20)
    assert objects.dtype == np.uint32 and objects.max() == 2
    # Each disk centre lands in a different object.
    assert objects[32, 22] != objects[32, 41] and 0 not in (objects[32, 22], objects[32, 41])


def test_dark_objects_need_dark_polarity():
    image = noisy(TOUCHING, bright=False, seed=1)
    objects = watershed_objects(image, polarity="dark", seed_distance=5, min_size=20)
    assert objects.max() == 2
    assert dice(otsu_foreground(image, polarity="dark"), TOUCHING) > 0.9


def test_choose_polarity_reads_the_annotations():
    labels = TOUCHING.astype(np.uint8)
    assert choose_polarity(noisy(TOUCHING), labels) == "bright"
    assert choose_polarity(noisy(TOUCHING, bright=False), labels) == "dark"
    # A stack: only slice 1 is annotated, and only it is scored.
    stack = np.stack([noisy(TOUCHING, bright=False, seed=s) for s in range(3)])
    stack_labels = np.zeros(stack.shape, np.uint8)
    stack_labels[1] = TOUCHING
    assert choose_polarity(stack, stack_labels) == "dark"
    assert choose_polarity(stack, stack_labels, annotated_slices=[1]) == "dark"


def tube_stack():
    disk = disks([(16, 16)], radius=6, shape=(32, 32))
    return np.stack([noisy(disk, seed=z) for z in range(5)])


def test_per_slice_gives_one_id_per_slice():
    stack = tube_stack()
    assert watershed_objects(stack, seed_distance=5, min_size=10, per_slice=True).max() == 5
    volume = watershed_objects(stack, seed_distance=5, min_size=10, sampling=(4, 1, 1))
    assert volume.max() == 1 and (volume[:, 16, 16] == 1).all()


def test_every_foreground_pixel_gets_an_object():
    line = np.zeros((9, 9))
    line[4, 1:8] = 1  # one pixel wide: a flat distance map
    objects = watershed_objects(line, sigma=0)
    np.testing.assert_array_equal(objects > 0, line > 0)
    image = noisy(TOUCHING)
    np.testing.assert_array_equal(watershed_objects(image) > 0, otsu_foreground(image) > 0)


def test_min_size_drops_small_objects_and_renumbers():
    image = noisy(disks([(10, 10)], radius=2) | disks([(40, 40)], radius=8), seed=2)
    assert watershed_objects(image, seed_distance=10).max() == 2
    kept = watershed_objects(image, seed_distance=10, min_size=50)  # the small disk has 13 px
    assert kept.max() == 1 and kept[40, 40] == 1 and kept[10, 10] == 0


def test_invalid_arguments_are_named():
    image = np.zeros((8, 8))
    with pytest.raises(ValueError, match="polarity must be one of"):
        otsu_foreground(image, polarity="light")
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        otsu_foreground(image, sigma=-1)
    with pytest.raises(ValueError, match="seed_distance must be > 0"):
        watershed_objects(image, seed_distance=0)
    with pytest.raises(ValueError, match="image must be 2-D"):
        watershed_objects(np.zeros(8))
    with pytest.raises(ValueError, match="sampling must be"):
        watershed_objects(image, sampling=(1, 1, 1))
    with pytest.raises(ValueError, match="no annotated slice"):
        choose_polarity(image, np.zeros((8, 8), int))
    assert otsu_foreground(image).max() == 0  # a constant image has no foreground

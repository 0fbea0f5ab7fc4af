"""The slice spacing estimated from an image or from 3-D ids, without any metadata."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core.objects.anisotropy import ids_carry_over, z_spacing_from_ids, z_spacing_from_image

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


def isotropic_field(shape=(240, 96, 96), sigma=4.0, seed=0):
    """Smooth random structure, the same along every axis."""
    return ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32), sigma)


def voronoi_cells(shape=(96, 64, 64), n_cells=60, seed=0):
    """3-D cell ids: each voxel belongs to its nearest random seed."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, bool)
    seeds[tuple(rng.integers(0, s, n_cells) for s in shape)] = True
    ids = ndi.label(seeds)[0]
    nearest = ndi.distance_transform_edt(ids == 0, return_distances=False, return_indices=True)
    return ids[tuple(nearest)]


@pytest.mark.parametrize("spacing", [1, 4, 12])
def test_image_estimate_within_30_percent(spacing):
    volume = isotropic_field()[::spacing]
    estimate = z_spacing_from_image(volume)
    assert estimate == pytest.approx(spacing, rel=0.3)


def test_image_estimate_reads_the_first_channel_and_16_bit():
    volume = isotropic_field()[::4]
    scaled = np.round((volume - volume.min()) * 1000).astype(np.uint16)
    two_channels = np.stack([scaled, np.zeros_like(scaled)], axis=-1)
    assert z_spacing_from_image(two_channels) == pytest.approx(z_spacing_from_image(scaled))


def test_image_estimate_says_none_when_it_cannot_tell():
    assert z_spacing_from_image(np.zeros((1, 32, 32))) is None
    assert z_spacing_from_image(np.ones((5, 32, 32))) is None


@pytest.mark.parametrize("spacing", [1, 4])
def test_ids_estimate_on_adjacent_annotated_slices(spacing):
    ids = voronoi_cells()[::spacing]
    estimate = z_spacing_from_ids(ids, range(ids.shape[0]))
    assert estimate == pytest.approx(spacing, rel=0.3)


def test_ids_estimate_needs_adjacent_slices_with_3d_ids():
    ids = voronoi_cells()
    assert z_spacing_from_ids(ids, [0, 5, 10]) is None  # no two annotated slices are neighbours
    per_slice = np.stack([ndi.label(ids[z] % 2 == 0)[0] for z in range(ids.shape[0])])
    assert not ids_carry_over(per_slice[10], per_slice[40])
    assert ids_carry_over(ids[10], ids[11])

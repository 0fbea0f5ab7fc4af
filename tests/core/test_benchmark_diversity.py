"""The image-diversity ranking that ``benchmarks/annotation_efficiency.py`` measures (``_diversity.py``)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _diversity import look_distance, rank_unlike_annotated, slice_looks  # noqa: E402

pytestmark = pytest.mark.backend_independent


def _textures(seed: int = 0) -> np.ndarray:
    """Slices 0-3: one tissue (blobs), each drawn afresh; slices 4-5: another (fine stripes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    blobs = [((yy - rng.integers(10, 54)) ** 2 + (xx - rng.integers(10, 54)) ** 2 < 150).astype(np.float32)
             + rng.normal(0, 0.05, (64, 64)) for _ in range(4)]
    stripes = [(np.sin(xx * (0.9 + 0.1 * k)) > 0).astype(np.float32) * 0.6 + rng.normal(0, 0.05, (64, 64))
               for k in range(2)]
    return np.stack(blobs + stripes).astype(np.float32)


def test_a_copy_of_an_annotated_slice_ranks_last_and_an_unlike_slice_first():
    volume = _textures()
    volume[3] = volume[0]  # slice 3: a copy of the annotated slice 0
    ranking = rank_unlike_annotated(volume, [1, 2, 3, 4, 5], annotated=[0])
    order = [z for z, _ in ranking]
    assert order[0] in (4, 5)  # the other tissue
    assert order[-1] == 3 and ranking[-1][1] == pytest.approx(0.0)
    assert set(order[2:4]) == {1, 2}  # the same tissue, drawn again: between the two


def test_annotating_the_other_tissue_covers_its_slices():
    volume = _textures(1)
    before = dict(rank_unlike_annotated(volume, [1, 2, 5], annotated=[0]))
    after = dict(rank_unlike_annotated(volume, [1, 2, 5], annotated=[0, 4]))
    assert before[5] > 0.5 and after[5] < 0.1  # slice 4 is the same tissue as slice 5
    assert after[1] == before[1] and after[2] == before[2]
    assert all(0.0 <= d <= 1.0 for d in after.values())


def test_looks_ignore_a_shift_in_plane_and_see_a_change_of_brightness():
    volume = _textures(2)[:1].repeat(3, axis=0)
    volume[1] = np.roll(volume[0], (7, 11), axis=(0, 1))
    volume[2] = volume[0] * 0.3
    looks = slice_looks(volume, [0, 1, 2])
    assert look_distance(looks[0], looks[1]) < 0.02
    assert look_distance(looks[0], looks[2]) > 0.3


def test_nothing_annotated_ties_every_slice_and_channels_are_averaged():
    volume = np.stack([_textures(3)] * 2, axis=-1)  # (Z, Y, X, C)
    ranking = rank_unlike_annotated(volume, [2, 0, 1], annotated=[])
    assert ranking == [(0, 1.0), (1, 1.0), (2, 1.0)]
    assert rank_unlike_annotated(volume, [], annotated=[0]) == []


def test_large_slices_are_read_at_a_reduced_size_with_the_same_ranking():
    volume = _textures(4)
    big = volume.repeat(8, axis=1).repeat(8, axis=2)  # 512 x 512: averaged back over 2 x 2 blocks
    assert [z for z, _ in rank_unlike_annotated(big, [1, 4], annotated=[0])] == [4, 1]


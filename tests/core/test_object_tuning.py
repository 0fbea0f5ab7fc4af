"""The object step tuned on painted ids finds the right assembly where it is known."""

import numpy as np
import pytest
from test_anisotropy import isotropic_field, voronoi_cells

from napari_unet.core.bundle_meta import BundleMeta
from napari_unet.core.objects.defaults import object_fields, resolve, voxel_size
from napari_unet.core.objects.tuning import ObjectSettings, Tuning, tune_objects
from napari_unet.core.train.objects import scored_slices, why_not_tunable

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent


def perfect_maps(ids):
    """What a perfect 2-D boundary model predicts: every pixel foreground, interior off on the
    in-plane borders between ids (a 2-D model never sees borders across slices)."""
    edge = np.zeros(ids.shape, bool)
    for axis in (1, 2):
        differs = np.diff(ids, axis=axis) != 0
        before, after = [slice(None)] * 3, [slice(None)] * 3
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        edge[tuple(before)] |= differs
        edge[tuple(after)] |= differs
    return np.stack([np.ones(ids.shape, np.float32), (~edge).astype(np.float32)], axis=-1)


def numbered_per_slice(ids):
    """The same objects numbered 1..n in each slice, as painted slice by slice (no 3-D ids)."""
    return np.stack([np.unique(s, return_inverse=True)[1].reshape(s.shape) + 1 for s in ids])


def test_slices_far_apart_give_linked_objects():
    far = voronoi_cells((96, 64, 64), 60)[::8]  # 12 slices, 8 px apart, the spacing unknown
    tuning = tune_objects(perfect_maps(far), numbered_per_slice(far), annotated=[1, 3, 5, 7, 9], z_spacing=None,
                          ids_3d=False, defaults=ObjectSettings(objects="3d"), join_pieces=True, budget_s=60)
    assert tuning.settings.objects == "linked"
    assert tuning.error < tuning.default_error


def test_isotropic_slices_give_3d_objects():
    ids = voronoi_cells((48, 48, 48), 30)
    tuning = tune_objects(perfect_maps(ids), ids, annotated=[8, 16, 24, 32, 40], z_spacing=1.0, ids_3d=True,
                          defaults=ObjectSettings(objects="linked"), join_pieces=True, budget_s=60)
    assert tuning.settings.objects == "3d"
    assert tuning.error < tuning.default_error


def test_time_budget_keeps_the_defaults_scored():
    ids = voronoi_cells((24, 32, 32), 10)
    tuning = tune_objects(perfect_maps(ids), ids, annotated=[4, 12, 20], z_spacing=1.0, ids_3d=True,
                          defaults=ObjectSettings(), join_pieces=True, budget_s=0.0)
    assert tuning.tried == 1 and tuning.settings == ObjectSettings()
    assert Tuning.from_dict(tuning.to_dict()) == tuning


def test_too_few_annotations_are_not_tuned():
    labels = np.zeros((5, 16, 16), np.uint16)
    labels[2, 2:6, 2:6] = 1
    assert "one slice" in why_not_tunable(labels, [2])
    labels[3, 2:6, 2:6] = 1
    assert "fewer than 2 objects" in why_not_tunable(labels, [2, 3])
    labels[3, 8:12, 8:12] = 2
    assert why_not_tunable(labels, [2, 3]) is None


def test_scored_slices_are_held_out_ones_when_there_are_two():
    assert scored_slices([1, 4, 9, 12], [4, 12]) == [4, 12]
    assert scored_slices([1, 4, 9, 12], [4]) == [1, 4, 9, 12]
    assert scored_slices(list(range(0, 100, 10)), []) == [0, 10, 20, 30]  # at most 32 slices predicted


def _meta(settings: ObjectSettings):
    tuning = Tuning(settings=settings, error=0.1, default_error=0.2, n_slices=4, ids_3d=False,
                    z_spacing=12.0, tried=9, seconds=1.0)
    return BundleMeta(model_cfg={"n_classes": 3}, normalization={"low": [0.0], "high": [1.0]},
                      object_tuning=tuning.to_dict())


def test_given_options_win_over_tuned_ones_and_older_models_keep_defaults():
    meta = _meta(ObjectSettings(objects="linked", seed_distance=5.0, min_object_size=30))
    fields, line = object_fields(meta, {"objects": None, "min_object_size": 7})
    assert fields["objects"] == "linked" and fields["seed_distance"] == 5.0 and fields["min_object_size"] == 7
    assert line.startswith("objects tuned on your annotations: linked, distance seeds 5 px")
    older = _meta(ObjectSettings()).replace(object_tuning=None)
    assert object_fields(older, {"objects": None}) == ({}, None)  # an older model: PredictConfig's defaults
    assert object_fields(None, {"objects": "2d"}) == ({"objects": "2d"}, None)  # no model picked


def test_voxel_size_given_file_or_estimated():
    volume = isotropic_field()[::4]
    size, lines = voxel_size(volume, None, (1.0, 1.0, 1.0))  # a bare TIFF: estimated, and said
    assert size[0] == pytest.approx(4, rel=0.3) and size[1:] == (1.0, 1.0)
    assert len(lines) == 1 and "--voxel-size" in lines[0]
    assert voxel_size(volume, None, (4.0, 1.0, 1.0)) == ((4.0, 1.0, 1.0), [])
    size, lines = voxel_size(volume, (40.0, 1.0, 1.0), None)  # 10x the estimate: kept, with a warning
    assert size == (40.0, 1.0, 1.0) and lines[0].startswith("warning")


def test_resolve_skips_the_voxel_size_for_2d_objects():
    volume = isotropic_field((32, 32, 32))
    fields, lines = resolve(_meta(ObjectSettings(objects="2d")), {}, volume=volume, scale=None, is_3d=True)
    assert "voxel_size" not in fields and len(lines) == 1


def test_a_change_must_win_by_more_than_the_noise():
    from napari_unet.core.objects import tuning as object_tuning

    scorer = object_tuning._Scorer(None, None, [], False, 1.0, True)
    best, small, steady, noisy = (ObjectSettings(threshold=t) for t in (0.5, 0.4, 0.3, 0.6))
    scorer.seen = {best: np.array([0.20, 0.20, 0.20, 0.20]),
                   small: np.array([0.195, 0.195, 0.195, 0.195]),  # 2.5 % better: within the margin
                   steady: np.array([0.15, 0.16, 0.15, 0.16]),  # better on every slice
                   noisy: np.array([0.02, 0.30, 0.30, 0.06])}  # better on average, worse on half the slices
    assert not scorer.clearly_better(small, best)
    assert scorer.clearly_better(steady, best)
    assert not scorer.clearly_better(noisy, best)

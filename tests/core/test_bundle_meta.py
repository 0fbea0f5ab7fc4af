"""The model folder's description: typed, versioned, and version 1 files (up to commit 2d87ce6) still read."""

import json
from pathlib import Path

import pytest

from napari_unet.core.bundle import BundleError, read_bundle_meta
from napari_unet.core.bundle_meta import FORMAT_VERSION, BundleMeta, Normalization, describe_classes, upgrade
from napari_unet.core.config import ModelConfig, TrainConfig

pytestmark = pytest.mark.backend_independent

# bundle.json exactly as git commit 2d87ce6 wrote it: `napari-unet demo --instances`.
VERSION_1 = Path(__file__).parent / "data" / "bundle_v1.json"


def version_1() -> dict:
    return json.loads(VERSION_1.read_text())


def model_folder(folder: Path, meta: dict) -> Path:
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps(meta))
    return folder


def added_since_version_1(raw) -> dict:
    """Training settings a version-1 file lacks, as a new save writes them: their defaults."""
    return {k: v for k, v in TrainConfig().to_dict().items() if k not in raw["train_config"]}


def test_upgrade_takes_version_1_to_2_and_keeps_version_2():
    raw = version_1()
    assert raw["format_version"] == 1
    assert upgrade(raw) == {**raw, "format_version": 2} and raw["format_version"] == 1  # the input is kept
    current = {**raw, "format_version": FORMAT_VERSION}
    assert upgrade(current) == current


def test_a_version_1_file_reads_as_the_same_meta_as_version_2(tmp_path):
    raw = version_1()
    old = read_bundle_meta(model_folder(tmp_path / "old", raw))
    new = read_bundle_meta(model_folder(tmp_path / "new", old.json_dict()))
    assert new == old and new.format_version == FORMAT_VERSION == 2
    # The same keys and values: only the version moved, and training settings added since
    # version 1 appear at their defaults.
    assert new.json_dict() == {**raw, "format_version": 2,
                               "train_config": {**raw["train_config"], **added_since_version_1(raw)}}
    assert added_since_version_1(raw) == {"val_split": "slices", "pretrain_share": 0.0}
    assert new.model_cfg == ModelConfig(in_channels=1, n_classes=3, depth=2, n_filters=4)
    assert new.train_cfg.instances is True and isinstance(new.train_cfg, TrainConfig)
    assert new.object_tuning.settings.objects == "3d" and new.classes.label_values == [0, None, None]
    assert new.versions.napari_unet == "0.1.0" and new.validation.monitor == "val_loss"


def test_a_future_version_is_refused_in_one_line(tmp_path):
    with pytest.raises(BundleError, match=r"format version 3, newer than this napari-unet reads") as refused:
        read_bundle_meta(model_folder(tmp_path / "m", {**version_1(), "format_version": 3}))
    assert "\n" not in str(refused.value)
    with pytest.raises(BundleError, match=r"version None; this napari-unet reads version\(s\) \[1, 2\]"):
        read_bundle_meta(model_folder(tmp_path / "none", {**version_1(), "format_version": None}))


def test_a_wrong_part_is_named(tmp_path):
    meta = version_1()
    meta["classes"]["activation"] = "relu"
    with pytest.raises(BundleError, match=r"bundle.json holds an invalid classes.activation: .*sigmoid"):
        read_bundle_meta(model_folder(tmp_path / "m", meta))


def test_what_older_files_left_out_takes_defaults_and_nan_becomes_none():
    meta = BundleMeta.model_validate({"format_version": 2, "model_config": {"n_classes": 2},
                                      "normalization": {"low": [0.0], "high": [float("nan")]}})
    assert meta.normalization == Normalization(percentiles=(1.0, 99.8), low=[0.0], high=[None])
    assert (meta.instances, meta.objects_tile, meta.object_tuning, meta.classes) == (False, False, None, None)
    assert meta.replace(history={"loss": [float("nan"), 0.5]}).history.loss == [None, 0.5]
    with pytest.raises(ValueError):
        meta.replace(unknown=1)  # a name the format does not have is refused, not carried along


def test_describe_classes_maps_labels_to_outputs():
    assert describe_classes("full_slices", 1, label_values=[0, 255]).label_values == [0, 255]
    scribbles = describe_classes("scribbles", 3)
    assert scribbles.activation == "softmax" and scribbles.label_values == [1, 2, 3]
    assert describe_classes("scribbles", 1).label_values == [1, 2]
    assert describe_classes("full_slices", 3, instances=True).names == ["background", "interior", "boundary"]

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_bundle_meta import added_since_version_1

from napari_unet.core.bundle import BundleError, load_bundle, read_bundle_meta, save_bundle
from napari_unet.core.bundle_meta import FORMAT_VERSION, BundleMeta, describe_classes
from napari_unet.core.config import ModelConfig, TrainConfig
from napari_unet.core.nn.model import build_unet

CFG = ModelConfig(n_filters=4, depth=2, n_classes=3, dropout=0.1)


def make_meta(**changes):
    return BundleMeta(**{
        "model_cfg": CFG,
        "train_cfg": TrainConfig(epochs=3),
        "normalization": {"method": "percentile", "percentiles": [1.0, 99.8], "low": [10.0], "high": [200.0]},
        "classes": describe_classes("full_slices", 3),
        "annotation_mode": "full_slices",
        "instances": False,
        "history": {"loss": [np.float32(0.5), 0.25], "val_dice": [float("nan"), 0.7]},
        "validation": {"best_epoch": 2, "best_val_dice": 0.7},
        **changes,
    })


@pytest.fixture(scope="module")
def trained_model():
    model = build_unet(CFG)
    # Non-trivial weights everywhere, batch-norm statistics included.
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture
def saved(tmp_path, trained_model):
    return save_bundle(tmp_path / "model", trained_model, meta=make_meta())


def test_round_trip_predicts_identically_and_keeps_the_metadata(saved, trained_model):
    build_unet(CFG)  # other models built first must not confuse the weight loading
    model, meta = load_bundle(saved)
    x = np.random.default_rng(1).normal(size=(2, 24, 20, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict_on_batch(x), trained_model.predict_on_batch(x), rtol=0, atol=1e-6)
    assert meta.format_version == FORMAT_VERSION
    assert meta.model_cfg == CFG
    assert meta.train_cfg == TrainConfig(epochs=3)
    assert meta.normalization.low == [10.0]
    assert meta.input_axes == "YXC"
    assert meta.classes.names[0] == "background" and meta.classes.label_values == [0, 1, 2]
    assert meta.history.loss == [0.5, 0.25] and meta.history.val_dice == [None, 0.7]  # NaN is stored as null
    assert meta.versions.keras == keras.__version__
    assert meta.versions.backend == keras.backend.backend()
    assert {"napari-unet", "numpy", "python", "backend_version"} <= set(meta.json_dict()["versions"])
    assert meta.created and meta.weights == "model.weights.h5"
    assert meta == make_meta().replace(versions=meta.versions, created=meta.created, weights=meta.weights)
    assert sorted(p.name for p in saved.iterdir()) == ["bundle.json", "model.weights.h5"]
    assert [p.name for p in saved.parent.iterdir()] == ["model"]  # no temporary folders left


def test_read_meta_does_not_import_keras(saved):
    code = (
        "import sys; from napari_unet.core.bundle import read_bundle_meta; "
        f"meta = read_bundle_meta({str(saved)!r}); "
        "assert meta.model_cfg.n_classes == 3; "
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_existing_model_is_kept_unless_overwrite(saved, trained_model):
    before = (saved / "bundle.json").read_text()
    with pytest.raises(FileExistsError, match="already exists.*new name"):
        save_bundle(saved, trained_model, meta=make_meta())
    assert (saved / "bundle.json").read_text() == before

    replacement = build_unet(CFG.replace(dropout=0.0))
    save_bundle(saved, replacement, meta=make_meta(model_cfg=CFG.replace(dropout=0.0)), overwrite=True)
    assert read_bundle_meta(saved).model_cfg.dropout == 0.0
    assert [p.name for p in saved.parent.iterdir()] == ["model"]


def test_failed_save_leaves_the_target_untouched(saved, trained_model):
    class Broken:
        weights = ()  # fits on any disk: the failure comes while writing

        def save_weights(self, path):
            open(path, "wb").write(b"half a file")
            raise OSError("disk full")

    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        save_bundle(saved, Broken(), meta=make_meta(), overwrite=True)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    new = saved.parent / "new"
    with pytest.raises(OSError, match="disk full"):
        save_bundle(new, Broken(), meta=make_meta())
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_a_disk_without_room_is_refused_before_writing(tmp_path, trained_model, monkeypatch):
    import errno
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    with pytest.raises(OSError, match="No space left on device") as refused:
        save_bundle(tmp_path / "model", trained_model, meta=make_meta())
    assert refused.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # not even a temporary folder


def test_folders_that_are_not_models_are_never_replaced(tmp_path, trained_model):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a model folder"):
        save_bundle(other, trained_model, meta=make_meta(), overwrite=True)
    assert (other / "holiday.jpg").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    save_bundle(empty, trained_model, meta=make_meta())  # an empty folder is free to use
    assert (empty / "bundle.json").is_file()


def test_a_meta_needs_config_and_normalization():
    with pytest.raises(ValueError, match="normalization"):
        BundleMeta(model_cfg=CFG)


def test_a_version_1_bundle_loads_as_the_same_meta_as_a_new_one(tmp_path, trained_model):
    # bundle.json as git commit 2d87ce6 wrote it; the weights: this module's model.
    raw = json.loads((Path(__file__).parent / "data" / "bundle_v1.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    (old / "bundle.json").write_text(json.dumps({**raw, "model_config": CFG.to_dict()}))
    trained_model.save_weights(str(old / "model.weights.h5"))
    model, meta = load_bundle(old)
    assert meta.format_version == 2 and meta.model_cfg == CFG
    resaved, again = load_bundle(save_bundle(tmp_path / "new", model, meta=meta))
    assert again == meta.replace(versions=again.versions, created=again.created)
    written = json.loads((tmp_path / "new" / "bundle.json").read_text())
    for key in ("versions", "created"):  # this run's
        del written[key], raw[key]
    # The same file otherwise; training settings added since version 1 at their defaults.
    assert written == {**raw, "format_version": 2, "model_config": CFG.to_dict(),
                       "train_config": {**raw["train_config"], **added_since_version_1(raw)}}
    x = np.random.default_rng(2).normal(size=(1, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(resaved.predict_on_batch(x), model.predict_on_batch(x))


def rewrite_meta(folder, **changes):
    meta = json.loads((folder / "bundle.json").read_text())
    meta.update(changes)
    (folder / "bundle.json").write_text(json.dumps(meta))


def test_load_errors_say_what_is_wrong(tmp_path, saved):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        read_bundle_meta(tmp_path / "file.txt")
    (tmp_path / "bare").mkdir()
    with pytest.raises(BundleError, match="no bundle.json"):
        read_bundle_meta(tmp_path / "bare")

    rewrite_meta(saved, format_version=99)
    with pytest.raises(BundleError, match=r"version 99, newer than this napari-unet reads \(up to 2\)"):
        load_bundle(saved)
    rewrite_meta(saved, format_version="1")
    with pytest.raises(BundleError, match=r"version '1'; this napari-unet reads version\(s\) \[1, 2\]"):
        load_bundle(saved)
    rewrite_meta(saved, format_version=1, model_config={"depth": 9})
    with pytest.raises(BundleError, match="invalid model_config.*depth"):
        read_bundle_meta(saved)
    rewrite_meta(saved, model_config=CFG.replace(n_classes=5).to_dict())
    with pytest.raises(BundleError, match="(?s)cannot be loaded.*does not match"):
        load_bundle(saved)  # weights of a 3-class model
    rewrite_meta(saved, model_config=CFG.to_dict())
    (saved / "model.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(saved)
    (saved / "model.weights.h5").unlink()
    with pytest.raises(BundleError, match="no model.weights.h5"):
        load_bundle(saved)
    (saved / "bundle.json").write_text("{ not json")
    with pytest.raises(BundleError, match="corrupt"):
        read_bundle_meta(saved)
    (saved / "bundle.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(BundleError, match="lacks.*model_config"):
        read_bundle_meta(saved)
    assert issubclass(BundleError, ValueError)

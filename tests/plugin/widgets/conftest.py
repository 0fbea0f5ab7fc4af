import pytest

from volumes import disc_volume


@pytest.fixture
def tiny_volume():
    """6 x 48 x 48 bright discs on a dark noisy background; slices 1 and 4 annotated."""
    return disc_volume()


TINY_TRAIN = dict(n_filters=4, depth=2, epochs=2, steps=3, auto_sizes=False, batch_size=2, patch_size=32)


@pytest.fixture
def set_tiny_training():
    """Sets a Train widget to a seconds-long run saving to ``model_dir``."""

    def apply(widget, model_dir, **overrides):
        for name, value in {**TINY_TRAIN, **overrides}.items():
            getattr(widget, name).value = value
        widget.model_dir.value = model_dir

    return apply


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny model trained in the worker process (this process never loads TensorFlow)."""
    from napari_unet.core.config import ModelConfig, TrainConfig
    from napari_unet.runtime.jobs.train import start_training

    image, labels, _ = disc_volume((4, 48, 48), seed=1, annotated=range(4), discs=((24, 24, 150),))
    out = tmp_path_factory.mktemp("models") / "tiny"
    job = start_training(
        image, labels, model_cfg=ModelConfig(n_filters=4, depth=2),
        train_cfg=TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, patch_size=32), out_dir=str(out),
    )
    with job:
        job.start()
        events = job.wait(timeout=300)
    assert events[-1].kind == "done", events[-1]
    return out


@pytest.fixture(autouse=True)
def no_prewarm(monkeypatch):
    """Docks do not warm the worker up in these tests (a Keras import each): the tests that
    train start it anyway, and test_warm_worker.py turns it on."""
    from napari_unet.plugin.widgets import _session

    monkeypatch.setattr(_session, "PREWARM", False)


@pytest.fixture(autouse=True)
def own_dock_settings(tmp_path, monkeypatch):
    """Docks remember their Advanced section in Qt settings: here in a folder of the test's own."""
    from napari_unet.plugin.widgets import _advanced

    monkeypatch.setattr(_advanced, "SETTINGS", (str(tmp_path / "docks.ini"), _advanced.QSettings.Format.IniFormat))

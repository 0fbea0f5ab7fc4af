import pytest

from napari_unet.core.config import ConfigError, ModelConfig, PredictConfig, TrainConfig, limits

CONFIGS = (ModelConfig, TrainConfig, PredictConfig)


def _bool_fields(config_cls):
    return [name for name, f in config_cls.__dataclass_fields__.items() if f.type == "bool"]


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_every_numeric_field_has_limits_around_its_default(config_cls):
    defaults = config_cls()
    numeric = [name for name, f in config_cls.__dataclass_fields__.items() if f.type in ("int", "float")]
    assert numeric and set(numeric) == set(config_cls.LIMITS)
    for name in numeric:
        lo, hi = limits(config_cls, name)
        assert lo <= getattr(defaults, name) <= hi, name


def _below(lo):
    return lo - 1 if isinstance(lo, int) else (lo / 2 if lo > 0 else -1e-3)


def _above(hi):
    return hi + 1 if isinstance(hi, int) else hi * 1.5


# Fields checked together with another: the tile must exceed twice its overlap.
COMPANIONS = {"tile_size": {"tile_overlap": 0}, "tile_overlap": {"tile_size": 16384}}


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_values_just_outside_the_limits_are_refused_by_name(config_cls):
    for name, (lo, hi) in config_cls.LIMITS.items():
        for bad in (_below(lo), _above(hi)):
            with pytest.raises(ConfigError, match=f"{name} must be between"):
                config_cls(**{name: bad}, **COMPANIONS.get(name, {}))


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_the_limits_themselves_are_accepted(config_cls):
    for name, bounds in config_cls.LIMITS.items():
        for value in bounds:
            assert getattr(config_cls(**{name: value}, **COMPANIONS.get(name, {})), name) == value


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_bool_fields_refuse_other_values(config_cls):
    names = _bool_fields(config_cls)
    assert names
    for name in names:
        for bad in ("no", 1, 0, None):
            with pytest.raises(ConfigError, match=f"{name} must be true or false"):
                config_cls(**{name: bad})
        assert getattr(config_cls(**{name: False}), name) is False


def test_counts_refuse_true():
    with pytest.raises(ConfigError, match="epochs must be a int"):
        TrainConfig(epochs=True)
    with pytest.raises(ConfigError, match="threshold"):
        PredictConfig(threshold=True)


def test_augment_no_is_refused():
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment="no")


def test_limits_of_a_field_without_them_is_an_error():
    with pytest.raises(KeyError, match="TrainConfig.loss has no numeric limits"):
        limits(TrainConfig, "loss")

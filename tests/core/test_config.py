import pytest
from pydantic import ValidationError

from napari_unet.core.config import ConfigError, ModelConfig, ObjectsConfig, PredictConfig, TrainConfig, limits

# No Keras here: scripts/test.sh runs this once, not again on JAX.
pytestmark = pytest.mark.backend_independent

CONFIGS = (ModelConfig, TrainConfig, PredictConfig)


def _bool_fields(config_cls):
    return [name for name, f in config_cls.model_fields.items() if f.annotation is bool]


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_every_numeric_field_has_limits_around_its_default(config_cls):
    defaults = config_cls()
    auto = [name for name, f in config_cls.model_fields.items() if f.annotation in (int | None, float | None)]
    numeric = [name for name, f in config_cls.model_fields.items() if f.annotation in (int, float)]
    assert numeric and set(numeric + auto) == set(config_cls.LIMITS)
    for name in numeric + auto:
        lo, hi = limits(config_cls, name)
        value = getattr(defaults, name)
        assert (value is None and name in auto) or lo <= value <= hi, name


def test_batch_and_patch_size_default_to_auto_and_old_mixed_precision_flags_still_load():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.patch_size, cfg.mixed_precision) == (None, None, "auto")
    assert TrainConfig.from_dict({**cfg.to_dict(), "mixed_precision": True}).mixed_precision == "float16"
    assert TrainConfig.from_dict({**cfg.to_dict(), "mixed_precision": False}).mixed_precision == "off"
    with pytest.raises(ConfigError, match=r"mixed_precision must be one of \['auto', 'bfloat16', 'float16', 'off'\]"):
        TrainConfig(mixed_precision="fp8")


def test_xla_is_keras_choice_by_default_and_old_train_configs_without_it_load():
    cfg = TrainConfig()
    assert cfg.xla == "auto" and TrainConfig(xla="on").xla == "on"
    old = {k: v for k, v in cfg.to_dict().items() if k != "xla"}  # saved before the field existed
    assert TrainConfig.from_dict(old) == cfg
    with pytest.raises(ConfigError, match=r"xla must be one of \['auto', 'off', 'on'\]"):
        TrainConfig(xla=True)


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
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        TrainConfig(epochs=True)
    with pytest.raises(ConfigError, match="threshold"):
        PredictConfig(threshold=True)


def test_augment_no_is_refused():
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment="no")


def test_limits_of_a_field_without_them_is_an_error():
    with pytest.raises(KeyError, match="TrainConfig.loss has no numeric limits"):
        limits(TrainConfig, "loss")


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_unknown_fields_are_refused_by_name(config_cls):
    with pytest.raises(ConfigError, match=r"has no field\(s\) \['epoch'\]"):
        config_cls(epoch=3)
    with pytest.raises(ConfigError, match="has no field"):
        config_cls.from_dict({**config_cls().to_dict(), "colour": "red"})


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_choices_come_from_the_literal_types_and_refuse_others(config_cls):
    assert config_cls.CHOICES
    for name, choices in config_cls.CHOICES.items():
        assert getattr(config_cls(), name) in choices
        with pytest.raises(ConfigError, match=f"{name} must be one of"):
            config_cls(**{name: "not-a-choice"})


@pytest.mark.parametrize("config_cls", CONFIGS)
def test_configs_round_trip_through_json_and_stay_frozen(config_cls):
    import json

    config = config_cls()
    again = config_cls.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValidationError, match="frozen"):
        config.seed = 5


def test_replace_validates_like_a_new_config():
    assert TrainConfig().replace(epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="epochs must be between"):
        TrainConfig().replace(epochs=0)


def test_cross_field_rules_are_one_line():
    with pytest.raises(ConfigError, match=r"^tile_overlap \(300\) must be less than half of tile_size"):
        PredictConfig(tile_size=512, tile_overlap=300)
    with pytest.raises(ConfigError, match=r"^percentiles must satisfy"):
        TrainConfig(percentiles=(50.0, 10.0))


def test_prediction_s_object_fields_are_the_objects_config_s():
    for name in ("seed_distance", "min_object_size"):
        assert limits(PredictConfig, name) == limits(ObjectsConfig, name)
    assert PredictConfig.CHOICES["seeds"] == ObjectsConfig.CHOICES["seeds"]
    assert PredictConfig().objects_config() == ObjectsConfig()


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_objects_refuse_a_threshold_of_0_or_1_that_classes_accept(threshold):
    message = f"^threshold must be strictly between 0 and 1 for objects, got {threshold!r}$"
    with pytest.raises(ConfigError, match=message):
        ObjectsConfig(threshold=threshold)
    with pytest.raises(ConfigError, match=message):
        PredictConfig(output="instances", threshold=threshold)
    assert PredictConfig(output="labels", threshold=threshold).threshold == threshold

"""One bound, end to end: the docks, the CLI's --help and the configs agree."""

import re

import pytest

from napari_unet.cli.args import build_parser
from napari_unet.cli.main import main
from napari_unet.core.config import PredictConfig, TrainConfig, limits
from napari_unet.core.nn.losses import LOSS_FUNCTIONS
from napari_unet.plugin.widgets.segment_widget import SegmentWidget
from napari_unet.plugin.widgets.train_widget import SECONDS_PER_MINUTE, TrainWidget


def _help_range(capsys, command: str, flag: str) -> tuple:
    """The "(lo to hi)" that ``napari-unet COMMAND --help`` prints for ``flag``, as numbers."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    options = text.split("options:")[1]
    entry = options.split(f" {flag} ")[1].split(" --")[0]
    lo, hi = re.search(r"\((\S+) to (\S+)\)", entry).groups()
    return float(lo), float(hi)


def _choices(command: str, flag: str) -> list:
    subcommands = next(a for a in build_parser()._actions if a.choices and command in a.choices)
    option = next(a for a in subcommands.choices[command]._actions if flag in a.option_strings)
    return option.choices


def test_learning_rate_bounds_agree_in_dock_cli_and_config(make_napari_viewer, capsys):
    lo, hi = limits(TrainConfig, "learning_rate")
    dock = TrainWidget(make_napari_viewer())
    assert (dock.learning_rate.min, dock.learning_rate.max) == (lo, hi)
    assert _help_range(capsys, "train", "--learning-rate") == (lo, hi)
    TrainConfig(learning_rate=dock.learning_rate.min)  # the dock's lowest rate is a valid config
    with pytest.raises(ValueError):
        dock.learning_rate.value = lo / 2


def test_time_limit_in_minutes_covers_the_config_s_seconds(make_napari_viewer):
    lo, hi = limits(TrainConfig, "max_seconds")
    dock = TrainWidget(make_napari_viewer())
    assert dock.time_limit.min * SECONDS_PER_MINUTE == lo
    assert dock.time_limit.max * SECONDS_PER_MINUTE == hi


def test_tile_size_bounds_agree_in_dock_cli_and_config(make_napari_viewer, capsys):
    lo, hi = limits(PredictConfig, "tile_size")
    dock = SegmentWidget(make_napari_viewer())
    assert (dock.tile_size.min, dock.tile_size.max) == (lo, hi)
    assert _help_range(capsys, "predict", "--tile-size") == (lo, hi)


def test_loss_choices_are_the_registry_s():
    assert TrainConfig.CHOICES["loss"] == set(LOSS_FUNCTIONS)
    assert sorted(_choices("train", "--loss")) == sorted(LOSS_FUNCTIONS)
    assert sorted(_choices("demo", "--loss")) == sorted(LOSS_FUNCTIONS)

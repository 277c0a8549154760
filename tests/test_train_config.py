"""TrainConfig defines every training option once; the CLI and sweep grids derive from it."""

from __future__ import annotations

import pytest

from saffu.cli import build_parser
from saffu.cli.train import _training_arguments
from saffu.errors import InvalidParameterError
from saffu.sweep import parse_grid
from saffu.sweep.grid import BACKPROP_OPTIONS
from saffu.train_config import BUDGETS, TrainConfig


@pytest.mark.parametrize("name", TrainConfig.field_names())
def test_every_option_has_help_and_a_cli_flag(name):
    assert TrainConfig.help(name).strip()
    flags = {action.dest for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert f"train_{name}" in flags


def test_cli_budgets_replace_the_default_epoch_and_bad_values_fail_early():
    parse = build_parser().parse_args
    assert _training_arguments(parse(["train", "x.txt", "--out", "o"])).epochs == 1
    config = _training_arguments(parse(["train", "x.txt", "--out", "o", "--max-seconds", "5",
                                        "--patience", "none", "--clock", "cpu"]))
    assert config.epochs is None and config.max_seconds == 5 and config.clock == "cpu"
    with pytest.raises(InvalidParameterError, match="lr must be a finite number > 0"):
        _training_arguments(parse(["finetune", "m", "x.txt", "--out", "o", "--lr", "-1"]))


def test_sweep_backprop_options_are_the_train_config_fields_but_the_budgets():
    assert set(BACKPROP_OPTIONS) == set(TrainConfig.field_names()) - {*BUDGETS, "clock"}
    grid = parse_grid("[backprop]\nseconds = 5\nthaw_after = 10\n[[grid]]\nradial = [1]\n")
    assert grid.backprop.options == {"thaw_after": 10}
    with pytest.raises(InvalidParameterError, match="unknown option"):
        parse_grid("[backprop]\nseconds = 5\nmomentum = 0.9\n[[grid]]\nradial = [1]\n")


def test_replace_names_unknown_options():
    with pytest.raises(InvalidParameterError, match="unknown training option"):
        TrainConfig().replace(momentum=0.9)
    with pytest.raises(InvalidParameterError, match="at least one budget"):
        TrainConfig(epochs=None)

"""SaffuConfig describes every field once; the CLI and sweep grids derive their options from it."""

from __future__ import annotations

import typing

import pytest

from saffu.cli import build_parser
from saffu.config import SaffuConfig
from saffu.errors import InvalidParameterError
from saffu.sweep import parse_grid

FIELDS = SaffuConfig.field_names()


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_has_help_and_a_none_word_if_it_may_be_none(name):
    assert SaffuConfig.help(name).strip()
    optional = type(None) in typing.get_args(typing.get_type_hints(SaffuConfig)[name])
    assert (SaffuConfig.none_word(name) is not None) == optional


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_parses_its_default_from_text(name):
    default = getattr(SaffuConfig(), name)
    text = SaffuConfig.none_word(name) if default is None else str(default)
    assert SaffuConfig.parse_value(name, text) == default


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_a_cli_option_and_a_grid_field(name):
    default = getattr(SaffuConfig(), name)
    text = SaffuConfig.none_word(name) if default is None else str(default).lower()
    args = build_parser().parse_args(["fit", "x.txt", "--out", "m", f"--{name.replace('_', '-')}", text])
    assert getattr(args, f"config_{name}") == default
    assert not hasattr(build_parser().parse_args(["fit", "x.txt", "--out", "m"]), f"config_{name}")
    value = f'"{text}"' if isinstance(default, str) or default is None else text
    grid = parse_grid(f"[[grid]]\n{name} = [{value}]\n")
    assert getattr(grid.variants()[0], name) == default


def test_parse_value_errors_name_the_field():
    with pytest.raises(InvalidParameterError, match="radial must be an int"):
        SaffuConfig.parse_value("radial", "two")
    with pytest.raises(InvalidParameterError, match="document must be true or false"):
        SaffuConfig.parse_value("document", "maybe")
    with pytest.raises(InvalidParameterError, match="unknown SaffuConfig field"):
        SaffuConfig.parse_value("depth", "2")
    assert SaffuConfig.parse_value("tau", 2) == 2.0 and isinstance(SaffuConfig.parse_value("tau", 2), float)


def test_non_default_lists_the_changed_fields_only():
    assert SaffuConfig().non_default() == {}
    assert SaffuConfig(radial=3, tau=2.0).non_default() == {"radial": 3, "tau": 2.0}


FIRST_RELEASE_FIELDS = ("tokenizer", "vocab_size", "bits", "hidden", "radial", "block", "document",
                        "aggregation", "attention", "tau", "output_tau", "alpha", "priming",
                        "cipher_smoothing")


def test_later_fields_have_a_neutral_value_so_stored_sweep_keys_stay_valid():
    """A sweep variant stored by an earlier saffu (its key hashed every first-release field)
    keeps its key: later fields at their neutral value are left out of the hash."""
    import dataclasses
    import hashlib
    import json

    from saffu.config import _NO_NEUTRAL
    from saffu.sweep import variant_key

    for f in dataclasses.fields(SaffuConfig):
        assert (f.name in FIRST_RELEASE_FIELDS) == (f.metadata["neutral"] is _NO_NEUTRAL), f.name
    config = SaffuConfig(bits=256, radial=1, aggregation="sum", tau=2.0, output_tau=3.0)
    neutral = {f.name: f.metadata["neutral"] for f in dataclasses.fields(SaffuConfig)
               if f.name not in FIRST_RELEASE_FIELDS}
    config = config.replace(**neutral)
    old = {name: getattr(config, name) for name in FIRST_RELEASE_FIELDS}
    expected = hashlib.sha256(json.dumps({"config": old, "backprop": None},
                                         sort_keys=True).encode()).hexdigest()[:16]
    assert variant_key(config) == expected


def test_none_words_on_the_command_line_reach_the_config():
    from saffu.cli._options import config_from_args

    args = build_parser().parse_args(["fit", "x.txt", "--out", "m", "--bits", "min", "--hidden", "bits"])
    config = config_from_args(args)
    assert config.bits is None and config.hidden is None
    assert config_from_args(build_parser().parse_args(["fit", "x.txt", "--out", "m"])) == SaffuConfig()

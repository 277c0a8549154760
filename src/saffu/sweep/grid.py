"""Sweep grid files (TOML): parsing, validation and the variants they define (see :mod:`saffu.sweep`)."""


from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from saffu.errors import InvalidParameterError
from saffu.model import SaffuConfig
from saffu.train_config import BUDGETS, TrainConfig
from saffu.validation import is_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FIELDS = SaffuConfig.field_names()
SHARED_FIELDS = ("tokenizer", "vocab_size")  # one tokenizer serves the whole sweep
BACKPROP_OPTIONS = tuple(name for name in TrainConfig.field_names() if name not in (*BUDGETS, "clock"))
"""The [backprop] keys besides ``seconds``: the TrainConfig fields but the budgets and the clock."""
SAMPLE_TRIES_PER_VARIANT = 100


@dataclass(frozen=True)
class Sample:
    """``n`` random variants drawn with ``seed``; ``values`` replaces fields' value lists."""

    n: int
    seed: int
    values: dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Backprop:
    """Warm fine-tuning of every variant: ``seconds`` of training, ``options`` for trainer.train."""

    seconds: float
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, **self.options}


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring); :meth:`variants` lists its configs."""

    fixed: dict[str, Any]
    grids: tuple[dict[str, tuple[Any, ...]], ...]
    sample: Sample | None = None
    backprop: Backprop | None = None
    source: str = "grid"

    @property
    def reference(self) -> SaffuConfig:
        """The config of ``[fixed]`` (SaffuConfig defaults for the fields it does not set)."""
        return SaffuConfig(**self.fixed)

    def variants(self) -> list[SaffuConfig]:
        """The distinct variants: every grid's combinations in order, then the random sample.

        Raises:
            ValueError: a grid combination is not a valid SaffuConfig (the message names it).
        """
        found: dict[SaffuConfig, None] = {}
        for index, grid in enumerate(self.grids, start=1):
            for values in itertools.product(*grid.values()):
                changes = dict(zip(grid, values, strict=True))
                try:
                    config = self.reference.replace(**changes)
                except ValueError as error:
                    raise InvalidParameterError(f"{self.source}: [[grid]] #{index}, variant "
                                                f"{_describe(changes)}: {error}") from None
                found.setdefault(canonical(config))
        if self.sample is not None:
            for config in self._draw(self.sample, set(found)):
                found.setdefault(config)
        return list(found)

    def _draw(self, sample: Sample, taken: set[SaffuConfig]) -> list[SaffuConfig]:
        """Up to ``sample.n`` valid variants not in ``taken``, drawn reproducibly."""
        space = self.value_lists(sample)
        rng = random.Random(sample.seed)
        drawn: list[SaffuConfig] = []
        for _ in range(sample.n * SAMPLE_TRIES_PER_VARIANT):
            if len(drawn) == sample.n:
                break
            changes = {name: rng.choice(values) for name, values in space.items()}
            try:
                config = canonical(self.reference.replace(**changes))
            except ValueError:  # e.g. every context model off: draw again
                continue
            if config not in taken:
                taken.add(config)
                drawn.append(config)
        return drawn

    def value_lists(self, sample: Sample | None = None) -> dict[str, tuple[Any, ...]]:
        """Each varied field's values: its [fixed] value and its values in the grids, in order
        of appearance, or the sample's own list for the fields the sample lists."""
        reference = self.reference.to_dict()
        lists: dict[str, dict[Any, None]] = {}
        for grid in self.grids:
            for name, values in grid.items():
                lists.setdefault(name, {reference[name]: None}).update(dict.fromkeys(values))
        merged = {name: tuple(values) for name, values in lists.items()}
        if sample is not None:
            merged.update(sample.values)
        return merged


def canonical(config: SaffuConfig) -> SaffuConfig:
    """The cheapest config of the same model: with at most one context position per attending
    context model, softmax attention is 1 whatever W is and ``cat`` equals ``sum``; an extra
    context model equal to one already on is left out of ``extra_contexts``."""
    config = config.without_repeated_contexts()
    if max(spec.size for spec in config.context_specs) <= 1:
        return config.replace(attention="uniform", aggregation="sum")
    return config


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={_format_value(name, value)}" for name, value in values.items())


def _format_value(name: str, value: Any) -> str:
    if value is None:
        return SaffuConfig.none_word(name) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_grid(path: str | os.PathLike | None = None) -> Grid:
    """Read a grid file; ``None`` reads the roadmap shipped with saffu (``roadmap.toml``)."""
    if path is None:
        text = resources.files("saffu").joinpath("roadmap.toml").read_text(encoding="utf-8")
        return parse_grid(text, source="roadmap.toml")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} does not exist or is not a file")
    return parse_grid(path.read_text(encoding="utf-8"), source=str(path))


def parse_grid(text: str, *, source: str = "grid") -> Grid:
    """Parse and validate a grid file's TOML text (see the module docstring).

    Raises:
        ValueError: bad TOML, an unknown table or field, a bad value (checked by SaffuConfig),
            an empty value list, a varied tokenizer, or no variants at all; messages name
            ``source`` and the field.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidParameterError(f"{source}: invalid TOML: {error}") from None
    unknown = sorted(set(data) - {"fixed", "grid", "sample", "backprop"})
    if unknown:
        raise InvalidParameterError(f"{source}: unknown table [{unknown[0]}]; expected [fixed], [[grid]], "
                                    "[sample] or [backprop]")
    fixed = _fixed_values(_table(data, "fixed", source), source)
    raw_grids = data.get("grid", [])
    raw_grids = [raw_grids] if isinstance(raw_grids, dict) else raw_grids
    if not isinstance(raw_grids, list):
        raise InvalidParameterError(f"{source}: grid must be a table: write [[grid]] above its fields")
    grids = tuple(_value_lists(_checked_table(g, f"[[grid]] #{i}", source), f"[[grid]] #{i}", source)
                  for i, g in enumerate(raw_grids, start=1))
    sample = _parse_sample(data["sample"], source) if "sample" in data else None
    backprop = _parse_backprop(data["backprop"], source) if "backprop" in data else None
    if not grids and sample is None:
        raise InvalidParameterError(f"{source}: the grid is empty: add a [[grid]] table or a [sample] table")
    grid = Grid(fixed, grids, sample, backprop, source)
    try:
        grid.reference  # noqa: B018  (validates the combination of the [fixed] values)
    except ValueError as error:
        raise InvalidParameterError(f"{source}: [fixed]: {error}") from None
    _check_shared_fields(grid)
    if not grid.variants():
        raise InvalidParameterError(f"{source}: the grid defines no variants")
    return grid


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    return _checked_table(data.get(name, {}), f"[{name}]", source)


def _checked_table(table: object, where: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InvalidParameterError(f"{source}: {where} must be a table")
    return table


def _fixed_values(table: dict[str, Any], source: str) -> dict[str, Any]:
    values = {}
    for name, value in table.items():
        _check_field(name, "[fixed]", source)
        if isinstance(value, list):
            raise InvalidParameterError(f"{source}: [fixed] {name} must be a single value (put value lists "
                                        "in a [[grid]] table)")
        values[name] = _config_value(name, value, "[fixed]", source)
    return values


def _value_lists(table: dict[str, Any], where: str, source: str) -> dict[str, tuple[Any, ...]]:
    lists = {}
    for name, values in table.items():
        _check_field(name, where, source)
        values = values if isinstance(values, list) else [values]
        if not values:
            raise InvalidParameterError(f"{source}: {where} {name} is an empty list")
        converted = [_config_value(name, value, where, source) for value in values]
        lists[name] = tuple(dict.fromkeys(converted))
    return lists


def _check_field(name: str, where: str, source: str) -> None:
    if name not in CONFIG_FIELDS:
        raise InvalidParameterError(f"{source}: {where} has unknown field {name!r}; SaffuConfig fields are "
                                    f"{', '.join(CONFIG_FIELDS)}")


# Values are checked one at a time against a config with two context models on, so that
# turning one off is never an error on its own (combinations are checked per variant).
_VALUE_CHECK_BASE = {"radial": 1, "document": True}


def _config_value(name: str, value: Any, where: str, source: str) -> Any:
    """The SaffuConfig value a TOML value stands for, checked by SaffuConfig alone."""
    if isinstance(value, str) and value.lower() in ("none", SaffuConfig.none_word(name)):
        value = None
    elif not isinstance(value, str):
        value = SaffuConfig.parse_value(name, value)  # tau = 2 and tau = 2.0 are one variant
    try:
        SaffuConfig(**{**_VALUE_CHECK_BASE, name: value})
    except ValueError as error:
        raise InvalidParameterError(f"{source}: {where} {name} = {value!r}: {error}") from None
    return value


def _parse_sample(table: object, source: str) -> Sample:
    table = dict(_checked_table(table, "[sample]", source))
    n, seed = table.pop("n", None), table.pop("seed", 0)
    if not is_int(n) or n < 1:
        raise InvalidParameterError(f"{source}: [sample] n must be a positive integer, got {n!r}")
    if not is_int(seed):
        raise InvalidParameterError(f"{source}: [sample] seed must be an integer, got {seed!r}")
    return Sample(n, seed, _value_lists(table, "[sample]", source))


def _parse_backprop(table: object, source: str) -> Backprop:
    table = dict(_checked_table(table, "[backprop]", source))
    seconds = table.pop("seconds", None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 < seconds < math.inf:
        raise InvalidParameterError(f"{source}: [backprop] seconds must be a number > 0, got {seconds!r}")
    for name, value in table.items():
        if name not in BACKPROP_OPTIONS:
            raise InvalidParameterError(f"{source}: [backprop] has unknown option {name!r}; options are "
                                        f"seconds, {', '.join(BACKPROP_OPTIONS)}")
        if isinstance(value, (bool, str, list, dict)):
            raise InvalidParameterError(f"{source}: [backprop] {name} must be a number, got {value!r}")
    return Backprop(float(seconds), table)


def _check_shared_fields(grid: Grid) -> None:
    for name in SHARED_FIELDS:
        if len(grid.value_lists(grid.sample).get(name, ())) > 1:
            raise InvalidParameterError(f"{grid.source}: {name} cannot vary within a sweep (all variants "
                                        "share one tokenizer); set it in [fixed]")


def variant_key(config: SaffuConfig, backprop: Backprop | None = None) -> str:
    """A short hash of everything that defines a variant's result (16 hex digits).

    Fields at their *neutral* value (the value that gives the model saffu fitted before the
    field existed, ``SaffuConfig.key_fields``) are left out, so adding a config field does not
    change the keys of stored variants.
    """
    spec = {"config": config.key_fields(), "backprop": backprop.to_dict() if backprop else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

"""Roadmap sweeps (METHOD.md §7): fit many SAFFU variants explicitly and compare them.

A *grid file* (TOML) names the variants; ``roadmap.toml`` (shipped with the package) is the
default roadmap. Its tables::

    [fixed]          # SaffuConfig values shared by every variant (SaffuConfig defaults otherwise)
    bits = 256
    tau = 2.0

    [[grid]]         # a full grid: every combination of these value lists (fields not listed
    bits = ["min", 64, 256]    #  come from [fixed]); a file may hold several [[grid]] tables
    tau = [1, 2, 3]

    [sample]         # optional: n more distinct variants drawn at random, each field uniformly
    n = 50           # from the values it takes in [fixed] and the grids ("the same value lists");
    seed = 0         # a list here (e.g. hidden = [64, 256]) replaces a field's value list
    hidden = [64, 256]

    [backprop]       # optional: fine-tune each variant warm by backprop for this many seconds
    seconds = 60     # (needs PyTorch; other keys are options of saffu.trainer.train, e.g. lr)

``None`` values are written ``"min"`` (bits), ``"bits"`` (hidden), ``"mean"`` (priming) or
``"none"``. With at most one context position (radial ≤ 1, block ≤ 1) attention weights are 1
whatever W is, and ``cat`` equals ``sum``; such variants are run as ``uniform``/``sum`` (the
same model, two passes fewer), so equivalent variants are fitted once.

:func:`run_sweep` tokenizes the corpus and fits one tokenizer for all variants, caches the
encoded splits in the output folder, fits and scores the variants in parallel processes, and
writes each variant's result to ``variants/<key>.json`` as soon as it is done (``key`` is a hash
of the config), so an interrupted sweep resumes where it stopped. ``results.json`` and
``results.csv`` (every completed variant) are rewritten after each variant;
:func:`write_report` draws the figures and writes ``report.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import importlib.util
import io
import itertools
import json
import math
import multiprocessing
import os
import random
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from saffu._backend import set_num_threads
from saffu._io import atomic_write_bytes, atomic_write_text
from saffu.corpus import TokenizedCorpus
from saffu.fit import solve_output
from saffu.model import SaffuConfig, SaffuModel
from saffu.tokenize import Tokenizer, make_tokenizer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT = "saffu-sweep"
FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SaffuConfig))
SHARED_FIELDS = ("tokenizer", "vocab_size")  # one tokenizer serves the whole sweep
NONE_WORDS = {"bits": "min", "hidden": "bits", "priming": "mean"}
BACKPROP_OPTIONS = ("lr", "weight_decay", "batch_targets", "warmup_steps", "max_grad_norm",
                    "eval_every", "patience", "seed")
SAMPLE_TRIES_PER_VARIANT = 100
METRICS = (
    "parameters", "train_tokens", "fit_seconds", "fit_cpu_seconds", "fit_shared", "eval_seconds",
    "eval_cpu_seconds", "fit_peak_memory_mb", "peak_memory_mb", "dev_perplexity",
    "dev_bits_per_char", "test_perplexity", "test_bits_per_char", "backprop_seconds",
    "backprop_steps", "backprop_stopped", "backprop_dev_perplexity", "backprop_dev_bits_per_char",
    "backprop_test_perplexity", "backprop_test_bits_per_char")


# --- grid files ------------------------------------------------------------------------------------


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
                    raise ValueError(f"{self.source}: [[grid]] #{index}, variant "
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
    context model, softmax attention is 1 whatever W is and ``cat`` equals ``sum``."""
    if max(config.radial, config.block) <= 1:
        return config.replace(attention="uniform", aggregation="sum")
    return config


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={_format_value(name, value)}" for name, value in values.items())


def _format_value(name: str, value: Any) -> str:
    if value is None:
        return NONE_WORDS.get(name, "none")
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
        raise ValueError(f"{source}: invalid TOML: {error}") from None
    unknown = sorted(set(data) - {"fixed", "grid", "sample", "backprop"})
    if unknown:
        raise ValueError(f"{source}: unknown table [{unknown[0]}]; expected [fixed], [[grid]], "
                         "[sample] or [backprop]")
    fixed = _fixed_values(_table(data, "fixed", source), source)
    raw_grids = data.get("grid", [])
    raw_grids = [raw_grids] if isinstance(raw_grids, dict) else raw_grids
    if not isinstance(raw_grids, list):
        raise ValueError(f"{source}: grid must be a table: write [[grid]] above its fields")
    grids = tuple(_value_lists(_checked_table(g, f"[[grid]] #{i}", source), f"[[grid]] #{i}", source)
                  for i, g in enumerate(raw_grids, start=1))
    sample = _parse_sample(data["sample"], source) if "sample" in data else None
    backprop = _parse_backprop(data["backprop"], source) if "backprop" in data else None
    if not grids and sample is None:
        raise ValueError(f"{source}: the grid is empty: add a [[grid]] table or a [sample] table")
    grid = Grid(fixed, grids, sample, backprop, source)
    try:
        grid.reference  # noqa: B018  (validates the combination of the [fixed] values)
    except ValueError as error:
        raise ValueError(f"{source}: [fixed]: {error}") from None
    _check_shared_fields(grid)
    if not grid.variants():
        raise ValueError(f"{source}: the grid defines no variants")
    return grid


def _table(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    return _checked_table(data.get(name, {}), f"[{name}]", source)


def _checked_table(table: object, where: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"{source}: {where} must be a table")
    return table


def _fixed_values(table: dict[str, Any], source: str) -> dict[str, Any]:
    values = {}
    for name, value in table.items():
        _check_field(name, "[fixed]", source)
        if isinstance(value, list):
            raise ValueError(f"{source}: [fixed] {name} must be a single value (put value lists "
                             "in a [[grid]] table)")
        values[name] = _config_value(name, value, "[fixed]", source)
    return values


def _value_lists(table: dict[str, Any], where: str, source: str) -> dict[str, tuple[Any, ...]]:
    lists = {}
    for name, values in table.items():
        _check_field(name, where, source)
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ValueError(f"{source}: {where} {name} is an empty list")
        converted = [_config_value(name, value, where, source) for value in values]
        lists[name] = tuple(dict.fromkeys(converted))
    return lists


def _check_field(name: str, where: str, source: str) -> None:
    if name not in CONFIG_FIELDS:
        raise ValueError(f"{source}: {where} has unknown field {name!r}; SaffuConfig fields are "
                         f"{', '.join(CONFIG_FIELDS)}")


_FLOAT_FIELDS = tuple(f.name for f in dataclasses.fields(SaffuConfig)
                      if isinstance(f.default, float) or f.name == "priming")
# Values are checked one at a time against a config with two context models on, so that
# turning one off is never an error on its own (combinations are checked per variant).
_VALUE_CHECK_BASE = {"radial": 1, "document": True}


def _config_value(name: str, value: Any, where: str, source: str) -> Any:
    """The SaffuConfig value a TOML value stands for, checked by SaffuConfig alone."""
    if isinstance(value, str) and value.lower() in ("none", NONE_WORDS.get(name)):
        value = None
    elif name in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # tau = 2 and tau = 2.0 are one variant
    try:
        SaffuConfig(**{**_VALUE_CHECK_BASE, name: value})
    except ValueError as error:
        raise ValueError(f"{source}: {where} {name} = {value!r}: {error}") from None
    return value


def _parse_sample(table: object, source: str) -> Sample:
    table = dict(_checked_table(table, "[sample]", source))
    n, seed = table.pop("n", None), table.pop("seed", 0)
    if not _is_int(n) or n < 1:
        raise ValueError(f"{source}: [sample] n must be a positive integer, got {n!r}")
    if not _is_int(seed):
        raise ValueError(f"{source}: [sample] seed must be an integer, got {seed!r}")
    return Sample(n, seed, _value_lists(table, "[sample]", source))


def _parse_backprop(table: object, source: str) -> Backprop:
    table = dict(_checked_table(table, "[backprop]", source))
    seconds = table.pop("seconds", None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 < seconds < math.inf:
        raise ValueError(f"{source}: [backprop] seconds must be a number > 0, got {seconds!r}")
    for name, value in table.items():
        if name not in BACKPROP_OPTIONS:
            raise ValueError(f"{source}: [backprop] has unknown option {name!r}; options are "
                             f"seconds, {', '.join(BACKPROP_OPTIONS)}")
        if isinstance(value, (bool, str, list, dict)):
            raise ValueError(f"{source}: [backprop] {name} must be a number, got {value!r}")
    return Backprop(float(seconds), table)


def _check_shared_fields(grid: Grid) -> None:
    for name in SHARED_FIELDS:
        if len(grid.value_lists(grid.sample).get(name, ())) > 1:
            raise ValueError(f"{grid.source}: {name} cannot vary within a sweep (all variants "
                             "share one tokenizer); set it in [fixed]")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def variant_key(config: SaffuConfig, backprop: Backprop | None = None) -> str:
    """A short hash of everything that defines a variant's result (16 hex digits)."""
    spec = {"config": config.to_dict(), "backprop": backprop.to_dict() if backprop else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


# --- the shared data -------------------------------------------------------------------------------


@dataclass
class SweepData:
    """The tokenizer and the encoded splits that every variant of a sweep uses.

    Attributes:
        tokenizer: fitted on the train documents.
        splits: "train", "dev" and (optionally) "test" corpora, encoded with ``tokenizer``.
    """

    tokenizer: Tokenizer
    splits: dict[str, TokenizedCorpus]

    TOKENIZER_FILE = "tokenizer.json"
    DATA_FILE = "data.npz"

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``data.npz`` (per split: ids, pos, chunk offsets,
        characters), each atomically."""
        arrays = {}
        for name, corpus in self.splits.items():
            chunks = list(corpus.chunks())
            arrays[f"{name}.ids"] = np.concatenate([ids for ids, _ in chunks])
            arrays[f"{name}.pos"] = np.concatenate([pos for _, pos in chunks])
            arrays[f"{name}.offsets"] = np.cumsum([0] + [len(ids) for ids, _ in chunks[:-1]])
            arrays[f"{name}.characters"] = np.array(corpus.n_characters)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(directory / self.DATA_FILE, buffer.getvalue())
        self.tokenizer.save(directory / self.TOKENIZER_FILE)

    @classmethod
    def load(cls, directory: Path) -> SweepData:
        tokenizer = Tokenizer.load(directory / cls.TOKENIZER_FILE)
        splits = {}
        with np.load(directory / cls.DATA_FILE) as arrays:
            for name in SPLITS:
                if f"{name}.ids" not in arrays:
                    continue
                ids, pos = arrays[f"{name}.ids"], arrays[f"{name}.pos"]
                bounds = [*arrays[f"{name}.offsets"].tolist(), len(ids)]
                chunks = [(ids[a:b], pos[a:b]) for a, b in itertools.pairwise(bounds)]
                splits[name] = TokenizedCorpus(chunks, n_characters=int(arrays[f"{name}.characters"]))
        return cls(tokenizer, splits)

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {"documents": c.n_documents, "tokens": c.n_tokens, "targets": c.n_targets,
                       "characters": c.n_characters} for name, c in self.splits.items()}


def _fingerprint(documents: dict[str, list[str]], tokenizer: str, vocab_size: int) -> str:
    """SHA-256 of the tokenizer settings and every split's documents."""
    digest = hashlib.sha256(f"{tokenizer}\0{vocab_size}".encode())
    for name, docs in documents.items():
        digest.update(f"\0{name}\0{len(docs)}".encode())
        for document in docs:
            digest.update(f"\0{len(document)}\0".encode())
            digest.update(document.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is corrupted: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is corrupted: not a JSON object")
    return value


def prepare_data(directory: Path, documents: dict[str, list[str]], reference: SaffuConfig,
                 verbose: int = 1) -> SweepData:
    """The sweep's data in ``directory``: reused if it was prepared from the same documents,
    otherwise built (tokenizer fitted on train, every split encoded) and cached there.

    Raises:
        ValueError: ``directory`` holds a sweep of other documents or another tokenizer.
    """
    fingerprint = _fingerprint(documents, reference.tokenizer, reference.vocab_size)
    manifest_path = directory / "sweep.json"
    if manifest_path.is_file():
        if _read_json(manifest_path).get("fingerprint") != fingerprint:
            raise ValueError(f"{directory} holds a sweep of other documents or another tokenizer; "
                             "choose another --out")
        with contextlib.suppress(OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return SweepData.load(directory)  # else rebuilt below
    _log(verbose, f"fitting the {reference.tokenizer} tokenizer ({reference.vocab_size} ids) and "
                  "encoding the corpus")
    tokenizer = make_tokenizer(reference.tokenizer, vocab_size=reference.vocab_size)
    tokenizer.fit(documents["train"])
    data = SweepData(tokenizer, {name: TokenizedCorpus.from_documents(tokenizer, docs)
                                 for name, docs in documents.items()})
    directory.mkdir(parents=True, exist_ok=True)
    data.save(directory)
    atomic_write_text(manifest_path, json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fingerprint,
         "tokenizer": reference.tokenizer, "vocab_size": reference.vocab_size,
         "splits": data.summary()}, indent=2) + "\n")
    return data


# --- one variant -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _tracing_memory() -> Iterator[None]:
    """Trace Python and NumPy allocations inside the block (unless they are traced already)."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        yield
    finally:
        if started_here:
            tracemalloc.stop()


def _traced_peak_mb(baseline: int) -> float:
    """The traced peak since the last reset, in MB above ``baseline`` bytes."""
    return (tracemalloc.get_traced_memory()[1] - baseline) / 2**20


def fit_variant(config: SaffuConfig, data: SweepData, *, backprop: Backprop | None = None,
                n_jobs: int | None = None) -> dict[str, Any]:
    """Fit one variant explicitly on ``data``'s train split and score it on dev (and test).

    Returns:
        the variant's record: ``key``, every config field, ``parameters``, ``train_tokens``,
        ``fit_seconds`` (wall) and ``fit_cpu_seconds`` (this process), the same for scoring
        dev and test (``eval_seconds``, ``eval_cpu_seconds``), ``fit_peak_memory_mb`` and
        ``peak_memory_mb`` (tracemalloc peaks of the fit and of the whole variant, in MB above
        what the process held before: NumPy arrays and Python objects, not allocations inside
        the C++ kernels or BLAS), ``{dev,test}_perplexity``
        and ``{dev,test}_bits_per_char`` (test ``None`` without a test split), ``fit_shared``
        (see :func:`fit_variants`), and with ``backprop`` the same scores after warm
        fine-tuning (``backprop_*``).
    """
    (record,) = fit_variants([config], data, backprop=backprop, n_jobs=n_jobs)
    return record


def fit_variants(configs: Sequence[SaffuConfig], data: SweepData, *,
                 backprop: Backprop | None = None, n_jobs: int | None = None) -> Iterator[dict[str, Any]]:
    """Fit and score variants that differ in ``output_tau`` only, yielding each one's record.

    The passes over the corpus do not depend on ``output_tau`` (it scales the output layer's
    solution only), so they run once, for the first variant; every other variant re-solves the
    output layer from the same statistics and is scored on its own. Its record (see
    :func:`fit_variant`) has ``fit_shared`` true and repeats the first variant's fit time and
    memory: what fitting it alone would cost.

    Raises:
        ValueError: the configs differ in more than ``output_tau``.
    """
    first = configs[0]
    if any(config.replace(output_tau=first.output_tau) != first for config in configs):
        raise ValueError("fit_variants takes variants that differ in output_tau only")
    model: SaffuModel | None = None
    with _tracing_memory():
        for config in configs:
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            fit: dict[str, Any] = {"fit_shared": model is not None}
            if model is None:
                wall, cpu = time.perf_counter(), time.process_time()
                model = SaffuModel(config, tokenizer=data.tokenizer).fit(
                    data.splits["train"], n_jobs=n_jobs, verbose=0)
                shared = {"fit_seconds": time.perf_counter() - wall,
                          "fit_cpu_seconds": time.process_time() - cpu,
                          "fit_peak_memory_mb": _traced_peak_mb(baseline)}
            else:
                model.config = config
                solve_output(model, model.fit_state["statistics"]["output"])
            wall, cpu = time.perf_counter(), time.process_time()
            scores = _scores(model.score, data)
            fit.update(eval_seconds=time.perf_counter() - wall,
                       eval_cpu_seconds=time.process_time() - cpu)
            if backprop is not None:
                scores.update(_fine_tune(model, data, backprop, n_jobs))
            yield {"key": variant_key(config, backprop), **config.to_dict(),
                   "parameters": model.n_parameters, "train_tokens": data.splits["train"].n_tokens,
                   **shared, **fit,
                   "peak_memory_mb": max(shared["fit_peak_memory_mb"], _traced_peak_mb(baseline)),
                   **scores}


def output_tau_groups(configs: Iterable[SaffuConfig]) -> list[list[SaffuConfig]]:
    """The variants grouped by every field but ``output_tau`` (for :func:`fit_variants`), in
    order of first appearance."""
    groups: dict[SaffuConfig, list[SaffuConfig]] = {}
    for config in configs:
        groups.setdefault(config.replace(output_tau=1.0), []).append(config)
    return list(groups.values())


def _scores(score: Any, data: SweepData, prefix: str = "") -> dict[str, float | None]:
    """Perplexity and bits/char on dev and test (``None`` without a test split)."""
    result: dict[str, float | None] = {}
    for split in ("dev", "test"):
        values = score(data.splits[split]) if split in data.splits else {}
        for metric in ("perplexity", "bits_per_char"):
            result[f"{prefix}{split}_{metric}"] = values.get(metric)
    return result


def _fine_tune(model: SaffuModel, data: SweepData, backprop: Backprop,
               n_jobs: int | None) -> dict[str, Any]:
    """Warm-start backprop (saffu.trainer) for ``backprop.seconds``; dev early stopping."""
    from saffu.torch import to_torch
    from saffu.trainer import evaluate, train

    module = to_torch(model)
    history = train(module, data.splits["train"], data.splits["dev"], epochs=None,
                    max_seconds=backprop.seconds, n_jobs=n_jobs, verbose=0, **backprop.options)
    last = history[-1]
    return {"backprop_seconds": last["seconds"], "backprop_steps": last["step"],
            "backprop_stopped": history.stopped,
            **_scores(lambda corpus: evaluate(module, corpus), data, "backprop_")}


# --- running a sweep --------------------------------------------------------------------------------

_worker_data: SweepData | None = None


def _init_worker(directory: str) -> None:
    """Pool initializer: one kernel/BLAS thread per process, and the shared data loaded once."""
    from threadpoolctl import threadpool_limits

    import saffu.fit  # noqa: F401  (imported here, not inside the first variant's timing)

    global _worker_data
    set_num_threads(1)
    threadpool_limits(1)
    _worker_data = SweepData.load(Path(directory))


def _worker_task(configs: list[SaffuConfig], backprop: Backprop | None,
                 directory: str) -> list[dict[str, Any]]:
    return _fit_and_store(configs, _worker_data, backprop, Path(directory), n_jobs=1)


def _store(directory: Path, record: dict[str, Any]) -> None:
    atomic_write_text(directory / "variants" / f"{record['key']}.json",
                      json.dumps(record, indent=1) + "\n")


def _cached(directory: Path, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / "variants" / f"{key}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def run_sweep(train: Iterable[str], dev: Iterable[str], test: Iterable[str] | None = None, *,
              grid: Grid | str | os.PathLike | None = None, out: str | os.PathLike,
              jobs: int = 1, verbose: int = 1) -> list[dict[str, Any]]:
    """Fit and score every variant of ``grid`` (default: the shipped roadmap); resumable.

    Args:
        train, dev, test: documents (iterables of strings, e.g. :func:`saffu.corpus.read_documents`).
        grid: a :class:`Grid` or a grid file path.
        out: output folder; variants already stored there (same data) are not fitted again.
        jobs: worker processes (1: fit in this process with the default kernel threads;
            more: "spawn" processes with one kernel thread each).
        verbose: 0 silent; 1 one line per variant on stderr.
    Returns:
        the records (see :func:`fit_variant`) of the completed variants, in grid order.
    Raises:
        ValueError: bad arguments, or ``out`` holds a sweep of other data.
        RuntimeError: some variants failed (the others are stored; rerun to retry).
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    if not _is_int(jobs) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if grid.backprop is not None and importlib.util.find_spec("torch") is None:
        raise ValueError(f"{grid.source}: [backprop] needs PyTorch: pip install 'saffu[torch]'")
    directory = Path(out)
    documents = {"train": _document_list(train, "train"), "dev": _document_list(dev, "dev")}
    if test is not None:
        documents["test"] = _document_list(test, "test")
    run = _SweepRun(grid, directory, documents, verbose)
    missing = run.load_stored()
    _log(verbose, f"{len(run.records)} variants: {len(run.records) - len(missing)} stored, "
                  f"{len(missing)} to fit with {jobs} job(s)")
    _fit_missing(run, missing, jobs)
    run.publish()
    if run.failures:
        config, error = run.failures[0]
        raise RuntimeError(f"{len(run.failures)} of {len(run.records)} variants failed (first: "
                           f"{_label(config, grid)}: {error!r}); completed variants are stored "
                           f"in {directory}; rerun to retry the failed ones")
    return run.completed


def _document_list(documents: Iterable[str], name: str) -> list[str]:
    if isinstance(documents, (str, bytes)):
        raise TypeError(f"{name} must be an iterable of document strings, not a single string")
    documents = list(documents)
    if not documents:
        raise ValueError(f"the {name} split has no documents")
    return documents


def _remove_temporary_files(directory: Path) -> None:
    """Leftovers of atomic writes that a killed worker did not finish."""
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


class _SweepRun:
    """One run of a sweep: the records so far, progress lines, and the results files, which
    are rewritten after every variant so that they always hold every completed one."""

    def __init__(self, grid: Grid, directory: Path, documents: dict[str, list[str]],
                 verbose: int) -> None:
        self.grid, self.directory, self.verbose = grid, directory, verbose
        self.records: dict[SaffuConfig, dict[str, Any] | None] = dict.fromkeys(grid.variants())
        self.failures: list[tuple[SaffuConfig, BaseException]] = []
        self.computed = 0
        self.started, self.load_start = time.perf_counter(), _load_average()
        self.data = prepare_data(directory, documents, grid.reference, verbose)

    def load_stored(self) -> list[SaffuConfig]:
        """Take the stored records of this grid's variants; return the variants still missing."""
        (self.directory / "variants").mkdir(exist_ok=True)
        _remove_temporary_files(self.directory / "variants")
        for config in self.records:
            self.records[config] = _cached(self.directory, variant_key(config, self.grid.backprop))
        return [config for config, record in self.records.items() if record is None]

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [record for record in self.records.values() if record is not None]

    def finished(self, config: SaffuConfig, record: dict[str, Any]) -> None:
        self.records[config] = record
        self.computed += 1
        done = len(self.completed)
        _log(self.verbose, f"[{done}/{len(self.records)}] {_label(config, self.grid)}: "
                           f"dev perplexity {record['dev_perplexity']:.2f}, "
                           f"{record['parameters']:,} parameters, fit {record['fit_seconds']:.1f} s")
        self.publish()

    def failed(self, config: SaffuConfig, error: BaseException) -> None:
        self.failures.append((config, error))
        _log(self.verbose, f"FAILED {_label(config, self.grid)}: {error!r}")

    def publish(self) -> None:
        """Write ``results.json`` and ``results.csv`` of the completed variants."""
        meta = {
            "grid": self.grid.source, "variants": len(self.records),
            "completed": len(self.completed), "computed_this_run": self.computed,
            "failed_this_run": len(self.failures),
            "wall_seconds_this_run": time.perf_counter() - self.started,
            "load_average_start": self.load_start, "load_average_now": _load_average(),
            "cpu_count": os.cpu_count(), "splits": self.data.summary(),
            "backprop": self.grid.backprop.to_dict() if self.grid.backprop else None}
        _write_results(self.directory, self.completed, meta)


def _load_average() -> float | None:
    """The 1-minute load average of the machine (``None`` where the OS has none, e.g. Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _fit_missing(run: _SweepRun, missing: Sequence[SaffuConfig], jobs: int) -> None:
    """Fit the missing variants, in this process (``jobs == 1``) or in a pool of processes.

    Variants that differ in ``output_tau`` only are one task (:func:`fit_variants`); in a pool
    the most expensive tasks go first, so that the run does not end waiting for one of them.
    """
    groups = output_tau_groups(missing)
    if jobs == 1:
        for group in groups:
            _collect(run, group, lambda group=group: _fit_and_store(
                group, run.data, run.grid.backprop, run.directory))
        return
    executor = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(str(run.directory),))
    try:
        pending: dict[Future, list[SaffuConfig]] = {
            executor.submit(_worker_task, group, run.grid.backprop, str(run.directory)): group
            for group in sorted(groups, key=_estimated_cost, reverse=True)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                _collect(run, pending.pop(future), future.result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _fit_and_store(configs: list[SaffuConfig], data: SweepData, backprop: Backprop | None,
                   directory: Path, n_jobs: int | None = None) -> list[dict[str, Any]]:
    """Fit one group of :func:`output_tau_groups`, storing each record as soon as it is done."""
    records = []
    for record in fit_variants(configs, data, backprop=backprop, n_jobs=n_jobs):
        _store(directory, record)
        records.append(record)
    return records


def _collect(run: _SweepRun, group: list[SaffuConfig],
             result: Callable[[], list[dict[str, Any]]]) -> None:
    """Record a group's results; if it failed, the variants stored before the error count as
    done and the others as failed."""
    try:
        records = {record["key"]: record for record in result()}
    except Exception as error:
        records = {}
        for config in group:
            key = variant_key(config, run.grid.backprop)
            record = _cached(run.directory, key)
            if record is None:
                run.failed(config, error)
            else:
                records[key] = record
    for config in group:
        record = records.get(variant_key(config, run.grid.backprop))
        if record is not None:
            run.finished(config, record)


def _estimated_cost(group: Sequence[SaffuConfig]) -> float:
    """A rough relative cost of fitting and scoring a group: scoring grows with the width of the
    output layer's input and the number of variants, the passes with the context positions."""
    config = group[0]
    bits = config.bits or 16
    specs = config.context_specs
    width = len(specs) * (config.hidden or bits)
    positions = sum(spec.size for spec in specs)
    return len(group) * width + positions * bits / 4


def _label(config: SaffuConfig, grid: Grid) -> str:
    """The fields where ``config`` differs from the grid's reference, e.g. "bits=64, tau=3"."""
    reference = canonical(grid.reference).to_dict()
    changes = {name: value for name, value in config.to_dict().items() if value != reference[name]}
    return _describe(changes) or "the reference variant"


def _log(verbose: int, message: str) -> None:
    if verbose:
        print(f"saffu sweep: {message}", file=sys.stderr, flush=True)


def _write_results(directory: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``results.json`` (meta and records) and ``results.csv`` (one row per record)."""
    atomic_write_text(directory / "results.json",
                      json.dumps({"sweep": meta, "variants": records}, indent=1) + "\n")
    columns = ["key", *CONFIG_FIELDS, *[m for m in METRICS if any(m in r for r in records)]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({name: "" if record.get(name) is None else record[name] for name in columns})
    atomic_write_text(directory / "results.csv", buffer.getvalue())


def read_results(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """The variant records of a sweep folder's ``results.json``."""
    path = Path(directory) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run saffu sweep first")
    records = _read_json(path).get("variants")
    if not isinstance(records, list):
        raise ValueError(f"{path} is not a saffu sweep result: it has no list of variants")
    if not records:
        raise ValueError(f"{path} holds no completed variants")
    return records


# --- the report ----------------------------------------------------------------------------------------


def pareto_front(records: Sequence[dict[str, Any]], cost: str = "parameters",
                 score: str = "dev_perplexity") -> list[dict[str, Any]]:
    """The records no other record beats on both ``cost`` and ``score`` (lower is better for
    both), by increasing cost."""
    front, best = [], math.inf
    for record in sorted(records, key=lambda r: (r[cost], r[score])):
        if record[score] < best:
            front.append(record)
            best = record[score]
    return front


def varied_fields(records: Sequence[dict[str, Any]]) -> list[str]:
    """Config fields that take more than one value among ``records``."""
    return [name for name in CONFIG_FIELDS if len({json.dumps(r[name]) for r in records}) > 1]


def paired_effects(records: Sequence[dict[str, Any]],
                   score: str = "dev_perplexity") -> list[dict[str, Any]]:
    """The effect of each varied field, all else equal: for every value of a field other than
    its most common one (the baseline), the ratios ``score(value) / score(baseline)`` over the
    pairs of records that differ in that field only (< 1: the value is better).

    Returns:
        one dict per (field, value) with pairs: ``field``, ``baseline``, ``value``, ``pairs``,
        ``median``, ``low``, ``high`` (ratios) and ``better`` (pairs with a ratio < 1).
    """
    effects = []
    for name in varied_fields(records):
        counts: dict[str, int] = {}
        for record in records:
            counts[json.dumps(record[name])] = counts.get(json.dumps(record[name]), 0) + 1
        baseline = json.loads(max(counts, key=counts.get))
        others = [field for field in CONFIG_FIELDS if field != name]
        by_rest = {json.dumps([r[f] for f in others]): r for r in records if r[name] == baseline}
        ratios: dict[str, list[float]] = {}
        for record in records:
            base = by_rest.get(json.dumps([record[f] for f in others]))
            if record[name] != baseline and base is not None:
                ratios.setdefault(json.dumps(record[name]), []).append(record[score] / base[score])
        for value, found in sorted(ratios.items()):
            effects.append({"field": name, "baseline": baseline, "value": json.loads(value),
                            "pairs": len(found), "median": float(np.median(found)),
                            "low": min(found), "high": max(found),
                            "better": sum(ratio < 1 for ratio in found)})
    return effects


def write_report(directory: str | os.PathLike, *, top: int = 10) -> dict[str, Path]:
    """Write ``pareto.png``, ``effects.png`` and ``report.md`` into a sweep folder.

    Returns:
        the written paths by name ("pareto", "effects", "report").
    """
    if not _is_int(top) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    directory = Path(directory)
    records = read_results(directory)
    paths = {"pareto": directory / "pareto.png", "effects": directory / "effects.png",
             "report": directory / "report.md"}
    _plot_pareto(records, paths["pareto"])
    _plot_effects(records, paths["effects"])
    atomic_write_text(paths["report"], _report_markdown(records, top))
    return paths


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ValueError("saffu sweep-report needs matplotlib: pip install 'saffu[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_pareto(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Dev perplexity against parameters and against fit CPU seconds, Pareto fronts marked."""
    plt = _pyplot()
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, cost, label in ((axes[0], "parameters", "parameters"),
                            (axes[1], "fit_cpu_seconds", "fit CPU seconds (one process)")):
        ax.scatter([r[cost] for r in records], [r["dev_perplexity"] for r in records], s=14,
                   alpha=0.5, color="tab:blue", label="variant")
        front = pareto_front(records, cost)
        ax.step([r[cost] for r in front], [r["dev_perplexity"] for r in front], where="post",
                color="tab:red", marker="o", markersize=4, label="Pareto front")
        ax.set(xscale="log", yscale="log", xlabel=label)
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.EngFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("dev perplexity")
    axes[0].legend()
    fig.suptitle(f"{len(records)} explicitly fitted SAFFU variants")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_effects(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per varied field: dev perplexity of every variant, by the field's value."""
    plt = _pyplot()
    fields = varied_fields(records) or ["bits"]
    columns = min(4, len(fields))
    rows = math.ceil(len(fields) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), sharey=True,
                             squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, fields, strict=False):
        groups = _group_by(records, name)
        ax.boxplot([g for g in groups.values()], showfliers=False, widths=0.5)
        for i, values in enumerate(groups.values(), start=1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=6, alpha=0.4)
        ax.set_xticks(range(1, len(groups) + 1), list(groups))
        ax.set(title=name, yscale="log")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    for ax in axes.flat[len(fields):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("dev perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _group_by(records: Sequence[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """Dev perplexities by the formatted value of field ``name``, values in sorted order."""
    values = sorted({r[name] for r in records}, key=lambda v: (v is not None, v))
    return {_format_value(name, v): [r["dev_perplexity"] for r in records if r[name] == v]
            for v in values}


def _report_markdown(records: Sequence[dict[str, Any]], top: int) -> str:
    ranked = sorted(records, key=lambda r: r["dev_perplexity"])
    best = ranked[0]
    largest = max(records, key=lambda r: r["parameters"])
    larger = sum(r["parameters"] > best["parameters"] for r in records)
    lines = [
        "# Sweep report", "",
        f"{len(records)} variants. The best dev perplexity, {best['dev_perplexity']:.2f}, has "
        f"{best['parameters']:,} parameters; {larger} variants have more. The largest variant "
        f"({largest['parameters']:,} parameters) ranks {ranked.index(largest) + 1} by dev "
        "perplexity; the Spearman correlation of parameters and dev perplexity is "
        f"{_spearman([r['parameters'] for r in records], [r['dev_perplexity'] for r in records])}.",
        "",
        f"## Top {min(top, len(ranked))} by dev perplexity", "",
        *_markdown_table(ranked[:top], CONFIG_FIELDS), "",
        "## Pareto front (dev perplexity against parameters)", "",
        *_markdown_table(pareto_front(records), varied_fields(records) or CONFIG_FIELDS), "",
        "## Dev perplexity by value of each varied field (median, best, count)", "",
        "| field | value | median | best | variants |", "|---|---|---|---|---|"]
    for name in varied_fields(records):
        for value, scores in _group_by(records, name).items():
            lines.append(f"| {name} | {value} | {np.median(scores):.2f} | {min(scores):.2f} | "
                         f"{len(scores)} |")
    lines += ["", "## Effect of each field, all else equal", "",
              "Ratio of dev perplexities over pairs of variants that differ in one field only "
              "(value / baseline, the field's most common value; < 1: the value is better).", "",
              "| field | baseline → value | pairs | median ratio | range | better in |",
              "|---|---|---|---|---|---|"]
    for effect in paired_effects(records):
        name = effect["field"]
        lines.append(f"| {name} | {_format_value(name, effect['baseline'])} → "
                     f"{_format_value(name, effect['value'])} | {effect['pairs']} | "
                     f"{effect['median']:.3f} | {effect['low']:.3f}-{effect['high']:.3f} | "
                     f"{effect['better']} |")
    lines += ["", *_cost_lines(records), "", "![Pareto front](pareto.png)", "",
              "![Effects](effects.png)", ""]
    return "\n".join(lines)


def _cost_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """CPU time of the variants: fitting (passes shared by output_tau variants counted once)
    and scoring."""
    fit = [r["fit_cpu_seconds"] for r in records if not r.get("fit_shared")]
    scoring = [r["eval_cpu_seconds"] for r in records]
    per_variant = [r["eval_cpu_seconds"] + (0 if r.get("fit_shared") else r["fit_cpu_seconds"])
                   for r in records]
    return ["## Cost", "",
            f"{sum(fit) + sum(scoring):,.0f} CPU s in the worker processes: {sum(fit):,.0f} fitting "
            f"({len(fit)} fits; variants that differ in output_tau only share one) and "
            f"{sum(scoring):,.0f} scoring. Per variant: median {np.median(per_variant):.1f} CPU s, "
            f"90th percentile {np.percentile(per_variant, 90):.1f}, maximum {max(per_variant):.1f}."]


def _spearman(x: Sequence[float], y: Sequence[float]) -> str:
    from scipy.stats import spearmanr

    value = spearmanr(x, y).statistic if len(x) > 2 else math.nan
    return "undefined" if math.isnan(value) else f"{value:.2f}"


def _markdown_table(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> list[str]:
    metrics = ["parameters", "fit_cpu_seconds", "dev_perplexity", "dev_bits_per_char",
               "test_perplexity", "test_bits_per_char"]
    lines = ["| " + " | ".join(["#", *fields, *metrics]) + " |",
             "|" + "---|" * (1 + len(fields) + len(metrics))]
    for rank, record in enumerate(records, start=1):
        cells = [str(rank), *[_format_value(name, record[name]) for name in fields],
                 f"{record['parameters']:,}", f"{record['fit_cpu_seconds']:.1f}",
                 *[_format_metric(record.get(m)) for m in metrics[2:]]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _format_metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}" if value < 10 else f"{value:.2f}"


# --- command line ----------------------------------------------------------------------------------


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``saffu sweep`` and ``saffu sweep-report`` to the CLI's subcommands."""
    sweep = subparsers.add_parser(
        "sweep", help="fit and score many model variants (the roadmap)",
        description="Fit every variant of a grid file explicitly on the train documents and score "
                    "it on dev (and test); results go to --out, one file per variant, so an "
                    "interrupted sweep resumes where it stopped.")
    sweep.add_argument("corpus", nargs="*", help="train files, directories or glob patterns")
    sweep.add_argument("--grid", default=None, metavar="GRID.toml",
                       help="grid file (default: the roadmap shipped with saffu)")
    sweep.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sweep.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    sweep.add_argument("--dev", nargs="+", default=None, metavar="FILE", help="dev files")
    sweep.add_argument("--test", nargs="+", default=None, metavar="FILE", help="test files")
    sweep.add_argument("--shakespeare", default=None, metavar="ROOT",
                       help="use the fixed Shakespeare split of ROOT for train, dev and test")
    sweep.add_argument("--separator", default=None,
                       help="split files into documents at this string (default: a file is one "
                            "document)")
    sweep.add_argument("--verbose", type=int, default=1, help="0 hides the per-variant lines")
    sweep.add_argument("--json", action="store_true", help="print one JSON object")
    sweep.set_defaults(handler=sweep_command)

    report = subparsers.add_parser(
        "sweep-report", help="figures and a Markdown table of a sweep's results",
        description="Write pareto.png, effects.png and report.md into a sweep folder.")
    report.add_argument("directory", metavar="DIR", help="the --out folder of saffu sweep")
    report.add_argument("--top", type=int, default=10, help="rows of the best-variants table")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=sweep_report_command)


def _split_documents(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from saffu.corpus import read_documents, shakespeare_split

    if args.shakespeare is not None:
        if args.corpus or args.dev or args.test:
            raise ValueError("--shakespeare takes train, dev and test from the fixed split; "
                             "do not also give CORPUS, --dev or --test")
        parts = shakespeare_split(args.shakespeare)
        return tuple(read_documents(files) for files in (parts.train, parts.dev, parts.test))
    if not args.corpus:
        raise ValueError("give the train CORPUS files (or --shakespeare ROOT)")
    if not args.dev:
        raise ValueError("give --dev FILES: variants are compared by dev perplexity")
    return tuple(None if files is None else read_documents(files, separator=args.separator)
                 for files in (args.corpus, args.dev, args.test))


def sweep_command(args: argparse.Namespace) -> None:
    grid = load_grid(args.grid)  # a mistake in the grid file is reported before any fitting
    train, dev, test = _split_documents(args)
    records = run_sweep(train, dev, test, grid=grid, out=args.out, jobs=args.jobs,
                        verbose=args.verbose)
    best = min(records, key=lambda r: r["dev_perplexity"])
    summary = {"out": args.out, "variants": len(records), "best": best}
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{len(records)} variants in {args.out}; best dev perplexity "
              f"{best['dev_perplexity']:.2f} ({best['key']}); see results.csv")


def sweep_report_command(args: argparse.Namespace) -> None:
    paths = write_report(args.directory, top=args.top)
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, sort_keys=True))
    else:
        print(f"wrote {', '.join(str(path) for path in paths.values())}")

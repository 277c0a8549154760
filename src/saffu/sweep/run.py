"""Running a sweep: worker processes, resumable per-variant records, and the results files."""


from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saffu._backend import set_num_threads
from saffu._io import atomic_write_text, check_output_directory, remove_stale_temporaries
from saffu._processes import init_worker_signals, keep_freed_memory, sigterm_as_interrupt, stop_pool
from saffu.errors import DiskFullError, InvalidParameterError
from saffu.model import SaffuConfig
from saffu.sweep.data import SweepData, _log, _read_json, is_sweep_directory, prepare_data
from saffu.sweep.grid import CONFIG_FIELDS, Backprop, Grid, _describe, canonical, load_grid, variant_key
from saffu.sweep.variants import SCORED_SPLITS, Result, fit_variants, output_tau_groups, pareto_front
from saffu.validation import is_int

if TYPE_CHECKING:
    from dask.distributed import Client

    from saffu.sweep.cluster import ClusterFits

TEST_TOP = 10
"""Variants scored on test by default beside the Pareto front: the best 10 by dev perplexity."""
METRICS = (
    "parameters", "train_tokens", "fit_seconds", "fit_cpu_seconds", "fit_shared", "eval_seconds",
    "eval_cpu_seconds", "eval_shared", "fit_peak_memory_mb", "peak_memory_mb", "dev_perplexity",
    "dev_bits_per_char", "test_perplexity", "test_bits_per_char", "backprop_seconds",
    "backprop_steps", "backprop_stopped", "backprop_dev_perplexity", "backprop_dev_bits_per_char",
    "backprop_test_perplexity", "backprop_test_bits_per_char", "test_selected")


_worker_data: SweepData | None = None


def _init_worker(directory: str) -> None:
    """Pool initializer: one kernel/BLAS thread per process, freed memory kept for the next fit
    (:func:`~saffu._processes.keep_freed_memory`), and the shared data loaded once."""
    from threadpoolctl import threadpool_limits

    import saffu.fit  # noqa: F401  (imported here, not inside the first variant's timing)

    global _worker_data
    init_worker_signals()
    keep_freed_memory()
    set_num_threads(1)
    threadpool_limits(1)
    _worker_data = SweepData.load(Path(directory))


def _worker_task(configs: list[SaffuConfig], backprop: Backprop | None, directory: str,
                 splits: tuple[str, ...]) -> list[dict[str, Any]]:
    return _fit_group(configs, _worker_data, backprop, Path(directory), n_jobs=1, splits=splits)


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
              jobs: int = 1, verbose: int = 1, test_top: int | None = TEST_TOP,
              client: Client | None = None) -> list[dict[str, Any]]:
    """Fit and score every variant of ``grid`` (default: the shipped roadmap); resumable.

    Every variant is scored on dev; the test split is scored only for the variants dev selects
    (the Pareto front of dev perplexity against parameters, and the ``test_top`` best by dev
    perplexity), after all are fitted: they are refitted (fits are deterministic) and scored on
    test, and their records get ``test_selected: true``. ``test_top=None`` scores test for every
    variant (as sweeps before issue 15 did).

    Args:
        train: training documents (an iterable of strings, e.g. :func:`saffu.corpus.read_documents`).
        dev: development documents, which select the variants.
        test: test documents, scored only for the variants dev selects.
        grid: a :class:`Grid` or a grid file path.
        out: output folder; variants already stored there (same data) are not fitted again.
        jobs: worker processes (1: fit in this process with the default kernel threads;
            more: "spawn" processes with one kernel thread each).
        verbose: 0 silent; 1 one line per variant on stderr.
        test_top: how many of the best variants by dev perplexity are scored on test, beside
            the Pareto front (``None``: every variant).
        client: a ``dask.distributed.Client``: fit and score the variants as tasks on its
            cluster instead (one kernel thread per task; see :mod:`saffu.sweep.cluster`). The
            records land in ``out`` as in a local run, so either kind of run resumes the other.
    Returns:
        the records (see :func:`fit_variant`) of the completed variants, in grid order.
    Raises:
        ValueError: bad arguments, or ``out`` holds a sweep of other data.
        RuntimeError: some variants failed (the others are stored; rerun to retry).
        KeyboardInterrupt: Ctrl-C (or SIGTERM): the workers are stopped, or the cluster's
            tasks cancelled; the variants stored so far stay stored.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    if not is_int(jobs) or jobs < 1:
        raise InvalidParameterError(f"jobs must be a positive integer, got {jobs!r}")
    if client is not None:
        from saffu.sweep.cluster import check_client

        check_client(client)
        if jobs != 1:
            raise InvalidParameterError("give jobs (local processes) or client (a Dask cluster), not both")
    if test_top is not None and (not is_int(test_top) or test_top < 0):
        raise InvalidParameterError(f"test_top must be None or an int ≥ 0, got {test_top!r}")
    if grid.backprop is not None and importlib.util.find_spec("torch") is None:
        raise InvalidParameterError(f"{grid.source}: [backprop] needs PyTorch: pip install 'saffu[torch]'")
    directory = check_output_directory(out, is_sweep_directory, "saffu sweep folder")
    documents = {"train": _document_list(train, "train"), "dev": _document_list(dev, "dev")}
    if test is not None:
        documents["test"] = _document_list(test, "test")
    run = _SweepRun(grid, directory, documents, verbose)
    run.splits = SCORED_SPLITS if test_top is None else ("dev",)
    missing = run.load_stored()
    where = f"on the Dask cluster of {client.scheduler.address}" if client else f"with {jobs} job(s)"
    _log(verbose, f"{len(run.records)} variants: {len(run.records) - len(missing)} stored, "
                  f"{len(missing)} to fit {where}")
    with _cluster(client, run.data) if client is not None else \
            _ProcessFits(run.directory, run.data, jobs) as fits:
        _fit_missing(run, missing, fits)
        if test_top is not None and "test" in run.data.splits and not run.failures:
            _score_selected_on_test(run, test_top, fits)
    run.publish()
    if run.failures:
        config, error = run.failures[0]
        raise RuntimeError(f"{len(run.failures)} of {len(run.records)} variants failed (first: "
                           f"{_label(config, grid)}: {error!r}); completed variants are stored "
                           f"in {directory}; rerun to retry the failed ones")
    return run.completed


def _document_list(documents: Iterable[str], name: str) -> list[str]:
    if isinstance(documents, (str, bytes)):
        raise InvalidParameterError(f"{name} must be an iterable of document strings, not a single string")
    documents = list(documents)
    if not documents:
        raise InvalidParameterError(f"the {name} split has no documents")
    return documents


class _SweepRun:
    """One run of a sweep: the records so far, progress lines, and the results files, which
    are rewritten after every variant so that they always hold every completed one."""

    def __init__(self, grid: Grid, directory: Path, documents: dict[str, list[str]],
                 verbose: int) -> None:
        self.grid, self.directory, self.verbose = grid, directory, verbose
        self.splits: tuple[str, ...] = SCORED_SPLITS
        self.records: dict[SaffuConfig, dict[str, Any] | None] = dict.fromkeys(grid.variants())
        self.failures: list[tuple[SaffuConfig, BaseException]] = []
        self.computed = 0
        self.started, self.load_start = time.perf_counter(), _load_average()
        self.data = prepare_data(directory, documents, grid.reference, verbose)

    def load_stored(self) -> list[SaffuConfig]:
        """Take the stored records of this grid's variants; return the variants still missing."""
        (self.directory / "variants").mkdir(exist_ok=True)
        remove_stale_temporaries(self.directory / "variants")  # left by killed workers
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


@contextlib.contextmanager
def _cluster(client: Client, data: SweepData) -> Iterator[ClusterFits]:
    """The sweep's data on ``client``'s cluster (:class:`~saffu.sweep.cluster.ClusterFits`);
    leaving the block, however, cancels the tasks still running there."""
    from saffu.sweep.cluster import ClusterFits

    with sigterm_as_interrupt(), ClusterFits(client, data) as cluster:
        yield cluster


class _ProcessFits:
    """Groups of variants fitted in this process (``jobs == 1``) or as tasks of a pool of
    ``jobs`` worker processes ("spawn", one kernel thread each), which starts with the first
    tasks and serves every phase of the sweep (dev, then test for the variants dev selects):
    the workers start and load the data once. A task scoring dev stores its records in the
    sweep folder as they are done (see :func:`_fit_group`). Use it as a context manager:
    leaving the block on an error or Ctrl-C (or SIGTERM) stops the workers at once."""

    def __init__(self, directory: Path, data: SweepData, jobs: int) -> None:
        self.directory, self.data, self.jobs = directory, data, jobs
        self._executor: ProcessPoolExecutor | None = None
        self._signals = contextlib.ExitStack()

    def __enter__(self) -> _ProcessFits:
        if self.jobs > 1:
            self._signals.enter_context(sigterm_as_interrupt())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if self._executor is not None:
                if exc_type is None:
                    self._executor.shutdown(wait=True)
                else:  # Ctrl-C, SIGTERM, a bug: stop the workers now, keep what is stored
                    stop_pool(self._executor)
        finally:
            self._executor = None
            self._signals.close()

    def fit(self, groups: Sequence[list[SaffuConfig]], backprop: Backprop | None,
            splits: tuple[str, ...]) -> Iterator[tuple[list[SaffuConfig], Result]]:
        """Yield ``(group, result)`` for every group as its task finishes (in this process:
        ``result()`` fits it); ``result()`` returns the group's records or raises the error."""
        if self.jobs == 1:
            for group in groups:
                yield group, functools.partial(_fit_group, group, self.data, backprop,
                                               self.directory, splits=splits)
            return
        if not groups:
            return
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(str(self.directory),))
        pending: dict[Future, list[SaffuConfig]] = {
            self._executor.submit(_worker_task, group, backprop, str(self.directory), splits): group
            for group in groups}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result


def _fit_missing(run: _SweepRun, missing: Sequence[SaffuConfig],
                 fits: _ProcessFits | ClusterFits) -> None:
    """Fit and score on dev the missing variants, in this process, in a pool of processes, or
    as tasks on a Dask cluster.

    Variants that differ in ``output_tau`` only are one task (:func:`fit_variants`); the most
    expensive tasks go first, so that a parallel run does not end waiting for one of them.
    """
    groups = sorted(output_tau_groups(missing), key=_estimated_cost, reverse=True)
    for group, result in fits.fit(groups, run.grid.backprop, run.splits):
        if not isinstance(fits, _ProcessFits):  # a cluster task's records come back unstored
            result = functools.partial(_stored, run.directory, result, run.splits)
        _collect(run, group, result)


def _fit_group(configs: list[SaffuConfig], data: SweepData, backprop: Backprop | None,
               directory: Path, n_jobs: int | None = None,
               splits: tuple[str, ...] = SCORED_SPLITS) -> list[dict[str, Any]]:
    """Fit and score one group of :func:`output_tau_groups`; if it is scored on dev (new
    records), store each record as soon as it is done."""
    records = fit_variants(configs, data, backprop=backprop, n_jobs=n_jobs, splits=splits)
    if "dev" not in splits:
        return list(records)
    return [_store_new(directory, record, splits) for record in records]


def _stored(directory: Path, result: Result, splits: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of ``result()``, stored as new records (see :func:`_store_new`)."""
    return [_store_new(directory, record, splits) for record in result()]


def _store_new(directory: Path, record: dict[str, Any], splits: tuple[str, ...]) -> dict[str, Any]:
    """Store a record just fitted and scored on ``splits``; return it."""
    record["test_selected"] = "test" in splits
    _store(directory, record)
    return record


def selected_on_dev(records: Sequence[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The records dev selects: the Pareto front (dev perplexity against parameters) and the
    ``top`` best by dev perplexity (what a sweep scores on test)."""
    best = sorted(records, key=lambda r: r["dev_perplexity"])[:top]
    keys = {r["key"] for r in [*pareto_front(records), *best]}
    return [r for r in records if r["key"] in keys]


def _score_selected_on_test(run: _SweepRun, top: int, fits: _ProcessFits | ClusterFits) -> None:
    """Refit the variants dev selects and score them on test (as the dev phase ran: here, in
    the pool or on the cluster; those that differ in ``output_tau`` only as one task),
    updating their stored records."""
    chosen = {r["key"] for r in selected_on_dev(run.completed, top)}
    todo = {variant_key(config, run.grid.backprop): config for config, record in run.records.items()
            if record["key"] in chosen and record.get("test_perplexity") is None}
    _log(run.verbose, f"scoring test for the {len(chosen)} variants selected on dev "
                      f"({len(todo)} to refit)")
    groups = sorted(output_tau_groups(todo.values()), key=_estimated_cost, reverse=True)
    for _, result in fits.fit(groups, run.grid.backprop, ("test",)):
        for fresh in result():
            record = run.records[todo[fresh["key"]]]
            record.update({name: value for name, value in fresh.items()
                           if name.startswith(("test_", "backprop_test_"))}, test_selected=True)
            _store(run.directory, record)


def _collect(run: _SweepRun, group: list[SaffuConfig],
             result: Callable[[], list[dict[str, Any]]]) -> None:
    """Record a group's results; if it failed, the variants stored before the error count as
    done and the others as failed."""
    try:
        records = {record["key"]: record for record in result()}
    except DiskFullError:
        raise  # not the variant's fault: every later write would fail too
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
    output layer's input (the output product, shared by the group's variants, each of which
    adds a log-sum-exp pass: about a tenth of the product), the passes with the context
    positions."""
    config = group[0]
    bits = config.bits or 16
    specs = config.context_specs
    width = len(specs) * (config.hidden or bits)
    positions = sum(spec.size for spec in specs)
    return (1 + (len(group) - 1) / 10) * width + positions * bits / 4


def _label(config: SaffuConfig, grid: Grid) -> str:
    """The fields where ``config`` differs from the grid's reference, e.g. "bits=64, tau=3"."""
    reference = canonical(grid.reference).to_dict()
    changes = {name: value for name, value in config.to_dict().items() if value != reference[name]}
    return _describe(changes) or "the reference variant"


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
        raise InvalidParameterError(f"{path} is not a saffu sweep result: it has no list of variants")
    if not records:
        raise InvalidParameterError(f"{path} holds no completed variants")
    return records

"""Fitting and scoring one sweep task: a variant, or variants that differ in ``output_tau`` only."""


from __future__ import annotations

import contextlib
import math
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from saffu.errors import InvalidParameterError
from saffu.fit import solve_output
from saffu.model import SaffuConfig, SaffuModel
from saffu.sweep.data import SweepData
from saffu.sweep.grid import Backprop, variant_key

SCORED_SPLITS = ("dev", "test")


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
                n_jobs: int | None = None, splits: Sequence[str] = SCORED_SPLITS) -> dict[str, Any]:
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
    (record,) = fit_variants([config], data, backprop=backprop, n_jobs=n_jobs, splits=splits)
    return record


def fit_variants(configs: Sequence[SaffuConfig], data: SweepData, *,
                 backprop: Backprop | None = None, n_jobs: int | None = None,
                 splits: Sequence[str] = SCORED_SPLITS) -> Iterator[dict[str, Any]]:
    """Fit and score variants that differ in ``output_tau`` only, yielding each one's record.

    The passes over the corpus do not depend on ``output_tau`` (it scales the output layer's
    solution only), so they run once, for the first variant; every other variant re-solves the
    output layer from the same statistics and is scored on its own. Its record (see
    :func:`fit_variant`) has ``fit_shared`` true and repeats the first variant's fit time and
    memory: what fitting it alone would cost. ``splits`` are the splits scored (the others'
    scores are ``None``): a sweep scores dev for every variant and test for those dev selects.

    Raises:
        ValueError: the configs differ in more than ``output_tau``.
    """
    first = configs[0]
    if any(config.replace(output_tau=first.output_tau) != first for config in configs):
        raise InvalidParameterError("fit_variants takes variants that differ in output_tau only")
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
                solve_output(model, model.fit_state.statistics["output"])
            wall, cpu = time.perf_counter(), time.process_time()
            scores = _scores(model.score, data, splits=splits)
            fit.update(eval_seconds=time.perf_counter() - wall,
                       eval_cpu_seconds=time.process_time() - cpu)
            if backprop is not None:
                scores.update(_fine_tune(model, data, backprop, n_jobs, splits))
            yield {"key": variant_key(config, backprop), **config.to_dict(),
                   "parameters": model.n_parameters, "train_tokens": data.splits["train"].n_tokens,
                   **shared, **fit,
                   "peak_memory_mb": max(shared["fit_peak_memory_mb"], _traced_peak_mb(baseline)),
                   **scores}


def output_tau_groups(configs: Iterable[SaffuConfig]) -> list[list[SaffuConfig]]:
    """The variants grouped by every field but ``output_tau`` (for :func:`fit_variants`), in
    order of first appearance. A variant whose fit chooses ``output_tau`` (None) is a group of
    its own: the choice is made inside its passes."""
    groups: dict[SaffuConfig, list[SaffuConfig]] = {}
    for config in configs:
        key = config if config.output_tau is None else config.replace(output_tau=1.0)
        groups.setdefault(key, []).append(config)
    return list(groups.values())


def _scores(score: Any, data: SweepData, prefix: str = "",
            splits: Sequence[str] = SCORED_SPLITS) -> dict[str, float | None]:
    """Perplexity and bits/char on dev and test (``None`` for a split not scored or absent)."""
    result: dict[str, float | None] = {}
    for split in SCORED_SPLITS:
        values = score(data.splits[split]) if split in splits and split in data.splits else {}
        for metric in ("perplexity", "bits_per_char"):
            result[f"{prefix}{split}_{metric}"] = values.get(metric)
    return result


def _fine_tune(model: SaffuModel, data: SweepData, backprop: Backprop, n_jobs: int | None,
               splits: Sequence[str]) -> dict[str, Any]:
    """Warm-start backprop (saffu.torch.training) for ``backprop.seconds``; dev early stopping."""
    from saffu.torch import to_torch
    from saffu.torch.training import evaluate, train

    module = to_torch(model)
    history = train(module, data.splits["train"], data.splits["dev"], epochs=None,
                    max_seconds=backprop.seconds, n_jobs=n_jobs, verbose=0, **backprop.options)
    last = history[-1]
    return {"backprop_seconds": last["seconds"], "backprop_steps": last["step"],
            "backprop_stopped": history.stopped,
            **_scores(lambda corpus: evaluate(module, corpus), data, "backprop_", splits)}


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

"""Fitting and scoring one sweep task: a variant, or variants that differ in ``output_tau`` only."""


from __future__ import annotations

import contextlib
import math
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError
from saffu.fit import solve_output
from saffu.model import SaffuConfig, SaffuModel
from saffu.sweep.data import SweepData
from saffu.sweep.grid import Backprop, variant_key

SCORED_SPLITS = ("dev", "test")
Result = Callable[[], list[dict[str, Any]]]
"""A finished task's records (see :func:`fit_variant`), or its error raised, when called."""


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
        and ``eval_shared`` (see :func:`fit_variants`), and with ``backprop`` the same scores
        after warm fine-tuning (``backprop_*``).
    """
    (record,) = fit_variants([config], data, backprop=backprop, n_jobs=n_jobs, splits=splits)
    return record


def fit_variants(configs: Sequence[SaffuConfig], data: SweepData, *,
                 backprop: Backprop | None = None, n_jobs: int | None = None,
                 splits: Sequence[str] = SCORED_SPLITS) -> Iterator[dict[str, Any]]:
    """Fit and score variants that differ in ``output_tau`` only, yielding each one's record.

    The passes over the corpus do not depend on ``output_tau``, and the output layer's solution
    is ``output_tau`` times the solution at 1 (its bias does not depend on it), so the passes
    run once, for the first variant, and the variants are scored together
    (:meth:`~saffu.model.SaffuModel.score_scaled`): one output product per block of rows, the
    cost of scoring, and one log-sum-exp pass per variant. The records (see
    :func:`fit_variant`) of the variants after the first have ``fit_shared`` true and repeat
    the first one's fit time and memory: what fitting it alone would cost. Each record's
    ``eval_seconds`` and ``eval_cpu_seconds`` are the group's scoring time divided by the
    number of variants (so that they add up to the time spent), with ``eval_shared`` true
    when there are several. ``splits`` are the splits scored (the others' scores are
    ``None``): a sweep scores dev for every variant and test for those dev selects. With
    ``backprop`` each variant is then fine-tuned from its own explicit fit.

    Raises:
        ValueError: the configs differ in more than ``output_tau``.
    """
    first = configs[0]
    if any(config.replace(output_tau=first.output_tau) != first for config in configs):
        raise InvalidParameterError("fit_variants takes variants that differ in output_tau only")
    if len(configs) > 1 and any(config.output_tau is None for config in configs):
        raise InvalidParameterError("a variant whose fit chooses output_tau (None) is fitted alone, "
                                    "not with others in fit_variants")
    with _tracing_memory():
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        model = SaffuModel(first, tokenizer=data.tokenizer).fit(data.splits["train"], n_jobs=n_jobs,
                                                                verbose=0)
        shared = {"fit_seconds": time.perf_counter() - wall,
                  "fit_cpu_seconds": time.process_time() - cpu,
                  "fit_peak_memory_mb": _traced_peak_mb(baseline)}
        wall, cpu = time.perf_counter(), time.process_time()
        scales = [1.0 if config is first else config.output_tau / first.output_tau for config in configs]
        scores = _scores(lambda corpus: model.score_scaled(corpus, scales), data, len(configs),
                         splits=splits)
        scoring = {"eval_seconds": (time.perf_counter() - wall) / len(configs),
                   "eval_cpu_seconds": (time.process_time() - cpu) / len(configs),
                   "eval_shared": len(configs) > 1}
        for config, variant_scores in zip(configs, scores, strict=True):
            if backprop is not None:
                if config is not first:
                    model.config = config
                    solve_output(model, model.fit_state.statistics["output"])
                variant_scores.update(_fine_tune(model, data, backprop, n_jobs, splits))
            yield {"key": variant_key(config, backprop), **config.to_dict(),
                   "parameters": model.n_parameters, "train_tokens": data.splits["train"].n_tokens,
                   **shared, "fit_shared": config is not first, **scoring,
                   "peak_memory_mb": max(shared["fit_peak_memory_mb"], _traced_peak_mb(baseline)),
                   **variant_scores}


def output_tau_groups(configs: Iterable[SaffuConfig]) -> list[list[SaffuConfig]]:
    """The variants grouped by every field but ``output_tau`` (for :func:`fit_variants`), in
    order of first appearance. A variant whose fit chooses ``output_tau`` (None) is a group of
    its own: the choice is made inside its passes."""
    groups: dict[SaffuConfig, list[SaffuConfig]] = {}
    for config in configs:
        key = config if config.output_tau is None else config.replace(output_tau=1.0)
        groups.setdefault(key, []).append(config)
    return list(groups.values())


def _scores(score: Callable[[TokenizedCorpus], list[dict[str, float]]], data: SweepData,
            count: int, prefix: str = "", splits: Sequence[str] = SCORED_SPLITS,
            ) -> list[dict[str, float | None]]:
    """Perplexity and bits/char on dev and test (``None`` for a split not scored or absent) of
    ``count`` models, which ``score(corpus)`` scores together (one dict per model)."""
    results: list[dict[str, float | None]] = [{} for _ in range(count)]
    for split in SCORED_SPLITS:
        values = score(data.splits[split]) if split in splits and split in data.splits else [{}] * count
        for result, value in zip(results, values, strict=True):
            for metric in ("perplexity", "bits_per_char"):
                result[f"{prefix}{split}_{metric}"] = value.get(metric)
    return results


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
            **_scores(lambda corpus: [evaluate(module, corpus)], data, 1, "backprop_", splits)[0]}


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

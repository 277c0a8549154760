"""Temperatures chosen by the fit itself: ``tau`` / ``output_tau`` = ``None`` in a SaffuConfig.

The temperatures are chosen on a held-out slice of the *training* documents (every
``HOLD_OUT_EVERY``-th document, whole documents; never dev or test), by minimizing the slice's
mean negative log-likelihood per target:

- ``output_tau`` (cheap, inside the fit's own output pass): the output pass runs over the
  slice and the rest separately (statistics are additive, so this costs nothing extra); the
  output layer solved from the rest is scored on (up to ``HOLD_OUT_TARGETS``) targets of the
  slice. Its logits are affine in the temperature, ``b + τ·(h Lᵀ)`` (bias form), so ``h Lᵀ`` is
  computed once and each candidate τ costs one log-sum-exp pass; the NLL is convex in τ and a
  golden-section search in log τ finds it. The final output layer is solved from all the
  training documents with the chosen τ. (The hidden layer, solved before, has seen the slice.)
- ``tau`` (dearer: it changes the attention and hidden solves, so their passes must rerun):
  before the fit, a probe model is fitted on a subsample of the rest (every
  ``SEARCH_EVERY``-th of its documents) and a golden-section search in log tau over
  ``TAU_RANGE`` (``TAU_EVALUATIONS`` points) re-solves W and U, reruns the hidden and output
  passes on the subsample and scores the slice at the best ``output_tau`` for that tau. The
  final model is then fitted on all training documents with the chosen tau.

Every search also evaluates the fixed defaults (``DEFAULT_TAU``, ``DEFAULT_OUTPUT_TAU``) and
returns the best point seen, so an automatic temperature never scores worse on the slice than
the default it replaces. With fewer than 2 training documents there is no slice: the defaults
are used. What was chosen is recorded in ``model.fit_info["temperatures"]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from saffu import kernels
from saffu.corpus import CHUNK_TOKENS, TokenizedCorpus
from saffu.explicit import ExplicitStats
from saffu.layers import distinct_inputs, split_output

if TYPE_CHECKING:
    from saffu.fit import PassStatistics, Stage
    from saffu.model import SaffuModel

DEFAULT_TAU = 4.0
DEFAULT_OUTPUT_TAU = 1.5
TAU_RANGE = (1.5, 8.0)
OUTPUT_TAU_RANGE = (0.2, 4.0)
TAU_EVALUATIONS = 4
OUTPUT_TAU_EVALUATIONS = 8
HOLD_OUT_EVERY = 10  # every 10th training document (the 5th, 15th, ...) forms the slice
HOLD_OUT_TARGETS = 8192  # slice targets scored (keeps the (targets × V) logits at 128 MB)
SEARCH_EVERY = 3  # the tau search fits its probe on every 3rd remaining document
GOLDEN = (math.sqrt(5) - 1) / 2


# --- documents -----------------------------------------------------------------------------------


def documents(corpus: TokenizedCorpus) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(ids, pos)`` arrays of each document of ``corpus``, in order (views, no copies)."""
    docs = []
    for ids, pos in corpus.chunks():
        starts = [*np.flatnonzero(pos == 0).tolist(), len(ids)]
        docs += [(ids[a:b], pos[a:b]) for a, b in itertools.pairwise(starts)]
    return docs


def split_held_out(corpus: TokenizedCorpus,
                   every: int = HOLD_OUT_EVERY) -> tuple[TokenizedCorpus, TokenizedCorpus] | None:
    """``(rest, slice)``: every ``every``-th document (from the middle one of each group) goes to
    the slice, at least one; ``None`` when the corpus has fewer than 2 documents."""
    docs = documents(corpus)
    if len(docs) < 2:
        return None
    held = set(range(min(every // 2, len(docs) - 1), len(docs), every))
    rest = [doc for i, doc in enumerate(docs) if i not in held]
    return joined(rest), joined([docs[i] for i in sorted(held)])


def subsample(corpus: TokenizedCorpus, every: int) -> TokenizedCorpus:
    """Every ``every``-th document of ``corpus`` (at least one)."""
    return joined(documents(corpus)[::every])


def joined(docs: list[tuple[np.ndarray, np.ndarray]]) -> TokenizedCorpus:
    """Documents as a corpus of chunks of up to CHUNK_TOKENS tokens (few kernel calls)."""
    chunks: list[list[tuple[np.ndarray, np.ndarray]]] = [[]]
    size = 0
    for doc in docs:
        if size and size + len(doc[0]) > CHUNK_TOKENS:
            chunks.append([])
            size = 0
        chunks[-1].append(doc)
        size += len(doc[0])
    return TokenizedCorpus([tuple(np.concatenate(part) for part in zip(*chunk, strict=True))
                            for chunk in chunks if chunk])


def scored_targets(held_out: TokenizedCorpus,
                   limit: int = HOLD_OUT_TARGETS) -> TokenizedCorpus:
    """The first ``limit`` targets of the slice: its documents, the last one cut short."""
    pieces, left = [], limit
    for ids, pos in documents(held_out):
        if left <= 0:
            break
        n = min(len(ids), left + 1)  # n tokens hold n − 1 targets
        pieces.append((ids[:n], pos[:n]))
        left -= n - 1
    return joined(pieces)


# --- 1-D searches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """The best point of a 1-D search and every point evaluated, ``(x, value)`` in order."""

    best: float
    value: float
    evaluations: tuple[tuple[float, float], ...]


def golden_section_log(f: Callable[[float], float], lo: float, hi: float, n_evaluations: int,
                       default: float) -> SearchResult:
    """Minimize ``f`` over ``[lo, hi]`` by golden-section search in log x, ``n_evaluations`` ≥ 2
    points, plus ``default``; the best point seen is returned (never worse than ``default``)."""
    seen: dict[float, float] = {}

    def value(x: float) -> float:
        if x not in seen:
            seen[x] = float(f(x))
        return seen[x]

    value(default)
    a, b = math.log(lo), math.log(hi)
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = value(math.exp(c)), value(math.exp(d))
    for _ in range(n_evaluations - 2):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = value(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = value(math.exp(d))
    best = min(seen, key=lambda x: (seen[x], x != default))
    return SearchResult(best, seen[best], tuple(seen.items()))


# --- output_tau ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """The scored targets of a held-out slice, as the output layer sees them.

    Attributes:
        products: ``products(weight_t) -> (u, V)``: the distinct output-layer inputs of the
            targets (hidden states and previous tokens) times ``weight_tᵀ`` (``weight_t``
            (V, inputs) as the output solve returns it). Targets with equal inputs share a row,
            so each candidate temperature costs a log-sum-exp over the distinct rows only.
        rows: (m,) the row of each target.
        targets: (m,) the target token ids.
    """

    products: Callable[[np.ndarray], np.ndarray]
    rows: np.ndarray
    targets: np.ndarray

    def scores(self, weight_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(products (u, V) float32, the targets' own entries (m,) float64)``."""
        products = np.ascontiguousarray(self.products(weight_t), dtype=np.float32)
        return products, products[self.rows, self.targets].astype(np.float64)


def choose_output_tau(stats: ExplicitStats, held_out: HeldOut, alpha: float,
                      default: float = DEFAULT_OUTPUT_TAU) -> SearchResult:
    """The output temperature minimizing the mean NLL of the held-out targets.

    Args:
        stats: the output layer's statistics (not including the scored examples).
        held_out: the scored targets and their inputs (see :func:`held_out_inputs`).
        alpha: the output solve's smoothing.
        default: evaluated too; the result is never worse on these targets.
    """
    unit = stats.solve(alpha=alpha, tau=1.0, form="bias")  # weight_t(τ) = τ · unit.weight_t
    scores, target_scores = held_out.scores(unit.weight_t)  # (u, V), (m,)
    target_bias = unit.bias[held_out.targets].astype(np.float64)

    def mean_nll(tau: float) -> float:
        log_normalizer = kernels.logsumexp_rows_scaled(scores, tau, unit.bias)  # of τ·scores + b
        return float(np.mean(log_normalizer[held_out.rows] - (tau * target_scores + target_bias)))

    return golden_section_log(mean_nll, *OUTPUT_TAU_RANGE, OUTPUT_TAU_EVALUATIONS, default)


def held_out_inputs(model: SaffuModel, held_out: TokenizedCorpus) -> HeldOut:
    """The targets of ``held_out`` and their output-layer inputs (hidden states and, with
    ``skip``, the previous tokens), equal inputs once (see :class:`HeldOut`)."""
    states, previous, targets = [], [], []
    for ids, pos in held_out.chunks():
        states.append(model.hidden_states(ids, pos))
        previous.append(model.previous_tokens(ids, pos))
        targets.append(ids[pos > 0].astype(np.int64))
    hidden, tokens, rows = distinct_inputs(np.concatenate(states), np.concatenate(previous))

    def products(weight_t: np.ndarray) -> np.ndarray:
        return model.output_products(hidden, tokens, split_output(model, weight_t))

    return HeldOut(products, rows, np.concatenate(targets))


def default_output_tau(model: SaffuModel) -> float:
    """The fixed output temperature for this model's input mass: ``DEFAULT_OUTPUT_TAU`` per unit
    of mass (one per context model's hidden vector and per skip input). Used without a held-out
    slice (fewer than 2 documents) and as the search's fixed point: with skip inputs 1.5 itself
    would be far too sharp (skip 2 at 1.5: dev perplexity in the hundreds)."""
    return DEFAULT_OUTPUT_TAU / (len(model.layers) + model.config.skip)


def output_pass_choosing_tau(
    model: SaffuModel, corpus: TokenizedCorpus,
    run_pass: Callable[[TokenizedCorpus], PassStatistics],
) -> tuple[PassStatistics, SearchResult]:
    """The output pass of the fit with ``output_tau = None``: returns its statistics (over the
    whole corpus) and the search result; the caller sets the chosen ``output_tau``.

    Args:
        model: the model being fitted (W and U solved).
        corpus: all training documents.
        run_pass: ``run_pass(corpus) -> PassStatistics`` of the output stage.
    """
    parts = split_held_out(corpus)
    default = default_output_tau(model)
    if parts is None:
        stats = run_pass(corpus)
        return stats, SearchResult(default, math.nan, ())
    rest, held_out = parts
    stats = run_pass(rest)
    result = choose_output_tau(stats.stats["output"], held_out_inputs(model, scored_targets(held_out)),
                               model.config.alpha, default)
    stats += run_pass(held_out)
    return stats, result


# --- tau -----------------------------------------------------------------------------------------


def choose_tau(model: SaffuModel, corpus: TokenizedCorpus, passes: dict[str, Stage],
               accumulate_chunks: Callable, init_layers: Callable) -> SearchResult:
    """The attention/hidden temperature, searched on a probe fitted to a subsample (see the
    module docstring). ``model`` has its tokenizer, cipher and labels; it is not changed.

    Args:
        passes: the :class:`saffu.fit.Stage` objects this model runs, by name.
        accumulate_chunks: ``accumulate_chunks(stage, model, chunks)``, the fit's pass.
        init_layers: ``init_layers(model)``, the fit's zero layers for a new model.
    """
    parts = split_held_out(corpus)
    if parts is None:
        return SearchResult(DEFAULT_TAU, math.nan, ())
    rest, held_out = parts
    probe_corpus = subsample(rest, SEARCH_EVERY)
    scored = scored_targets(held_out)
    fixed_output_tau = model.config.output_tau
    probe = type(model)(model.config.replace(tau=DEFAULT_TAU, output_tau=DEFAULT_OUTPUT_TAU),
                        tokenizer=model.tokenizer, cipher=model.cipher, labels=model.labels)
    init_layers(probe)

    def run(name: str) -> PassStatistics:
        return accumulate_chunks(passes[name], probe, probe_corpus.chunks())

    attention = None
    if "experts" in passes:
        passes["experts"].solve(probe, run("experts"))
        attention = run("attention")

    def score(tau: float) -> float:
        probe.config = probe.config.replace(tau=tau)
        if attention is not None:
            passes["attention"].solve(probe, attention)
        passes["hidden"].solve(probe, run("hidden"))
        output = run("output").stats["output"]
        inputs = held_out_inputs(probe, scored)
        if fixed_output_tau is not None:
            return _fixed_nll(output, inputs, probe.config.alpha, fixed_output_tau)
        return choose_output_tau(output, inputs, probe.config.alpha, default_output_tau(probe)).value

    return golden_section_log(score, *TAU_RANGE, TAU_EVALUATIONS, DEFAULT_TAU)


def _fixed_nll(stats: ExplicitStats, held_out: HeldOut, alpha: float, tau: float) -> float:
    """Mean NLL of the held-out targets under the output layer solved at ``tau``."""
    layer = stats.solve(alpha=alpha, tau=tau, form="bias")
    logits, target_logits = held_out.scores(layer.weight_t)
    return float(np.mean(kernels.logsumexp_rows(logits, layer.bias)[held_out.rows]
                         - (target_logits + layer.bias[held_out.targets])))

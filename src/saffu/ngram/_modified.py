"""Interpolated modified Kneser-Ney (Chen & Goodman), estimated as KenLM's ``lmplz`` does.

Counting follows lmplz (default settings: ``--interpolate_unigrams``, no pruning). Every
document is ``<s> w_1 … w_n </s>``; the n-grams of length k are the windows of k tokens inside
one document that end at a predicted token (every token but the ``<s>``), so no window runs
across documents and none holds ``<s>`` anywhere but in front. Their counts a_k:

* k = N (the model's order): the raw count;
* k < N, n-gram starting with ``<s>``: the raw count (nothing can precede ``<s>``);
* k < N otherwise: the continuation count N1+(• g), the number of distinct tokens seen before g
  in the windows of length k + 1.

Three discounts per length, from the counts of counts t_{k,j} (the number of k-grams with
a_k = j): Y = t_1 / (t_1 + 2 t_2), D_j = j − (j + 1) Y t_{j+1} / t_j for j = 1, 2, 3 (D_3 serves
all counts ≥ 3). Then, for a context c with followers v, D(a) = D_min(a, 3):

    u(w | c) = (a(c w) − D(a(c w))) / Σ_v a(c v),
    γ(c) = (D_1 N_1(c •) + D_2 N_2(c •) + D_3 N_3+(c •)) / Σ_v a(c v),
    p(w | c) = u(w | c) + γ(c) p(w | c'),

with c' = c without its oldest token, and the recursion ends in the uniform distribution over
the vocabulary without ``<s>``: p(w) = u(w) + γ() / (V − 1). ``<s>`` gets p = 1 (it is never
predicted; as in lmplz's output). The model is stored in backoff form (ARPA's): p(w | c) for
every stored n-gram c w, and γ(c) as the backoff weight of every stored context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from saffu.errors import InvalidParameterError
from saffu.ngram._data import Stream, check_key_range

KENLM_FALLBACK = (0.5, 1.0, 1.5)  # lmplz --discount_fallback


@dataclass
class Estimate:
    """A fitted model in backoff form; index k − 1 holds the n-grams of length k.

    ``keys[k − 1]`` (n_k,) int64 ascending: the key of n-gram t_1 … t_k is
    ``index of t_2 … t_k among the (k − 1)-grams · V + t_1`` (for k = 1 the key is the token id
    and all V ids are stored). ``log10_prob``/``log10_backoff`` (n_k,) float64 go with them.
    """

    keys: list[np.ndarray]
    log10_prob: list[np.ndarray]
    log10_backoff: list[np.ndarray]
    discounts: np.ndarray  # (order, 3) float64: D_1, D_2, D_3+ of each length
    fallback_orders: list[int]  # lengths whose counts of counts could not give discounts


class _Order:
    """The n-grams of one length found in training."""

    def __init__(self, keys: np.ndarray, index: np.ndarray, raw: np.ndarray, last: np.ndarray):
        self.keys = keys  # (n,) int64 ascending
        self.index = index  # (len(stream),) int64: the n-gram ending at each position, or −1
        self.raw = raw  # (n,) int64 raw counts
        self.last = last  # (n,) int64: a position where each n-gram ends


def _count(stream: Stream, vocab_size: int, order: int) -> list[_Order]:
    """The n-grams of lengths 1..order ending at each predicted position of ``stream``."""
    ids, pos = stream
    targets = stream.targets
    levels = [_Order(np.arange(vocab_size, dtype=np.int64), ids.copy(),
                     np.bincount(ids[targets], minlength=vocab_size), np.zeros(0, np.int64))]
    for k in range(2, order + 1):
        ends = np.flatnonzero(pos >= k - 1)
        check_key_range(len(levels[-1].keys), vocab_size)
        keys, first, inverse, raw = np.unique(levels[-1].index[ends] * vocab_size + ids[ends - k + 1],
                                              return_index=True, return_inverse=True,
                                              return_counts=True)
        index = np.full(len(ids), -1, dtype=np.int64)
        index[ends] = inverse
        levels.append(_Order(keys, index, raw, ends[first]))
    return levels


def _adjusted_counts(levels: list[_Order], vocab_size: int, bos: int) -> list[np.ndarray]:
    """a_k of every n-gram: raw at the top length and for ``<s>``-initial n-grams, else N1+(• g)."""
    counts = []
    for k, level in enumerate(levels, start=1):
        if k == len(levels):
            counts.append(level.raw)
            continue
        continuation = np.bincount(levels[k].keys // vocab_size, minlength=len(level.keys))
        if k > 1:  # a unigram's raw count never replaces it: <s> alone is never predicted
            continuation = np.where(level.keys % vocab_size == bos, level.raw, continuation)
        counts.append(continuation)
    return counts


def discounts_from_counts(counts: np.ndarray) -> tuple[float, float, float] | None:
    """Chen & Goodman's D_1, D_2, D_3+ from the adjusted counts of one length; None if invalid.

    Invalid (as in lmplz): some t_j = 0 for j ≤ 3, or some D_j outside [0, j].
    """
    t = np.bincount(np.minimum(counts, 5), minlength=6)[:5].astype(np.float64)
    if np.any(t[1:4] == 0):
        return None
    y = t[1] / (t[1] + 2 * t[2])
    d = [j - (j + 1) * y * t[j + 1] / t[j] for j in (1, 2, 3)]
    if any(not 0.0 <= d_j <= j for j, d_j in zip((1, 2, 3), d, strict=True)):
        return None
    return d[0], d[1], d[2]


def _discounts(adjusted: list[np.ndarray], given: Sequence[Sequence[float]] | None,
               fallback: Sequence[float] | None) -> tuple[np.ndarray, list[int]]:
    if given is not None:
        return np.asarray(given, dtype=np.float64), []
    rows, fallback_orders = [], []
    for k, counts in enumerate(adjusted, start=1):
        estimate = discounts_from_counts(counts)
        if estimate is None:
            if fallback is None:
                raise InvalidParameterError(
                    f"cannot estimate Kneser-Ney discounts for {k}-grams from their counts of "
                    "counts (too little or artificial data); pass discount_fallback=(D1, D2, D3) "
                    f"(lmplz uses {KENLM_FALLBACK}) or discounts=")
            estimate = tuple(fallback)
            fallback_orders.append(k)
        rows.append(estimate)
    return np.array(rows, dtype=np.float64), fallback_orders


def _discount_of(counts: np.ndarray, d: np.ndarray) -> np.ndarray:
    """D(a) for each count a: 0, D_1, D_2, D_3+ by min(a, 3)."""
    return np.concatenate([[0.0], d])[np.minimum(counts, 3)]


def estimate_modified_kneser_ney(stream: Stream, vocab_size: int, order: int, bos: int, *,
                                 discounts: Sequence[Sequence[float]] | None = None,
                                 discount_fallback: Sequence[float] | None = KENLM_FALLBACK,
                                 ) -> Estimate:
    """Fit interpolated modified Kneser-Ney on a checked stream (see the module docstring).

    Args:
        stream: documents ``[bos] + ids + [eos]`` laid end to end.
        vocab_size: V, the number of token ids; the uniform base spreads over the V − 1 ids
            other than ``bos``.
        order: N, the longest n-gram.
        bos: the begin-of-document id.
        discounts: (order, 3) D_1, D_2, D_3+ per length, instead of estimating them.
        discount_fallback: D_1, D_2, D_3+ for a length whose counts of counts give no valid
            discounts; None raises ValueError instead.
    """
    levels = _count(stream, vocab_size, order)
    adjusted = _adjusted_counts(levels, vocab_size, bos)
    d, fallback_orders = _discounts(adjusted, discounts, discount_fallback)
    prob = [_unigram_probabilities(adjusted[0], d[0], vocab_size, bos)]
    backoff = [np.ones(vocab_size)]
    for k in range(2, order + 1):
        level, counts = levels[k - 1], adjusted[k - 1]
        context = levels[k - 2].index[level.last - 1]  # c = t_1 … t_{k−1} ends one token earlier
        n_contexts = len(levels[k - 2].keys)
        denominator = np.bincount(context, weights=counts, minlength=n_contexts)
        mass = np.bincount(context, weights=_discount_of(counts, d[k - 1]), minlength=n_contexts)
        gamma = np.divide(mass, denominator, out=np.ones(n_contexts), where=denominator > 0)
        backoff[-1] = gamma
        lower = prob[-1][level.keys // vocab_size]  # p(w | c'), c' w the suffix of c w
        prob.append((counts - _discount_of(counts, d[k - 1])) / denominator[context]
                    + gamma[context] * lower)
        backoff.append(np.ones(len(level.keys)))
    with np.errstate(divide="ignore"):
        return Estimate(keys=[level.keys for level in levels],
                        log10_prob=[np.minimum(np.log10(p), 0.0) for p in prob],
                        log10_backoff=[np.log10(b) for b in backoff],
                        discounts=d, fallback_orders=fallback_orders)


def _unigram_probabilities(counts: np.ndarray, d: np.ndarray, vocab_size: int, bos: int) -> np.ndarray:
    """p(w) = (a(w) − D(a(w))) / Σ a + γ() / (V − 1); p(<s>) = 1."""
    total = counts.sum()
    if total == 0:
        raise InvalidParameterError("the training data has no tokens to predict")
    discount = _discount_of(counts, d)
    p = (counts - discount) / total + discount.sum() / total / (vocab_size - 1)
    p[bos] = 1.0
    return p

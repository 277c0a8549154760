"""Interpolated Kneser-Ney with one discount at every order: NLTK's estimate, on token ids.

The estimate of token w after a context c of k tokens (oldest first), with discount D:

    p_k(w | c) = (max(n_k(c w) − D, 0) + D · N1+(c •) · p_{k−1}(w | c')) / Σ_v n_k(c v)

where c' is c without its oldest token, N1+(c •) the number of distinct tokens seen after c,
and n_k the raw count at the highest order (k = order − 1) and the continuation count
N1+(• c w) (number of distinct tokens seen before c w) below it. A context never seen in
training defers to the next lower order (p_k = p_{k−1}). Contexts are left-padded with
``<sod>`` (as NLTK pads with ``<s>``). Deliberate difference from NLTK: the recursion ends in
the uniform distribution p_{−1} = 1/vocab_size (the unigram level is discounted too), so a token
never seen in training keeps a non-zero probability. NLTK ends at the undiscounted continuation
unigram N1+(• w) / N1+(• •), which gives such a token probability 0; ``uniform_base=False``
does the same and then equals NLTK's scores (tests/test_ngram.py).

:class:`saffu.ngram.NgramModel` (``NgramModel.fit``) is the stronger *modified* Kneser-Ney
estimate (three discounts per order, KenLM's); this class is kept as the reference baseline of
the earlier benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from saffu.errors import InvalidParameterError
from saffu.ngram._data import Documents, Stream, as_stream, check_int, check_key_range, find
from saffu.tokenize import EOD, N_SPECIAL, SOD


def context_windows(stream: Stream, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram of every predicted token of a stream.

    Returns:
        contexts: (m, order − 1) int64, the preceding tokens, oldest first, ``<sod>``-padded.
        tokens: (m,) int64, the predicted tokens (all but each document's ``<sod>``).
    """
    targets = stream.targets
    back = np.arange(order - 1, 0, -1)  # how far back each context column looks
    inside = stream.pos[targets, None] >= back
    contexts = np.where(inside, stream.ids[np.maximum(targets[:, None] - back, 0)], SOD)
    return contexts.astype(np.int64), stream.ids[targets]


class _Tally(NamedTuple):
    """Raw counts of one order, with the type of every training position."""

    context_keys: np.ndarray  # (n_contexts,) int64, ascending
    type_keys: np.ndarray  # (n_types,) int64, ascending
    type_ids: np.ndarray  # (m,) int64: the type of each position
    first_position: np.ndarray  # (n_types,) int64: a position of each type
    raw_counts: np.ndarray  # (n_types,) int64


@dataclass(frozen=True)
class _Level:
    """Counts of one order: contexts of ``k`` tokens and the (context, token) types after them.

    Context ids are indices into ``context_keys``; the key of a context of k ≥ 1 tokens is
    ``id(its k − 1 most recent tokens) · vocab_size + its oldest token`` (level 0 has the single
    empty context, key 0). A type's key is ``context id · vocab_size + token``.
    """

    context_keys: np.ndarray  # (n_contexts,) int64, ascending
    type_keys: np.ndarray  # (n_types,) int64, ascending
    counts: np.ndarray  # (n_types,) float64: raw counts (highest order) or continuation counts
    totals: np.ndarray  # (n_contexts,) float64: Σ counts over the types of each context
    followers: np.ndarray  # (n_contexts,) float64: N1+(c •), the number of types of each context
    discount: float


class KneserNey:
    """Interpolated Kneser-Ney n-gram language model over integer token ids, one discount.

    Args:
        vocab_size: number of token ids (ids are in ``[0, vocab_size)``; special tokens included).
        order: n-gram order (3: a trigram model, contexts of 2 tokens).
        discount: absolute discount D in [0, 1], the same at every order.
        uniform_base: end the interpolation in the uniform distribution (default), so every id
            has a non-zero probability; ``False`` reproduces NLTK's ``KneserNeyInterpolated``.
        continuation: use continuation counts below the highest order (default). ``False``
            uses raw counts at every order: interpolated absolute discounting (with
            ``uniform_base=False``, NLTK's ``AbsoluteDiscountingInterpolated``).
    """

    def __init__(self, vocab_size: int, order: int = 3, discount: float = 0.75, *,
                 uniform_base: bool = True, continuation: bool = True) -> None:
        self.vocab_size = check_int(vocab_size, "vocab_size", N_SPECIAL)
        self.order = check_int(order, "order", 1)
        if isinstance(discount, bool) or not isinstance(discount, (int, float, np.floating)):
            raise InvalidParameterError(f"discount must be a number, got {type(discount).__name__}")
        if not 0.0 <= discount <= 1.0:
            raise InvalidParameterError(f"discount must be in [0, 1], got {discount}")
        self.discount = float(discount)
        self.uniform_base = bool(uniform_base)
        self.continuation = bool(continuation)
        self._levels: list[_Level] = []

    def windows(self, docs: Documents, name: str = "docs") -> tuple[np.ndarray, np.ndarray]:
        """``(contexts (m, order − 1), tokens (m,))`` of every predicted token of checked ``docs``."""
        return context_windows(as_stream(docs, self.vocab_size, SOD, EOD, name), self.order)

    def fit(self, docs: Documents) -> KneserNey:
        """Count the n-grams of ``docs`` (a TokenizedCorpus or a list of (n_i,) int arrays
        ``[<sod>] + ids + [<eod>]``)."""
        contexts, tokens = self.windows(docs, "train_docs")
        check_key_range(len(tokens), self.vocab_size)
        self._levels = self._count(contexts, tokens)
        return self

    def _count(self, contexts: np.ndarray, tokens: np.ndarray) -> list[_Level]:
        V = self.vocab_size
        context_ids = np.zeros(len(tokens), dtype=np.int64)
        context_keys = np.zeros(1, dtype=np.int64)
        tallies = []
        for k in range(self.order):
            if k > 0:
                context_keys, context_ids = np.unique(context_ids * V + contexts[:, -k],
                                                      return_inverse=True)
            type_keys, first_position, type_ids, raw_counts = np.unique(
                context_ids * V + tokens, return_index=True, return_inverse=True, return_counts=True)
            tallies.append(_Tally(context_keys, type_keys, type_ids, first_position, raw_counts))
        levels = []
        for k, tally in enumerate(tallies):
            counts = tally.raw_counts
            if self.continuation and k < self.order - 1:  # distinct one-token-longer types
                longer = tallies[k + 1]
                counts = np.bincount(tally.type_ids[longer.first_position], minlength=len(tally.type_keys))
            context_of_type = tally.type_keys // V
            n_contexts = len(tally.context_keys)
            levels.append(_Level(
                context_keys=tally.context_keys, type_keys=tally.type_keys,
                counts=counts.astype(np.float64),
                totals=np.bincount(context_of_type, weights=counts, minlength=n_contexts),
                followers=np.bincount(context_of_type, minlength=n_contexts).astype(np.float64),
                discount=self.discount if k > 0 or self.uniform_base else 0.0))
        return levels

    @property
    def n_types(self) -> list[int]:
        """Number of distinct n-grams seen in training, by length (index k: k + 1 tokens)."""
        return [len(level.type_keys) for level in self._levels]

    def probabilities(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """p(token | context) of each row: contexts (m, order − 1) int ids, oldest first; tokens (m,).

        Returns (m,) float64 probabilities.
        """
        if not self._levels:
            raise InvalidParameterError("KneserNey is not fitted; call fit(train_docs) first")
        contexts, tokens = np.asarray(contexts), np.asarray(tokens)
        if contexts.ndim != 2 or tokens.ndim != 1 or contexts.shape != (len(tokens), self.order - 1):
            raise InvalidParameterError(f"contexts must have shape (m, {self.order - 1}) and tokens "
                                        f"(m,), got "
                                        f"{contexts.shape} and {tokens.shape}")
        for name, ids in (("contexts", contexts), ("tokens", tokens)):
            if ids.dtype.kind not in "iu":
                raise InvalidParameterError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
                raise InvalidParameterError(f"{name} has token ids outside [0, {self.vocab_size})")
        return self._interpolate(contexts.astype(np.int64), tokens.astype(np.int64))

    def _interpolate(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        V = self.vocab_size
        p = np.full(len(tokens), 1.0 / V)
        context_ids = np.zeros(len(tokens), dtype=np.int64)
        for k, level in enumerate(self._levels):
            if k > 0:  # an unseen shorter context (id −1) makes a negative key, which matches nothing
                context_ids = find(level.context_keys, context_ids * V + contexts[:, -k])
            seen = np.flatnonzero(context_ids >= 0)
            ids = context_ids[seen]
            type_ids = find(level.type_keys, ids * V + tokens[seen])
            counts = np.where(type_ids >= 0, level.counts[type_ids], 0.0)
            D = level.discount
            p[seen] = (np.maximum(counts - D, 0.0) + D * level.followers[ids] * p[seen]) / level.totals[ids]
        return p

    def log_probabilities(self, docs: Documents) -> np.ndarray:
        """Natural log-probability of every predicted token of ``docs``, documents in order.

        Returns (Σ_i (n_i − 1),) float64 (−inf where the probability is 0).
        """
        contexts, tokens = self.windows(docs, "eval_docs")
        with np.errstate(divide="ignore"):
            return np.log(self.probabilities(contexts, tokens))


def kneser_ney_perplexity(train_docs: Documents, eval_docs: Documents, vocab_size: int,
                          order: int = 3, discount: float = 0.75) -> dict[str, float | int]:
    """Perplexity of a single-discount :class:`KneserNey` model fitted on ``train_docs``.

    Args:
        train_docs: TokenizedCorpus or list of (n_i,) integer arrays
            ``[<sod>=2] + ids + [<eod>=3]``.
        eval_docs: the documents scored, in the same form.
        vocab_size: number of token ids (all ids are below it).
        order: n-gram order (default 3, a trigram model).
        discount: absolute discount in [0, 1], the same at every order.

    Returns:
        ``perplexity`` (exp of ``nll``), ``nll`` (mean negative log-likelihood per predicted
        token, in nats) and ``tokens`` (the number of predicted tokens: all but the ``<sod>``).
    """
    model = KneserNey(vocab_size, order, discount).fit(train_docs)
    log_p = model.log_probabilities(eval_docs)
    nll = float(-log_p.mean())
    return {"perplexity": math.exp(nll), "nll": nll, "tokens": len(log_p)}

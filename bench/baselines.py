"""Interpolated Kneser-Ney n-gram baseline on saffu token ids, with a Shakespeare demo.

saffu's language-model benchmarks are compared with an interpolated Kneser-Ney n-gram model on
the same token-id sequences. NLTK's ``nltk.lm.KneserNeyInterpolated`` defines the estimate but is
far too slow at benchmark scale (it recounts continuations by scanning every n-gram on each
call; see bench/RESULTS.md, "Kneser-Ney baseline"), so :class:`KneserNey` computes the same
estimate in NumPy, counting n-grams as sorted int64 keys.

Documents are integer arrays wrapped as ``[<sod>] + ids + [<eod>]``. Every token after the
``<sod>`` is predicted (``<eod>`` is, ``<sod>`` is not) and contexts never cross documents: a
context that runs past the document start is padded with ``<sod>``.

The estimate of token w after a context c of k tokens (oldest first), with discount D:

    p_k(w | c) = (max(n_k(c w) − D, 0) + D · N1+(c •) · p_{k−1}(w | c')) / Σ_v n_k(c v)

where c' is c without its oldest token, N1+(c •) the number of distinct tokens seen after c,
and n_k the raw count at the highest order (k = order − 1) and the continuation count
N1+(• c w) (number of distinct tokens seen before c w) below it. A context never seen in
training defers to the next lower order (p_k = p_{k−1}). One discount serves every order, as
in NLTK. Deliberate difference from NLTK: the recursion ends in the uniform distribution
p_{−1} = 1/vocab_size (the unigram level is discounted too), so a token never seen in training
keeps a non-zero probability. NLTK ends at the undiscounted continuation unigram
N1+(• w) / N1+(• •), which gives such a token probability 0; ``uniform_base=False`` does the
same and then equals NLTK's scores (tests/test_baselines.py).

    python bench/baselines.py --demo               # perplexity on the fixed Shakespeare split
    python bench/baselines.py --time-nltk          # time NLTK's implementation on a slice
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saffu.corpus import encode_corpus, read_documents, shakespeare_split
from saffu.tokenize import EOD, N_SPECIAL, SOD, TOKENIZER_KINDS, make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
INT64_KEY_LIMIT = 2**62  # n-gram keys are context_id · vocab_size + token, kept clear of overflow

Documents = Sequence[np.ndarray]


# --- input checks and n-gram windows ----------------------------------------------------------


def _check_documents(docs: Documents, vocab_size: int, name: str) -> list[np.ndarray]:
    """``docs`` as a list of 1-D int64 arrays, each ``[<sod>] + ids + [<eod>]`` with ids < vocab_size."""
    if not isinstance(docs, (list, tuple)):
        raise TypeError(f"{name} must be a list of 1-D integer arrays (one per document), "
                        f"got {type(docs).__name__}")
    if not docs:
        raise ValueError(f"{name} has no documents")
    checked = []
    for i, doc in enumerate(docs):
        array = np.asarray(doc)
        if array.ndim != 1 or len(array) < 2:
            raise ValueError(f"{name}[{i}] must be a 1-D array of at least 2 tokens (<sod> ... <eod>), "
                             f"got shape {array.shape}")
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name}[{i}] must hold integer token ids, got dtype {array.dtype}")
        if array[0] != SOD or array[-1] != EOD:
            raise ValueError(f"{name}[{i}] must start with <sod>={SOD} and end with <eod>={EOD}, "
                             f"got {array[0]} ... {array[-1]}")
        if np.count_nonzero(array == SOD) != 1:
            raise ValueError(f"{name}[{i}] has <sod>={SOD} after its start; pass each document "
                             "as its own array")
        if array.min() < 0 or array.max() >= vocab_size:
            raise ValueError(f"{name}[{i}] has token ids outside [0, {vocab_size}): "
                             f"min {array.min()}, max {array.max()}")
        checked.append(array.astype(np.int64, copy=False))
    return checked


def _windows(docs: list[np.ndarray], order: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram of every predicted token of checked documents.

    Returns:
        contexts: (m, order − 1) int64, the preceding tokens, oldest first, ``<sod>``-padded.
        tokens: (m,) int64, the predicted tokens (all but each document's ``<sod>``).
    """
    pad = np.full(max(order - 2, 0), SOD, dtype=np.int64)  # each document brings one <sod>
    stream = np.concatenate([part for doc in docs for part in (pad, doc)])
    lengths = np.array([len(pad) + len(doc) for doc in docs])
    offsets = np.arange(len(stream)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.flatnonzero(offsets > len(pad))
    contexts = stream[positions[:, None] - np.arange(order - 1, 0, -1)]
    return contexts, stream[positions]


def _find(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each of ``keys`` in ``sorted_keys`` (unique, ascending); −1 where absent."""
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[index] == keys, index, -1)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


# --- the model ------------------------------------------------------------------------------------


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
    """Interpolated Kneser-Ney n-gram language model over integer token ids.

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
        self.vocab_size = _check_int(vocab_size, "vocab_size", N_SPECIAL)
        self.order = _check_int(order, "order", 1)
        if isinstance(discount, bool) or not isinstance(discount, (int, float, np.floating)):
            raise TypeError(f"discount must be a number, got {type(discount).__name__}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        self.discount = float(discount)
        self.uniform_base = bool(uniform_base)
        self.continuation = bool(continuation)
        self._levels: list[_Level] = []

    def fit(self, docs: Documents) -> KneserNey:
        """Count the n-grams of ``docs`` (a list of (n_i,) int arrays ``[<sod>] + ids + [<eod>]``)."""
        contexts, tokens = _windows(_check_documents(docs, self.vocab_size, "train_docs"), self.order)
        if len(tokens) * self.vocab_size >= INT64_KEY_LIMIT:
            raise ValueError(f"{len(tokens)} tokens × vocab_size {self.vocab_size} overflow the "
                             "int64 n-gram keys")
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
            raise ValueError("KneserNey is not fitted; call fit(train_docs) first")
        contexts, tokens = np.asarray(contexts), np.asarray(tokens)
        if contexts.ndim != 2 or tokens.ndim != 1 or contexts.shape != (len(tokens), self.order - 1):
            raise ValueError(f"contexts must have shape (m, {self.order - 1}) and tokens (m,), got "
                             f"{contexts.shape} and {tokens.shape}")
        for name, ids in (("contexts", contexts), ("tokens", tokens)):
            if ids.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
                raise ValueError(f"{name} has token ids outside [0, {self.vocab_size})")
        return self._interpolate(contexts.astype(np.int64), tokens.astype(np.int64))

    def _interpolate(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        V = self.vocab_size
        p = np.full(len(tokens), 1.0 / V)
        context_ids = np.zeros(len(tokens), dtype=np.int64)
        for k, level in enumerate(self._levels):
            if k > 0:  # an unseen shorter context (id −1) makes a negative key, which matches nothing
                context_ids = _find(level.context_keys, context_ids * V + contexts[:, -k])
            seen = np.flatnonzero(context_ids >= 0)
            ids = context_ids[seen]
            type_ids = _find(level.type_keys, ids * V + tokens[seen])
            counts = np.where(type_ids >= 0, level.counts[type_ids], 0.0)
            D = level.discount
            p[seen] = (np.maximum(counts - D, 0.0) + D * level.followers[ids] * p[seen]) / level.totals[ids]
        return p

    def log_probabilities(self, docs: Documents) -> np.ndarray:
        """Natural log-probability of every predicted token of ``docs``, documents in order.

        Returns (Σ_i (n_i − 1),) float64 (−inf where the probability is 0).
        """
        contexts, tokens = _windows(_check_documents(docs, self.vocab_size, "eval_docs"), self.order)
        with np.errstate(divide="ignore"):
            return np.log(self.probabilities(contexts, tokens))


def kneser_ney_perplexity(train_docs: Documents, eval_docs: Documents, vocab_size: int,
                          order: int = 3, discount: float = 0.75) -> dict[str, float | int]:
    """Perplexity of an interpolated Kneser-Ney model fitted on ``train_docs``, on ``eval_docs``.

    Args:
        train_docs, eval_docs: lists of (n_i,) integer arrays ``[<sod>=2] + ids + [<eod>=3]``.
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


# --- NLTK, the reference definition -------------------------------------------------------------


def fit_nltk_reference(train_docs: Documents, vocab_size: int, order: int = 3, discount: float = 0.75, *,
                       continuation: bool = True) -> Any:
    """NLTK's ``KneserNeyInterpolated`` (or, with ``continuation=False``,
    ``AbsoluteDiscountingInterpolated``) fitted on the same n-grams as :class:`KneserNey`.

    Token ids become decimal strings; the vocabulary is every id below ``vocab_size``.
    """
    from nltk.lm import AbsoluteDiscountingInterpolated, KneserNeyInterpolated, Vocabulary

    contexts, tokens = _windows(_check_documents(train_docs, vocab_size, "train_docs"), order)
    grams = np.column_stack([contexts, tokens]).astype(str).tolist()
    model_class = KneserNeyInterpolated if continuation else AbsoluteDiscountingInterpolated
    model = model_class(order, discount=discount, vocabulary=Vocabulary(map(str, range(vocab_size))))
    model.fit([[tuple(gram[order - 1 - k:]) for gram in grams for k in range(order)]])
    return model


def nltk_probabilities(model: Any, eval_docs: Documents, vocab_size: int) -> np.ndarray:
    """(m,) ``model.score`` of every predicted token of ``eval_docs`` (as in :class:`KneserNey`)."""
    contexts, tokens = _windows(_check_documents(eval_docs, vocab_size, "eval_docs"), model.order)
    return np.array([model.score(token, tuple(context))
                     for context, token in zip(contexts.astype(str).tolist(),
                                               tokens.astype(str).tolist(), strict=True)])


# --- command line -------------------------------------------------------------------------------


def shakespeare_documents(root: Path, tokenizer: str,
                          vocab_size: int) -> tuple[dict[str, list[np.ndarray]], int]:
    """The fixed Shakespeare split tokenized by a saffu tokenizer fitted on its train part.

    Returns ``({"train"|"dev"|"test": documents}, number of token ids)``; each work is one
    document ``[<sod>] + ids + [<eod>]``.
    """
    split = shakespeare_split(root)
    fitted = make_tokenizer(tokenizer, vocab_size=vocab_size).fit(read_documents(split.train))
    parts = {}
    for part in ("train", "dev", "test"):
        docs = []
        for ids, pos in encode_corpus(fitted, read_documents(getattr(split, part))):
            docs.extend(np.split(ids, np.flatnonzero(pos == 0)[1:]))
        parts[part] = docs
    return parts, fitted.vocab_size


def _truncate(docs: list[np.ndarray], n_tokens: int) -> list[np.ndarray]:
    """The first documents holding about ``n_tokens`` tokens; the last is cut and re-closed."""
    kept, left = [], n_tokens
    for doc in docs:
        if left < 2:
            break
        kept.append(doc if len(doc) <= left else np.append(doc[:left - 1], EOD))
        left -= len(kept[-1])
    return kept


def _perplexity(model: KneserNey, docs: list[np.ndarray]) -> float:
    return math.exp(-model.log_probabilities(docs).mean())


def demo(parts: dict[str, list[np.ndarray]], vocab_size: int, orders: list[int], discount: float) -> None:
    """Print dev and test perplexity of Kneser-Ney and absolute discounting of each order."""
    print(f"{'order':>5} {'smoothing':<21} {'dev ppl':>8} {'test ppl':>8} {'fit+score CPU s':>16}")
    for order in orders:
        for name, continuation in (("Kneser-Ney", True), ("absolute discounting", False)):
            start = time.process_time()
            model = KneserNey(vocab_size, order, discount, continuation=continuation).fit(parts["train"])
            dev, test = _perplexity(model, parts["dev"]), _perplexity(model, parts["test"])
            print(f"{order:5d} {name:<21} {dev:8.2f} {test:8.2f} {time.process_time() - start:16.2f}")


def _predicted(docs: list[np.ndarray]) -> int:
    return sum(map(len, docs)) - len(docs)


def time_nltk(parts: dict[str, list[np.ndarray]], vocab_size: int, order: int, discount: float,
              train_tokens: int, eval_tokens: int) -> None:
    """Time NLTK and :class:`KneserNey` on a slice, check they agree, extrapolate NLTK to the split."""
    train, dev = _truncate(parts["train"], train_tokens), _truncate(parts["dev"], eval_tokens)
    start = time.process_time()
    reference = fit_nltk_reference(train, vocab_size, order, discount)
    fit_s = time.process_time() - start
    start = time.process_time()
    expected = nltk_probabilities(reference, dev, vocab_size)
    score_s = time.process_time() - start
    start = time.process_time()
    ours = KneserNey(vocab_size, order, discount, uniform_base=False).fit(train)
    actual = np.exp(ours.log_probabilities(dev))
    ours_s = time.process_time() - start
    full_types = KneserNey(vocab_size, order).fit(parts["train"]).n_types
    # each NLTK score scans every stored n-gram of 2 or more tokens, so its cost per token
    # grows with their number
    growth = sum(full_types[1:]) / sum(ours.n_types[1:])
    n_train, n_dev = _predicted(train), len(expected)
    full_train, full_eval = _predicted(parts["train"]), _predicted(parts["dev"] + parts["test"])
    print(f"NLTK KneserNeyInterpolated(order={order}, discount={discount}), vocab {vocab_size}:")
    print(f"  CPU time: fit {n_train} tokens {fit_s:.2f} s, score {n_dev} tokens {score_s:.2f} s "
          f"({1e3 * score_s / n_dev:.1f} ms/token)")
    print(f"  max |p_nltk − p_ours| = {np.max(np.abs(expected - actual)):.2e} "
          f"(ours: fit + score {ours_s:.3f} CPU s)")
    print(f"  n-grams of 2..{order} tokens: {sum(ours.n_types[1:])} on the slice, "
          f"{sum(full_types[1:])} on train ({growth:.1f}×)")
    print(f"  extrapolated CPU time for train {full_train} + dev/test {full_eval} tokens: fit "
          f"{fit_s * full_train / n_train:.0f} s, score {score_s / n_dev * growth * full_eval / 3600:.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="dev/test perplexity on the fixed split")
    mode.add_argument("--time-nltk", action="store_true", help="time NLTK's KneserNeyInterpolated")
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the Shakespeare folder")
    parser.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="word")
    parser.add_argument("--vocab-size", type=int, default=N_SPECIAL + 7999,
                        help="token ids, the 4 special tokens included (default: 7,999 words)")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4], help="--demo: n-gram orders")
    parser.add_argument("--discount", type=float, default=0.75)
    parser.add_argument("--nltk-order", type=int, default=3)
    parser.add_argument("--nltk-train-tokens", type=int, default=100_000)
    parser.add_argument("--nltk-eval-tokens", type=int, default=1_000)
    args = parser.parse_args()
    parts, vocab_size = shakespeare_documents(args.data, args.tokenizer, args.vocab_size)
    print(f"{args.tokenizer} tokens, {vocab_size} ids; predicted tokens: "
          + ", ".join(f"{part} {_predicted(docs)}" for part, docs in parts.items()))
    if args.demo:
        demo(parts, vocab_size, args.orders, args.discount)
    else:
        time_nltk(parts, vocab_size, args.nltk_order, args.discount, args.nltk_train_tokens,
                  args.nltk_eval_tokens)


if __name__ == "__main__":
    main()

"""The building blocks of a SAFFU model below the model itself (METHOD.md §3).

- :class:`ContextKind` and :class:`Aggregation`: the kinds of context model and the ways of
  aggregating attended vectors, each defined once here, with the integer codes the kernels take
  (every backend checks the codes and rejects an unknown one).
- :class:`ContextSpec`: one context model (its kind and size) and the widths that follow from it.
- :class:`ContextLayer`: the weights of one context model and its forward pass ``h = softmax(z U)``.
- :class:`SkipInputs` and :func:`previous_tokens`: the previous tokens' cipher vectors that the
  output layer may read beside the hidden vectors (``SaffuConfig.skip``).
- :func:`target_batches`, :func:`unique_rows`, :func:`distinct_inputs` and :func:`pair_counts`:
  the batching and counting helpers of fitting and scoring.

Adding a context-model kind: a member of :class:`ContextKind` (name and kernel code), its window
rule in each backend (``csrc/saffu_pass.cpp``, ``saffu._numba.saffu_pass``,
``saffu._reference.saffu_pass``) and in ``saffu.torch.module`` (``_window``), and its config field in
:class:`saffu.config.SaffuConfig` (``context_specs``). ``tests/test_layers.py`` fails until every
backend accepts the new code and agrees with the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from saffu import kernels
from saffu.errors import InvalidParameterError
from saffu.kinds import Aggregation, ContextKind

__all__ = ["Aggregation", "ContextKind", "ContextLayer", "ContextSpec", "SkipInputs",
           "distinct_inputs", "pair_counts", "previous_tokens", "split_output",
           "target_batches", "transposed", "unique_rows"]

TRANSPOSE_BAND = 64  # rows of a matrix copied at once by transposed()


@dataclass(frozen=True)
class ContextSpec:
    """One context model: its ``kind`` and ``size`` (r for radial, B for block, 1 for document)."""

    kind: ContextKind
    size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ContextKind.parse(self.kind))
        if self.kind is ContextKind.DOCUMENT and self.size != 1:
            raise InvalidParameterError(f"the document context model has size 1, got {self.size}")

    @property
    def kind_code(self) -> int:
        return self.kind.code

    @property
    def attends(self) -> bool:
        """Whether the context model has an attention layer (the document model has none)."""
        return self.kind.attends

    @property
    def reads_last_token_only(self) -> bool:
        """Whether every window is the previous token alone (``radial1``, ``block1``): then the
        hidden vector of a target is a function of the previous token's id."""
        return self.attends and self.size == 1

    def input_dim(self, bits: int, aggregation: str) -> int:
        """Width Z of the aggregated vector z fed to the hidden layer."""
        if Aggregation.parse(aggregation) is Aggregation.CAT and self.attends:
            return bits * self.size
        return bits

    @property
    def name(self) -> str:
        """``radial2``, ``block16`` or ``document``: what :meth:`parse` reads."""
        return self.kind.value if self.kind is ContextKind.DOCUMENT else f"{self.kind.value}{self.size}"

    @classmethod
    def parse(cls, name: str) -> ContextSpec:
        """The context model named ``name`` (``radial2``, ``block16``, ``document``)."""
        match = _SPEC_NAME.fullmatch(name.strip().lower()) if isinstance(name, str) else None
        if match is None:
            raise InvalidParameterError(f"a context model is named like radial2, block16 or "
                                        f"document, got {name!r}")
        kind, size = match.groups()
        if kind == ContextKind.DOCUMENT.value:
            return cls(ContextKind.DOCUMENT, int(size or 1))
        if not size or int(size) < 1:
            raise InvalidParameterError(f"context model {name!r} needs a size of at least 1, "
                                        f"e.g. {kind}2")
        return cls(ContextKind.parse(kind), int(size))


_SPEC_NAME = re.compile(r"(radial|block|document)(\d*)")


@dataclass
class ContextLayer:
    """Weights of one context model: attention ``W`` (K, K) and hidden ``UT`` (D, Z), float32."""

    spec: ContextSpec
    attention: np.ndarray
    hidden_t: np.ndarray

    def hidden(self, ids: np.ndarray, pos: np.ndarray, start: int, stop: int, vectors: np.ndarray,
               aggregation: str, out: np.ndarray | None = None) -> np.ndarray:
        """h = softmax(z Uᵀ) (m, D) float32 for the m targets (``pos > 0``) in ``[start, stop)``.

        Args:
            ids, pos: (n,) int32 token ids and in-document positions of whole documents.
            vectors: (V, bits) float32 cipher vectors.
            aggregation: "sum" or "cat".
            out: (≥ m, D) float32 to write into (its first m rows are returned); default new.

        One fused kernel call builds each window, attends, aggregates and applies U to the
        nonzero entries of z only (cipher vectors are sparse, so this beats a dense product).
        With more targets than token ids, a context model that reads the previous token only
        looks its rows up in :meth:`hidden_by_last_token` instead (the same bits).
        """
        targets = int(np.count_nonzero(pos[start:stop]))
        h = np.empty((targets, self.hidden_t.shape[0]), dtype=np.float32) if out is None else out[:targets]
        if self.spec.reads_last_token_only and targets > vectors.shape[0]:
            previous = ids[np.flatnonzero(pos[start:stop]) + start - 1]
            return np.take(self.hidden_by_last_token(vectors, aggregation), previous, axis=0, out=h)
        kernels.saffu_forward(ids, pos, self.spec.kind_code, self.spec.size, vectors, self.attention,
                              Aggregation.parse(aggregation).code, self.hidden_t, start, stop, h)
        return h

    def hidden_by_last_token(self, vectors: np.ndarray, aggregation: str) -> np.ndarray:
        """(V, D) float32: row v is :meth:`hidden` of a target whose previous token is v, for a
        context model that :attr:`~ContextSpec.reads_last_token_only` (bit for bit: each row is
        computed as a target of a two-token document ``[v, ·]``)."""
        if not self.spec.reads_last_token_only:
            raise InvalidParameterError(f"the {self.spec.name} context model reads more than the "
                                        "previous token")
        vocab = vectors.shape[0]
        ids = np.zeros((vocab, 2), dtype=np.int32)
        ids[:, 0] = np.arange(vocab)
        pos = np.tile(np.array([0, 1], dtype=np.int32), vocab)
        return self.hidden(ids.ravel(), pos, 0, 2 * vocab, vectors, aggregation)


def target_batches(pos: np.ndarray, batch: int) -> Iterable[tuple[int, int]]:
    """Split token range [0, n) into ranges holding at most ``batch`` targets (pos > 0) each."""
    target_index = np.flatnonzero(pos > 0)
    for first in range(0, len(target_index), batch):
        last = min(first + batch, len(target_index)) - 1
        yield int(target_index[first]), int(target_index[last]) + 1


def unique_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``matrix`` (m, w) in order of first appearance, and for each row its
    index among them: ``unique[inverse]`` equals ``matrix`` bitwise."""
    matrix = np.ascontiguousarray(matrix)
    index: dict[bytes, int] = {}
    inverse = np.fromiter((index.setdefault(row, len(index)) for row in map(bytes, matrix)),
                          dtype=np.intp, count=len(matrix))
    return matrix[np.unique(inverse, return_index=True)[1]], inverse


def distinct_inputs(hidden: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct output-layer inputs of m targets: a target's input is its hidden state
    (m, W) float32 and its previous tokens (m, S) (the skip inputs; S may be 0).

    Returns:
        ``(hidden (u, W) float32, previous (u, S) int32, rows (m,))``: the u distinct inputs in
        order of first appearance, and for each target the index of its input among them.
    """
    width = hidden.shape[1]
    # one row per target, the previous tokens after the hidden state (ids < 2^24 are exact in float32)
    inputs = np.hstack([hidden, previous.astype(np.float32)]) if previous.shape[1] else hidden
    unique, rows = unique_rows(inputs)
    return np.ascontiguousarray(unique[:, :width]), unique[:, width:].astype(np.int32), rows


def pair_counts(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]):
    """(n_rows, n_columns) float64 CSR, canonical (indices sorted, no duplicates): entry (r, c)
    counts the examples m with ``rows[m] == r`` and ``columns[m] == c``."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=shape)


def previous_tokens(ids: np.ndarray, pos: np.ndarray, start: int, stop: int, lags: int) -> np.ndarray:
    """(m, lags) int32: for each target t (``pos[t] ≥ 1``) in ``[start, stop)``, the ids of the
    tokens t−1, …, t−lags, and −1 where that token would lie before the document's ``<sod>``."""
    targets = np.flatnonzero(pos[start:stop] > 0) + start
    lag = np.arange(1, lags + 1)
    inside = pos[targets][:, None] >= lag
    return np.where(inside, ids[np.maximum(targets[:, None] - lag, 0)], -1).astype(np.int32)


class SkipInputs:
    """The cipher vectors of the last S tokens as output-layer inputs (``SaffuConfig.skip``):
    a naive-Bayes n-gram inside the output solve, beside the hidden vectors.

    Token ``t−k``'s vector fills columns ``[(k−1)·bits, k·bits)`` of a sparse (m, S·bits) row
    (zero where the token is before the document start). Cipher vectors have a few nonzero
    bits, so these columns cost a sparse product, not a dense one.
    """

    def __init__(self, vectors: np.ndarray, lags: int) -> None:
        import scipy.sparse as sp

        self.lags, self.bits = lags, vectors.shape[1]
        # the rows of the vectors' nonzero entries, and one zero row at index V for "no token"
        rows, columns = np.nonzero(vectors)  # in row-major order: a canonical CSR
        indptr = np.zeros(len(vectors) + 2, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(vectors)), out=indptr[1:-1])
        indptr[-1] = indptr[-2]
        self._rows = sp.csr_matrix((vectors[rows, columns], columns, indptr),
                                   shape=(len(vectors) + 1, self.bits))

    @property
    def width(self) -> int:
        return self.lags * self.bits

    def target_sums(self, tokens: np.ndarray, targets: np.ndarray, n_targets: int, bigrams=None):
        """Σ_m x_m ⊗ onehot(targets[m]) as an (n_targets, S·bits) float64 CSR: row y sums the skip
        rows (:meth:`matrix`) of the examples whose target is y, from ``tokens`` (m, S) (−1:
        none) and ``targets`` (m,).

        Counted as (target, token) pairs times the cipher vectors, one sparse product per lag, not
        per example. Equal to the sum over examples up to the order of float64 additions, and
        bit for bit when the entries of the vectors are dyadic (the default cipher's 0, ½, 1):
        every partial sum is then exact. ``bigrams``: the lag-1 counts
        ``pair_counts(targets, tokens[:, 0], (n_targets, V))``, where the caller has them."""
        import scipy.sparse as sp

        vocab = self._rows.shape[0] - 1
        blocks = []
        for k in range(self.lags):
            present = tokens[:, k] >= 0
            counts = bigrams if k == 0 and bigrams is not None else \
                pair_counts(targets[present], tokens[present, k], (n_targets, vocab))
            blocks.append(counts @ self._rows[:vocab])
        return sp.hstack(blocks, format="csr", dtype=np.float64)

    def matrix(self, tokens: np.ndarray):
        """(m, S·bits) float32 CSR of the cipher vectors of ``tokens`` (m, S) (−1: none)."""
        import scipy.sparse as sp

        none = self._rows.shape[0] - 1
        rows = np.where(tokens < 0, none, tokens)
        return sp.hstack([self._rows[rows[:, k]] for k in range(self.lags)], format="csr",
                         dtype=np.float32)


def split_output(model, weight_t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A solved output layer (V, n_contexts·D + S·bits) as the model holds it: ``output_t``
    (V, n_contexts·D) and, with skip inputs (``model.config.skip``), ``skip_weight``
    (S·bits, V), input-major so that a sparse skip row gathers contiguous rows."""
    width = sum(layer.hidden_t.shape[0] for layer in model.layers)
    output_t = np.ascontiguousarray(weight_t[:, :width], dtype=np.float32)
    if not model.config.skip:
        return output_t, None
    return output_t, transposed(weight_t[:, width:], np.float32)


def transposed(matrix: np.ndarray, dtype: np.dtype | type | None = None) -> np.ndarray:
    """``matrix.T`` as a C-contiguous copy (of ``dtype``), copied in bands of rows: each band's
    rows are read contiguously and its columns written into cache-resident pieces (about twice
    as fast as ``np.ascontiguousarray(matrix.T)`` for the (V, S·bits) skip block)."""
    rows, columns = matrix.shape
    result = np.empty((columns, rows), dtype=matrix.dtype if dtype is None else dtype)
    for first in range(0, rows, TRANSPOSE_BAND):
        result[:, first:first + TRANSPOSE_BAND] = matrix[first:first + TRANSPOSE_BAND].T
    return result

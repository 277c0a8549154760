"""Bit-cipher token vectors (METHOD.md §2): non-negative, unit-sum codes with no training.

Tokens are ranked by descending frequency (ties by id). Binary codes of ``bits`` bits are
enumerated by number of set bits — every 1-hot code, then every 2-hot code, and so on, in
lexicographic order of the set bit positions inside a level — and the token of rank r gets the
r-th code, so frequent tokens get the sparsest codes. A token's vector is its code divided by
its popcount. ``bits`` must be at least :func:`min_bits` (``ceil(log2(|V| + 1))``).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from saffu._io import atomic_write_text
from saffu.errors import InvalidParameterError

FORMAT = "saffu-cipher"
FORMAT_VERSION = 1

_DISTANCE_BLOCK = 1 << 22  # entries of one block of the (queries × vocabulary) distance matrix


def min_bits(vocab_size: int) -> int:
    """Fewest bits whose non-zero codes can number ``vocab_size``: ``ceil(log2(vocab_size + 1))``."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) \
            or vocab_size < 1:
        raise InvalidParameterError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    return int(vocab_size).bit_length()


def _check_counts(counts: Any) -> np.ndarray:
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0 or not (np.issubdtype(array.dtype, np.integer)
                                                  or np.issubdtype(array.dtype, np.floating)):
        raise InvalidParameterError(f"counts must be a non-empty 1-D array of numbers, got dtype "
                                    f"{array.dtype} with shape {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise InvalidParameterError("counts must be finite and non-negative")
    return array


def _check_bits(bits: int | None, vocab_size: int) -> int:
    minimum = min_bits(vocab_size)
    if bits is None:
        return minimum
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise InvalidParameterError(f"bits must be an int or None, got {bits!r}")
    if bits < minimum:
        raise InvalidParameterError(f"bits={bits} is below the minimum {minimum} for a vocabulary of "
                                    f"{vocab_size} tokens (ceil(log2(|V| + 1)))")
    return int(bits)


def _codes_by_rank(n_codes: int, bits: int) -> np.ndarray:
    """The first ``n_codes`` codes of the enumeration: ``uint8`` array (n_codes, bits) of 0/1."""
    if n_codes > 2**bits - 1:
        raise InvalidParameterError(f"{bits} bits have only {2**bits - 1} non-zero codes, not {n_codes}")
    codes = np.zeros((n_codes, bits), dtype=np.uint8)
    row = 0
    for level in range(1, bits + 1):
        take = min(math.comb(bits, level), n_codes - row)
        if take <= 0:
            break
        combos = itertools.islice(itertools.combinations(range(bits), level), take)
        positions = np.fromiter(itertools.chain.from_iterable(combos), dtype=np.intp,
                                count=take * level).reshape(take, level)
        codes[np.arange(row, row + take)[:, None], positions] = 1
        row += take
    return codes


def cipher_codes(counts: Any, bits: int | None = None) -> np.ndarray:
    """Binary code of each token: ``uint8`` array (V, bits), row t = code of token id t.

    Args:
        counts: (V,) training frequency of each token id (non-negative).
        bits: code length; ``None`` uses :func:`min_bits` of V.
    """
    counts = _check_counts(counts)
    bits = _check_bits(bits, len(counts))
    by_rank = np.argsort(-counts, kind="stable")  # descending frequency, ties by id
    codes = np.empty((len(counts), bits), dtype=np.uint8)
    codes[by_rank] = _codes_by_rank(len(counts), bits)
    return codes


def _smoothed(vectors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``v'_t = β_t v_t + (1 − β_t) q`` (METHOD.md §2).

    ``q`` is the normalized complement of the frequency-weighted bit mass and
    ``β_t = 1 / (number of types with t's count)``; rows stay unit-sum.
    """
    bits = vectors.shape[1]
    mass = counts @ vectors
    share = mass / mass.sum() if mass.sum() > 0 else np.full(bits, 1.0 / bits)
    complement = 1.0 - share
    q = complement / complement.sum() if complement.sum() > 0 else np.full(bits, 1.0 / bits)
    _, inverse, sharing = np.unique(counts, return_inverse=True, return_counts=True)
    beta = (1.0 / sharing[inverse])[:, None]
    return beta * vectors + (1.0 - beta) * q


class Cipher:
    """Bit-cipher vectors of a vocabulary.

    Build with :meth:`fit` from token counts. ``vectors`` (V, bits) ``float32`` has unit-sum
    rows; :meth:`encode` maps ids to vectors, with id ``-1`` meaning a masked slot (the zero
    vector).

    Attributes:
        codes: (V, bits) ``uint8`` 0/1 codes, row t for token id t.
        counts: (V,) ``float64`` token counts the codes were built from.
        smoothing: whether ``vectors`` are smoothed (METHOD.md §2).
        bits: code length.
        vocab_size: V.
    """

    def __init__(self, codes: Any, counts: Any, *, smoothing: bool = False) -> None:
        codes = np.asarray(codes)
        counts = _check_counts(counts)
        if codes.ndim != 2 or codes.shape[0] != len(counts) or codes.shape[1] < 1:
            raise InvalidParameterError(f"codes must have shape (V={len(counts)}, bits), got {codes.shape}")
        if np.any((codes != 0) & (codes != 1)):
            raise InvalidParameterError("codes must hold only 0 and 1")
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        popcount = codes.sum(axis=1, dtype=np.int64)
        if np.any(popcount == 0):
            raise InvalidParameterError(f"token {int(np.argmin(popcount))} has the all-zero code")
        if len(set(map(bytes, codes))) != len(codes):  # rows as bytes: far faster than np.unique
            raise InvalidParameterError("codes must be unique")
        if not isinstance(smoothing, bool):
            raise InvalidParameterError(f"smoothing must be true or false, got {smoothing!r}")
        vectors = codes / popcount[:, None]
        if smoothing:
            vectors = _smoothed(vectors, counts)
        table = np.zeros((len(codes) + 1, codes.shape[1]), dtype=np.float32)
        table[:-1] = vectors  # the extra last row is the zero vector that id -1 selects
        for array in (codes, counts, table):
            array.flags.writeable = False
        self.codes, self.counts, self.smoothing, self._table = codes, counts, smoothing, table

    @classmethod
    def fit(cls, counts: Any, bits: int | None = None, smoothing: bool = False) -> Cipher:
        """Codes for tokens with frequencies ``counts`` (V,), ``bits`` long (default minimum)."""
        return cls(cipher_codes(counts, bits), counts, smoothing=smoothing)

    def with_vectors(self, vectors: Any) -> Cipher:
        """A copy whose token vectors are ``vectors`` (V, W), e.g. trained by backprop or built
        by :func:`contextual_vectors` (then W, the new :attr:`bits`, may differ from the code
        length :attr:`code_bits`).

        Codes and counts are kept; the vectors need not be unit-sum any more.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != self.vocab_size or vectors.shape[1] < 1 \
                or not np.isfinite(vectors).all():
            raise InvalidParameterError(f"vectors must be finite with shape ({self.vocab_size}, width), "
                                        f"got {vectors.shape}")
        table = np.zeros((vectors.shape[0] + 1, vectors.shape[1]), dtype=np.float32)
        table[:-1] = vectors
        table.flags.writeable = False
        trained = copy.copy(self)
        trained._table = table
        return trained

    @property
    def vectors(self) -> np.ndarray:
        """(V, bits) ``float32`` token vectors, each row summing to 1 (read-only)."""
        return self._table[:-1]

    @property
    def bits(self) -> int:
        """Width of the token vectors (the code length unless :meth:`with_vectors` changed it)."""
        return self._table.shape[1]

    @property
    def code_bits(self) -> int:
        """Length of the binary codes."""
        return self.codes.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.codes.shape[0]

    def encode(self, ids: Any) -> np.ndarray:
        """Vectors of token ids: shape ``ids.shape + (bits,)``, ``float32``; id −1 → zeros."""
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise InvalidParameterError(f"token ids must be integers, got {ids.dtype}")
        if ids.size and (ids.min() < -1 or ids.max() >= self.vocab_size):
            raise InvalidParameterError(f"token ids must be in [-1, {self.vocab_size}), got "
                             f"[{ids.min()}, {ids.max()}]")
        return self._table[ids]

    def nearest(self, vectors: Any, k: int = 1) -> np.ndarray:
        """Ids of the ``k`` tokens whose vectors are nearest (Euclidean) to each of ``vectors``.

        Args:
            vectors: (..., bits) query vectors.
            k: how many neighbours, 1 ≤ k ≤ V.
        Returns:
            ``int64`` array (..., k), nearest first (equal distances: lower id first).
        """
        queries = np.asarray(vectors, dtype=np.float64)
        if queries.ndim < 1 or queries.shape[-1] != self.bits:
            raise InvalidParameterError(f"vectors must have shape (..., {self.bits}), got {queries.shape}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= self.vocab_size:
            raise InvalidParameterError(f"k must be an integer in [1, {self.vocab_size}], got {k!r}")
        flat = queries.reshape(-1, self.bits)
        table = self.vectors.astype(np.float64)
        norms = np.einsum("ij,ij->i", table, table)
        out = np.empty((len(flat), k), dtype=np.int64)
        step = max(1, _DISTANCE_BLOCK // self.vocab_size)
        for start in range(0, len(flat), step):
            # ‖x − v‖² up to the per-row constant ‖x‖²
            distance = norms - 2.0 * (flat[start:start + step] @ table.T)
            out[start:start + step] = _smallest(distance, k)
        return out.reshape((*queries.shape[:-1], k))

    def label_codes(self, label_bits: int | None = None) -> Cipher:
        """The same construction with ``label_bits`` bits (default: ``bits``): the unit-sum
        (V, label_bits) target codes of the hidden layers. Smoothing carries over."""
        return Cipher.fit(self.counts, bits=self.code_bits if label_bits is None else label_bits,
                          smoothing=self.smoothing)

    # --- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (codes as ``"0101…"`` strings); see :meth:`from_dict`."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "bits": self.code_bits,
                "smoothing": self.smoothing, "counts": self.counts.tolist(),
                "codes": ["".join("01"[bit] for bit in row) for row in self.codes.tolist()]}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Cipher:
        """Rebuild a cipher from :meth:`to_dict` output (``ValueError`` if it is malformed)."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise InvalidParameterError(f"not a saffu cipher (no \"format\": \"{FORMAT}\")")
        if state.get("format_version") != FORMAT_VERSION:
            raise InvalidParameterError(f"unsupported cipher format_version {state.get('format_version')!r}")
        try:
            bits, codes = state["bits"], state["codes"]
            if any(len(code) != bits or set(code) - {"0", "1"} for code in codes):
                raise InvalidParameterError(f"every code must be a string of {bits} '0'/'1' characters")
            array = np.array([[c == "1" for c in code] for code in codes], dtype=np.uint8)
            return cls(array.reshape(len(codes), bits), state["counts"],
                       smoothing=state["smoothing"])
        except (KeyError, TypeError) as error:
            raise InvalidParameterError(f"malformed cipher ({type(error).__name__}: {error})") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON to ``path``, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cipher:
        """Read a cipher written by :meth:`save`."""
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no cipher file at {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidParameterError(f"{path}: not a saffu cipher file ({error})") from None
        try:
            return cls.from_dict(state)
        except ValueError as error:
            raise InvalidParameterError(f"{path}: {error}") from None

    def __repr__(self) -> str:
        return (f"Cipher(vocab_size={self.vocab_size}, bits={self.bits}, "
                f"smoothing={self.smoothing})")


def contextual_vectors(vectors: Any, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                       radius: int, *, top: int | None = None) -> np.ndarray:
    """Contextual bit-cipher vectors: each token described by its neighbours' cipher vectors.

    Block 0 is the token's own vector ``v_t``; for each radius r = 1..R two more blocks hold the
    mean cipher vector of the token's left neighbours at distance r and of its right neighbours
    at distance r (within a document), over all its occurrences in ``chunks``. Each block has
    unit mass (a token never seen with a neighbour there gets an empty block); with ``top`` only
    the ``top`` largest entries of each neighbour block are kept (then renormalized), so the
    vectors stay sparse enough for the pass kernels. Finally each row is scaled to unit mass.
    Tokens used alike get similar neighbour blocks, hence similar vectors. The pair counts are
    (V, V) sparse matrices; no (tokens × features) array is built.

    Args:
        vectors: (V, bits) non-negative cipher vectors.
        chunks: ``(ids, pos)`` chunks of whole documents (``pos`` = position in the document).
        radius: R ≥ 1.
        top: entries kept per neighbour block (≥ 1), or ``None`` for all.
    Returns:
        (V, (1 + 2R)·bits) float32, non-negative rows of unit mass.
    """
    import scipy.sparse as sp

    table = np.asarray(vectors, dtype=np.float64)
    if table.ndim != 2 or not np.isfinite(table).all() or (table < 0).any():
        raise InvalidParameterError("vectors must be a finite non-negative (V, bits) array")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 1:
        raise InvalidParameterError(f"radius must be an integer ≥ 1, got {radius!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer))
                            or top < 1):
        raise InvalidParameterError(f"top must be None or an integer ≥ 1, got {top!r}")
    vocab = table.shape[0]
    chunks = list(chunks)
    blocks = [_unit_rows(table)]
    for r in range(1, radius + 1):
        rows, cols = [], []
        for ids, pos in chunks:
            later = np.flatnonzero(pos[r:] >= r) + r  # tokens with a left neighbour at distance r
            rows.append(ids[later])
            cols.append(ids[later - r])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        pairs = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(vocab, vocab))
        for counts in (pairs, pairs.T.tocsr()):  # left neighbours, right neighbours
            blocks.append(_unit_rows(_keep_top(np.asarray(counts @ table), top)))
    joined = np.hstack(blocks)
    return _unit_rows(joined).astype(np.float32)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit mass; all-zero rows stay zero."""
    mass = a.sum(axis=1, keepdims=True)
    return np.divide(a, mass, out=np.zeros_like(a), where=mass > 0)


def _keep_top(a: np.ndarray, top: int | None) -> np.ndarray:
    """``a`` with all but the ``top`` largest entries of each row set to 0 (ties: lower index)."""
    if top is None or top >= a.shape[1]:
        return a
    order = np.argsort(-a, axis=1, kind="stable")[:, :top]
    kept = np.zeros_like(a)
    rows = np.arange(a.shape[0])[:, None]
    kept[rows, order] = a[rows, order]
    return kept


def _smallest(distance: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries of each row, ascending (ties: lower index)."""
    if k == 1:
        return distance.argmin(axis=1)[:, None]
    candidates = np.argpartition(distance, k - 1, axis=1)[:, :k]
    order = np.lexsort((candidates, np.take_along_axis(distance, candidates, axis=1)))
    return np.take_along_axis(candidates, order, axis=1)

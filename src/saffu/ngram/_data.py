"""Input checks and n-gram key arithmetic shared by the n-gram estimators.

Token data travels as a *stream*: ``ids`` (n,) int64 token ids of whole documents laid end to
end and ``pos`` (n,) int64, each token's position in its document (0 at the document's first
token, which must be the begin-of-document id). This is the layout of a
:class:`saffu.corpus.TokenizedCorpus` chunk; a list of per-document arrays is converted to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError, ModelFormatError

INT64_KEY_LIMIT = 2**62  # n-gram keys are index · vocab_size + token, kept clear of overflow
BOS_WORD, EOS_WORD, UNK_WORD = "<s>", "</s>", "<unk>"  # the special words of ARPA files

Documents = TokenizedCorpus | Sequence[np.ndarray]


class NgramFormatError(ModelFormatError):
    """A saved n-gram model or an ARPA file is missing, corrupted or inconsistent."""


class Stream(NamedTuple):
    """Documents laid end to end: ``ids`` (n,) int64 and ``pos`` (n,) int64 (0 at each start)."""

    ids: np.ndarray
    pos: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        """(m,) int64 indices of the predicted tokens: every token but each document's first."""
        return np.flatnonzero(self.pos > 0)


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def as_stream(docs: Documents, vocab_size: int, bos: int, eos: int, name: str) -> Stream:
    """Check documents ``[bos] + ids + [eos]`` and lay them end to end.

    Args:
        docs: a :class:`TokenizedCorpus`, or a list of (n_i,) integer arrays, one per document.
        vocab_size: every id must be in ``[0, vocab_size)``.
        bos: the id that opens every document (and appears nowhere else).
        eos: the id that closes every document.
        name: the argument's name, for error messages.
    """
    if isinstance(docs, TokenizedCorpus):
        chunks = list(docs.chunks())
        if not chunks:
            raise InvalidParameterError(f"{name} has no documents")
        ids = np.concatenate([c[0] for c in chunks]).astype(np.int64)
        pos = np.concatenate([c[1] for c in chunks]).astype(np.int64)
        stream = Stream(ids, pos)
        _check_stream(stream, vocab_size, bos, eos, name)
        return stream
    if not isinstance(docs, (list, tuple)):
        raise InvalidParameterError(f"{name} must be a TokenizedCorpus or a list of 1-D integer arrays "
                                    f"(one per document), got {type(docs).__name__}")
    if not docs:
        raise InvalidParameterError(f"{name} has no documents")
    arrays = [_check_document(doc, i, name) for i, doc in enumerate(docs)]
    lengths = np.array([len(a) for a in arrays])
    ids = np.concatenate(arrays)
    pos = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    stream = Stream(ids, pos)
    _check_stream(stream, vocab_size, bos, eos, name)
    return stream


def _check_document(doc: Any, i: int, name: str) -> np.ndarray:
    array = np.asarray(doc)
    if array.ndim != 1 or len(array) < 2:
        raise InvalidParameterError(f"{name}[{i}] must be a 1-D array of at least 2 tokens (<sod> "
                                    f"... <eod>), "
                                    f"got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise InvalidParameterError(f"{name}[{i}] must hold integer token ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _check_stream(stream: Stream, vocab_size: int, bos: int, eos: int, name: str) -> None:
    ids, pos = stream
    starts = np.flatnonzero(pos == 0)
    if len(ids) == 0 or len(starts) == 0:
        raise InvalidParameterError(f"{name} has no documents")
    ends = np.append(starts[1:], len(ids)) - 1
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise InvalidParameterError(f"{name} has token ids outside [0, {vocab_size}): "
                         f"min {ids.min()}, max {ids.max()}")
    bad = np.flatnonzero(ids[starts] != bos)
    if len(bad):
        raise InvalidParameterError(f"{name}: document {bad[0]} must start with <sod>={bos}, "
                                    f"got {ids[starts[bad[0]]]}")
    bad = np.flatnonzero((ids[ends] != eos) | (ends == starts))
    if len(bad):
        raise InvalidParameterError(f"{name}: document {bad[0]} must end with <eod>={eos} after its "
                                    f"<sod>, got {ids[ends[bad[0]]]}")
    if np.count_nonzero(ids == bos) != len(starts):
        raise InvalidParameterError(f"{name} has <sod>={bos} inside a document; pass each document "
                                    "as its own array")


def check_key_range(n_entries: int, vocab_size: int) -> None:
    """Raise ValueError if ``n_entries · vocab_size`` would overflow the int64 n-gram keys."""
    if n_entries * vocab_size >= INT64_KEY_LIMIT:
        raise InvalidParameterError(f"{n_entries} n-grams × vocab_size {vocab_size} overflow the int64 "
                                    "n-gram keys")


def find(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each of ``keys`` in ``sorted_keys`` (unique, ascending); −1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[index] == keys, index, -1)

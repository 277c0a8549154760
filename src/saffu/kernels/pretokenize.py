"""Validated pre-tokenizer kernel (contract: docs/internals.md, section "Pre-tokenizer")."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from saffu._backend import backend_module, get_num_threads
from saffu.errors import InvalidParameterError
from saffu.kernels._validate import check_array as _check_array

LETTER, NUMBER, SPACE, OTHER = 0, 1, 2, 3
"""The classes of ``classes``: ``\\p{L}``, ``\\p{N}``, ``\\s``, and every other character."""


class Pieces(NamedTuple):
    """The pieces of a text and their distinct ids (see :func:`bytelevel_pieces`).

    Attributes:
        bounds: (pieces + 1,) int64: piece p is code points ``[bounds[p], bounds[p + 1])``.
        ids: (pieces,) int32: the distinct piece of each piece, numbered in order of first
            appearance.
        first: (distinct,) int32: the first piece of each distinct piece.
    """

    bounds: np.ndarray
    ids: np.ndarray
    first: np.ndarray


def bytelevel_pieces(code_points: np.ndarray, classes: np.ndarray, doc_starts: np.ndarray) -> Pieces:
    """Split documents into the pieces of byte-level BPE's pre-tokenizer (the GPT-2 pattern
    ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``) and
    number the distinct pieces.

    Args:
        code_points: (n,) uint32, the documents' code points one after another.
        classes: (n,) uint8, the class of each code point (``LETTER``, ``NUMBER``, ``SPACE``,
            ``OTHER``), as the tokenizer's regex engine classifies it.
        doc_starts: (d + 1,) int64, ascending from 0 to n: document j is
            ``[doc_starts[j], doc_starts[j + 1])``. Pieces never cross a document's end.
    """
    _check_array("code_points", code_points, np.dtype(np.uint32), 1)
    n = code_points.shape[0]
    _check_array("classes", classes, np.dtype(np.uint8), 1, (n,))
    _check_array("doc_starts", doc_starts, np.dtype(np.int64), 1)
    if n >= 2**31 - 1:
        raise InvalidParameterError(f"bytelevel_pieces takes fewer than 2^31 code points, got {n}")
    if doc_starts.size == 0 or doc_starts[0] != 0 or doc_starts[-1] != n \
            or np.any(np.diff(doc_starts) < 0):
        raise InvalidParameterError(f"doc_starts must ascend from 0 to {n} (the number of code points)")
    if n and int(classes.max()) > OTHER:
        raise InvalidParameterError(f"classes must be {LETTER}-{OTHER}, got {int(classes.max())}")
    bounds = np.empty(n + 1, np.int64)
    ids = np.empty(n, np.int32)
    first = np.empty(n, np.int32)
    counts = np.zeros(2, np.int64)
    backend_module().bytelevel_pieces(code_points, classes, doc_starts, bounds, ids, first, counts,
                                      get_num_threads())
    pieces, distinct = int(counts[0]), int(counts[1])
    return Pieces(bounds[:pieces + 1], ids[:pieces], first[:distinct])

"""Byte-level BPE pre-tokenization in Numba (same algorithm as ``csrc/pretokenize.cpp``)."""

from __future__ import annotations

import numpy as np
from numba import njit

LETTER, NUMBER, SPACE, OTHER = 0, 1, 2, 3
APOSTROPHE, BLANK = 0x27, 0x20
_S, _T, _M, _D, _R, _V, _L, _E = (ord(c) for c in "stmdrvle")


@njit(cache=True)
def _contraction_at(cp, i, end):
    if cp[i] != APOSTROPHE or i + 1 >= end:
        return 0
    a = cp[i + 1]
    if a == _S or a == _T or a == _M or a == _D:
        return 2
    if i + 2 >= end:
        return 0
    b = cp[i + 2]
    if (a == _R and b == _E) or (a == _V and b == _E) or (a == _L and b == _L):
        return 3
    return 0


@njit(cache=True)
def _piece_end(cp, cls, i, end):
    c = _contraction_at(cp, i, end)
    if c:
        return i + c
    run = i
    if cp[i] == BLANK and i + 1 < end and cls[i + 1] != SPACE:
        run = i + 1
    k = cls[run]
    j = run + 1
    while j < end and cls[j] == k:
        j += 1
    if k != SPACE:
        return j
    return j if (j == end or j - i == 1) else j - 1


@njit(cache=True)
def _hash_of(cp, begin, end):
    h = np.uint64(0xCBF29CE484222325)
    for k in range(begin, end):
        h = (h ^ np.uint64(cp[k])) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    return h ^ (h >> np.uint64(33))


@njit(cache=True)
def _same(cp, a, b, length):
    for k in range(length):
        if cp[a + k] != cp[b + k]:
            return False
    return True


@njit(cache=True)
def _grown(hashes, n_distinct, size):
    slots = np.full(size, -1, np.int32)
    mask = np.uint64(size - 1)
    for i in range(n_distinct):
        slot = np.int64(hashes[i] & mask)
        while slots[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        slots[slot] = i
    return slots


@njit(cache=True)
def _bytelevel_pieces(cp, cls, doc_starts, piece_bounds, piece_ids, first_piece, counts):
    pieces = 0
    piece_bounds[0] = 0
    for j in range(doc_starts.size - 1):
        i, end = doc_starts[j], doc_starts[j + 1]
        while i < end:
            pieces += 1
            piece_bounds[pieces] = _piece_end(cp, cls, i, end)
            i = piece_bounds[pieces]
    hashes = np.empty(max(pieces, 1), np.uint64)
    slots = np.full(1024, -1, np.int32)
    n_distinct = 0
    for p in range(pieces):
        begin, end = piece_bounds[p], piece_bounds[p + 1]
        h = _hash_of(cp, begin, end)
        slot = np.int64(h & np.uint64(slots.size - 1))
        found = -1
        while slots[slot] >= 0:
            d = slots[slot]
            q = first_piece[d]
            length = piece_bounds[q + 1] - piece_bounds[q]
            if hashes[d] == h and length == end - begin and _same(cp, piece_bounds[q], begin, length):
                found = d
                break
            slot = (slot + 1) & (slots.size - 1)
        if found < 0:
            found = n_distinct
            hashes[found] = h
            first_piece[found] = p
            slots[slot] = found
            n_distinct += 1
            if 2 * n_distinct > slots.size:
                slots = _grown(hashes, n_distinct, 2 * slots.size)
        piece_ids[p] = found
    counts[0] = pieces
    counts[1] = n_distinct


def bytelevel_pieces(code_points: np.ndarray, classes: np.ndarray, doc_starts: np.ndarray,
                     piece_bounds: np.ndarray, piece_ids: np.ndarray, first_piece: np.ndarray,
                     counts: np.ndarray, n_threads: int) -> None:
    """The pieces of each document and their distinct ids (see ``saffu.kernels.bytelevel_pieces``)."""
    _bytelevel_pieces(code_points, classes, doc_starts, piece_bounds, piece_ids, first_piece, counts)

"""Byte-level BPE pre-tokenization in plain Python (the oracle; ``n_threads`` is ignored).

The pattern's alternatives are tried in order at each position, as a regex engine does; the
tests also hold this to Hugging Face ``tokenizers``' own pre-tokenizer.
"""

from __future__ import annotations

import numpy as np

LETTER, NUMBER, SPACE, OTHER = 0, 1, 2, 3
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def _piece_end(text: str, cls: list[int], i: int, end: int) -> int:
    """End of the piece of ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|
    \\s+(?!\\S)|\\s+`` at ``i``."""
    for suffix in CONTRACTIONS:
        if text.startswith("'" + suffix, i, end):
            return i + 1 + len(suffix)
    for k in (LETTER, NUMBER, OTHER):
        j = i + 1 if text[i] == " " and i + 1 < end else i
        if cls[j] == k:
            while j < end and cls[j] == k:
                j += 1
            return j
    j = i
    while j < end and cls[j] == SPACE:
        j += 1
    if j == end:
        return j  # \s+(?!\S) at the end of the document
    return j - 1 if j - 1 > i else j  # backs off before the non-space, else \s+


def bytelevel_pieces(code_points: np.ndarray, classes: np.ndarray, doc_starts: np.ndarray,
                     piece_bounds: np.ndarray, piece_ids: np.ndarray, first_piece: np.ndarray,
                     counts: np.ndarray, n_threads: int) -> None:
    """The pieces of each document, numbered by distinct piece in order of first appearance."""
    text = "".join(map(chr, code_points.tolist()))
    cls = classes.tolist()
    bounds = [0]
    for begin, end in zip(doc_starts[:-1].tolist(), doc_starts[1:].tolist(), strict=True):
        i = begin
        while i < end:
            i = _piece_end(text, cls, i, end)
            bounds.append(i)
    ids: dict[str, int] = {}
    for p in range(len(bounds) - 1):
        piece = text[bounds[p]:bounds[p + 1]]
        if piece not in ids:
            first_piece[len(ids)] = p
            ids[piece] = len(ids)
        piece_ids[p] = ids[piece]
    piece_bounds[:len(bounds)] = bounds
    counts[:] = (len(bounds) - 1, len(ids))

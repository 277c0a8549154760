"""ARPA back-off files: read (e.g. KenLM's ``lmplz`` output) and write (for KenLM and decoders).

Format: a ``\\data\\`` header with one ``ngram k=count`` line per length, then one
``\\k-grams:`` section per length with lines ``log10_prob  w_1 … w_k  [log10_backoff]``
(fields separated by whitespace; a missing backoff is 0), then ``\\end\\``.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saffu._io import atomic_write_text, check_output_file
from saffu.ngram._data import BOS_WORD, EOS_WORD, UNK_WORD, NgramFormatError, check_key_range, find

if TYPE_CHECKING:
    from saffu.ngram._model import NgramModel

_COUNT = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")
_SECTION = re.compile(r"\\(\d+)-grams:")


def write_arpa(model: NgramModel, path: str | os.PathLike) -> None:
    """Write ``model`` in ARPA format; floats are written in full (``repr``), so they read back exactly."""
    out = io.StringIO()
    out.write("\\data\\\n")
    for k, n in enumerate(model.n_grams, start=1):
        out.write(f"ngram {k}={n}\n")
    vocabulary = np.array(model.vocabulary, dtype=object)
    for k in range(1, model.order + 1):
        out.write(f"\n\\{k}-grams:\n")
        words = vocabulary[_tokens(model, k)]
        phrases = [" ".join(row) for row in words.tolist()] if k > 1 else words[:, 0].tolist()
        probs = model.log10_prob[k - 1].tolist()
        if k == model.order:
            out.writelines(f"{p!r}\t{w}\n" for p, w in zip(probs, phrases, strict=True))
        else:
            backoffs = model.log10_backoff[k - 1].tolist()
            out.writelines(f"{p!r}\t{w}\t{b!r}\n" for p, w, b in zip(probs, phrases, backoffs, strict=True))
    out.write("\n\\end\\\n")
    atomic_write_text(check_output_file(path, _is_arpa_file, "ARPA file"), out.getvalue())


def _is_arpa_file(path: Path) -> bool:
    """Whether ``path`` holds an ARPA model (its first non-blank line is ``\\data\\``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return next((line.strip() for line in handle if line.strip()), "") == "\\data\\"
    except OSError:
        return False


def _tokens(model: NgramModel, k: int) -> np.ndarray:
    """(n_k, k) int64 token ids (oldest first) of the stored k-grams, in key order."""
    V = model.vocab_size
    tokens = np.empty((len(model.keys[k - 1]), k), dtype=np.int64)
    index = np.arange(len(model.keys[k - 1]))
    for column, length in enumerate(range(k, 0, -1)):
        key = model.keys[length - 1][index]
        tokens[:, column] = key % V if length > 1 else key
        index = key // V
    return tokens


def read_arpa(cls: type[NgramModel], path: str | os.PathLike,
              vocabulary: Sequence[str] | None) -> NgramModel:
    """Parse an ARPA file into ``cls``; NgramFormatError names the first problem found."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NgramFormatError(f"cannot read ARPA file {path}: {error}") from error
    sections = _sections(lines, path, NgramFormatError)
    unigrams = sections[0]
    names = list(vocabulary) if vocabulary is not None else [w[0] for w in unigrams[1]]
    index = {word: i for i, word in enumerate(names)}
    if len(index) != len(names):
        raise NgramFormatError(f"{path}: the vocabulary repeats a token")
    for word in (BOS_WORD, EOS_WORD):
        if word not in index:
            raise NgramFormatError(f"{path}: the model has no {word}")
    V = len(names)
    unk = index.get(UNK_WORD)
    prob, backoff = np.full(V, np.nan), np.zeros(V)
    ids = _ids(unigrams[1], index, path, NgramFormatError)[:, 0]
    if len(np.unique(ids)) != len(ids):
        raise NgramFormatError(f"{path}: a unigram is listed twice")
    prob[ids], backoff[ids] = unigrams[0], unigrams[2]
    missing = np.isnan(prob)
    if missing.any():
        if unk is None or missing[unk]:
            raise NgramFormatError(f"{path}: {int(missing.sum())} vocabulary tokens have no unigram "
                                   f"and the model has no {UNK_WORD} to score them")
        prob[missing] = prob[unk]
    keys, probs, backoffs = [np.arange(V, dtype=np.int64)], [prob], [backoff]
    for k, (p, words, b) in enumerate(sections[1:], start=2):
        tokens = _ids(words, index, path, NgramFormatError)
        check_key_range(len(keys[-1]), V)
        suffix = tokens[:, -1]
        for length in range(2, k):
            suffix = find(keys[length - 1], suffix * V + tokens[:, k - length])
        if np.any(suffix < 0):
            bad = " ".join(words[int(np.flatnonzero(suffix < 0)[0])])
            raise NgramFormatError(f"{path}: the {k}-gram '{bad}' has no stored suffix")
        key = suffix * V + tokens[:, 0]
        order = np.argsort(key, kind="stable")
        if np.any(np.diff(key[order]) == 0):
            raise NgramFormatError(f"{path}: a {k}-gram is listed twice")
        keys.append(key[order])
        probs.append(np.asarray(p)[order])
        backoffs.append(np.asarray(b)[order])
    try:
        return cls(names, keys, probs, backoffs, bos=index[BOS_WORD], eos=index[EOS_WORD], unk=unk,
                   info={"arpa": str(path)})
    except ValueError as error:
        raise NgramFormatError(f"{path}: {error}") from error


def _ids(words: list[list[str]], index: dict[str, int], path: Path, error: type) -> np.ndarray:
    try:
        return np.array([[index[w] for w in gram] for gram in words], dtype=np.int64).reshape(len(words), -1)
    except KeyError as missing:
        raise error(f"{path}: {missing.args[0]!r} is not in the vocabulary") from None


Section = tuple[np.ndarray, list[list[str]], np.ndarray]  # log10 probs, words, log10 backoffs


def _sections(lines: list[str], path: Path, error: type) -> list[Section]:
    """(log10 probs, words, log10 backoffs) of each ``\\k-grams:`` section, checked against the header."""
    starts = [i for i, line in enumerate(lines) if line.startswith("\\")]  # the section marks
    marks = [lines[i].strip() for i in starts]
    if "\\data\\" not in marks:
        raise error(f"{path} is not an ARPA file: no \\data\\ line")
    if "\\end\\" not in marks[marks.index("\\data\\"):]:
        raise error(f"{path}: no \\end\\ line (truncated file?)")
    first = marks.index("\\data\\")
    last = first + marks[first:].index("\\end\\")
    counts = _header(lines[starts[first] + 1:starts[first + 1]], starts[first] + 2, path, error)
    sections = []
    for j in range(first + 1, last):
        match = _SECTION.fullmatch(marks[j])
        if not match or int(match.group(1)) != len(sections) + 1 or int(match.group(1)) > len(counts):
            raise error(f"{path}:{starts[j] + 1}: unexpected line {marks[j][:60]!r}")
        k = len(sections) + 1
        sections.append(_section(lines[starts[j] + 1:starts[j + 1]], k, starts[j] + 2, path, error))
        if len(sections[-1][0]) != counts[k - 1]:
            raise error(f"{path}: the header announces {counts[k - 1]} {k}-grams, the file has "
                        f"{len(sections[-1][0])}")
    if not counts or len(sections) != len(counts):
        raise error(f"{path}: the header announces {len(counts)} n-gram lengths, the file has "
                    f"{len(sections)} sections")
    return sections


def _header(lines: list[str], first_line: int, path: Path, error: type) -> list[int]:
    """The n-gram counts of the ``ngram k=count`` lines."""
    counts: list[int] = []
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        match = _COUNT.fullmatch(line.strip())
        if not match:
            raise error(f"{path}:{number}: unexpected line in the \\data\\ header: {line[:60]!r}")
        if int(match.group(1)) != len(counts) + 1:
            raise error(f"{path}:{number}: expected the count of {len(counts) + 1}-grams")
        counts.append(int(match.group(2)))
    return counts


def _section(lines: list[str], k: int, first_line: int, path: Path, error: type) -> Section:
    """Parse the lines ``log10_prob w_1 … w_k [log10_backoff]`` of one section (blank lines skipped)."""
    numbers = [n for n, line in enumerate(lines, start=first_line) if line.strip()]
    rows = [line.split() for line in lines if line.strip()]
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero((widths != k + 1) & (widths != k + 2))
    if len(bad):
        raise error(f"{path}:{numbers[bad[0]]}: a {k}-gram line needs a log10 probability, {k} "
                    f"words and an optional backoff, got {widths[bad[0]]} fields")
    try:
        probs = np.array([row[0] for row in rows], dtype=np.float64)
        backoffs = np.array([row[k + 1] if len(row) == k + 2 else "0" for row in rows], dtype=np.float64)
    except ValueError:
        row = next(i for i, fields in enumerate(rows) if not _numbers(fields, k))
        raise error(f"{path}:{numbers[row]}: not a number in {' '.join(rows[row])[:60]!r}") from None
    return probs, [row[1:k + 1] for row in rows], backoffs


def _numbers(row: list[str], k: int) -> bool:
    try:
        [float(field) for field in (row[0], *row[k + 1:])]
    except ValueError:
        return False
    return True

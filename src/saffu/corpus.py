"""Reading, encoding and splitting corpora of documents.

A *document* is a string. Anywhere this library takes ``documents`` it accepts any iterable of
strings: a list in memory, or a :class:`Corpus` that reads text files lazily (one document per
file, or several per file split at a separator). :func:`encode_corpus` turns documents into
chunks of token ids ready for the model; :class:`TokenizedCorpus` keeps those chunks in memory
for several passes. :func:`split_files`, :func:`random_split` and :func:`shakespeare_split` make
deterministic train/dev/test splits by document.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

import numpy as np

from saffu.errors import InvalidParameterError
from saffu.tokenize import EOD, SOD, Tokenizer, character_batches, count_tokens

PathLike = str | os.PathLike[str]
Errors = Literal["strict", "replace"]

CHUNK_TOKENS = 1 << 22
"""Default size of an encoded chunk, in tokens. Every pass allocates its statistics once per
chunk (for the default config hundreds of MB, zeroed and merged), and the passes' per-token
work is batched inside a chunk, so larger chunks cost little memory and save that work:
4M tokens rather than 1M cut the CPU time of the default fit's passes by about a fifth
(bench/RESULTS.md, "Where the default fit's time goes")."""

BLANK_LINES = re.compile(r"\r?\n(?:[^\S\n]*\n)+")
"""Separator for documents delimited by one or more blank lines."""

_BLOCK_BYTES = 1 << 20
_LOOKAHEAD_CHARS = 1 << 16  # a separator match is final once this much text follows it
_GLOB_CHARACTERS = re.compile(r"[*?\[]")


# --- finding and reading files ----------------------------------------------------------------


def resolve_paths(source: PathLike | Iterable[PathLike], pattern: str = "*.txt") -> list[Path]:
    """The files that ``source`` names, in a deterministic order.

    ``source`` is a file, a directory (its files matching ``pattern``, e.g. ``"*.txt"`` or
    ``"**/*.txt"``), a glob pattern, or a list of these. Directories and glob patterns expand
    to sorted paths; a list keeps its own order.

    Raises:
        FileNotFoundError: a named path does not exist.
        ValueError: a directory or pattern matches no file, or the list is empty.
    """
    if isinstance(source, (str, os.PathLike)):
        return _expand(source, pattern)
    if isinstance(source, bytes):
        raise InvalidParameterError("paths must be str or os.PathLike, not bytes")
    paths = [path for item in source for path in _expand(item, pattern)]
    if not paths:
        raise InvalidParameterError("the list of corpus files is empty")
    return paths


def _expand(item: PathLike, pattern: str) -> list[Path]:
    if not isinstance(item, (str, os.PathLike)):
        raise InvalidParameterError(f"a corpus path must be str or os.PathLike, got {type(item).__name__}")
    path = Path(item)
    if path.is_dir():
        matches = sorted(p for p in path.glob(pattern) if p.is_file())
        if not matches:
            raise InvalidParameterError(f"directory {path} has no files matching {pattern!r}")
        return matches
    if path.is_file():
        return [path]
    if _GLOB_CHARACTERS.search(os.fspath(item)):
        matches = sorted(Path(p) for p in glob.glob(os.fspath(item), recursive=True)
                         if os.path.isfile(p))
        if not matches:
            raise InvalidParameterError(f"pattern {os.fspath(item)!r} matches no files")
        return matches
    if path.exists():
        raise InvalidParameterError(f"corpus path {os.fspath(item)!r} is not a regular file or a "
                                    "directory (a pipe or a device cannot be read twice)")
    raise FileNotFoundError(f"corpus path {os.fspath(item)!r} does not exist")


def read_file_documents(path: PathLike, *, separator: str | re.Pattern[str] | None = None,
                        errors: Errors = "strict", matched: list[Path] | None = None) -> Iterator[str]:
    """The documents of one UTF-8 text file, read lazily.

    With ``separator=None`` the whole file is one document. Otherwise the file is read in
    blocks and split where ``separator`` (a literal string, or a compiled regular expression
    such as :data:`BLANK_LINES`) occurs; the separators are dropped. The result equals
    splitting the whole text at once unless a single separator match is longer than 65,536
    characters. Documents with no non-whitespace character are skipped, and a leading
    byte-order mark is removed.

    Raises:
        ValueError: the file is not valid UTF-8 (with ``errors="strict"``); the message names
            the file and the byte offset. ``errors="replace"`` substitutes U+FFFD instead.

    ``matched``, if given, gets ``path`` appended when the separator occurred in the file.
    """
    path = Path(path)
    _check_errors(errors)
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    if separator is None:
        text = _decode_block(decoder, path.read_bytes(), path, 0, final=True)
        yield from _non_blank([text.removeprefix("\ufeff")])
        return
    regex = _separator_regex(separator)
    pending, offset, pieces = "", 0, 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK_BYTES):
            text = _decode_block(decoder, block, path, offset, final=False)
            pending = text.removeprefix("\ufeff") if offset == 0 else pending + text
            offset += len(block)
            documents, pending = _split_complete(regex, pending)
            pieces += len(documents)
            yield from _non_blank(documents)
    pending += _decode_block(decoder, b"", path, offset, final=True)
    documents = _split_complete(regex, pending, final=True)[0]
    if matched is not None and pieces + len(documents) > 1:
        matched.append(path)
    yield from _non_blank(documents)


def _check_errors(errors: str) -> None:
    if errors not in ("strict", "replace"):
        raise InvalidParameterError(f"errors must be 'strict' or 'replace', got {errors!r}")


def _separator_regex(separator: str | re.Pattern[str]) -> re.Pattern[str]:
    if isinstance(separator, re.Pattern):
        regex = separator
    elif isinstance(separator, str):
        regex = re.compile(re.escape(separator))
    else:
        raise InvalidParameterError(f"separator must be a str or re.Pattern, got {type(separator).__name__}")
    if regex.match(""):
        raise InvalidParameterError(f"separator {regex.pattern!r} matches the empty string")
    return regex


def _decode_block(decoder: codecs.IncrementalDecoder, block: bytes, path: Path, offset: int,
                  *, final: bool) -> str:
    """Decode the next ``block`` (which starts at byte ``offset`` of ``path``)."""
    buffered = len(decoder.getstate()[0])  # bytes of an incomplete character from before
    try:
        return decoder.decode(block, final=final)
    except UnicodeDecodeError as error:
        position = offset - buffered + error.start
        raise InvalidParameterError(f"{path}: invalid UTF-8 at byte offset {position} ({error.reason}); "
                                    "read it with errors='replace' (CLI: --errors replace) to "
                                    "substitute U+FFFD") from None


def _split_complete(regex: re.Pattern[str], text: str, *,
                    final: bool = False) -> tuple[list[str], str]:
    """Split ``text`` at separators. Unless ``final``, text to come could still change a match
    near the end of ``text`` (lengthen it, or start an earlier one), so matches that end within
    ``_LOOKAHEAD_CHARS`` of the end, and what follows them, are returned as the rest."""
    documents, start = [], 0
    for match in regex.finditer(text):
        if not final and match.end() + _LOOKAHEAD_CHARS >= len(text):
            break
        documents.append(text[start:match.start()])
        start = match.end()
    rest = text[start:]
    if final:
        return [*documents, rest], ""
    return documents, rest


def _non_blank(documents: Iterable[str]) -> Iterator[str]:
    return (document for document in documents if document and not document.isspace())


class Corpus:
    """Documents read lazily from UTF-8 text files; iterate over it as often as needed.

    Memory is bounded by the largest document (and a 1 MiB read block when splitting at a
    separator), never the whole corpus. Files are resolved once, at construction.

    Args:
        source: files, directories or glob patterns (see :func:`resolve_paths`).
        pattern: which files of a directory to read.
        separator: ``None`` (one document per file), a literal string such as ``"\\n\\n"``, or
            a compiled regular expression such as :data:`BLANK_LINES`.
        errors: ``"strict"`` (invalid UTF-8 is a ``ValueError``) or ``"replace"``.
    """

    def __init__(self, source: PathLike | Iterable[PathLike], *, pattern: str = "*.txt",
                 separator: str | re.Pattern[str] | None = None,
                 errors: Errors = "strict") -> None:
        _check_errors(errors)
        if separator is not None:
            _separator_regex(separator)
        self.paths = resolve_paths(source, pattern)
        self.separator = separator
        self.errors = errors

    def __iter__(self) -> Iterator[str]:
        matched: list[Path] = []
        for path in self.paths:
            yield from read_file_documents(path, separator=self.separator, errors=self.errors,
                                           matched=matched)
        if self.separator is not None and not matched:
            pattern = getattr(self.separator, "pattern", self.separator)
            warnings.warn(f"the separator {pattern!r} occurs in none of the {len(self.paths)} corpus "
                          "file(s): each file is one document", UserWarning, stacklevel=1)

    def __repr__(self) -> str:
        return f"Corpus({len(self.paths)} files, separator={self.separator!r})"


def read_documents(source: PathLike | Iterable[PathLike], *, pattern: str = "*.txt",
                   separator: str | re.Pattern[str] | None = None,
                   errors: Errors = "strict") -> Corpus:
    """The documents of files, directories or glob patterns, as a re-iterable :class:`Corpus`."""
    return Corpus(source, pattern=pattern, separator=separator, errors=errors)


def count_characters(documents: Iterable[str]) -> int:
    """Total number of characters (Unicode code points) in ``documents``."""
    return sum(len(document) for document in _checked(documents))


def _checked(documents: Iterable[str]) -> Iterator[str]:
    if isinstance(documents, (str, bytes)):
        raise InvalidParameterError("documents must be an iterable of strings, not a single string")
    for i, document in enumerate(documents):
        if not isinstance(document, str):
            raise InvalidParameterError(f"document {i} must be a str, got {type(document).__name__}")
        yield document


# --- encoding -----------------------------------------------------------------------------------


def encode_corpus(tokenizer: Tokenizer, documents: Iterable[str], *,
                  chunk_tokens: int = CHUNK_TOKENS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encode documents into chunks of whole documents, lazily.

    Each document becomes ``[<sod>] + tokenizer.encode(document) + [<eod>]``. A chunk is a pair
    ``(ids, pos)`` of ``int32`` arrays of shape (n,): token ids, and each token's position in
    its document (0 at ``<sod>``). A chunk holds at most ``chunk_tokens`` tokens unless a single
    document is longer (it then forms a chunk on its own).

    Raises:
        ValueError: ``documents`` is empty.
    """
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, (int, np.integer)) \
            or chunk_tokens < 1:
        raise InvalidParameterError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    pending: list[np.ndarray] = []
    n_pending = n_documents = 0
    for batch in character_batches(_checked(documents), chunk_tokens):
        for body in tokenizer.encode_batch(batch):
            n_documents += 1
            if pending and n_pending + len(body) + 2 > chunk_tokens:
                yield _pack(pending)
                pending, n_pending = [], 0
            pending.append(body)
            n_pending += len(body) + 2
    if n_documents == 0:
        raise InvalidParameterError("the corpus is empty: there are no documents to encode")
    yield _pack(pending)


def _pack(bodies: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, pos)`` of documents whose token ids are ``bodies``, each wrapped in sod/eod."""
    lengths = np.array([len(body) + 2 for body in bodies], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    ids = np.empty(int(lengths.sum()), dtype=np.int32)
    ids[starts] = SOD
    ids[starts + lengths - 1] = EOD
    inside = np.ones(len(ids), dtype=bool)
    inside[starts] = inside[starts + lengths - 1] = False
    ids[inside] = np.concatenate(bodies)
    pos = (np.arange(len(ids)) - np.repeat(starts, lengths)).astype(np.int32)
    return ids, pos


class TokenizedCorpus:
    """Encoded documents kept in memory as ``int32`` chunks, for several passes.

    Build it with :meth:`from_documents`; iterate over it (or :meth:`chunks`) to get the
    ``(ids, pos)`` chunks of :func:`encode_corpus`.

    Attributes:
        n_tokens: tokens in all chunks, ``<sod>`` and ``<eod>`` included.
        n_documents: documents (one ``<sod>`` each).
        n_targets: tokens a model predicts (all but the ``<sod>``), i.e. ``n_tokens − n_documents``.
        n_characters: characters of the documents' text (for bits per character).
    """

    def __init__(self, chunks: Iterable[tuple[np.ndarray, np.ndarray]], *,
                 n_characters: int = 0) -> None:
        self._chunks = [_checked_chunk(i, chunk) for i, chunk in enumerate(chunks)]
        self.n_tokens = sum(len(ids) for ids, _ in self._chunks)
        self.n_documents = sum(int(np.count_nonzero(pos == 0)) for _, pos in self._chunks)
        self.n_characters = int(n_characters)

    @classmethod
    def from_documents(cls, tokenizer: Tokenizer, documents: Iterable[str], *,
                       chunk_tokens: int = CHUNK_TOKENS) -> TokenizedCorpus:
        """Encode ``documents`` (read once) with ``tokenizer`` and count their characters."""
        counter = _CharacterCounter(documents)
        chunks = list(encode_corpus(tokenizer, counter, chunk_tokens=chunk_tokens))
        return cls(chunks, n_characters=counter.n_characters)

    @property
    def n_targets(self) -> int:
        return self.n_tokens - self.n_documents

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The ``(ids, pos)`` chunks, in order."""
        return iter(self._chunks)

    __iter__ = chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def token_counts(self, vocab_size: int) -> np.ndarray:
        """Occurrences of each token id: ``int64`` array of shape (vocab_size,)."""
        return count_tokens(self._chunks, vocab_size)

    def __repr__(self) -> str:
        return (f"TokenizedCorpus({self.n_documents} documents, {self.n_tokens} tokens, "
                f"{len(self._chunks)} chunks)")


class _CharacterCounter:
    """Passes documents through once, counting their characters."""

    def __init__(self, documents: Iterable[str]) -> None:
        self._documents = _checked(documents)
        self.n_characters = 0

    def __iter__(self) -> Iterator[str]:
        for document in self._documents:
            self.n_characters += len(document)
            yield document


def _checked_chunk(index: int, chunk: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    ids, pos = chunk
    if not (isinstance(ids, np.ndarray) and isinstance(pos, np.ndarray)
            and ids.dtype == np.int32 and pos.dtype == np.int32
            and ids.ndim == 1 and ids.shape == pos.shape):
        raise InvalidParameterError(f"chunk {index} must be a pair of int32 arrays of one shape (n,)")
    if len(pos) and pos[0] != 0:
        raise InvalidParameterError(f"chunk {index} does not start at a document start (pos[0] != 0)")
    return ids, pos


# --- splits -------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class Split(Generic[T]):
    """Train, dev and test parts of a corpus (files or documents)."""

    train: tuple[T, ...]
    dev: tuple[T, ...]
    test: tuple[T, ...]


def split_files(source: PathLike | Iterable[PathLike], *, test: Iterable[PathLike] = (),
                dev: Iterable[PathLike] = (), pattern: str = "*.txt") -> Split[Path]:
    """Split the files of ``source`` by name: ``test`` and ``dev`` list file names (or paths),
    every other file is train. Each part keeps the order of :func:`resolve_paths`.

    Raises:
        ValueError: a listed file is not in ``source``, a file is listed twice, or no train
            file is left.
    """
    paths = resolve_paths(source, pattern)
    index_of = {path.name: i for i, path in enumerate(paths)}
    assignment: dict[int, str] = {}
    for part, listed in (("test", test), ("dev", dev)):
        for item in _as_list(listed):
            name = Path(item).name
            if name not in index_of:
                raise InvalidParameterError(f"{part} file {name!r} is not in the corpus")
            if index_of[name] in assignment:
                raise InvalidParameterError(f"file {name!r} is listed twice")
            assignment[index_of[name]] = part
    if len(assignment) == len(paths):
        raise InvalidParameterError("no files are left for the train split")
    return _assign(paths, assignment)


def _assign(items: Sequence[T], assignment: dict[int, str]) -> Split[T]:
    """Split ``items`` by ``assignment`` (index → "dev" or "test"; the rest is train)."""
    parts: dict[str, list[T]] = {"train": [], "dev": [], "test": []}
    for i, item in enumerate(items):
        parts[assignment.get(i, "train")].append(item)
    return Split(tuple(parts["train"]), tuple(parts["dev"]), tuple(parts["test"]))


def _as_list(items: PathLike | Iterable[PathLike]) -> list[PathLike]:
    return [items] if isinstance(items, (str, os.PathLike)) else list(items)


def random_split(items: Sequence[T], *, dev: float = 0.1, test: float = 0.1,
                 seed: int = 0) -> Split[T]:
    """Split ``items`` (paths or document strings) at random, reproducibly.

    Items are ordered by a SHA-256 hash of ``seed`` and the item (a path's file name, so the
    split does not depend on where the corpus lives); the first ``round(test·n)`` are test,
    the next ``round(dev·n)`` dev, the rest train. Each part keeps the order of ``items``.
    The result is the same in every process, platform and NumPy version.
    """
    items = list(items)
    for name, fraction in (("dev", dev), ("test", test)):
        if not 0 <= fraction < 1:
            raise InvalidParameterError(f"{name} fraction must be in [0, 1), got {fraction!r}")
    n_test, n_dev = round(test * len(items)), round(dev * len(items))
    if n_test + n_dev >= len(items):
        raise InvalidParameterError(f"no items are left for the train split ({len(items)} items, "
                                    f"dev={dev}, test={test})")
    order = sorted(range(len(items)), key=lambda i: (_split_key(seed, items[i]), i))
    assignment = {i: "test" for i in order[:n_test]}
    assignment.update((i, "dev") for i in order[n_test:n_test + n_dev])
    return _assign(items, assignment)


def _split_key(seed: int, item: object) -> bytes:
    if isinstance(item, os.PathLike):
        key = Path(item).name
    elif isinstance(item, str):
        key = item
    else:
        raise InvalidParameterError(f"random_split takes paths or strings, got {type(item).__name__}")
    return hashlib.sha256(f"{seed}\0{key}".encode("utf-8", "surrogatepass")).digest()


SHAKESPEARE_PATTERN = "*_gut.txt"
SHAKESPEARE_TEST = ("hamlet_gut.txt", "tempest_gut.txt", "sonnets_gut.txt")
SHAKESPEARE_DEV = ("macbeth_gut.txt", "twelfth_night_gut.txt")


def shakespeare_split(root: PathLike) -> Split[Path]:
    """The fixed split of the Shakespeare corpus (``shared/data/README.md``).

    test: hamlet, tempest, sonnets; dev: macbeth, twelfth_night; train: every other
    ``*_gut.txt`` file of ``root``. Paths are sorted by name within each part.
    """
    return split_files(root, test=SHAKESPEARE_TEST, dev=SHAKESPEARE_DEV,
                       pattern=SHAKESPEARE_PATTERN)

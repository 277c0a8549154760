"""Tokenizers: byte-level BPE (default), characters, and words.

Every tokenizer maps text to ``int32`` token ids and shares four special tokens with fixed ids:
``<pad>`` = ``PAD`` = 0, ``<unk>`` = ``UNK`` = 1, ``<sod>`` = ``SOD`` = 2 (start of document)
and ``<eod>`` = ``EOD`` = 3 (end of document). ``encode`` never emits ``<pad>``,
``<sod>`` or ``<eod>``: the document delimiters are added by :func:`saffu.corpus.encode_corpus`,
and text that happens to contain the string ``"<eod>"`` is encoded as ordinary text.
``decode`` drops ``<pad>``, ``<sod>`` and ``<eod>``.

Tokenizers follow the scikit-learn pattern: construct with options, then ``fit``::

    tokenizer = BPETokenizer(vocab_size=4096).fit(documents)
    tokenizer = make_tokenizer("word", vocab_size=8000).fit(documents)
    tokenizer = CharTokenizer.train(documents)          # construct and fit in one call

Round trips: ``decode(encode(text)) == text`` holds exactly for :class:`BPETokenizer` and for
:class:`CharTokenizer` (with its default byte fallback) on any text; :class:`WordTokenizer`
drops whitespace and maps rare words to ``<unk>``, so it is not an exact round trip.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from saffu import kernels
from saffu._io import atomic_write_text
from saffu.errors import InvalidParameterError, NotFittedError

PAD, UNK, SOD, EOD = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<sod>", "<eod>")
N_SPECIAL = len(SPECIAL_TOKENS)

FORMAT = "saffu-tokenizer"
FORMAT_VERSION = 1


class Tokenizer(ABC):
    """Base class: text ⇄ ``int32`` token ids, with JSON persistence.

    Subclasses set ``kind`` (the ``"type"`` field of the saved file) and implement
    ``_learn``/``_adopt``, ``encode``, ``decode``, the vocabulary accessors and ``_options``
    (their constructor arguments). What ``_learn`` returns is saved as JSON; a subclass whose
    learned vocabulary is not plain JSON overrides ``_vocabulary_to_json``/``_from_json``.
    """

    kind: ClassVar[str]
    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}
    _learned: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Tokenizer._registry[cls.kind] = cls

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, documents: Iterable[str]) -> Tokenizer:
        """Learn the vocabulary from ``documents`` (an iterable of strings, read once); returns self."""
        checked = _CheckedDocuments(documents)
        learned = self._learn(checked)
        if checked.n_documents == 0:
            raise InvalidParameterError("cannot fit a tokenizer on an empty corpus (no documents)")
        self._adopt(learned)
        return self

    @classmethod
    def train(cls, documents: Iterable[str], **options: Any) -> Tokenizer:
        """Construct with ``options`` and fit on ``documents`` in one call."""
        return cls(**options).fit(documents)

    @abstractmethod
    def _learn(self, documents: Iterable[str]) -> Any:
        """What ``fit`` learns from ``documents``, in the form :meth:`_adopt` takes."""

    @abstractmethod
    def _adopt(self, learned: Any) -> None:
        """Install a learned vocabulary (from :meth:`_learn` or a saved file)."""

    @property
    def is_fitted(self) -> bool:
        return self._learned is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(documents) first")

    # --- encoding --------------------------------------------------------------------------

    @abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``: ``int32`` array of shape (n_tokens,), no special tokens."""

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]``; subclasses batch this where the library allows."""
        return [self.encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of token ids; ``<pad>``, ``<sod>`` and ``<eod>`` are dropped."""

    # --- vocabulary ------------------------------------------------------------------------

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id``."""

    @abstractmethod
    def token_to_id(self, token: str) -> int:
        """The id of vocabulary entry ``token``; ``KeyError`` if there is none."""

    # --- persistence -----------------------------------------------------------------------

    @abstractmethod
    def _options(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serializable."""

    def _vocabulary_to_json(self) -> Any:
        return self._learned

    @classmethod
    def _vocabulary_from_json(cls, data: Any) -> Any:
        if not isinstance(data, list):
            raise InvalidParameterError(f"vocabulary must be a list, got {type(data).__name__}")
        return data

    def to_json(self) -> str:
        """The tokenizer as a JSON document (what :meth:`save` writes)."""
        self._require_fitted()
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "type": self.kind,
                    "options": self._options(), "vocabulary": self._vocabulary_to_json()}
        return json.dumps(document, ensure_ascii=False)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, *, source: str = "tokenizer JSON") -> Tokenizer:
        """Rebuild a tokenizer from :meth:`to_json` output, dispatching on its ``"type"`` field."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidParameterError(f"{source}: not valid JSON ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise InvalidParameterError(f"{source}: not a saffu tokenizer file (no \"format\": \"{FORMAT}\")")
        if document.get("format_version") != FORMAT_VERSION:
            raise InvalidParameterError(f"{source}: unsupported tokenizer format_version "
                                        f"{document.get('format_version')!r} (expected {FORMAT_VERSION})")
        kind = document.get("type")
        subclass = Tokenizer._registry.get(kind)
        if subclass is None:
            raise InvalidParameterError(f"{source}: unknown tokenizer type {kind!r} "
                                        f"(known: {', '.join(sorted(Tokenizer._registry))})")
        if not issubclass(subclass, cls):
            raise InvalidParameterError(f"{source}: holds a {subclass.__name__}, not a {cls.__name__}")
        try:
            tokenizer = subclass(**document["options"])
            tokenizer._adopt(subclass._vocabulary_from_json(document["vocabulary"]))
            return tokenizer
        except Exception as error:  # missing keys, wrong types, or HF rejecting its own JSON
            raise InvalidParameterError(f"{source}: corrupt {kind} tokenizer ({type(error).__name__}: "
                                        f"{error})") from error

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by :meth:`save` (any subclass, by its ``"type"`` field)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"no tokenizer file at {path}") from None
        except UnicodeDecodeError as error:
            raise InvalidParameterError(f"{path}: not a saffu tokenizer file ({error})") from None
        return cls.from_json(text, source=str(path))

    def __repr__(self) -> str:
        size = self.vocab_size if self.is_fitted else "unfitted"
        return f"{type(self).__name__}(vocab_size={size})"


class _CheckedDocuments:
    """Iterates ``documents`` once, checking that each is a ``str`` and counting them."""

    def __init__(self, documents: Iterable[str]) -> None:
        if isinstance(documents, (str, bytes)):
            raise InvalidParameterError("documents must be an iterable of strings, not a single string")
        self._documents = documents
        self.n_documents = 0

    def __iter__(self) -> Iterator[str]:
        for document in self._documents:
            _check_text(document, f"document {self.n_documents}")
            self.n_documents += 1
            yield document


def _check_text(text: object, what: str = "text") -> None:
    if not isinstance(text, str):
        raise InvalidParameterError(f"{what} must be a str, got {type(text).__name__}")


def _check_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """``ids`` as a 1-D integer array, every id in [0, vocab_size)."""
    array = np.asarray(ids)
    if array.size == 0:
        return array.astype(np.int64).reshape(0)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InvalidParameterError(f"token ids must be a 1-D sequence of integers, got {array.dtype} "
                                    f"with shape {array.shape}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InvalidParameterError(f"token id {bad} is out of range for a vocabulary of {vocab_size}")
    return array


def _check_int(name: str, value: int | None, minimum: int, *, optional: bool = False) -> None:
    """``value`` must be an int ≥ ``minimum`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be at least {minimum}, got {value}")


# --- byte-level BPE ---------------------------------------------------------------------------


class BPETokenizer(Tokenizer):
    """Byte-level BPE trained with Hugging Face ``tokenizers``.

    Every byte has a token, so there are no unknown tokens and ``decode(encode(text)) == text``
    for any text. No normalization and no prefix space are applied.

    Args:
        vocab_size: target vocabulary size, special tokens and the 256 bytes included (the
            vocabulary is smaller when the corpus runs out of merges).
        min_frequency: a pair must occur at least this often to be merged.
    """

    kind = "bpe"

    def __init__(self, vocab_size: int = 4096, min_frequency: int = 2) -> None:
        _check_int("vocab_size", vocab_size, N_SPECIAL + 256)
        _check_int("min_frequency", min_frequency, 1)
        self.vocab_size_target = int(vocab_size)
        self.min_frequency = int(min_frequency)

    def _learn(self, documents: Iterable[str]) -> HFTokenizer:
        hf = HFTokenizer(models.BPE())
        # The trainer gets the documents already split into byte-level words (compiled, below):
        # it only splits them at the spaces between words, and learns what it would learn from
        # the documents themselves with the byte-level pre-tokenizer (tests/test_pretokenize.py).
        hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        hf.train_from_iterator(_byte_level_words(documents), trainer=self._trainer())
        hf.pre_tokenizer = _byte_level()
        hf.decoder = decoders.ByteLevel()
        return hf

    def _trainer(self) -> trainers.BpeTrainer:
        return trainers.BpeTrainer(
            vocab_size=self.vocab_size_target, min_frequency=self.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def _adopt(self, hf: HFTokenizer) -> None:
        for token_id, token in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(token) != token_id:
                raise InvalidParameterError(f"special token {token} must have id {token_id}, "
                                            f"has {hf.token_to_id(token)}")
        hf.encode_special_tokens = True  # a literal "<eod>" in the text is just text
        self._hf = self._learned = hf
        self._splits_bytelevel_pieces = _splits_bytelevel_pieces(hf)

    def encode(self, text: str) -> np.ndarray:
        self._require_fitted()
        _check_text(text)
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text. A tokenizer that pre-tokenizes as saffu trains it (byte-level,
        no normalizer) splits the texts into pieces in compiled code and runs the merges once per
        distinct piece (the same ids as Hugging Face's own encoding, several times faster)."""
        self._require_fitted()
        texts = list(texts)
        for i, text in enumerate(texts):
            _check_text(text, f"texts[{i}]")
        if not self._splits_bytelevel_pieces:
            encodings = self._hf.encode_batch_fast(texts, add_special_tokens=False)
            return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]
        return [ids for batch in character_batches(texts, CHARACTERS_PER_BATCH)
                for ids in self._encode_by_pieces(batch)]

    def _encode_by_pieces(self, texts: list[str]) -> list[np.ndarray]:
        joined, _, doc_starts, pieces = _pieces_of(texts)
        bounds = pieces.bounds
        distinct = [joined[a:b] for a, b in zip(bounds[pieces.first].tolist(),
                                                 bounds[pieces.first + 1].tolist(), strict=True)]
        encodings = self._hf.encode_batch_fast(distinct, add_special_tokens=False)
        lengths = np.fromiter((len(encoding.ids) for encoding in encodings), np.int64, len(distinct))
        flat = np.fromiter(itertools.chain.from_iterable(encoding.ids for encoding in encodings),
                           np.int32, int(lengths.sum()))
        piece_lengths = lengths[pieces.ids]  # tokens of each piece
        token_starts = np.zeros(len(piece_lengths) + 1, np.int64)
        np.cumsum(piece_lengths, out=token_starts[1:])
        shift = _exclusive_cumsum(lengths)[pieces.ids] - token_starts[:-1]
        tokens = flat[np.repeat(shift, piece_lengths) + np.arange(token_starts[-1])]
        doc_tokens = token_starts[np.searchsorted(bounds, doc_starts)].tolist()
        return [tokens[a:b] for a, b in itertools.pairwise(doc_tokens)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        self._require_fitted()
        array = _check_ids(ids, self.vocab_size)
        return self._hf.decode(array.tolist(), skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        self._require_fitted()
        return self._hf.get_vocab_size()

    def id_to_token(self, token_id: int) -> str:
        self._require_fitted()
        token = self._hf.id_to_token(int(token_id)) if 0 <= token_id < self.vocab_size else None
        if token is None:
            raise KeyError(f"no token with id {token_id} (vocabulary of {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int:
        self._require_fitted()
        token_id = self._hf.token_to_id(token)
        if token_id is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return token_id

    def _options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size_target, "min_frequency": self.min_frequency}

    def _vocabulary_to_json(self) -> Any:
        return json.loads(self._hf.to_str())

    @classmethod
    def _vocabulary_from_json(cls, data: Any) -> HFTokenizer:
        return HFTokenizer.from_str(json.dumps(data))


# --- byte-level pieces ------------------------------------------------------------------------
# Hugging Face's byte-level pre-tokenizer splits text by the GPT-2 regex, then maps each piece's
# UTF-8 bytes to printable characters. saffu.kernels.bytelevel_pieces does the split in compiled
# code; the class of each character under the regex (letter, number, space, other) is asked of
# the pre-tokenizer itself, once per character, so the split agrees with it on any text.

_BYTE_LEVEL_OPTIONS = {"add_prefix_space": False, "use_regex": True}
CHARACTERS_PER_BATCH = 1 << 22  # texts split and encoded together (transient memory ~24 B/char)
PIECES_PER_WORD_BATCH = 1 << 16  # words per string handed to the trainer (its threads split them)


def _byte_level() -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(**_BYTE_LEVEL_OPTIONS)


def _splits_bytelevel_pieces(hf: HFTokenizer) -> bool:
    """Whether ``hf`` encodes a text as the concatenation of its pieces (:func:`_pieces_of`)
    encoded one by one: saffu's byte-level pre-tokenizer, no normalizer, no added tokens but the
    special ones (which ``encode_special_tokens`` leaves inside the text), no truncation or
    padding, and merges without dropout."""
    document = json.loads(hf.to_str())
    pre_tokenizer = dict(document.get("pre_tokenizer") or {})
    pre_tokenizer.pop("trim_offsets", None)  # offsets only, not ids
    return (document.get("normalizer") is None
            and pre_tokenizer == {"type": "ByteLevel", **_BYTE_LEVEL_OPTIONS}
            and all(token.get("special") for token in document.get("added_tokens", []))
            and document.get("truncation") is None and document.get("padding") is None
            and not (document.get("model") or {}).get("dropout"))


class _CharacterClasses:
    """The class of each code point under the pre-tokenizer's regex (``saffu.kernels.LETTER``,
    ``NUMBER``, ``SPACE``, ``OTHER``), asked of Hugging Face's pre-tokenizer for each code point
    the first time a text holds it, and kept for the process."""

    UNKNOWN = 255

    def __init__(self) -> None:
        self._table = np.full(0x110000, self.UNKNOWN, dtype=np.uint8)
        self._probe = _byte_level()

    def of(self, code_points: np.ndarray) -> np.ndarray:
        """(n,) uint8: the class of each of ``code_points`` (n,) uint32."""
        classes = self._table[code_points]
        unknown = classes == self.UNKNOWN
        if unknown.any():
            for code_point in np.unique(code_points[unknown]).tolist():
                self._table[code_point] = self._class_of(chr(code_point))
            classes = self._table[code_points]
        return classes

    def _class_of(self, char: str) -> int:
        # A letter continues a run of letters ("a" + char is one piece), and so on; a space
        # continues none of the three runs.
        for cls, lead in ((kernels.LETTER, "a"), (kernels.NUMBER, "1"), (kernels.OTHER, "!")):
            if len(self._probe.pre_tokenize_str(lead + char)) == 1:
                return cls
        return kernels.SPACE


@functools.cache
def _character_classes() -> _CharacterClasses:
    return _CharacterClasses()


class _SplitTexts(NamedTuple):
    """Texts joined and split into the byte-level pre-tokenizer's pieces (:func:`_pieces_of`)."""

    joined: str
    code_points: np.ndarray  # (n,) uint32 of ``joined``
    doc_starts: np.ndarray  # (d + 1,) int64: text j is code points [doc_starts[j], doc_starts[j + 1])
    pieces: kernels.Pieces


def _pieces_of(texts: Sequence[str]) -> _SplitTexts:
    """The texts joined, their code points and offsets, and the pieces of each text."""
    joined = "".join(texts)
    code_points = _code_points(joined)
    doc_starts = np.zeros(len(texts) + 1, np.int64)
    np.cumsum([len(text) for text in texts], out=doc_starts[1:])
    classes = _character_classes().of(code_points)
    return _SplitTexts(joined, code_points, doc_starts,
                       kernels.bytelevel_pieces(code_points, classes, doc_starts))


def _byte_level_words(documents: Iterable[str]) -> Iterator[str]:
    """The byte-level words of ``documents`` (what the pre-tokenizer makes of them: each piece's
    UTF-8 bytes as printable characters), separated by spaces, in strings of
    ``PIECES_PER_WORD_BATCH`` words; documents are read in batches of about ``CHARACTERS_PER_BATCH``
    characters."""
    for batch in character_batches(documents, CHARACTERS_PER_BATCH):
        joined, code_points, _, pieces = _pieces_of(batch)
        raw = np.frombuffer(joined.encode("utf-8"), dtype=np.uint8)
        byte_bounds = pieces.bounds
        if len(raw) != len(joined):  # not all ASCII: piece bounds in bytes
            byte_bounds = np.zeros(len(joined) + 1, np.int64)
            np.cumsum(_utf8_lengths(code_points), out=byte_bounds[1:])
            byte_bounds = byte_bounds[pieces.bounds]
        n_words = len(pieces.ids)
        # Each word's bytes move right by the number of words before it; a space follows each.
        words = np.full(len(raw) + n_words, ord(" "), dtype="<u4")
        words[np.arange(len(raw)) + np.repeat(np.arange(n_words), np.diff(byte_bounds))] = \
            _BYTE_CHARACTERS[raw]
        cuts = [0, *(byte_bounds[PIECES_PER_WORD_BATCH::PIECES_PER_WORD_BATCH]
                     + np.arange(PIECES_PER_WORD_BATCH, n_words + 1, PIECES_PER_WORD_BATCH)).tolist()]
        if cuts[-1] != len(words):
            cuts.append(len(words))
        for a, b in itertools.pairwise(cuts):
            yield words[a:b].tobytes().decode("utf-32-le")


def _byte_characters() -> np.ndarray:
    """(256,) uint32: the printable character byte-level BPE writes for each byte (GPT-2's
    table: printable Latin-1 bytes stand for themselves, the others for U+0100 onwards)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = np.empty(256, dtype="<u4")
    table[printable] = printable
    others = sorted(set(range(256)) - set(printable))
    table[others] = 256 + np.arange(len(others))
    return table


_BYTE_CHARACTERS = _byte_characters()


def character_batches(documents: Iterable[str], max_characters: int) -> Iterator[list[str]]:
    """Consecutive lists of documents of about ``max_characters`` characters (at least one)."""
    batch: list[str] = []
    size = 0
    for document in documents:
        batch.append(document)
        size += len(document)
        if size >= max_characters:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --- vocabulary-list tokenizers (char, word) --------------------------------------------------


class _ListTokenizer(Tokenizer):
    """A tokenizer whose vocabulary is an explicit list of strings, specials first."""

    def _set_tokens(self, tokens: list[str]) -> None:
        if tokens[:N_SPECIAL] != list(SPECIAL_TOKENS):
            raise InvalidParameterError(f"vocabulary must start with {list(SPECIAL_TOKENS)}")
        if len(set(tokens)) != len(tokens):
            raise InvalidParameterError("vocabulary has duplicate tokens")
        self._tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        self._require_fitted()
        return len(self._tokens)

    def id_to_token(self, token_id: int) -> str:
        self._require_fitted()
        if not 0 <= token_id < len(self._tokens):
            raise KeyError(f"no token with id {token_id} (vocabulary of {len(self._tokens)})")
        return self._tokens[token_id]

    def token_to_id(self, token: str) -> int:
        self._require_fitted()
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None


def _most_frequent(counts: Counter, vocab_size: int | None, min_count: int,
                   reserved: int) -> list[str]:
    """Entries with count ≥ min_count, most frequent first (ties by the entry), at most
    ``vocab_size − reserved`` of them; entries that collide with a special token are left out."""
    kept = [(-n, entry) for entry, n in counts.items()
            if n >= min_count and entry not in SPECIAL_TOKENS]
    kept.sort()
    limit = None if vocab_size is None else vocab_size - reserved
    return [entry for _, entry in kept[:limit]]


def _byte_token(value: int) -> str:
    return f"<0x{value:02X}>"


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as a ``uint32`` array."""
    try:
        return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    except UnicodeEncodeError as error:
        raise InvalidParameterError(f"text has a lone surrogate at index {error.start}; it is not valid "
                                    "Unicode and cannot be tokenized") from None


def _utf8_lengths(code_points: np.ndarray) -> np.ndarray:
    """Bytes of the UTF-8 encoding of each code point."""
    lengths = (code_points >= 0x80).astype(np.int64)
    lengths += 1
    lengths += code_points >= 0x800
    lengths += code_points >= 0x10000
    return lengths


def _exclusive_cumsum(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class CharTokenizer(_ListTokenizer):
    """One token per Unicode character seen in training, with a byte fallback.

    Vocabulary: the 4 special tokens, the kept characters in code-point order, then (with
    ``byte_fallback``) the 256 byte tokens ``<0x00>`` … ``<0xFF>``. A character outside the
    vocabulary is encoded as the byte tokens of its UTF-8 encoding, so ``decode(encode(text))
    == text`` for any text. Without ``byte_fallback`` it becomes ``<unk>``, which decodes to
    U+FFFD.

    Args:
        vocab_size: cap on the vocabulary size (specials and byte tokens included); ``None``
            keeps every character with ``min_count`` or more occurrences.
        min_count: characters seen fewer times are left out.
        byte_fallback: encode unseen characters as UTF-8 byte tokens instead of ``<unk>``.
    """

    kind = "char"

    def __init__(self, vocab_size: int | None = None, min_count: int = 1,
                 byte_fallback: bool = True) -> None:
        if not isinstance(byte_fallback, bool):
            raise InvalidParameterError(f"byte_fallback must be true or false, got {byte_fallback!r}")
        _check_int("vocab_size", vocab_size, N_SPECIAL + 256 * byte_fallback, optional=True)
        _check_int("min_count", min_count, 1)
        self.vocab_size_limit = vocab_size
        self.min_count = int(min_count)
        self.byte_fallback = byte_fallback

    def _learn(self, documents: Iterable[str]) -> list[str]:
        counts: Counter = Counter()
        for document in documents:
            counts.update(document)
        reserved = N_SPECIAL + 256 * self.byte_fallback
        return sorted(_most_frequent(counts, self.vocab_size_limit, self.min_count, reserved))

    def _adopt(self, chars: list[str]) -> None:
        if any(len(char) != 1 for char in chars):
            raise InvalidParameterError("a character vocabulary entry must be a single character")
        tokens = [*SPECIAL_TOKENS, *chars]
        if self.byte_fallback:
            tokens += [_byte_token(value) for value in range(256)]
        self._set_tokens(tokens)
        self._chars = np.array([ord(char) for char in chars], dtype=np.uint32)
        if np.any(np.diff(self._chars.astype(np.int64)) <= 0):
            raise InvalidParameterError("character vocabulary must be sorted by code point")
        self._byte_base = N_SPECIAL + len(chars)
        special = [b""] * N_SPECIAL  # decode drops <pad>, <sod>, <eod> ...
        special[UNK] = "\ufffd".encode()  # ... and shows <unk> as the replacement character
        self._token_bytes = (special + [char.encode() for char in chars]
                             + [bytes([value]) for value in range(256 * self.byte_fallback)])
        self._learned = chars

    def encode(self, text: str) -> np.ndarray:
        self._require_fitted()
        _check_text(text)
        code_points = _code_points(text)
        index = np.searchsorted(self._chars, code_points)
        known = np.zeros(len(code_points), dtype=bool)
        if len(self._chars):
            known = self._chars[np.minimum(index, len(self._chars) - 1)] == code_points
        ids = (index + N_SPECIAL).astype(np.int32)
        if known.all():
            return ids
        if not self.byte_fallback:
            ids[~known] = UNK
            return ids
        return self._with_byte_fallback(text, code_points, ids, known)

    def _with_byte_fallback(self, text: str, code_points: np.ndarray, ids: np.ndarray,
                            known: np.ndarray) -> np.ndarray:
        """Replace each unknown character's id by the byte tokens of its UTF-8 encoding."""
        utf8_lengths = _utf8_lengths(code_points)
        out_lengths = np.where(known, 1, utf8_lengths)
        out_starts = _exclusive_cumsum(out_lengths)
        out = np.empty(int(out_lengths.sum()), dtype=np.int32)
        out[out_starts[known]] = ids[known]
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)
        owner = np.repeat(np.arange(len(code_points)), utf8_lengths)  # character of each byte
        offset = np.arange(len(raw)) - _exclusive_cumsum(utf8_lengths)[owner]
        fallback = ~known[owner]
        out[out_starts[owner[fallback]] + offset[fallback]] = self._byte_base + raw[fallback]
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        self._require_fitted()
        array = _check_ids(ids, self.vocab_size)
        raw = b"".join(map(self._token_bytes.__getitem__, array.tolist()))
        return raw.decode("utf-8", errors="replace")

    def _options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size_limit, "min_count": self.min_count,
                "byte_fallback": self.byte_fallback}


DEFAULT_WORD_PATTERN = r"\w+|[^\w\s]"
"""Words (runs of letters, digits and underscores) and single punctuation marks."""

_SPACE_BEFORE_CLOSING = re.compile(r" ([.,;:!?)\]}])")
_SPACE_AFTER_OPENING = re.compile(r"([(\[{]) ")
_SPACES_AROUND_APOSTROPHE = re.compile(r"(?<=\w) ' (?=\w)")


class _UnknownIsUNK(dict):
    """Token → id map whose missing entries read as ``UNK`` (lookups stay in C via ``map``)."""

    def __missing__(self, key: str) -> int:
        return UNK


class WordTokenizer(_ListTokenizer):
    """Words and punctuation marks found by a regular expression; rare words are ``<unk>``.

    Vocabulary: the 4 special tokens, then the most frequent words (ties in string order).
    Decoding joins tokens with single spaces, without a space before closing punctuation,
    after an opening bracket, or around an apostrophe inside a word ("o ' er" → "o'er"). It is
    **not** an exact round trip: whitespace is normalized and rare words come back as
    ``<unk>``.

    Args:
        vocab_size: cap on the vocabulary size, specials included (``None``: no cap).
        min_count: words seen fewer times are left out.
        pattern: regular expression of one token (default :data:`DEFAULT_WORD_PATTERN`).
    """

    kind = "word"

    def __init__(self, vocab_size: int | None = 8000, min_count: int = 1,
                 pattern: str = DEFAULT_WORD_PATTERN) -> None:
        _check_int("vocab_size", vocab_size, N_SPECIAL + 1, optional=True)
        _check_int("min_count", min_count, 1)
        try:
            self._regex = re.compile(pattern)
        except (re.error, TypeError) as error:
            raise InvalidParameterError(f"invalid word pattern {pattern!r}: {error}") from None
        if self._regex.match(""):
            raise InvalidParameterError(f"word pattern {pattern!r} matches the empty string")
        if self._regex.groups:
            raise InvalidParameterError(f"word pattern {pattern!r} has capturing groups; use (?:...)")
        self.vocab_size_limit = vocab_size
        self.min_count = int(min_count)
        self.pattern = pattern

    def _learn(self, documents: Iterable[str]) -> list[str]:
        counts: Counter = Counter()
        for document in documents:
            counts.update(self._regex.findall(document))
        return _most_frequent(counts, self.vocab_size_limit, self.min_count, N_SPECIAL)

    def _adopt(self, words: list[str]) -> None:
        self._set_tokens([*SPECIAL_TOKENS, *words])
        self._lookup = _UnknownIsUNK(self._ids)
        for token_id in (PAD, SOD, EOD):  # special tokens are never produced by encode
            del self._lookup[SPECIAL_TOKENS[token_id]]
        self._learned = words

    def encode(self, text: str) -> np.ndarray:
        self._require_fitted()
        _check_text(text)
        words = self._regex.findall(text)
        return np.fromiter(map(self._lookup.__getitem__, words), dtype=np.int32,
                           count=len(words))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        self._require_fitted()
        array = _check_ids(ids, self.vocab_size)
        tokens = [self._tokens[i] for i in array.tolist() if i not in (PAD, SOD, EOD)]
        text = " ".join(tokens)
        text = _SPACE_BEFORE_CLOSING.sub(r"\1", text)
        text = _SPACE_AFTER_OPENING.sub(r"\1", text)
        return _SPACES_AROUND_APOSTROPHE.sub("'", text)

    def _options(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size_limit, "min_count": self.min_count,
                "pattern": self.pattern}


# --- factory and counts -----------------------------------------------------------------------

TOKENIZER_KINDS = ("bpe", "char", "word")


def make_tokenizer(kind: str, **options: Any) -> Tokenizer:
    """An unfitted tokenizer of ``kind`` ("bpe", "char" or "word") built with ``options``.

    ``vocab_size`` is understood by all three (a target for BPE, a cap for char and word).
    """
    if kind not in TOKENIZER_KINDS:
        raise InvalidParameterError(f"unknown tokenizer kind {kind!r}; choose one of "
                                    f"{', '.join(TOKENIZER_KINDS)}")
    return Tokenizer._registry[kind](**options)


def count_tokens(chunks: Iterable[np.ndarray | tuple[np.ndarray, np.ndarray]],
                 vocab_size: int) -> np.ndarray:
    """Occurrences of each token id over ``chunks``: ``int64`` array of shape (vocab_size,).

    ``chunks`` yields id arrays or ``(ids, pos)`` pairs, as :func:`saffu.corpus.encode_corpus`
    and :class:`saffu.corpus.TokenizedCorpus` do.
    """
    _check_int("vocab_size", vocab_size, 1)
    counts = np.zeros(vocab_size, dtype=np.int64)
    for chunk in chunks:
        ids = _check_ids(chunk[0] if isinstance(chunk, tuple) else chunk, vocab_size)
        counts += np.bincount(ids, minlength=vocab_size)
    return counts

"""NgramModel: an n-gram language model in backoff form (ARPA's), scored on token ids."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saffu._io import atomic_write_bytes, check_output_file
from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError
from saffu.ngram._arpa import read_arpa, write_arpa
from saffu.ngram._data import (
    BOS_WORD,
    EOS_WORD,
    UNK_WORD,
    Documents,
    NgramFormatError,
    Stream,
    as_stream,
    check_int,
    find,
)
from saffu.ngram._mix import scores_from_log_proba
from saffu.ngram._modified import KENLM_FALLBACK, Estimate, estimate_modified_kneser_ney
from saffu.tokenize import EOD, N_SPECIAL, SOD, UNK, Tokenizer

FORMAT = "saffu-ngram"
FORMAT_VERSION = 1
LN10 = math.log(10.0)


def default_vocabulary(vocab_size: int) -> tuple[str, ...]:
    """Names of saffu token ids in ARPA files: ``<pad>``, ``<unk>``, ``<s>``, ``</s>``, then "4", "5", …"""
    return ("<pad>", UNK_WORD, BOS_WORD, EOS_WORD, *map(str, range(N_SPECIAL, vocab_size)))


class NgramModel:
    """An n-gram language model in backoff form over token ids ``[0, vocab_size)``.

    For a context c (at most ``order − 1`` tokens, oldest first) and a token w,
    log p(w | c) = log p(c w) if the n-gram c w is stored, else log b(c) + log p(w | c'), where
    c' drops the oldest token of c and the backoff weight b(c) is 1 for a context not stored.
    Every id has a unigram entry. Build one with :meth:`fit` (modified Kneser-Ney on saffu
    token ids), :meth:`fit_words` (on word strings, KenLM's layout), :meth:`from_arpa` or
    :meth:`load`.

    Attributes:
        order: the longest n-gram.
        vocabulary: (vocab_size,) the token string of each id (its name in ARPA files).
        bos, eos: the ids that open and close every document (``<s>``, ``</s>``).
        unk: the id that words outside the vocabulary map to (``<unk>``), or None.
        tokenizer: the saffu tokenizer whose ids the model scores, or None; with one, the
            scoring methods also take documents as text, and :meth:`save` keeps it.
        discounts: (order, 3) the D_1, D_2, D_3+ of each n-gram length, or None (e.g. loaded
            from ARPA).
        info: free-form facts about the fit (JSON-serializable).
    """

    def __init__(self, vocabulary: Sequence[str], keys: list[np.ndarray], log10_prob: list[np.ndarray],
                 log10_backoff: list[np.ndarray], *, bos: int, eos: int, unk: int | None,
                 discounts: np.ndarray | None = None, info: dict[str, Any] | None = None,
                 tokenizer: Tokenizer | None = None) -> None:
        """Wrap checked tables (see :class:`saffu.ngram._modified.Estimate` for their layout)."""
        self.vocabulary = tuple(vocabulary)
        self.vocab_size = len(self.vocabulary)
        self.bos, self.eos, self.unk = bos, eos, unk
        self.keys, self.log10_prob, self.log10_backoff = list(keys), list(log10_prob), list(log10_backoff)
        self.discounts = discounts
        self.info = dict(info or {})
        self.tokenizer = tokenizer
        _check_tables(self)
        if tokenizer is not None and tokenizer.vocab_size != self.vocab_size:
            raise InvalidParameterError(f"the tokenizer has {tokenizer.vocab_size} ids, the model "
                                        f"{self.vocab_size}")

    @classmethod
    def _from_estimate(cls, estimate: Estimate, vocabulary: Sequence[str], stream: Stream, *,
                       bos: int, eos: int, unk: int, tokenizer: Tokenizer | None = None) -> NgramModel:
        info = {"estimator": "interpolated modified Kneser-Ney (lmplz)",
                "train_tokens": len(stream.ids), "train_documents": int(np.count_nonzero(stream.pos == 0)),
                "discount_fallback_orders": estimate.fallback_orders}
        return cls(vocabulary, estimate.keys, estimate.log10_prob, estimate.log10_backoff, bos=bos,
                   eos=eos, unk=unk, discounts=estimate.discounts, info=info, tokenizer=tokenizer)

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def n_grams(self) -> list[int]:
        """Number of stored n-grams of each length 1..order."""
        return [len(k) for k in self.keys]

    # --- fitting -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, docs: Documents | Iterable[str], vocab_size: int | None = None, order: int = 3, *,
            tokenizer: Tokenizer | None = None, vocabulary: Sequence[str] | None = None,
            discounts: Sequence[Sequence[float]] | None = None,
            discount_fallback: Sequence[float] | None = KENLM_FALLBACK) -> NgramModel:
        """Interpolated modified Kneser-Ney on saffu token ids (``saffu.ngram._modified``).

        Args:
            docs: a TokenizedCorpus, a list of (n_i,) int arrays ``[<sod>] + ids + [<eod>]``,
                or (with ``tokenizer``) documents as text.
            vocab_size: number of token ids (default: the tokenizer's).
            order: the longest n-gram (3: a trigram model).
            tokenizer: the fitted tokenizer of the ids, kept with the model (optional).
            vocabulary: the token string of each id, for ARPA files (default
                :func:`default_vocabulary`, ids as decimal strings).
            discounts: (order, 3) D_1, D_2, D_3+ per length instead of estimating them.
            discount_fallback: discounts for a length whose counts of counts give none
                (lmplz's ``--discount_fallback`` values by default); None raises ValueError.
        """
        if vocab_size is None and tokenizer is None:
            raise InvalidParameterError("fit needs vocab_size or a tokenizer")
        vocab_size = check_int(tokenizer.vocab_size if vocab_size is None else vocab_size,
                               "vocab_size", N_SPECIAL)
        order = check_int(order, "order", 1)
        names = default_vocabulary(vocab_size) if vocabulary is None else tuple(vocabulary)
        if len(names) != vocab_size:
            raise InvalidParameterError(f"vocabulary has {len(names)} entries, vocab_size is {vocab_size}")
        _check_discounts(discounts, discount_fallback, order)
        stream = as_stream(_encoded(docs, tokenizer), vocab_size, SOD, EOD, "train_docs")
        estimate = estimate_modified_kneser_ney(stream, vocab_size, order, SOD, discounts=discounts,
                                                discount_fallback=discount_fallback)
        return cls._from_estimate(estimate, names, stream, bos=SOD, eos=EOD, unk=UNK, tokenizer=tokenizer)

    @classmethod
    def fit_words(cls, documents: Iterable[str | Sequence[str]], order: int = 3, *,
                  discounts: Sequence[Sequence[float]] | None = None,
                  discount_fallback: Sequence[float] | None = KENLM_FALLBACK) -> NgramModel:
        """Modified Kneser-Ney on word strings, as ``lmplz -o order`` on one document per line.

        ``documents``: strings (tokens separated by whitespace) or sequences of tokens; ``<s>``
        and ``</s>`` are added around each. The vocabulary is ``<unk>``, ``<s>``, ``</s>``, then
        the training words in order of first appearance (KenLM's), so p(w) spreads γ() over the
        V − 1 entries other than ``<s>``, ``<unk>`` included.
        """
        order = check_int(order, "order", 1)
        _check_discounts(discounts, discount_fallback, order)
        tokenized = [_words(doc, i) for i, doc in enumerate(documents)]
        index = {UNK_WORD: 0, BOS_WORD: 1, EOS_WORD: 2}
        for words in tokenized:
            for word in words:
                index.setdefault(word, len(index))
        model_vocab = list(index)
        stream = _word_stream(tokenized, index, 0, "documents")
        estimate = estimate_modified_kneser_ney(stream, len(model_vocab), order, 1,
                                                discounts=discounts,
                                                discount_fallback=discount_fallback)
        return cls._from_estimate(estimate, model_vocab, stream, bos=1, eos=2, unk=0)

    # --- scoring -------------------------------------------------------------------------------

    def query(self, docs: Documents | Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """log10 p and the length of the n-gram matched for every predicted token (KenLM's query).

        Args:
            docs: a TokenizedCorpus, a list of (n_i,) int arrays ``[bos] + ids + [eos]``, or
                documents as text (encoded by the model's tokenizer).

        Returns:
            (m,) float64 log10 probabilities and (m,) int64 matched lengths (1..order), for
            every token but each document's first, documents in order.
        """
        return self._query(self._stream(docs))

    def _stream(self, docs: Documents | Iterable[str]) -> Stream:
        return as_stream(_encoded(docs, self.tokenizer), self.vocab_size, self.bos, self.eos, "docs")

    def _query(self, stream: Stream) -> tuple[np.ndarray, np.ndarray]:
        V = self.vocab_size
        targets = stream.targets
        depth = stream.pos[targets]  # tokens of context available in the document
        token = stream.ids[targets]
        log10_p = self.log10_prob[0][token]
        matched = np.ones(len(targets), dtype=np.int64)
        backoffs = np.zeros((self.order, len(targets)))  # row j: log10 b(context of j tokens)
        word_index, context_index = token, np.full(len(targets), -1, dtype=np.int64)
        for k in range(1, self.order):
            inside = depth >= k
            previous = stream.ids[np.where(inside, targets - k, 0)]
            context_index = np.where(inside, previous if k == 1 else context_index * V + previous, -1)
            if k > 1:
                context_index = np.where(inside, find(self.keys[k - 1], context_index), -1)
            backoffs[k] = np.where(context_index >= 0, self.log10_backoff[k - 1][context_index], 0.0)
            word_index = np.where(inside, find(self.keys[k], word_index * V + previous), -1)
            hit = word_index >= 0
            log10_p[hit] = self.log10_prob[k][word_index[hit]]
            matched[hit] = k + 1
        used = np.arange(self.order)[:, None] >= matched  # back off from contexts of ≥ matched tokens
        return log10_p + np.where(used, backoffs, 0.0).sum(axis=0), matched

    def token_log_proba(self, docs: Documents | Iterable[str]) -> np.ndarray:
        """Natural log-probability (m,) float64 of every predicted token of ``docs``.

        The order is that of ``SaffuModel.target_log_proba`` over the chunks of a corpus (all
        tokens but each ``<sod>``), so the two can be interpolated token by token.
        """
        return self.query(docs)[0] * LN10

    def encode_words(self, documents: Iterable[str | Sequence[str]]) -> list[np.ndarray]:
        """Word documents as id arrays ``[<s>] + ids + [</s>]``; unknown words become ``<unk>``."""
        index = {word: i for i, word in enumerate(self.vocabulary)}
        tokenized = [_words(doc, i) for i, doc in enumerate(documents)]
        stream = _word_stream(tokenized, index, self.unk, "documents", bos=self.bos, eos=self.eos)
        return np.split(stream.ids, np.flatnonzero(stream.pos == 0)[1:])

    def score(self, docs: Documents | Iterable[str], *, n_characters: int | None = None) -> dict[str, Any]:
        """Perplexity and bits per character, as ``SaffuModel.score``.

        Args:
            docs: a TokenizedCorpus (it knows its characters), a list of id arrays, or
                documents as text (encoded by the model's tokenizer).
            n_characters: characters of the documents' text, when ``docs`` does not say.

        Returns:
            :func:`saffu.ngram.scores_from_log_proba` of :meth:`token_log_proba`.
        """
        docs = _encoded(docs, self.tokenizer)
        if n_characters is None and isinstance(docs, TokenizedCorpus) and docs.n_characters:
            n_characters = docs.n_characters
        stream = self._stream(docs)
        return scores_from_log_proba(self._query(stream)[0] * LN10, n_characters=n_characters,
                                     n_documents=int(np.count_nonzero(stream.pos == 0)))

    # --- files ---------------------------------------------------------------------------------

    def to_arpa(self, path: str | os.PathLike) -> None:
        """Write the model as an ARPA file (atomically): KenLM, SRILM and their decoders read it."""
        write_arpa(self, path)

    @classmethod
    def from_arpa(cls, path: str | os.PathLike, vocabulary: Sequence[str] | None = None) -> NgramModel:
        """Read an ARPA file (e.g. from KenLM's ``lmplz``); raises :class:`NgramFormatError`.

        Args:
            path: the ARPA text file.
            vocabulary: the token string of each id of the model to build (e.g. a tokenizer's,
                to score its ids); default: the unigrams in file order. Vocabulary entries the
                file lacks are scored as its ``<unk>``.
        """
        return read_arpa(cls, path, vocabulary)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to one safetensors file (tables) with JSON metadata, atomically."""
        from safetensors.numpy import save

        arrays = self._arrays()
        meta = {"vocabulary": list(self.vocabulary), "bos": self.bos, "eos": self.eos,
                "unk": self.unk, "order": self.order, "info": self.info,
                "has_discounts": self.discounts is not None,
                "tokenizer": None if self.tokenizer is None else self.tokenizer.to_json()}
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                    "model": json.dumps(meta), "sha256": _digest(arrays)}
        path = check_output_file(path, _is_ngram_file, "saffu n-gram model")
        atomic_write_bytes(path, save(arrays, metadata=metadata))
        return path

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for k in range(self.order):
            arrays[f"keys.{k + 1}"] = np.ascontiguousarray(self.keys[k])
            arrays[f"log10_prob.{k + 1}"] = np.ascontiguousarray(self.log10_prob[k])
            arrays[f"log10_backoff.{k + 1}"] = np.ascontiguousarray(self.log10_backoff[k])
        if self.discounts is not None:
            arrays["discounts"] = np.ascontiguousarray(self.discounts, dtype=np.float64)
        return arrays

    @classmethod
    def load(cls, path: str | os.PathLike) -> NgramModel:
        """Read a file written by :meth:`save`; raises :class:`NgramFormatError` if invalid."""
        from safetensors import safe_open
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise NgramFormatError(f"n-gram model file {path} does not exist")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
            arrays = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for bad headers
            raise NgramFormatError(f"{path} is not a readable safetensors file: {error}") from error
        if metadata.get("format") != FORMAT:
            raise NgramFormatError(f"{path} is not a saffu n-gram model")
        if metadata.get("format_version") != str(FORMAT_VERSION):
            raise NgramFormatError(f"{path} has n-gram format version {metadata.get('format_version')}; "
                                   f"this saffu reads version {FORMAT_VERSION}")
        if metadata.get("sha256") != _digest(arrays):
            raise NgramFormatError(f"{path} is corrupted (checksum mismatch)")
        try:
            meta = json.loads(metadata["model"])
            tables = [[arrays[f"{name}.{k}"] for k in range(1, meta["order"] + 1)]
                      for name in ("keys", "log10_prob", "log10_backoff")]
            return cls(meta["vocabulary"], *tables, bos=meta["bos"], eos=meta["eos"], unk=meta["unk"],
                       discounts=arrays["discounts"] if meta["has_discounts"] else None,
                       info=meta["info"], tokenizer=_tokenizer(meta["tokenizer"], path))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise NgramFormatError(f"{path} lacks a part of the model: {error!r}") from error
        except ValueError as error:
            raise NgramFormatError(f"{path}: {error}") from error

    def __repr__(self) -> str:
        return f"NgramModel(order={self.order}, vocab_size={self.vocab_size}, n_grams={self.n_grams})"


def _encoded(docs: Documents | Iterable[str], tokenizer: Tokenizer | None) -> Documents:
    """``docs`` unchanged if token ids (a TokenizedCorpus or a list of id arrays), else encoded text."""
    if isinstance(docs, TokenizedCorpus) or (isinstance(docs, (list, tuple))
                                             and not all(isinstance(d, str) for d in docs)):
        return docs  # as_stream checks it
    if isinstance(docs, (str, bytes, np.ndarray)) or not isinstance(docs, Iterable):
        raise InvalidParameterError(f"docs must be a TokenizedCorpus, a list of 1-D integer arrays (one per "
                                    f"document) or an iterable of strings, got {type(docs).__name__}")
    if tokenizer is None:
        raise InvalidParameterError("documents as text need a model with a tokenizer; pass token ids (a "
                                    "TokenizedCorpus or a list of int arrays)")
    return TokenizedCorpus.from_documents(tokenizer, docs)


def _is_ngram_file(path: Path) -> bool:
    """Whether ``path`` is an n-gram model file written by :meth:`NgramModel.save`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except Exception:  # not a safetensors file at all
        return False


def _tokenizer(text: str | None, path: Path) -> Tokenizer | None:
    return None if text is None else Tokenizer.from_json(text, source=f"{path} (tokenizer)")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _check_tables(model: NgramModel) -> None:
    """Raise ValueError unless the tables form a consistent backoff model."""
    V = model.vocab_size
    if V < 2 or len(set(model.vocabulary)) != V:
        raise InvalidParameterError("the vocabulary must hold at least 2 distinct tokens")
    for name, value in (("bos", model.bos), ("eos", model.eos), ("unk", model.unk)):
        if value is None and name == "unk":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < V:
            raise InvalidParameterError(f"{name} must be a token id in [0, {V}), got {value!r}")
    tables = (model.keys, model.log10_prob, model.log10_backoff)
    if not model.keys or len({len(t) for t in tables}) != 1:
        raise InvalidParameterError("keys, log10_prob and log10_backoff must hold one array per "
                                    "n-gram length")
    for k, (keys, prob, backoff) in enumerate(zip(*tables, strict=True), start=1):
        if not all(isinstance(a, np.ndarray) and a.ndim == 1 for a in (keys, prob, backoff)) \
                or not len(keys) == len(prob) == len(backoff):
            raise InvalidParameterError(f"the {k}-gram tables must be 1-D arrays of one length")
        if keys.dtype != np.int64 or prob.dtype != np.float64 or backoff.dtype != np.float64:
            raise InvalidParameterError(f"the {k}-gram keys must be int64 and the log10 values float64")
        if k == 1 and not np.array_equal(keys, np.arange(V)):
            raise InvalidParameterError(f"the unigram keys must be every id 0..{V - 1}")
        lower = len(model.keys[k - 2]) if k > 1 else 1
        if len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= lower * V):
            raise InvalidParameterError(f"the {k}-gram keys must be ascending, unique and in range")
        if np.isnan(prob).any() or np.isnan(backoff).any() or np.any(prob > 0):
            raise InvalidParameterError(f"the {k}-gram log10 values must be log10 probabilities (≤ "
                                        f"0, no NaN)")


def _check_discounts(discounts: Sequence[Sequence[float]] | None, fallback: Sequence[float] | None,
                     order: int) -> None:
    if discounts is not None:
        array = np.asarray(discounts, dtype=np.float64)
        if array.shape != (order, 3):
            raise InvalidParameterError(f"discounts must have shape ({order}, 3), got {array.shape}")
        _check_discount_row(array, "discounts")
    if fallback is not None:
        array = np.asarray(fallback, dtype=np.float64)
        if array.shape != (3,):
            raise InvalidParameterError(f"discount_fallback must be 3 numbers D1, D2, D3+, got "
                                        f"shape {array.shape}")
        _check_discount_row(array[None], "discount_fallback")


def _check_discount_row(array: np.ndarray, name: str) -> None:
    limits = np.array([1.0, 2.0, 3.0])
    if not np.all((array > 0) & (array <= limits)):
        raise InvalidParameterError(f"{name}: D_j must be in (0, j] for j = 1, 2, 3, got {array.tolist()}")


def _words(doc: str | Sequence[str], i: int) -> list[str]:
    if isinstance(doc, str):
        return doc.split()
    if not isinstance(doc, Sequence) or not all(isinstance(w, str) for w in doc):
        raise InvalidParameterError(f"documents[{i}] must be a string or a sequence of strings")
    if any(not w or any(c.isspace() for c in w) for w in doc):
        raise InvalidParameterError(f"documents[{i}] has an empty token or one with whitespace")
    return list(doc)


def _word_stream(tokenized: list[list[str]], index: dict[str, int], unk: int | None, name: str, *,
                 bos: int = 1, eos: int = 2) -> Stream:
    """Word documents as a stream ``[<s>] + ids + [</s>]`` each; unknown words map to ``unk``."""
    if not tokenized:
        raise InvalidParameterError(f"{name} has no documents")
    pieces = []
    for i, words in enumerate(tokenized):
        if BOS_WORD in words or EOS_WORD in words:
            raise InvalidParameterError(f"{name}[{i}] holds {BOS_WORD} or {EOS_WORD}; they are added around "
                             "each document")
        ids = [index.get(w, unk) for w in words]
        if None in ids:
            raise InvalidParameterError(f"{name}[{i}] has a word outside the vocabulary and the model has "
                             f"no {UNK_WORD}")
        pieces.append(np.array([bos, *ids, eos], dtype=np.int64))
    lengths = np.array([len(p) for p in pieces])
    ids = np.concatenate(pieces)
    return Stream(ids, np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths))

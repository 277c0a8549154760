"""The compiled byte-level pre-tokenizer: every backend matches the reference, the pieces are
Hugging Face's, and BPE encoding and training through it equal Hugging Face's own."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models

from conftest import tiny_documents
from saffu import kernels, tokenize
from saffu._backend import backend_module
from saffu.errors import InvalidParameterError
from saffu.tokenize import (
    BPETokenizer,
    Tokenizer,
    _byte_level,
    _byte_level_words,
    _pieces_of,
)

REFERENCE = backend_module("numpy")

# Characters of every class and the pattern's corner cases: contractions, the optional space,
# runs of spaces before a word, Unicode letters, numbers, spaces and marks.
ALPHABET = ("a", "b", "s", "t", "r", "e", "v", "m", "l", "d", "Z", "0", "7", " ", "  ", "\n", "\t",
            "\r", "'", "!", ".", "<", "é", "ß", "中", "٣", "Ⅻ", "½", "\u00a0", "\u2028", "\u3000",
            "\x85", "\u0301", "😀", "\x00", "’", "'s", "'ll", "'re", "'ve", "'d", "'m", "'t")
HARD_TEXTS = ["", " ", "  ", "a  b", "a \n b", "it's they'll we've I'm 'd 'S", "!'s", "x \t\n",
              "  leading", "trailing  ", "\n\n\nx", "1,000.50 ½ Ⅻ ٣", "e\u0301 café", "😀 👍🏽",
              "literal <eod> and <pad>", "a\u00a0b\u2028c\u3000d\x85e", "中文 日本語", "\x00\x7f"]

texts = st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join)


def _pieces_by_backend(backend: str, documents: list[str]) -> kernels.Pieces:
    _, code_points, doc_starts, _ = _pieces_of(documents)  # also fills the class table
    classes = tokenize._character_classes().of(code_points)
    n = len(code_points)
    bounds, ids, first, counts = (np.zeros(n + 1, np.int64), np.zeros(n, np.int32),
                                  np.zeros(n, np.int32), np.zeros(2, np.int64))
    backend_module(backend).bytelevel_pieces(code_points, classes, doc_starts, bounds, ids, first,
                                             counts, 1)
    pieces, distinct = counts.tolist()
    return kernels.Pieces(bounds[:pieces + 1], ids[:pieces], first[:distinct])


def _hf_pieces(text: str) -> list[str]:
    return [piece for piece, _ in _byte_level().pre_tokenize_str(text)]


def _mapped(text: str) -> str:
    """``text`` as the byte-level pre-tokenizer writes it (its bytes as printable characters)."""
    return "".join(piece for piece, _ in _byte_level().pre_tokenize_str(text))


@pytest.mark.parametrize("documents", [HARD_TEXTS, [""], [], ["one document only"],
                                       ["the same", "the same", " the same"]])
def test_every_backend_matches_the_reference(backend, documents):
    expected = _pieces_by_backend("numpy", documents)
    actual = _pieces_by_backend(backend, documents)
    for name in kernels.Pieces._fields:
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)


@settings(max_examples=300, deadline=None)
@given(documents=st.lists(st.one_of(texts, st.text(max_size=30)), min_size=1, max_size=4))
def test_the_pieces_are_hugging_faces(documents):
    joined, _, doc_starts, pieces = _pieces_of(documents)
    bounds = pieces.bounds.tolist()
    ours = [_mapped(joined[a:b]) for a, b in itertools.pairwise(bounds)]
    assert ours == [piece for document in documents for piece in _hf_pieces(document)]
    assert set(doc_starts.tolist()) <= set(bounds)  # no piece crosses a document's end
    distinct = [joined[bounds[p]:bounds[p + 1]] for p in pieces.first.tolist()]
    assert len(set(distinct)) == len(distinct)
    assert [distinct[i] for i in pieces.ids.tolist()] == [joined[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer(vocab_size=400).fit([*tiny_documents(20), *HARD_TEXTS])


def _hugging_face_ids(tokenizer: BPETokenizer, texts: list[str]) -> list[list[int]]:
    return [encoding.ids for encoding in tokenizer._hf.encode_batch(texts, add_special_tokens=False)]


def test_encoding_equals_hugging_faces_on_hard_texts(bpe, monkeypatch):
    expected = _hugging_face_ids(bpe, HARD_TEXTS)
    assert [ids.tolist() for ids in bpe.encode_batch(HARD_TEXTS)] == expected
    assert [bpe.encode(text).tolist() for text in HARD_TEXTS] == expected
    monkeypatch.setattr("saffu.tokenize.CHARACTERS_PER_BATCH", 10)  # texts in several batches
    assert [ids.tolist() for ids in bpe.encode_batch(HARD_TEXTS)] == expected


@settings(max_examples=200, deadline=None)
@given(documents=st.lists(st.one_of(texts, st.text(max_size=30)), max_size=5))
def test_encoding_equals_hugging_faces_on_any_text(bpe, documents):
    encoded = bpe.encode_batch(documents)
    assert all(ids.dtype == np.int32 for ids in encoded)
    assert [ids.tolist() for ids in encoded] == _hugging_face_ids(bpe, documents)


def _hugging_face_trained(documents: list[str], vocab_size: int) -> dict:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer, hf.decoder = _byte_level(), decoders.ByteLevel()
    hf.train_from_iterator(documents, trainer=BPETokenizer(vocab_size=vocab_size)._trainer())
    return json.loads(hf.to_str())


@pytest.mark.parametrize("vocab_size", [300, 1000])
def test_training_equals_hugging_faces_on_the_documents_themselves(vocab_size, monkeypatch):
    documents = [*tiny_documents(30), *HARD_TEXTS, "ünïcödé wörds " * 5]
    monkeypatch.setattr("saffu.tokenize.PIECES_PER_WORD_BATCH", 7)  # several strings per batch
    monkeypatch.setattr("saffu.tokenize.CHARACTERS_PER_BATCH", 500)  # several batches
    ours = json.loads(BPETokenizer(vocab_size=vocab_size).fit(documents)._hf.to_str())
    assert ours == _hugging_face_trained(documents, vocab_size)


def test_the_byte_level_words_are_the_pre_tokenizers():
    documents = ["it's  a \n test", "", "ünï 😀"]
    words = " ".join(_byte_level_words(documents)).split()
    assert words == [piece for document in documents for piece in _hf_pieces(document)]


@pytest.mark.parametrize("change", [
    {"pre_tokenizer": {"type": "Whitespace"}},
    {"normalizer": {"type": "Lowercase"}},
    {"truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}},
])
def test_a_tokenizer_that_encodes_otherwise_is_encoded_by_hugging_face(bpe, change):
    document = json.loads(bpe.to_json())
    document["vocabulary"].update(change)
    other = Tokenizer.from_json(json.dumps(document))
    assert not other._splits_bytelevel_pieces and bpe._splits_bytelevel_pieces
    assert [ids.tolist() for ids in other.encode_batch(HARD_TEXTS)] == \
        _hugging_face_ids(other, HARD_TEXTS)


def test_bpe_rejects_lone_surrogates(bpe):
    with pytest.raises(InvalidParameterError, match="surrogate"):
        bpe.encode("a\ud800b")


@pytest.mark.parametrize("doc_starts, classes, message", [
    ([0, 2], [0, 0, 0], "doc_starts must ascend from 0 to 3"),
    ([1, 3], [0, 0, 0], "doc_starts must ascend"),
    ([0, 2, 1, 3], [0, 0, 0], "doc_starts must ascend"),
    ([], [0, 0, 0], "doc_starts must ascend"),
    ([0, 3], [0, 4, 0], "classes must be 0-3"),
])
def test_bad_kernel_inputs_are_clear_errors(doc_starts, classes, message):
    with pytest.raises(InvalidParameterError, match=message):
        kernels.bytelevel_pieces(np.array([97, 98, 99], np.uint32), np.array(classes, np.uint8),
                                 np.array(doc_starts, np.int64))

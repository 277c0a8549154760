"""Tokenizers: special ids, exact round trips, batching, persistence, bad input, counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_documents
from saffu.corpus import read_documents
from saffu.datasets import sample
from saffu.tokenize import (
    EOD,
    PAD,
    SOD,
    UNK,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    count_tokens,
    make_tokenizer,
)

HARD_TEXTS = [
    "",
    " leading and trailing spaces  ",
    "\n\n  indented\r\nwindows line\tand tab",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "CJK 日本語のテキスト 中文 한국어",
    "combining e\u0301 a\u0300\u0316 and precomposed é",
    "RTL עברית العربية",
    "literal specials <pad><unk><sod><eod> stay text",
    "\x00 control \x7f and the last code point \U0010ffff",
]


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return [*tiny_documents(20), "Ünïcödé wörds, ñ and ß — “quotes”."]


@pytest.fixture(scope="module")
def fitted(documents) -> dict[str, Tokenizer]:
    return {"bpe": BPETokenizer(vocab_size=300).fit(documents),
            "char": CharTokenizer().fit(documents),
            "word": WordTokenizer(vocab_size=40).fit(documents)}


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_special_tokens_have_fixed_ids(fitted, kind):
    tokenizer = fitted[kind]
    for token_id, token in enumerate(["<pad>", "<unk>", "<sod>", "<eod>"]):
        assert tokenizer.token_to_id(token) == token_id == (PAD, UNK, SOD, EOD)[token_id]
        assert tokenizer.id_to_token(token_id) == token


@pytest.mark.parametrize("kind", ["bpe", "char"])
@pytest.mark.parametrize("text", HARD_TEXTS)
def test_exact_round_trip_on_hard_texts(fitted, kind, text):
    ids = fitted[kind].encode(text)
    assert ids.dtype == np.int32
    assert fitted[kind].decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_bpe_round_trip_on_any_text(fitted, text):
    ids = fitted["bpe"].encode(text)
    assert not np.isin(ids, [PAD, UNK, SOD, EOD]).any()
    assert fitted["bpe"].decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_char_round_trip_on_any_text(fitted, text):
    ids = fitted["char"].encode(text)
    assert not np.isin(ids, [PAD, UNK, SOD, EOD]).any()
    assert fitted["char"].decode(ids) == text


def test_bpe_round_trip_on_a_whole_play():
    data = sample()
    tokenizer = BPETokenizer(vocab_size=1024).fit(read_documents(data.train))
    play = data.dev[0].read_text(encoding="utf-8")
    ids = tokenizer.encode(play)
    assert tokenizer.vocab_size == 1024
    assert len(ids) < len(play) / 2  # merges were learned and are used
    assert tokenizer.decode(ids) == play


def test_char_tokenizer_uses_one_id_per_seen_character(fitted):
    tokenizer = fitted["char"]
    ids = tokenizer.encode("the ß")
    assert len(ids) == 5
    assert [tokenizer.id_to_token(i) for i in ids] == list("the ß")


def test_char_without_byte_fallback_maps_unseen_characters_to_unk(documents):
    tokenizer = CharTokenizer(byte_fallback=False).fit(documents)
    ids = tokenizer.encode("the 😀日")
    assert ids.tolist()[-2:] == [UNK, UNK]
    assert tokenizer.vocab_size == 4 + len(set("".join(documents)))
    assert tokenizer.decode(ids) == "the \ufffd\ufffd"


def test_char_byte_fallback_spells_unseen_characters_in_utf8_bytes(fitted):
    tokenizer = fitted["char"]
    ids = tokenizer.encode("😀")
    assert [tokenizer.id_to_token(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]


def test_char_rejects_lone_surrogates(fitted):
    with pytest.raises(ValueError, match="surrogate"):
        fitted["char"].encode("a\ud800b")


def test_word_tokenizer_splits_words_and_punctuation_and_marks_unknowns(fitted):
    tokenizer = fitted["word"]
    ids = tokenizer.encode("the king, o zebra!")
    tokens = [tokenizer.id_to_token(i) for i in ids]
    assert tokens == ["the", "king", ",", "o", "<unk>", "!"]
    assert tokenizer.decode(ids) == "the king, o <unk>!"


def test_word_decode_joins_sensibly():
    tokenizer = WordTokenizer(vocab_size=None).fit(["Good morrow, my lord! (aside) to't o'er [x]"])
    text = "Good morrow, my lord! (aside) to't o'er [x]"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode(tokenizer.encode("my  lord ,\nmy lord")) == "my lord, my lord"


def test_word_vocabulary_keeps_the_most_frequent_words():
    docs = ["b b b a a c", "c c c c d"]
    tokenizer = WordTokenizer(vocab_size=6).fit(docs)
    assert [tokenizer.id_to_token(i) for i in range(4, 6)] == ["c", "b"]
    assert WordTokenizer(vocab_size=None, min_count=2).fit(docs).vocab_size == 4 + 3


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_decode_drops_structural_tokens(fitted, kind):
    tokenizer = fitted[kind]
    ids = tokenizer.encode("the king")
    framed = np.concatenate([[SOD], ids, [EOD, PAD]]).astype(np.int32)
    assert tokenizer.decode(framed) == tokenizer.decode(ids)


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_encode_batch_matches_encode(fitted, documents, kind):
    tokenizer = fitted[kind]
    texts = [*documents, *HARD_TEXTS]
    batch = tokenizer.encode_batch(texts)
    assert len(batch) == len(texts)
    for text, ids in zip(texts, batch, strict=True):
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, tokenizer.encode(text))


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_save_and_load_round_trip(fitted, documents, tmp_path, kind):
    tokenizer = fitted[kind]
    path = tmp_path / f"{kind}.json"
    tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert type(loaded) is type(tokenizer)
    assert loaded.vocab_size == tokenizer.vocab_size
    assert [loaded.id_to_token(i) for i in range(loaded.vocab_size)] == \
        [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    for text in [*documents, *HARD_TEXTS]:
        np.testing.assert_array_equal(loaded.encode(text), tokenizer.encode(text))
    assert loaded.to_json() == tokenizer.to_json()
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_load_checks_the_requested_class(fitted, tmp_path):
    fitted["bpe"].save(tmp_path / "bpe.json")
    assert isinstance(BPETokenizer.load(tmp_path / "bpe.json"), BPETokenizer)
    with pytest.raises(ValueError, match="not a CharTokenizer"):
        CharTokenizer.load(tmp_path / "bpe.json")


def _corrupt_variants(good: dict) -> dict[str, str]:
    truncated_hf = {**good, "vocabulary": {"model": {"type": "BPE"}}}
    return {
        "truncated": json.dumps(good)[:100],
        "not an object": "[1, 2, 3]",
        "wrong format": json.dumps({**good, "format": "something-else"}),
        "unknown type": json.dumps({**good, "type": "sentencepiece"}),
        "future version": json.dumps({**good, "format_version": 99}),
        "missing state": json.dumps({k: v for k, v in good.items() if k != "vocabulary"}),
        "bad hf state": json.dumps(truncated_hf),
        "bad options": json.dumps({**good, "options": {"vocab_size": "large"}}),
    }


@pytest.mark.parametrize("variant", ["truncated", "not an object", "wrong format", "unknown type",
                                     "future version", "missing state", "bad hf state",
                                     "bad options"])
def test_corrupt_tokenizer_file_is_a_clear_error(fitted, tmp_path, variant):
    path = tmp_path / "tokenizer.json"
    path.write_text(_corrupt_variants(json.loads(fitted["bpe"].to_json()))[variant])
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        Tokenizer.load(path)


def test_corrupt_word_vocabulary_is_a_clear_error(fitted, tmp_path):
    state = json.loads(fitted["word"].to_json())
    state["vocabulary"] = ["the", "the"]
    path = tmp_path / "word.json"
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="duplicate"):
        Tokenizer.load(path)


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        Tokenizer.load(tmp_path / "absent.json")


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_bad_inputs(fitted, kind):
    tokenizer = fitted[kind]
    with pytest.raises(ValueError, match="empty corpus"):
        make_tokenizer(kind).fit([])
    with pytest.raises(TypeError, match="document 1"):
        make_tokenizer(kind).fit(["fine", b"bytes"])
    with pytest.raises(TypeError, match="not a single string"):
        make_tokenizer(kind).fit("a string is not a corpus")
    with pytest.raises(ValueError, match="not fitted"):
        make_tokenizer(kind).encode("text")
    with pytest.raises(TypeError, match="str"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode([0, tokenizer.vocab_size])
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tokenizer.token_to_id("definitely-not-a-token-\u2603\u2603")


def test_make_tokenizer():
    assert isinstance(make_tokenizer("bpe", vocab_size=512), BPETokenizer)
    assert isinstance(make_tokenizer("char"), CharTokenizer)
    assert make_tokenizer("word", vocab_size=100).vocab_size_limit == 100
    with pytest.raises(ValueError, match="unknown tokenizer kind 'sentencepiece'"):
        make_tokenizer("sentencepiece")
    with pytest.raises(ValueError, match="at least 260"):
        make_tokenizer("bpe", vocab_size=100)
    with pytest.raises(TypeError):
        make_tokenizer("word", vocab_sise=100)
    for pattern, message in (("(", "invalid"), (r"\w*", "empty string"), (r"(\w+)", "groups")):
        with pytest.raises(ValueError, match=message):
            make_tokenizer("word", pattern=pattern)


def test_train_constructs_and_fits(documents):
    tokenizer = CharTokenizer.train(documents, byte_fallback=False)
    assert tokenizer.is_fitted and not tokenizer.byte_fallback


def test_count_tokens():
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 7, size=n).astype(np.int32) for n in (5, 0, 40)]
    expected = np.bincount(np.concatenate(chunks), minlength=9)
    counts = count_tokens(chunks, 9)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected)
    pairs = [(ids, np.arange(len(ids), dtype=np.int32)) for ids in chunks]
    np.testing.assert_array_equal(count_tokens(pairs, 9), expected)
    with pytest.raises(ValueError, match="out of range"):
        count_tokens([np.array([0, 9])], 9)

"""saffu.ngram: single-discount Kneser-Ney against NLTK and by hand; modified Kneser-Ney against
KenLM's lmplz (../shared/data/kenlm); ARPA files, saving, interpolation."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

# appended, not prepended: bench/ scripts may share names with standard-library modules
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))
from baselines import fit_nltk_reference, nltk_probabilities, shakespeare_documents
from conftest import tiny_documents
from saffu.corpus import TokenizedCorpus
from saffu.model import SaffuConfig, SaffuModel
from saffu.ngram import (
    KENLM_FALLBACK,
    KneserNey,
    NgramFormatError,
    NgramModel,
    choose_interpolation_weight,
    default_vocabulary,
    discounts_from_counts,
    interpolate_log_proba,
    kneser_ney_perplexity,
    scores_from_log_proba,
)
from saffu.tokenize import EOD, SOD, make_tokenizer

V = 12  # ids 4..10 are words; 11 never occurs in training


def wrap(*ids: int) -> np.ndarray:
    return np.array([SOD, *ids, EOD])


def random_documents(n_documents: int, seed: int, words: range = range(4, 11)) -> list[np.ndarray]:
    """Documents of 0 to 14 words drawn from a skewed distribution (many repeated n-grams)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) + 1)
    return [wrap(*rng.choice(words, size=rng.integers(0, 15), p=weights / weights.sum()))
            for _ in range(n_documents)]


TRAIN = random_documents(25, seed=0)
EVAL = [*random_documents(8, seed=1), wrap(11, 4, 5), wrap(4, 11, 11, 5)]  # 11 is unseen


@pytest.mark.parametrize("continuation", [True, False], ids=["kneser-ney", "absolute"])
@pytest.mark.parametrize("discount", [0.1, 0.75])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_equals_nltk(order, discount, continuation):
    pytest.importorskip("nltk")
    expected = nltk_probabilities(
        fit_nltk_reference(TRAIN, V, order, discount, continuation=continuation), EVAL, V)
    model = KneserNey(V, order, discount, uniform_base=False, continuation=continuation).fit(TRAIN)
    actual = np.exp(model.log_probabilities(EVAL))
    assert np.count_nonzero(expected == 0) == 3  # the three 11s: NLTK has no uniform base
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=0)


def test_hand_computed_bigram():
    # train <sod> 4 5 <eod>, D = 1/2, V = 6. Continuation unigram: N1+(• 4) = N1+(• 5) =
    # N1+(• <eod>) = 1 of 3, so p0(w) = (1 − ½ + ½·3·⅙)/3 = ¼ for those and ½·3·⅙/3 = 1/12 otherwise.
    # Bigram: each seen context has one follower seen once: p1(w | c) = (1 − ½ + ½·p0(w))/1.
    train = [wrap(4, 5)]
    seen = kneser_ney_perplexity(train, [wrap(4, 5)], vocab_size=6, order=2, discount=0.5)
    assert seen["tokens"] == 3
    assert seen["perplexity"] == pytest.approx(1 / 0.625)
    assert seen["nll"] == pytest.approx(math.log(1 / 0.625))
    # trigram: p1(w | c) = ½ + ½·¼ for the seen pairs, p2 = ½ + ½·p1 for the seen triples
    trigram = kneser_ney_perplexity(train, [wrap(4, 5)], vocab_size=6, order=3, discount=0.5)
    assert trigram["perplexity"] == pytest.approx(16 / 13)
    other = kneser_ney_perplexity(train, [wrap(5), wrap(1)], vocab_size=6, order=2, discount=0.5)
    # p(5 | <sod>) = ½·¼, p(<eod> | 5) = ½ + ½·¼, p(1 | <sod>) = ½·(1/12), and the unseen
    # context 1 falls back to p0(<eod>) = ¼
    assert other["nll"] == pytest.approx(-np.log([1 / 8, 5 / 8, 1 / 24, 1 / 4]).mean())


@pytest.mark.parametrize("continuation", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_gives_a_distribution(order, continuation):
    model = KneserNey(V, order, 0.6, continuation=continuation).fit(TRAIN)
    longest = max(TRAIN, key=len)
    seen = [longest[j:j + order - 1] for j in range(4)]  # each is followed by a token in training
    mixed = np.random.default_rng(order).integers(0, V, size=(5, order - 1))
    for context in [*seen, *mixed, np.full(order - 1, SOD), np.full(order - 1, 11)]:
        p = model.probabilities(np.tile(context, (V, 1)), np.arange(V))
        assert np.all(p > 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("order", [3, 4])  # 4: a context running across <eod> <sod> would show
def test_documents_are_independent(order):
    model = KneserNey(V, order).fit(TRAIN)
    reversed_model = KneserNey(V, order).fit(TRAIN[::-1])
    together = model.log_probabilities(EVAL)
    one_by_one = np.concatenate([model.log_probabilities([doc]) for doc in EVAL])
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_allclose(reversed_model.log_probabilities(EVAL), together, rtol=1e-12)


@pytest.mark.parametrize(("docs", "error", "match"), [
    (np.array([SOD, 4, EOD]), TypeError, "list of 1-D integer arrays"),
    ([], ValueError, "no documents"),
    ([np.array([SOD])], ValueError, "at least 2 tokens"),
    ([np.array([[SOD, EOD]])], ValueError, "1-D"),
    ([np.array([SOD, 4.0, EOD])], TypeError, "integer token ids"),
    ([np.array([4, 5, EOD])], ValueError, "start with <sod>"),
    ([np.array([SOD, 4, 5])], ValueError, "end with <eod>"),
    ([np.array([SOD, 4, EOD, SOD, 5, EOD])], ValueError, "its own array"),
    ([wrap(4, V)], ValueError, "outside"),
    ([wrap(4, -1)], ValueError, "outside"),
])
def test_bad_documents(docs, error, match):
    with pytest.raises(error, match=match):
        KneserNey(V).fit(docs)
    with pytest.raises(error, match=match):
        KneserNey(V).fit(TRAIN).log_probabilities(docs)


@pytest.mark.parametrize(("options", "error", "match"), [
    (dict(vocab_size=3), ValueError, "vocab_size"),
    (dict(vocab_size=12.0), TypeError, "vocab_size"),
    (dict(vocab_size=V, order=0), ValueError, "order"),
    (dict(vocab_size=V, order=True), TypeError, "order"),
    (dict(vocab_size=V, discount=1.5), ValueError, "discount"),
    (dict(vocab_size=V, discount="0.75"), TypeError, "discount"),
])
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        KneserNey(**options)


def test_bad_probability_queries():
    with pytest.raises(ValueError, match="not fitted"):
        KneserNey(V).probabilities(np.zeros((1, 2), dtype=int), np.zeros(1, dtype=int))
    model = KneserNey(V).fit(TRAIN)
    with pytest.raises(ValueError, match=r"shape \(m, 2\)"):
        model.probabilities(np.zeros((3, 1), dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="integer"):
        model.probabilities(np.zeros((3, 2)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="outside"):
        model.probabilities(np.zeros((3, 2), dtype=int), np.full(3, V))


@pytest.mark.shared_data
@pytest.mark.slow
def test_shakespeare_words(shakespeare_dir):
    parts, vocab_size = shakespeare_documents(shakespeare_dir, "word", 4 + 7999)
    assert vocab_size == 8003
    figures = {(order, continuation): KneserNey(vocab_size, order, continuation=continuation)
               .fit(parts["train"]).log_probabilities(parts["dev"]).mean()
               for order in (2, 3) for continuation in (True, False)}
    perplexity = {key: math.exp(-mean) for key, mean in figures.items()}
    assert 100 < perplexity[3, True] < perplexity[2, True] < 125  # measured: 107.1 and 119.7
    assert perplexity[3, True] < perplexity[3, False]  # absolute discounting: 115.8


# --- modified Kneser-Ney against KenLM's lmplz (../shared/data/kenlm) ---------------------------

KENLM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kenlm"
ORDERS = (2, 3, 4)


@pytest.fixture(scope="module")
def kenlm_dir() -> Path:
    if not (KENLM / "train.txt").is_file():
        pytest.skip(f"KenLM reference not found at {KENLM}")
    return KENLM


def kenlm_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def kenlm_query(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(log10 p, matched length, token) of every row of a test.oN.logprob.tsv."""
    rows = [line.split("\t") for line in kenlm_lines(path) if line]
    return (np.array([float(r[2]) for r in rows]), np.array([int(r[1]) for r in rows]),
            [r[0] for r in rows])


@pytest.fixture(scope="module")
def word_models(kenlm_dir) -> dict[int, NgramModel]:
    train = kenlm_lines(kenlm_dir / "train.txt")
    return {order: NgramModel.fit_words(train, order) for order in ORDERS}


@pytest.mark.shared_data
@pytest.mark.parametrize("order", ORDERS)
def test_modified_kneser_ney_equals_lmplz(kenlm_dir, word_models, order):
    model = word_models[order]
    expected, lengths, tokens = kenlm_query(kenlm_dir / f"test.o{order}.logprob.tsv")
    log10_p, matched = model.query(model.encode_words(kenlm_lines(kenlm_dir / "test.txt")))
    np.testing.assert_allclose(log10_p, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(matched, lengths)
    assert tokens.count("</s>") == 2 and len(tokens) == 6002
    np.testing.assert_allclose(model.token_log_proba(model.encode_words(
        kenlm_lines(kenlm_dir / "test.txt"))), expected * math.log(10), atol=1e-4 * math.log(10))


@pytest.mark.shared_data
@pytest.mark.parametrize("order", ORDERS)
def test_lmplz_arpa_is_read_and_scored(kenlm_dir, word_models, order):
    arpa = NgramModel.from_arpa(kenlm_dir / f"train.o{order}.arpa")
    ours = word_models[order]
    assert arpa.n_grams == ours.n_grams and arpa.vocabulary == ours.vocabulary
    assert (arpa.bos, arpa.eos, arpa.unk) == (1, 2, 0)
    expected, lengths, _ = kenlm_query(kenlm_dir / f"test.o{order}.logprob.tsv")
    log10_p, matched = arpa.query(arpa.encode_words(kenlm_lines(kenlm_dir / "test.txt")))
    np.testing.assert_allclose(log10_p, expected, rtol=0, atol=2e-6)  # the tsv has 7-8 digits
    np.testing.assert_array_equal(matched, lengths)
    for k in range(order):  # the same n-grams, probabilities and backoffs as lmplz's file
        np.testing.assert_array_equal(arpa.keys[k], ours.keys[k])
        np.testing.assert_allclose(ours.log10_prob[k], arpa.log10_prob[k], rtol=0, atol=1e-5)
        np.testing.assert_allclose(ours.log10_backoff[k], arpa.log10_backoff[k], rtol=0, atol=1e-5)


# --- modified Kneser-Ney on token ids ------------------------------------------------------------


def id_model(order: int = 3, docs=None) -> NgramModel:
    return NgramModel.fit(TRAIN if docs is None else docs, V, order)


def test_fit_uses_fallback_discounts_on_tiny_data():
    model = NgramModel.fit([wrap(4, 5)], 6, 2)
    assert model.info["discount_fallback_orders"] == [1, 2]
    np.testing.assert_array_equal(model.discounts, [KENLM_FALLBACK] * 2)
    with pytest.raises(ValueError, match="discount_fallback"):
        NgramModel.fit([wrap(4, 5)], 6, 2, discount_fallback=None)


def test_hand_computed_modified_bigram():
    # train <sod> 4 5 <eod>, V = 6, D = 0.5, 1, 1.5 (fallback). Unigram continuation counts:
    # a(4) = a(5) = a(<eod>) = 1 of 3, so γ() = 3·0.5/3 = ½ and p(w) = (1 − ½)/3 + ½/5 = 4/15
    # for those, ½/5 = 1/10 for <pad>, <unk> (every id but <sod> shares the uniform base).
    # Bigram: raw counts 1, γ(c) = ½ for each seen context: p(w | c) = ½ + ½·p(w).
    model = NgramModel.fit([wrap(4, 5)], 6, 2)
    p = np.exp(model.token_log_proba([wrap(4, 5), wrap(1)]))
    np.testing.assert_allclose(p, [0.5 + 2 / 15, 0.5 + 2 / 15, 0.5 + 2 / 15, 0.5 / 10, 4 / 15],
                               rtol=1e-12)
    assert model.query([wrap(4, 5), wrap(1)])[1].tolist() == [2, 2, 2, 1, 1]


def test_discounts_from_counts_of_counts():
    counts = np.array([1] * 10 + [2] * 4 + [3] * 2 + [4] * 1 + [7])
    y = 10 / (10 + 2 * 4)
    expected = (1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2)
    assert discounts_from_counts(counts) == pytest.approx(expected)
    assert discounts_from_counts(np.array([1, 1, 2])) is None  # no count of 3


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_modified_gives_a_distribution(order):
    model = id_model(order)
    targets = np.array([i for i in range(V) if i != SOD])  # every id but <sod> can be predicted
    longest = max(TRAIN, key=len)
    seen = [longest[j:j + order - 1] for j in range(4)]  # the first starts with <sod>
    mixed = np.random.default_rng(order).integers(4, V, size=(5, order - 1))
    for context in [*seen, *mixed, np.full(order - 1, 11)]:
        body = [t for t in context if t != SOD]  # a leading <sod> is the document start
        docs = [np.array([SOD, *body, w, EOD]) for w in targets]
        log_p = model.token_log_proba(docs).reshape(len(targets), -1)[:, len(body)]
        assert np.all(np.isfinite(log_p))
        assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-12)


def test_corpus_and_document_list_agree():
    corpus = TokenizedCorpus([(np.concatenate(TRAIN[:10]).astype(np.int32),
                               np.concatenate([np.arange(len(d)) for d in TRAIN[:10]]).astype(np.int32)),
                              (np.concatenate(TRAIN[10:]).astype(np.int32),
                               np.concatenate([np.arange(len(d)) for d in TRAIN[10:]]).astype(np.int32))])
    a, b = NgramModel.fit(corpus, V, 3), id_model(3)
    for k in range(3):
        np.testing.assert_array_equal(a.log10_prob[k], b.log10_prob[k])
    np.testing.assert_array_equal(a.token_log_proba(EVAL), b.token_log_proba(EVAL))
    one_by_one = np.concatenate([b.token_log_proba([doc]) for doc in EVAL])
    np.testing.assert_array_equal(b.token_log_proba(EVAL), one_by_one)


def test_score_keys_and_bits_per_char():
    model = id_model(3)
    scores = model.score(EVAL, n_characters=100)
    log_p = model.token_log_proba(EVAL)
    assert set(scores) == {"perplexity", "bits_per_char", "nll", "tokens", "characters", "documents"}
    assert scores["tokens"] == len(log_p) == sum(len(d) - 1 for d in EVAL)
    assert scores["perplexity"] == pytest.approx(math.exp(-log_p.mean()))
    assert scores["bits_per_char"] == pytest.approx(-log_p.sum() / math.log(2) / 100)
    assert scores["documents"] == len(EVAL)
    assert model.score(EVAL)["bits_per_char"] is None


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: NgramModel.fit(TRAIN, 3), ValueError, "vocab_size"),
    (lambda: NgramModel.fit(TRAIN, V, 0), ValueError, "order"),
    (lambda: NgramModel.fit(TRAIN, V, 2, discounts=[(0.5, 1, 1.5)]), ValueError, r"shape \(2, 3\)"),
    (lambda: NgramModel.fit(TRAIN, V, 1, discounts=[(0.5, 2.5, 1.5)]), ValueError, r"\(0, j\]"),
    (lambda: NgramModel.fit(TRAIN, V, 1, discount_fallback=(0.5, 1)), ValueError, "3 numbers"),
    (lambda: NgramModel.fit(TRAIN, V, vocabulary=["a"]), ValueError, "vocabulary has 1"),
    (lambda: NgramModel.fit([wrap(4, V)], V), ValueError, "outside"),
    (lambda: NgramModel.fit(np.array([SOD, 4, EOD]), V), TypeError, "TokenizedCorpus, a list"),
    (lambda: NgramModel.fit(["some text"], V), TypeError, "need a model with a tokenizer"),
    (lambda: NgramModel.fit(TRAIN), TypeError, "vocab_size or a tokenizer"),
    (lambda: id_model().token_log_proba([np.array([4, 5, EOD])]), ValueError, "start with <sod>"),
    (lambda: NgramModel.fit_words(["a <s> b"]), ValueError, "added around"),
    (lambda: NgramModel.fit_words([["a", "b c"]]), ValueError, "whitespace"),
    (lambda: NgramModel.fit_words([]), ValueError, "no documents"),
])
def test_bad_modified_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_word_model_maps_unknown_words_to_unk():
    model = NgramModel.fit_words(["a b a c", "b a"], 2)
    assert model.vocabulary == ("<unk>", "<s>", "</s>", "a", "b", "c")
    (doc,) = model.encode_words(["a zzz b"])
    assert doc.tolist() == [1, 3, 0, 4, 2]


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 4])
def test_arpa_round_trip(tmp_path, order):
    model = id_model(order)
    model.to_arpa(tmp_path / "model.arpa")
    back = NgramModel.from_arpa(tmp_path / "model.arpa")
    assert back.vocabulary == model.vocabulary == tuple(default_vocabulary(V))
    assert (back.bos, back.eos, back.unk) == (SOD, EOD, 1)
    for k in range(order):
        np.testing.assert_array_equal(back.keys[k], model.keys[k])
        np.testing.assert_array_equal(back.log10_prob[k], model.log10_prob[k])
        np.testing.assert_array_equal(back.log10_backoff[k], model.log10_backoff[k])
    np.testing.assert_array_equal(back.token_log_proba(EVAL), model.token_log_proba(EVAL))


def test_arpa_with_a_given_vocabulary_scores_missing_tokens_as_unk(tmp_path):
    model = NgramModel.fit_words(["a b a c", "b a"], 2)
    model.to_arpa(tmp_path / "w.arpa")
    wider = ["<s>", "</s>", "<unk>", "c", "b", "a", "new"]
    back = NgramModel.from_arpa(tmp_path / "w.arpa", vocabulary=wider)
    assert back.log10_prob[0][6] == model.log10_prob[0][0]  # "new" scores as <unk>
    np.testing.assert_allclose(back.token_log_proba(back.encode_words(["a b new c"])),
                               model.token_log_proba(model.encode_words(["a b zzz c"])), rtol=1e-15)


ARPA_OK = "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<s>\t-0.5\n-0.5\t</s>\n-0.3\ta\t0\n\n" \
          "\\2-grams:\n-0.1\t<s> a\n\n\\end\\\n"

ARPA_3 = ARPA_OK.replace("ngram 2=1", "ngram 2=1\nngram 3=1").replace(
    "\\end", "\\3-grams:\n-0.2 <s> a </s>\n\\end")  # the suffix "a </s>" is not stored


@pytest.mark.parametrize(("text", "match"), [
    ("hello", "no \\\\data"),
    (ARPA_OK.replace("\\end\\\n", ""), "no \\\\end"),
    (ARPA_OK.replace("ngram 2=1", "ngram 2=2"), "announces 2 2-grams"),
    (ARPA_3, "'<s> a </s>' has no stored suffix"),
    (ARPA_OK.replace("-0.1\t<s> a", "x\t<s> a"), "not a number"),
    (ARPA_OK.replace("-0.1\t<s> a", "-0.1\t<s> a b c"), "fields"),
    (ARPA_OK.replace("<s> a", "<s> b"), "'b' is not in the vocabulary"),
    (ARPA_OK.replace("-0.5\t</s>", "-0.5\tb"), "no </s>"),
    (ARPA_OK.replace("-0.1\t<s> a", "0.5\t<s> a"), "≤ 0"),
])
def test_bad_arpa_files(tmp_path, text, match):
    (tmp_path / "bad.arpa").write_text(text)
    with pytest.raises(NgramFormatError, match=match):
        NgramModel.from_arpa(tmp_path / "bad.arpa")


def test_small_arpa_is_scored_by_backoff(tmp_path):
    (tmp_path / "ok.arpa").write_text(ARPA_OK)
    model = NgramModel.from_arpa(tmp_path / "ok.arpa")
    log10_p, matched = model.query(model.encode_words(["a a"]))
    # p(a | <s>) stored; p(a | a) = b(a) p(a); p(</s> | a) = b(a) p(</s>)
    np.testing.assert_allclose(log10_p, [-0.1, -0.3, -0.5])
    assert matched.tolist() == [2, 1, 1]


@pytest.mark.parametrize("order", [1, 3])
def test_save_and_load(tmp_path, order):
    model = id_model(order)
    path = model.save(tmp_path / "kn.safetensors")
    back = NgramModel.load(path)
    assert back.vocabulary == model.vocabulary and back.info == model.info
    np.testing.assert_array_equal(back.discounts, model.discounts)
    np.testing.assert_array_equal(back.token_log_proba(EVAL), model.token_log_proba(EVAL))
    words = NgramModel.fit_words(["a b a c", "b a"], 2)
    words.save(tmp_path / "w.safetensors")
    assert NgramModel.load(tmp_path / "w.safetensors").vocabulary == words.vocabulary


def test_tokenizer_travels_with_the_model(tmp_path):
    text = tiny_documents()
    tokenizer = make_tokenizer("char").fit(text)
    corpus = TokenizedCorpus.from_documents(tokenizer, text)
    model = NgramModel.fit(text, order=3, tokenizer=tokenizer)
    np.testing.assert_array_equal(model.token_log_proba(corpus), model.token_log_proba(text))
    assert model.score(text) == model.score(corpus)
    assert model.score(text)["characters"] == sum(map(len, text))
    back = NgramModel.load(model.save(tmp_path / "kn.safetensors"))
    assert back.tokenizer.to_json() == tokenizer.to_json()
    assert back.score(text) == model.score(text)
    with pytest.raises(ValueError, match="the tokenizer has"):
        NgramModel.fit(corpus, tokenizer.vocab_size + 1, tokenizer=tokenizer)


def test_bad_saved_files(tmp_path):
    with pytest.raises(NgramFormatError, match="does not exist"):
        NgramModel.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(NgramFormatError, match="not a readable safetensors"):
        NgramModel.load(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(NgramFormatError, match="not a saffu n-gram model"):
        NgramModel.load(tmp_path / "other.safetensors")
    path = id_model(2).save(tmp_path / "kn.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last table
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(NgramFormatError, match="checksum"):
        NgramModel.load(tmp_path / "flipped.safetensors")
    text = path.read_bytes().replace(b'"format_version":"1"', b'"format_version":"9"')
    (tmp_path / "future.safetensors").write_bytes(text)
    with pytest.raises(NgramFormatError, match="version 9"):
        NgramModel.load(tmp_path / "future.safetensors")


# --- interpolation -------------------------------------------------------------------------------


def markov_documents(n_documents: int, seed: int) -> list[np.ndarray]:
    """Documents of 4 to 15 words from one fixed sparse Markov chain over the words 4..10."""
    rng = np.random.default_rng(seed)
    transitions = np.random.default_rng(99).dirichlet(np.full(7, 0.3), size=7)
    docs = []
    for _ in range(n_documents):
        words = [int(rng.integers(7))]
        for _ in range(int(rng.integers(3, 15))):
            words.append(int(rng.choice(7, p=transitions[words[-1]])))
        docs.append(wrap(*(np.array(words) + 4)))
    return docs


def test_interpolation_weight_is_chosen_on_dev():
    # complementary models of a Markov-chain corpus: a trigram from little data (sharp but
    # sparse) and a unigram from more data (smooth)
    dev = markov_documents(40, seed=4)
    trigram = NgramModel.fit(markov_documents(15, seed=3), V, 3)
    unigram = NgramModel.fit(markov_documents(300, seed=5), V, 1)
    a, b = trigram.token_log_proba(dev), unigram.token_log_proba(dev)
    weight, nll = choose_interpolation_weight(a, b)
    mixed = interpolate_log_proba(a, b, weight)
    assert nll == pytest.approx(-mixed.mean())
    grid = [-interpolate_log_proba(a, b, w).mean() for w in np.linspace(0, 1, 201)]
    assert nll <= min(grid) + 1e-6
    assert 0 < weight < 1 and nll < min(-a.mean(), -b.mean())
    np.testing.assert_allclose(np.exp(mixed), weight * np.exp(a) + (1 - weight) * np.exp(b), rtol=1e-12)


def test_interpolation_ends_and_errors():
    a, b = np.log([0.5, 0.25]), np.log([0.1, 0.9])
    np.testing.assert_array_equal(interpolate_log_proba(a, b, 1.0), a)
    np.testing.assert_array_equal(interpolate_log_proba(a, b, 0), b)
    assert choose_interpolation_weight(a, a - 1.0)[0] == 1.0  # a is better on every token
    for bad, match in ((lambda: interpolate_log_proba(a, b[:1], 0.5), "same tokens"),
                       (lambda: interpolate_log_proba(a, b, 1.5), "weight"),
                       (lambda: interpolate_log_proba(a, -b, 0.5), "≤ 0"),
                       (lambda: interpolate_log_proba(a, np.array([np.nan, 0.0]), 0.5), "NaN"),
                       (lambda: scores_from_log_proba(np.zeros(0)), "non-empty")):
        with pytest.raises(ValueError, match=match):
            bad()


def test_mixture_with_a_saffu_model_lines_up_token_by_token():
    saffu_model = SaffuModel(SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=2)).fit(
        tiny_documents(), verbose=0)
    train = saffu_model.encode(tiny_documents())
    dev = saffu_model.encode(tiny_documents(4, seed=1))
    ngram = NgramModel.fit(train, saffu_model.tokenizer.vocab_size, 3)
    saffu_log_p = np.concatenate([saffu_model.target_log_proba(ids, pos) for ids, pos in dev.chunks()])
    ngram_log_p = ngram.token_log_proba(dev)
    assert ngram_log_p.shape == saffu_log_p.shape == (dev.n_targets,)
    weight, nll = choose_interpolation_weight(saffu_log_p, ngram_log_p)
    scores = scores_from_log_proba(interpolate_log_proba(saffu_log_p, ngram_log_p, weight),
                                   n_characters=dev.n_characters)
    assert scores["perplexity"] == pytest.approx(math.exp(nll))
    assert saffu_model.score(dev)["perplexity"] == pytest.approx(math.exp(-saffu_log_p.mean()))
    assert ngram.score(dev)["bits_per_char"] == pytest.approx(
        -ngram_log_p.sum() / (math.log(2) * dev.n_characters))

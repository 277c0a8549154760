"""bench/baselines.py: the interpolated Kneser-Ney baseline, against NLTK and by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

# appended, not prepended: bench/ scripts may share names with standard-library modules
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))
from baselines import (
    KneserNey,
    fit_nltk_reference,
    kneser_ney_perplexity,
    nltk_probabilities,
    shakespeare_documents,
)
from saffu.tokenize import EOD, SOD

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

"""Bit-cipher codes and vectors (METHOD.md §2), and determinism of the whole front end."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import saffu.cipher as cipher_module
from conftest import tiny_documents
from saffu.cipher import Cipher, cipher_codes, min_bits
from saffu.corpus import TokenizedCorpus, random_split
from saffu.tokenize import make_tokenizer

counts_arrays = hnp.arrays(np.int64, st.integers(1, 200), elements=st.integers(0, 6))


@pytest.mark.parametrize("vocab_size, bits", [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4),
                                               (4095, 12), (4096, 13), (8000, 13)])
def test_min_bits(vocab_size, bits):
    assert min_bits(vocab_size) == bits
    assert 2**bits - 1 >= vocab_size > 2**(bits - 1) - 1


def test_codes_follow_frequency_rank_and_popcount_levels():
    # 4 bits, 15 tokens: token t has rank 14 − t (counts descending in reverse id order)
    codes = cipher_codes(np.arange(15))
    by_rank = codes[::-1]
    expected = [c for level in range(1, 5) for c in itertools.combinations(range(4), level)]
    assert [tuple(np.flatnonzero(row)) for row in by_rank] == expected


def test_ties_are_broken_by_token_id():
    codes = cipher_codes([3, 5, 3, 3], bits=3)
    # rank: token 1 (5), then tokens 0, 2, 3 (3 each) in id order
    np.testing.assert_array_equal(codes, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]])


@settings(max_examples=150, deadline=None)
@given(counts=counts_arrays, extra_bits=st.integers(0, 3))
def test_codes_are_unique_binary_and_sparser_for_frequent_tokens(counts, extra_bits):
    bits = min_bits(len(counts)) + extra_bits
    cipher = Cipher.fit(counts, bits=bits)
    codes = cipher.codes
    assert codes.shape == (len(counts), bits) and codes.dtype == np.uint8
    assert len(np.unique(codes, axis=0)) == len(counts)
    popcount = codes.sum(axis=1)
    assert popcount.min() >= 1
    more_frequent = counts[:, None] > counts[None, :]
    assert not np.any(more_frequent & (popcount[:, None] > popcount[None, :]))
    vectors = cipher.vectors
    assert vectors.dtype == np.float32 and vectors.shape == codes.shape
    np.testing.assert_allclose(vectors.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors * popcount[:, None], codes, rtol=1e-6)


def test_bits_below_the_minimum_is_an_error():
    with pytest.raises(ValueError, match="below the minimum 3 for a vocabulary of 7"):
        Cipher.fit(np.ones(7), bits=2)
    with pytest.raises(ValueError, match="below the minimum 13"):
        Cipher.fit(np.ones(4096)).label_codes(12)


@pytest.mark.parametrize("counts", [[], [[1, 2]], [1, -1], [1, np.nan], ["a"]])
def test_bad_counts(counts):
    with pytest.raises(ValueError, match="counts"):
        Cipher.fit(np.array(counts))


def test_encode_and_padding():
    cipher = Cipher.fit([9, 1, 4, 4, 0])
    ids = np.array([[0, 2, -1], [4, -1, 1]])
    out = cipher.encode(ids)
    assert out.shape == (2, 3, cipher.bits) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 1], cipher.vectors[2])
    assert not out[0, 2].any() and not out[1, 1].any()  # the -1 slots
    with pytest.raises(ValueError, match=r"\[-1, 5\)"):
        cipher.encode([5])
    with pytest.raises(TypeError, match="integers"):
        cipher.encode([0.0])
    with pytest.raises(ValueError, match="read-only"):
        cipher.vectors[0, 0] = 1


def test_nearest_recovers_tokens():
    rng = np.random.default_rng(0)
    cipher = Cipher.fit(rng.integers(0, 100, size=300), bits=12)
    ids = np.arange(300)
    np.testing.assert_array_equal(cipher.nearest(cipher.vectors)[:, 0], ids)
    noisy = cipher.vectors + rng.normal(0, 0.02, size=cipher.vectors.shape)
    assert np.mean(cipher.nearest(noisy)[:, 0] == ids) > 0.95
    top = cipher.nearest(cipher.encode(ids.reshape(20, 15)), k=4)
    assert top.shape == (20, 15, 4) and top.dtype == np.int64
    np.testing.assert_array_equal(top[..., 0], ids.reshape(20, 15))
    distances = np.sum((cipher.vectors[top[0, 0]] - cipher.vectors[0]) ** 2, axis=1)
    assert np.all(np.diff(distances) >= 0)
    with pytest.raises(ValueError, match="shape"):
        cipher.nearest(np.ones(5))
    with pytest.raises(ValueError, match="k must be"):
        cipher.nearest(cipher.vectors, k=0)


def test_nearest_is_the_same_in_small_blocks(monkeypatch):
    cipher = Cipher.fit(np.arange(50) % 7)
    queries = np.random.default_rng(1).random((33, cipher.bits))
    whole = cipher.nearest(queries, k=3)
    monkeypatch.setattr(cipher_module, "_DISTANCE_BLOCK", 60)
    np.testing.assert_array_equal(cipher.nearest(queries, k=3), whole)


def test_label_codes():
    counts = np.random.default_rng(2).integers(0, 50, size=100)
    cipher = Cipher.fit(counts)
    labels = cipher.label_codes(32)
    assert labels.vectors.shape == (100, 32)
    np.testing.assert_allclose(labels.vectors.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(labels.codes, cipher_codes(counts, 32))
    assert cipher.label_codes().bits == cipher.bits


def test_smoothing_follows_the_method():
    counts = np.array([10, 7, 7, 3, 0, 0, 0])
    plain = Cipher.fit(counts, bits=4)
    smooth = Cipher.fit(counts, bits=4, smoothing=True)
    np.testing.assert_allclose(smooth.vectors.sum(axis=1), 1.0, rtol=1e-6)
    bit_mass = sum(c * v for c, v in zip(counts, plain.vectors.astype(np.float64), strict=True))
    q = (1 - bit_mass / bit_mass.sum()) / (4 - 1)
    for token, count in enumerate(counts):
        beta = 1 / np.sum(counts == count)
        expected = beta * plain.vectors[token] + (1 - beta) * q
        np.testing.assert_allclose(smooth.vectors[token], expected, rtol=1e-6)
    np.testing.assert_array_equal(smooth.vectors[[0, 3]], plain.vectors[[0, 3]])  # unique counts
    assert smooth.label_codes(6).smoothing


@pytest.mark.parametrize("smoothing", [False, True])
def test_save_load_round_trip(tmp_path, smoothing):
    cipher = Cipher.fit([5, 0, 2, 2, 9, 1], bits=5, smoothing=smoothing)
    cipher.save(tmp_path / "cipher.json")
    loaded = Cipher.load(tmp_path / "cipher.json")
    np.testing.assert_array_equal(loaded.codes, cipher.codes)
    np.testing.assert_array_equal(loaded.vectors, cipher.vectors)
    assert loaded.smoothing is smoothing
    again = Cipher.from_dict(json.loads(json.dumps(cipher.to_dict())))
    np.testing.assert_array_equal(again.vectors, cipher.vectors)


@pytest.mark.parametrize("change, message", [
    ({"codes": ["10000", "10000", "01000", "00100", "00010", "00001"]}, "unique"),
    ({"codes": ["1000"] * 6}, "5 '0'/'1'"),
    ({"codes": ["00000", "10000", "01000", "00100", "00010", "00001"]}, "all-zero"),
    ({"format": "other"}, "not a saffu cipher"),
    ({"counts": [1, 2]}, "shape"),
    ({"smoothing": "yes"}, "smoothing"),
])
def test_malformed_cipher_file(tmp_path, change, message):
    state = {**Cipher.fit([5, 0, 2, 2, 9, 1], bits=5).to_dict(), **change}
    path = tmp_path / "cipher.json"
    path.write_text(json.dumps(state))
    with pytest.raises((ValueError, TypeError), match=message):
        Cipher.load(path)


def test_missing_or_garbled_cipher_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cipher file"):
        Cipher.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a saffu cipher file"):
        Cipher.load(tmp_path / "bad.json")


def front_end_fingerprint() -> str:
    """SHA-256 of everything the front end derives from a fixed corpus."""
    digest = hashlib.sha256()
    documents = tiny_documents(40)
    for kind in ("bpe", "char", "word"):
        tokenizer = make_tokenizer(kind, vocab_size=300).fit(documents)
        corpus = TokenizedCorpus.from_documents(tokenizer, documents, chunk_tokens=500)
        cipher = Cipher.fit(corpus.token_counts(tokenizer.vocab_size), smoothing=True)
        digest.update(tokenizer.to_json().encode())
        for ids, pos in corpus:
            digest.update(ids.tobytes() + pos.tobytes())
        digest.update(cipher.vectors.tobytes() + cipher.label_codes(20).vectors.tobytes())
    digest.update(repr(random_split(documents, seed=7)).encode())
    return digest.hexdigest()


def test_front_end_is_deterministic_across_processes(request):
    here = front_end_fingerprint()
    assert here == front_end_fingerprint()
    script = "from test_cipher import front_end_fingerprint; print(front_end_fingerprint())"
    for hash_seed in ("0", "4242"):  # str hashing, hence set and dict orders, differ
        result = subprocess.run([sys.executable, "-c", script], cwd=request.path.parent,
                                env={**os.environ, "PYTHONHASHSEED": hash_seed},
                                capture_output=True, text=True, check=True, timeout=120)
        assert result.stdout.strip() == here


# --- contextual vectors --------------------------------------------------------------------------


def small_corpus() -> tuple[Cipher, list[tuple[np.ndarray, np.ndarray]]]:
    """A 6-token vocabulary; tokens 2 and 3 always follow 1 and precede 4 (used alike)."""
    docs = [[0, 1, 2, 4, 5], [0, 1, 3, 4, 5], [0, 5, 5, 1, 2, 4], [0, 1, 3, 4]]
    ids = np.array([t for doc in docs for t in doc], dtype=np.int32)
    pos = np.array([p for doc in docs for p in range(len(doc))], dtype=np.int32)
    counts = np.bincount(ids, minlength=6)
    return Cipher.fit(counts, bits=4), [(ids[:11], pos[:11]), (ids[11:], pos[11:])]


@pytest.mark.parametrize("radius, top", [(1, None), (2, None), (2, 1)])
def test_contextual_vectors_are_unit_mass_and_deterministic(radius, top):
    cipher, chunks = small_corpus()
    vectors = cipher_module.contextual_vectors(cipher.vectors, chunks, radius, top=top)
    assert vectors.shape == (6, (1 + 2 * radius) * cipher.bits)
    assert vectors.dtype == np.float32 and (vectors >= 0).all()
    np.testing.assert_allclose(vectors.sum(axis=1), 1.0, rtol=1e-6)
    again = cipher_module.contextual_vectors(cipher.vectors, iter(chunks), radius, top=top)
    np.testing.assert_array_equal(vectors, again)
    if top is not None:  # own block + at most `top` entries per neighbour block
        blocks = vectors.reshape(6, 1 + 2 * radius, cipher.bits)
        assert ((blocks[:, 1:] > 0).sum(axis=2) <= top).all()


def test_contextual_vectors_follow_the_neighbours():
    cipher, chunks = small_corpus()
    vectors = cipher_module.contextual_vectors(cipher.vectors, chunks, 1)
    blocks = vectors.reshape(6, 3, cipher.bits) * 3  # three unit-mass blocks per token but <sod>
    np.testing.assert_allclose(blocks[1:, 0], cipher.vectors[1:], rtol=1e-6)  # the token itself
    np.testing.assert_allclose(blocks[2, 1:], blocks[3, 1:], rtol=1e-6)  # 2 and 3 used alike
    np.testing.assert_allclose(blocks[2, 1], cipher.vectors[1], rtol=1e-6)  # left of 2: always 1
    np.testing.assert_allclose(blocks[2, 2], cipher.vectors[4], rtol=1e-6)  # right of 2: always 4
    # <sod> (0) has no left neighbour: an empty block, the others share its unit mass
    sod = vectors.reshape(6, 3, cipher.bits)[0]
    assert sod[1].sum() == 0
    np.testing.assert_allclose(sod[0] * 2, cipher.vectors[0], rtol=1e-6)


def test_contextual_vectors_reject_bad_input():
    cipher, chunks = small_corpus()
    with pytest.raises(ValueError, match="radius must be an integer ≥ 1"):
        cipher_module.contextual_vectors(cipher.vectors, chunks, 0)
    with pytest.raises(ValueError, match="top must be None or an integer ≥ 1"):
        cipher_module.contextual_vectors(cipher.vectors, chunks, 1, top=0)
    with pytest.raises(ValueError, match="non-negative"):
        cipher_module.contextual_vectors(-cipher.vectors, chunks, 1)


def test_with_vectors_may_change_the_width():
    cipher, chunks = small_corpus()
    wide = cipher.with_vectors(cipher_module.contextual_vectors(cipher.vectors, chunks, 1))
    assert wide.bits == 3 * cipher.bits and wide.code_bits == cipher.bits
    assert wide.label_codes().bits == cipher.bits  # label codes keep the code length
    assert wide.encode(np.array([-1])).shape == (1, wide.bits)
    with pytest.raises(ValueError, match="vectors must be finite with shape"):
        cipher.with_vectors(np.ones((5, 4)))


def test_a_model_with_contextual_vectors_fits_saves_and_loads(tmp_path, monkeypatch):
    from saffu import fit
    from saffu.model import SaffuConfig, SaffuModel

    plain_prepare = fit.prepare

    def prepare(model, documents, *args):  # as bench/quality.py does: contextual vectors after prepare
        corpus = plain_prepare(model, documents, *args)
        model.cipher = model.cipher.with_vectors(cipher_module.contextual_vectors(
            model.cipher.vectors, corpus.chunks(), 1, top=2))
        return corpus

    monkeypatch.setattr(fit, "prepare", prepare)
    config = SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=2)
    model = SaffuModel(config).fit(tiny_documents(), verbose=0)
    code_bits = model.cipher.code_bits
    assert model.cipher.bits == 3 * code_bits and model.labels.bits == code_bits
    assert model.layers[0].hidden_t.shape == (code_bits, 2 * 3 * code_bits)
    held_out = tiny_documents(3, seed=9)
    model.save(tmp_path / "m")
    loaded = SaffuModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.cipher.vectors, model.cipher.vectors)
    assert loaded.score(held_out) == model.score(held_out)

"""The SAFFU model: config, forward pass, explicit fit, scoring, generation and persistence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import saffu
from conftest import tiny_documents
from saffu import kernels
from saffu.errors import ComputationError
from saffu.fit import PassStatistics
from saffu.kinds import Aggregation
from saffu.model import ModelFormatError, SaffuConfig, SaffuModel, log_softmax

SMALL = dict(tokenizer="char", bits=None, hidden=None, radial=3, block=4, document=True)


def fitted(**changes) -> SaffuModel:
    config = SaffuConfig(**{**SMALL, **changes})
    return SaffuModel(config).fit(tiny_documents(), verbose=0)


@pytest.fixture(scope="module")
def model() -> SaffuModel:
    return fitted()


@pytest.fixture(scope="module")
def held_out():
    return tiny_documents(4, seed=1)


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"tau": 0}, "tau"), ({"alpha": -1.0}, "alpha"), ({"aggregation": "max"}, "aggregation"),
    ({"radial": 0, "block": 0, "document": False, "extra_contexts": ""}, "at least one"),
    ({"bits": 0}, "bits"),
    ({"tokenizer": "sentencepiece"}, "tokenizer"), ({"radial": 2.5}, "radial"),
    ({"output_tau": math.inf}, "output_tau"), ({"document": "yes"}, "document"),
    ({"extra_contexts": "radial1,radial1"}, "names radial1 twice"),
    ({"extra_contexts": "conv3"}, "named like radial2"), ({"extra_contexts": "block0"}, "at least 1"),
    ({"extra_contexts": 3}, "extra_contexts must be a string"),
])
def test_config_rejects_out_of_range_values(change, message):
    with pytest.raises(ValueError, match=message):
        SaffuConfig(**change)


def test_extra_contexts_are_spelled_one_way_and_count_as_context_models():
    config = SaffuConfig(radial=0, extra_contexts=" Radial1 , block16,")
    assert config.extra_contexts == "radial1,block16"
    assert [spec.name for spec in config.context_specs] == ["radial1", "block16"]
    assert config == SaffuConfig(radial=0, extra_contexts="radial1,block16")
    # an extra equal to a model already on is left out: one radial1 model, not two
    assert [spec.name for spec in SaffuConfig(radial=1).context_specs] == ["radial1"]
    assert SaffuConfig(radial=1).without_repeated_contexts() == SaffuConfig(radial=1, extra_contexts="")
    assert [spec.name for spec in SaffuConfig().context_specs] == ["radial2", "radial1"]


def test_config_json_round_trip():
    config = SaffuConfig(radial=5, block=7, aggregation="cat", tau=0.4, priming=2.0)
    assert SaffuConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field"):
        SaffuConfig.from_dict({"radial": 3, "depth": 2})


# --- forward pass ------------------------------------------------------------------------------


def _reference_log_proba(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """METHOD.md §3 written out directly, one target at a time (independent of the kernels)."""
    vectors = model.cipher.vectors.astype(np.float64)
    rows = []
    for t in np.flatnonzero(pos > 0):
        start = t - pos[t]
        hidden = []
        for layer in model.layers:
            spec = layer.spec
            if spec.kind == "document":
                z = vectors[ids[start:t]].sum(0)
                z /= z.sum()
            else:
                if spec.kind == "radial":
                    slots = [t - spec.size + k for k in range(spec.size)]
                    pivot = spec.size - 1
                else:
                    q = (pos[t] - 1) % spec.size
                    slots = [t - 1 - q + k if k <= q else -1 for k in range(spec.size)]
                    pivot = q
                valid = np.array([j >= start for j in slots])
                X = np.array([vectors[ids[j]] if ok else np.zeros(vectors.shape[1])
                              for j, ok in zip(slots, valid, strict=True)])
                s = X @ X[pivot]
                scores = np.where(valid, s @ layer.attention, -np.inf)
                a = np.exp(scores - scores.max())
                a /= a.sum()
                z = (a[:, None] * X).sum(0) if model.config.aggregation == "sum" else (a[:, None] * X).ravel()
            logits = layer.hidden_t.astype(np.float64) @ z
            h = np.exp(logits - logits.max())
            hidden.append(h / h.sum())
        row = np.concatenate(hidden) @ model.output_t.T.astype(np.float64) + model.output_bias
        for k in range(1, model.config.skip + 1):  # the skip inputs: x_{t-k} S_k
            if t - k >= start:
                block = model.skip_weight[(k - 1) * vectors.shape[1]:k * vectors.shape[1]]
                row = row + vectors[ids[t - k]] @ block.astype(np.float64)
        rows.append(row)
    return log_softmax(np.array(rows))


@pytest.mark.parametrize("aggregation", ["sum", "cat"])
def test_forward_matches_reference_on_every_backend(backend, aggregation, held_out):
    model = fitted(aggregation=aggregation)
    ids, pos = next(iter(model.encode(held_out).chunks()))
    expected = _reference_log_proba(model, ids, pos)
    np.testing.assert_allclose(model.log_proba(ids, pos), expected, atol=2e-4)


def test_forward_random_weights_all_backends_agree():
    model = fitted(aggregation="cat")
    rng = np.random.default_rng(3)
    for layer in model.layers:
        layer.attention = rng.normal(size=layer.attention.shape).astype(np.float32)
        layer.hidden_t = rng.normal(size=layer.hidden_t.shape).astype(np.float32)
    ids, pos = next(iter(model.encode(tiny_documents(3, seed=5)).chunks()))
    expected = _reference_log_proba(model, ids, pos)
    for name in saffu.available_backends():
        saffu.set_backend(name)
        try:
            np.testing.assert_allclose(model.log_proba(ids, pos), expected, atol=2e-4, err_msg=name)
        finally:
            saffu.set_backend(saffu.available_backends()[0])


def test_log_proba_rows_are_distributions(model, held_out):
    ids, pos = next(iter(model.encode(held_out).chunks()))
    logp = model.log_proba(ids, pos)
    assert logp.shape == (np.count_nonzero(pos), model.vocab_size)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-4)


# --- the explicit fit ---------------------------------------------------------------------------


def test_fit_statistics_equal_materialized_features(model):
    corpus = model.encode(tiny_documents())
    ids, pos = next(iter(corpus.chunks()))
    targets = ids[pos > 0]
    stored = model.fit_state.statistics
    # Output pass: Σ [h, x_{t-1}, ..., x_{t-S}] ⊗ onehot(y) from the materialized inputs.
    vectors = np.vstack([model.cipher.vectors, np.zeros((1, model.cipher.bits), np.float32)])
    previous = model.previous_tokens(ids, pos)
    inputs = np.hstack([model.hidden_states(ids, pos),
                        *[vectors[previous[:, k]] for k in range(model.config.skip)]]).astype(np.float64)
    onehot = np.eye(model.vocab_size)[targets]
    np.testing.assert_allclose(stored["output"].stats["output"].F, inputs.T @ onehot, rtol=1e-5,
                               atol=1e-6)
    # Hidden pass: Σ z ⊗ code(y), z materialized by the forward kernel in "z" mode.
    codes = model.labels.vectors.astype(np.float64)
    for i, layer in enumerate(model.layers):
        width = layer.hidden_t.shape[1]
        z = np.empty((len(targets), width), dtype=np.float32)
        kernels.saffu_forward(ids, pos, layer.spec.kind_code, layer.spec.size, model.cipher.vectors,
                              layer.attention, Aggregation(model.config.aggregation).code,
                              np.zeros((0, 0), np.float32), 0, len(ids), z)
        np.testing.assert_allclose(stored["hidden"].stats[str(i)].F, z.T.astype(np.float64) @ codes[targets],
                                   rtol=1e-5, atol=1e-6)


def test_expert_statistics_equal_windows(model):
    """Radial experts: position k of the window co-occurs with the target k' = r−k tokens later."""
    corpus = model.encode(tiny_documents())
    ids, pos = next(iter(corpus.chunks()))
    stats = model.fit_state.statistics["experts"]
    radial = model.layers[0]
    r = radial.spec.size
    for k in range(r):
        expected = np.zeros((model.cipher.bits, model.vocab_size))
        lag = r - k
        for t in np.flatnonzero(pos >= lag):
            expected[:, ids[t]] += model.cipher.vectors[ids[t - lag]]
        np.testing.assert_allclose(stats.stats[f"0.{k}"].F, expected, rtol=1e-6)


def test_fit_is_deterministic():
    first, second = fitted(), fitted()
    for name, array in first.state_arrays().items():
        np.testing.assert_array_equal(array, second.state_arrays()[name], err_msg=name)


def test_fit_beats_unigram_and_uniform_attention_runs(held_out):
    model = fitted()
    scores = model.score(held_out)
    corpus = model.encode(tiny_documents())
    counts = np.bincount(np.concatenate([ids[pos > 0] for ids, pos in corpus.chunks()]),
                         minlength=model.vocab_size) + 0.1
    held = model.encode(held_out)
    targets = np.concatenate([ids[pos > 0] for ids, pos in held.chunks()])
    unigram = math.exp(-np.mean(np.log(counts[targets] / counts.sum())))
    assert scores["perplexity"] < unigram
    uniform = fitted(attention="uniform")
    assert "experts" not in uniform.fit_state.statistics
    assert np.all(uniform.layers[0].attention == 0)


def test_pass_statistics_merge_and_round_trip(tmp_path, model):
    corpus = model.encode(tiny_documents())
    ids, pos = next(iter(corpus.chunks()))
    from saffu.fit import accumulate_output

    cut = int(np.flatnonzero(pos == 0)[len(np.flatnonzero(pos == 0)) // 2])
    whole = accumulate_output(model, ids, pos)
    halves = accumulate_output(model, ids[:cut], pos[:cut]) + accumulate_output(model, ids[cut:], pos[cut:])
    np.testing.assert_allclose(halves.stats["output"].FT, whole.stats["output"].FT, rtol=1e-6)
    whole.save(str(tmp_path / "output.safetensors"))
    loaded = PassStatistics.load(str(tmp_path / "output.safetensors"))
    assert loaded.stage == "output"
    np.testing.assert_array_equal(loaded.stats["output"].FT, whole.stats["output"].FT)


@pytest.mark.parametrize("extra", ["radial1", "block1"])
def test_a_last_token_context_model_has_one_hidden_vector_per_token(extra):
    """Its table equals the kernel's hidden vectors bit for bit, where the model looks rows up
    (more targets than token ids) or not, and its output statistics equal the per-target sum."""
    from saffu.fit import accumulate_output

    model = fitted(radial=2, block=0, document=False, extra_contexts=extra, skip=1)
    layer = model.layers[1]
    assert layer.spec.reads_last_token_only and not model.layers[0].spec.reads_last_token_only
    ids, pos = next(iter(model.encode(tiny_documents()).chunks()))
    vectors, aggregation = model.cipher.vectors, model.config.aggregation
    assert np.count_nonzero(pos) > model.vocab_size  # the table path
    looked_up = layer.hidden(ids, pos, 0, len(ids), vectors, aggregation)
    computed = np.empty_like(looked_up)
    kernels.saffu_forward(ids, pos, layer.spec.kind_code, 1, vectors, layer.attention,
                          Aggregation.parse(aggregation).code, layer.hidden_t, 0, len(ids), computed)
    np.testing.assert_array_equal(looked_up, computed)
    stats = accumulate_output(model, ids, pos).stats["output"]
    D = layer.hidden_t.shape[0]
    expected = np.zeros((model.vocab_size, D))
    np.add.at(expected, ids[pos > 0], computed.astype(np.float64))
    np.testing.assert_allclose(stats.FT[:, D:2 * D], expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="reads more than the previous token"):
        model.layers[0].hidden_by_last_token(vectors, aggregation)


@pytest.mark.parametrize("dyadic", [True, False])
def test_skip_target_sums_equal_the_per_example_sums(dyadic):
    from saffu.layers import SkipInputs, pair_counts

    rng = np.random.default_rng(int(dyadic))
    vectors = ((rng.random((30, 12)) < 0.2) * (rng.integers(1, 3, (30, 12)) / 2
                                             if dyadic else rng.random((30, 12)))).astype(np.float32)
    skip = SkipInputs(vectors, 2)
    tokens = rng.integers(-1, 30, (500, 2)).astype(np.int32)
    targets = rng.integers(0, 9, 500).astype(np.int64)
    expected = np.zeros((9, 24))
    np.add.at(expected, targets, skip.matrix(tokens).toarray().astype(np.float64))
    sums = skip.target_sums(tokens, targets, 9).toarray()
    if dyadic:  # every partial sum exact: bit for bit
        np.testing.assert_array_equal(sums, expected)
    else:
        np.testing.assert_allclose(sums, expected, rtol=1e-12)
    present = tokens[:, 0] >= 0
    bigrams = pair_counts(targets[present], tokens[present, 0], (9, 30))
    np.testing.assert_array_equal(skip.target_sums(tokens, targets, 9, bigrams).toarray(), sums)
    np.testing.assert_array_equal(skip.matrix(np.array([[-1, 3]], np.int32)).toarray()[0, :12], 0.0)


def test_partial_fit_adds_data():
    docs = tiny_documents(20, seed=2)
    model = SaffuModel(SaffuConfig(**SMALL)).fit(docs[:10], verbose=0)
    tokens = model.fit_info["tokens"]
    model.partial_fit(docs[10:], verbose=0)
    full = SaffuModel(SaffuConfig(**SMALL)).fit(docs, verbose=0)
    assert model.fit_info["tokens"] > tokens
    # The output counts are exact sums; partial and full fits see the same number of examples.
    assert model.fit_state.statistics["output"].stats["output"].n_examples == \
        full.fit_state.statistics["output"].stats["output"].n_examples


# --- scoring and generation ------------------------------------------------------------------


def test_score_matches_direct_computation(model, held_out):
    scores = model.score(held_out)
    corpus = model.encode(held_out)
    nll = -sum(float(model.target_log_proba(ids, pos).sum()) for ids, pos in corpus.chunks())
    assert scores["tokens"] == sum(np.count_nonzero(pos) for _, pos in corpus.chunks())
    assert scores["perplexity"] == pytest.approx(math.exp(nll / scores["tokens"]))
    assert scores["bits_per_char"] == pytest.approx(nll / math.log(2) / sum(map(len, held_out)))



@pytest.mark.parametrize("skip", [0, 2])
def test_score_scaled_scores_the_fits_at_other_output_temperatures(skip, held_out):
    """The output solve is output_tau times the solve at 1 (the bias apart), so scaling the
    weights of one fit scores the fits at other output temperatures, in one pass."""
    first = fitted(output_tau=1.5, skip=skip)
    taus = [1.5, 0.75, 3.0, 4.2]
    together = first.score_scaled(held_out, [tau / 1.5 for tau in taus])
    assert together[0] == first.score(held_out)  # scale 1: bit for bit
    for tau, scores in zip(taus, together, strict=True):
        alone = fitted(output_tau=tau, skip=skip).score(held_out)
        assert scores["perplexity"] == pytest.approx(alone["perplexity"], rel=1e-6)
        assert scores["bits_per_char"] == pytest.approx(alone["bits_per_char"], rel=1e-6)
        assert scores["tokens"] == alone["tokens"]
    ids, pos = next(iter(first.encode(held_out).chunks()))
    assert first.target_log_proba(ids, pos, np.array([1.0, 2.0])).shape == (2, np.count_nonzero(pos))


def test_score_of_a_corrupted_model_is_an_error_not_nan(held_out):
    model = fitted()
    model.output_bias = np.full_like(model.output_bias, np.nan)
    with pytest.raises(ComputationError, match="negative log-likelihood is nan"):
        model.score(held_out)
    with pytest.raises(ComputationError, match="non-finite"):
        model.score_scaled(held_out, [1.0, 2.0])


@pytest.mark.parametrize("scales", [[], [0.0], [1.0, -2.0], [math.nan], "1", 2.0, np.array([])])
def test_score_scaled_rejects_bad_scales(model, held_out, scales):
    with pytest.raises(ValueError, match="output_scales"):
        model.score_scaled(held_out, scales)

def test_generate_is_seeded_and_bounded(model):
    first = model.generate("the king", max_tokens=20, seed=7)
    assert first == model.generate("the king", max_tokens=20, seed=7)
    assert len(model.tokenizer.encode(first)) <= 20
    assert model.generate("the", max_tokens=0) == ""
    greedy = model.generate("the", max_tokens=10, temperature=0)
    assert greedy == model.generate("the", max_tokens=10, temperature=0, seed=99)
    with pytest.raises(ValueError, match="top_p"):
        model.generate("x", top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("x", temperature=-1)


# --- persistence and bad inputs ------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, model, held_out):
    path = model.save(tmp_path / "m")
    loaded = SaffuModel.load(path)
    ids, pos = next(iter(model.encode(held_out).chunks()))
    np.testing.assert_array_equal(loaded.log_proba(ids, pos), model.log_proba(ids, pos))
    assert loaded.config == model.config
    model.save(path)  # overwriting an existing model directory works and leaves no temp dirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_several_context_models_of_one_kind_round_trip(tmp_path, held_out):
    config = SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=2, skip=1,
                         extra_contexts="radial1,radial3")
    model = SaffuModel(config).fit(tiny_documents(), verbose=0)
    assert [layer.spec.name for layer in model.layers] == ["radial2", "radial1", "radial3"]
    loaded = SaffuModel.load(model.save(tmp_path / "m"))
    assert loaded.config == model.config and [layer.spec for layer in loaded.layers] == \
        [layer.spec for layer in model.layers]
    ids, pos = next(iter(model.encode(held_out).chunks()))
    np.testing.assert_array_equal(loaded.log_proba(ids, pos), model.log_proba(ids, pos))
    np.testing.assert_allclose(model.log_proba(ids, pos), _reference_log_proba(model, ids, pos),
                               atol=1e-5)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights.safetensors").write_bytes(b"\0" * 10), "corrupted"),
    (lambda d: (d / "weights.safetensors").unlink(), "missing"),
    (lambda d: (d / "model.json").write_text("{not json"), "corrupted"),
    (lambda d: (d / "model.json").unlink(), "model.json is missing"),
    (lambda d: _bump_version(d), "format version"),
])
def test_load_rejects_damaged_directories(tmp_path, model, damage, message):
    path = model.save(tmp_path / "m")
    damage(path)
    with pytest.raises(ModelFormatError, match=message):
        SaffuModel.load(path)


def _bump_version(directory):
    manifest = json.loads((directory / "model.json").read_text())
    manifest["format_version"] = 999
    (directory / "model.json").write_text(json.dumps(manifest))


def test_float64_weights_written_elsewhere_load_as_float32(tmp_path, model, held_out):
    from safetensors.numpy import load_file, save_file

    from saffu._io import sha256_file

    path = model.save(tmp_path / "m")
    weights = path / "weights.safetensors"
    save_file({k: v.astype(np.float64) for k, v in load_file(str(weights)).items()}, str(weights))
    manifest = json.loads((path / "model.json").read_text())
    manifest["checksums"]["weights.safetensors"] = sha256_file(weights)
    del manifest["manifest_sha256"]  # another tool's manifest need not carry one
    (path / "model.json").write_text(json.dumps(manifest))
    loaded = SaffuModel.load(path)
    assert loaded.output_t.dtype == np.float32 and loaded.layers[0].hidden_t.dtype == np.float32
    assert loaded.score(held_out)["perplexity"] == pytest.approx(model.score(held_out)["perplexity"])


def test_partial_fit_with_a_signed_cipher_fails_clearly():
    """A thawed cipher trained by backprop may hold negative entries: statistics built from it
    can be negative, which the explicit solve cannot take."""
    model = fitted()
    model.cipher = model.cipher.with_vectors(model.cipher.vectors - 0.5)
    with pytest.raises(ValueError, match="must be finite and non-negative"):
        model.partial_fit(tiny_documents(), verbose=0)


def test_load_missing_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        SaffuModel.load(tmp_path / "nope")


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        SaffuModel(SaffuConfig(**SMALL)).fit([], verbose=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        SaffuModel().score(["text"])
    with pytest.raises(TypeError, match="single string"):
        fitted().score("a string, not a list of documents")


@pytest.mark.parametrize("skip", [1, 3])
def test_skip_inputs_feed_the_output_layer(skip, tmp_path, held_out):
    """With skip S the output layer reads [h, x_{t-1}, ..., x_{t-S}]: scoring (distinct rows,
    sparse skip columns) equals a dense NumPy forward pass, and the model round-trips."""
    model = fitted(skip=skip)
    vectors = np.vstack([model.cipher.vectors, np.zeros((1, model.cipher.bits), np.float32)])
    corpus = model.encode(held_out)
    expected = []
    for ids, pos in corpus.chunks():
        previous = model.previous_tokens(ids, pos)
        inputs = np.hstack([model.hidden_states(ids, pos), *[vectors[previous[:, k]] for k in range(skip)]])
        weight_t = np.hstack([model.output_t, model.skip_weight.T]).astype(np.float64)
        logits = inputs.astype(np.float64) @ weight_t.T + model.output_bias
        y = ids[pos > 0]
        expected.append(logits[np.arange(len(y)), y] - np.log(np.exp(logits).sum(axis=1)))
    ids, pos = next(iter(corpus.chunks()))
    np.testing.assert_allclose(model.target_log_proba(ids, pos), expected[0], rtol=1e-5, atol=1e-5)
    assert model.output_t.shape[1] == len(model.layers) * model.labels.bits
    assert model.skip_weight.shape == (skip * model.cipher.bits, model.vocab_size)
    loaded = SaffuModel.load(model.save(tmp_path / "m"))
    assert loaded.score(held_out)["perplexity"] == pytest.approx(model.score(held_out)["perplexity"])
    assert model.generate("ab", max_tokens=5, seed=1) == loaded.generate("ab", max_tokens=5, seed=1)

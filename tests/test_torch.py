"""The PyTorch module (saffu.torch) and backpropagation (saffu.torch.training)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from conftest import tiny_documents
from test_model import _reference_log_proba

torch = pytest.importorskip("torch")

from saffu.model import SaffuConfig, SaffuModel  # noqa: E402
from saffu.torch import cold_start, context_batch, from_torch, to_torch  # noqa: E402
from saffu.torch.training import Stopwatch, evaluate, lr_factor, train  # noqa: E402

SMALL = dict(tokenizer="char", bits=None, tau=1.0, output_tau=1.0, skip=0, extra_contexts="", hidden=None,
             radial=3, block=4, document=True)
FAST = dict(batch_targets=64, warmup_steps=2, eval_every=5, verbose=0, n_jobs=1)


def fitted(**changes) -> SaffuModel:
    return SaffuModel(SaffuConfig(**{**SMALL, **changes})).fit(tiny_documents(), verbose=0)


@pytest.fixture(scope="module")
def model() -> SaffuModel:
    return fitted()


@pytest.fixture(scope="module")
def corpus(model):
    return model.encode(tiny_documents())


@pytest.fixture(scope="module")
def dev(model):
    return model.encode(tiny_documents(4, seed=1))


def module_log_proba(module, ids, pos, start=0, stop=None) -> np.ndarray:
    with torch.no_grad():
        return module(context_batch(ids, pos, start, len(ids) if stop is None else stop,
                                    module.specs, module.skip)).numpy()


def perturb(model: SaffuModel, seed: int) -> SaffuModel:
    """The model with random attention and hidden weights (sharper than the explicit ones)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.attention = rng.normal(size=layer.attention.shape).astype(np.float32)
        layer.hidden_t = rng.normal(size=layer.hidden_t.shape).astype(np.float32)
    return model


# --- the module equals the numpy model --------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {}, {"aggregation": "cat"}, {"document": False}, {"radial": 0, "block": 5, "aggregation": "cat"},
    {"radial": 6, "block": 0, "document": False}, {"skip": 2}, {"skip": 5, "document": False},
    {"extra_contexts": "radial1,block2", "document": False, "block": 0, "aggregation": "cat"},
])
def test_module_matches_numpy_model(changes):
    model = perturb(fitted(**changes), seed=1)
    ids, pos = next(iter(model.encode(tiny_documents(4, seed=1)).chunks()))
    module = to_torch(model)
    np.testing.assert_allclose(module_log_proba(module, ids, pos), model.log_proba(ids, pos), atol=1e-5)
    np.testing.assert_allclose(module_log_proba(module, ids, pos), _reference_log_proba(model, ids, pos),
                               atol=1e-5)
    # A range starting inside a document reads its context from before the range.
    middle = int(np.flatnonzero(pos > 6)[0])
    np.testing.assert_allclose(module_log_proba(module, ids, pos, middle, len(ids) - 3),
                               model.log_proba(ids, pos, middle, len(ids) - 3), atol=1e-5)


def test_context_batch_rejects_bad_ranges(model):
    ids, pos = next(iter(model.encode(tiny_documents()).chunks()))
    specs = model.config.context_specs
    with pytest.raises(ValueError, match="no targets"):
        context_batch(ids, pos, 0, 1, specs)
    with pytest.raises(ValueError, match="not inside"):
        context_batch(ids, pos, 5, len(ids) + 1, specs)
    with pytest.raises(ValueError, match="equal length"):
        context_batch(ids, pos[:-1], 0, 10, specs)


def test_every_weight_gets_a_gradient(model, corpus):
    module = to_torch(model, thaw_cipher=True)
    ids, pos = next(iter(corpus.chunks()))
    batch = context_batch(ids, pos, 0, len(ids), module.specs, module.skip)
    torch.nn.functional.nll_loss(module(batch), batch.targets).backward()
    names = {name for name, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert names == {name for name, _ in module.named_parameters()}
    assert "cipher" in names and "attention.0" in names and "attention.2" not in names  # document
    assert "cipher" not in dict(to_torch(model).named_parameters())  # frozen by default


def test_from_torch_round_trip_keeps_everything(model, dev):
    copy = from_torch(to_torch(model))
    assert copy.config == model.config and copy.tokenizer is model.tokenizer
    for name, array in model.state_arrays().items():
        np.testing.assert_array_equal(copy.state_arrays()[name], array, err_msg=name)
    assert copy.score(dev) == model.score(dev)


def test_cold_start_shapes_and_init(model):
    warm, cold = to_torch(model), cold_start(model, seed=0)
    shapes = {name: p.shape for name, p in warm.named_parameters()}
    assert {name: p.shape for name, p in cold.named_parameters()} == shapes
    torch.testing.assert_close(cold.cipher, warm.cipher)
    assert torch.all(cold.output_bias == 0)
    assert 0.01 < cold.attention["0"].std() < 0.04
    bound = 1 / math.sqrt(cold.hidden_t[0].shape[1])
    assert cold.hidden_t[0].abs().max() <= bound
    for name, p in cold_start(model, seed=0).named_parameters():
        torch.testing.assert_close(p, dict(cold.named_parameters())[name])  # seeded
    assert not torch.equal(cold_start(model, seed=1).output_t, cold.output_t)
    bare = cold_start(SaffuConfig(**SMALL, vocab_size=50), seed=0)
    assert bare.output_t.shape[0] == 50 and bare.template is None
    with pytest.raises(ValueError, match="template"):
        from_torch(bare)
    with pytest.raises(ValueError, match="prepare"):
        cold_start(SaffuModel(SaffuConfig(**SMALL)))
    with pytest.raises(TypeError, match="SaffuConfig or SaffuModel"):
        cold_start({"radial": 3})


# --- training ----------------------------------------------------------------------------------


def test_warm_start_begins_at_the_explicit_score(model, corpus, dev):
    history = train(to_torch(model), corpus, dev, max_tokens=1, **FAST)
    assert history[0]["step"] == 0
    assert history[0]["dev_perplexity"] == pytest.approx(model.score(dev)["perplexity"], rel=1e-5)
    assert evaluate(to_torch(model), dev)["bits_per_char"] == pytest.approx(
        model.score(dev)["bits_per_char"], rel=1e-5)


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_training_lowers_the_training_loss(model, corpus, start):
    module = to_torch(model) if start == "warm" else cold_start(model, seed=0)
    before = evaluate(module, corpus)["nll"]
    train(module, corpus, lr=3e-3 if start == "warm" else 1e-2, epochs=3, **FAST)
    assert evaluate(module, corpus)["nll"] < before - (0.01 if start == "warm" else 0.3) * corpus.n_targets


def test_training_is_deterministic(model, corpus, dev):
    first, second = to_torch(model), to_torch(model)
    h1 = train(first, corpus, dev, epochs=1, **FAST)
    h2 = train(second, corpus, dev, epochs=1, **FAST)
    assert [r["dev_perplexity"] for r in h1] == [r["dev_perplexity"] for r in h2]
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("budget, reason", [
    ({"epochs": 2}, "epochs"), ({"epochs": None, "max_tokens": 300}, "max_tokens"),
    ({"epochs": None, "max_seconds": 0.05}, "max_seconds"),
])
def test_budgets_stop_training(model, corpus, budget, reason):
    history = train(to_torch(model), corpus, **{**FAST, **budget})
    assert history.stopped == reason
    last = history[-1]
    if reason == "epochs":
        assert last["tokens_seen"] == 2 * corpus.n_targets and last["epoch"] == 1
    elif reason == "max_tokens":
        assert 300 <= last["tokens_seen"] < 300 + FAST["batch_targets"]
    else:
        assert 0.05 <= last["seconds"] < 5


def test_stopwatch_excludes_pauses():
    clock = Stopwatch()
    with clock.paused():
        inside = clock.seconds
        time.sleep(0.2)
        assert clock.seconds == inside
    assert clock.seconds < 0.15
    assert lr_factor(0, 0.0, 10) == pytest.approx(0.1) and lr_factor(50, 0.0, 10) == 1.0
    assert lr_factor(50, 1.0, 10) == pytest.approx(0.1) and lr_factor(50, 0.5, 0) == pytest.approx(0.55)


def test_patience_stops_and_keeps_the_best_weights(model, corpus, dev):
    module = to_torch(model)
    # A learning rate far too high (in every group) makes dev perplexity worse than at the start at once.
    history = train(module, corpus, dev, lr=1.0, epochs=50, patience=2, lr_scales={},
                    **{**FAST, "warmup_steps": 0})
    assert history.stopped == "patience"
    assert len(history) == 3 and history[1]["dev_perplexity"] > history[0]["dev_perplexity"]
    assert evaluate(module, dev)["perplexity"] == pytest.approx(history[0]["dev_perplexity"], rel=1e-6)


def test_bad_training_arguments(model, corpus):
    module = to_torch(model)
    with pytest.raises(ValueError, match="at least one budget"):
        train(module, corpus, epochs=None)
    with pytest.raises(ValueError, match="lr"):
        train(module, corpus, lr=-1)
    with pytest.raises(ValueError, match="batch_targets"):
        train(module, corpus, batch_targets=0)
    with pytest.raises(TypeError, match="TokenizedCorpus"):
        train(module, tiny_documents())
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(cold_start(SaffuConfig(**SMALL, vocab_size=50)), corpus, checkpoint_dir="x")


def test_checkpoint_save_load_after_finetuning(tmp_path, model, corpus, dev):
    module = to_torch(model)
    history = train(module, corpus, dev, lr=3e-3, epochs=2, checkpoint_dir=str(tmp_path / "m"), **FAST)
    loaded = SaffuModel.load(tmp_path / "m")
    tuned = from_torch(module)
    ids, pos = next(iter(dev.chunks()))
    np.testing.assert_array_equal(loaded.log_proba(ids, pos), tuned.log_proba(ids, pos))
    np.testing.assert_allclose(loaded.log_proba(ids, pos), module_log_proba(module, ids, pos), atol=1e-5)
    best = min(r["dev_perplexity"] for r in history)
    assert loaded.score(dev)["perplexity"] == pytest.approx(best, rel=1e-5)
    assert loaded.fit_info["backprop"]["steps"] == history[-1]["step"]
    assert loaded.fit_info["tokens"] == model.fit_info["tokens"]


def test_thawed_cipher_is_trained_and_exported(model, corpus, dev):
    module = to_torch(model, thaw_cipher=True)
    train(module, corpus, lr=3e-3, epochs=1, **FAST)
    assert not np.allclose(module.cipher.detach().numpy(), model.cipher.vectors)
    tuned = from_torch(module)
    np.testing.assert_array_equal(tuned.cipher.vectors, module.cipher.detach().numpy())
    np.testing.assert_array_equal(model.cipher.vectors, to_torch(model).cipher.numpy())  # template untouched
    ids, pos = next(iter(dev.chunks()))
    np.testing.assert_allclose(tuned.log_proba(ids, pos), module_log_proba(module, ids, pos), atol=1e-5)


def test_thawed_cipher_survives_save_and_load(tmp_path, model, corpus, dev):
    module = to_torch(model, thaw_cipher=True)
    train(module, corpus, lr=3e-3, epochs=1, **FAST)
    tuned = from_torch(module)
    loaded = SaffuModel.load(tuned.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.cipher.vectors, tuned.cipher.vectors)


@pytest.mark.parametrize("thaw", [False, True])
def test_skip_inputs_round_trip_and_train(thaw, tmp_path):
    """A model with skip inputs goes to torch and back unchanged, trains (frozen cipher: sparse
    sums of skip_weight rows; thawed: a dense product, equal before any step) and reloads."""
    model = fitted(skip=3, document=False)
    ids, pos = next(iter(model.encode(tiny_documents(4, seed=2)).chunks()))
    module = to_torch(model, thaw_cipher=thaw)
    np.testing.assert_allclose(module_log_proba(module, ids, pos), model.log_proba(ids, pos), atol=1e-5)
    back = from_torch(module)
    np.testing.assert_array_equal(back.skip_weight, model.skip_weight)
    train(module, model.encode(tiny_documents()), lr=1e-2, epochs=1, **FAST)
    tuned = from_torch(module)
    assert not np.array_equal(tuned.skip_weight, model.skip_weight)
    np.testing.assert_allclose(module_log_proba(module, ids, pos), tuned.log_proba(ids, pos), atol=1e-4)
    loaded = SaffuModel.load(tuned.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.log_proba(ids, pos), tuned.log_proba(ids, pos), atol=1e-6)
    cold = cold_start(model, seed=0)
    assert cold.skip_weight.shape == module.skip_weight.shape

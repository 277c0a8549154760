"""Training options of saffu.trainer: learning rate per parameter group, the thaw schedule, the clock."""

from __future__ import annotations

import time

import pytest

from conftest import tiny_documents

torch = pytest.importorskip("torch")

from saffu.config import ROADMAP_DEFAULTS  # noqa: E402
from saffu.corpus import read_documents, shakespeare_split  # noqa: E402
from saffu.model import SaffuConfig, SaffuModel  # noqa: E402
from saffu.torch import cold_start, from_torch, to_torch  # noqa: E402
from saffu.torch.training import (  # noqa: E402
    PARAMETER_GROUPS,
    WARM_LR_SCALES,
    Stopwatch,
    _lr_scales,
    train,
)

SMALL = dict(tokenizer="char", bits=None, tau=1.0, output_tau=1.0, skip=0, hidden=None, radial=3, block=0,
             document=True, aggregation="cat")
FAST = dict(batch_targets=64, warmup_steps=2, eval_every=5, verbose=0, n_jobs=1)


@pytest.fixture(scope="module")
def model() -> SaffuModel:
    return SaffuModel(SaffuConfig(**SMALL)).fit(tiny_documents(), verbose=0)


@pytest.fixture(scope="module")
def corpus(model):
    return model.encode(tiny_documents())


@pytest.fixture(scope="module")
def dev(model):
    return model.encode(tiny_documents(4, seed=1))


# --- the warm start keeps what the explicit fit found ---------------------------------------------


@pytest.fixture(scope="module")
def shakespeare_warm(shakespeare_dir):
    """A BPE-2048 model (radial 2, cat, D 32) fitted on the first 20k characters of 3 train
    plays (19k targets, many rare tokens), and 8k characters of 2 dev plays."""
    split = shakespeare_split(shakespeare_dir)
    train_docs = [doc[:20_000] for doc in list(read_documents(split.train))[:3]]
    dev_docs = [doc[:8_000] for doc in list(read_documents(split.dev))[:2]]
    config = SaffuConfig(vocab_size=2048, bits=256, hidden=32, radial=2, aggregation="cat",
                         **ROADMAP_DEFAULTS)  # the defaults the cause was measured with
    model = SaffuModel(config).fit(train_docs, verbose=0, n_jobs=1)
    return model, model.encode(train_docs), model.encode(dev_docs)


def _warm_curve(shakespeare_warm, **options) -> list[float]:
    model, corpus, dev = shakespeare_warm
    history = train(to_torch(model), corpus, dev, lr=0.1, batch_targets=256, warmup_steps=5,
                    epochs=None, max_tokens=256 * 14, eval_every=2, eval_growth=2.0, verbose=0,
                    n_jobs=1, **options)
    return [record["dev_perplexity"] for record in history]


def test_warm_start_never_gets_worse_than_the_explicit_fit(shakespeare_warm):
    """Dev perplexity at steps 0, 2, 6, 14 with the default (warm) learning-rate scales stays at
    or below the explicit start, and ends below it; with every group at the full rate (the old
    behaviour) Adam lowers every rare token's output row and dev perplexity rises."""
    curve = _warm_curve(shakespeare_warm)
    assert all(perplexity <= curve[0] for perplexity in curve) and curve[-1] < 0.97 * curve[0]
    old = _warm_curve(shakespeare_warm, lr_scales={})
    assert max(old) > 1.05 * old[0]


# --- learning rate per parameter group ---------------------------------------------------------------


def test_default_lr_scales_follow_the_start(model):
    assert _lr_scales(to_torch(model), None) == {name: WARM_LR_SCALES.get(name, 1.0)
                                                 for name in PARAMETER_GROUPS}
    assert set(_lr_scales(cold_start(model), None).values()) == {1.0}
    assert _lr_scales(to_torch(model), {"hidden": 2})["hidden"] == 2.0


def test_a_zero_lr_scale_freezes_its_group(model, corpus):
    module = to_torch(model)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    train(module, corpus, epochs=1, lr_scales={"output": 0, "bias": 0}, **FAST)
    after = dict(module.named_parameters())
    assert torch.equal(after["output_t"], before["output_t"])
    assert torch.equal(after["output_bias"], before["output_bias"])
    assert not torch.equal(after["hidden_t.0"], before["hidden_t.0"])


@pytest.mark.parametrize("options, message", [
    ({"lr_scales": {"outputs": 1.0}}, "unknown parameter groups"),
    ({"lr_scales": {"hidden": -1.0}}, "lr_scales"),
    ({"lr_scales": {"hidden": float("nan")}}, "lr_scales"),
    ({"lr_scales": [("hidden", 1.0)]}, "mapping"),
    ({"thaw_after": -1}, "thaw_after"),
    ({"thaw_after": 2, "thaw_lr_scale": 0}, "thaw_lr_scale"),
    ({"clock": "gpu"}, "clock"),
])
def test_bad_options(model, corpus, options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        train(to_torch(model), corpus, epochs=1, **{**FAST, **options})


# --- the method's schedule: cipher frozen, then thawed --------------------------------------------


def test_thaw_after_trains_the_cipher_from_that_step(model, corpus, dev):
    frozen = to_torch(model)
    history = train(frozen, corpus, epochs=1, thaw_after=10_000, **FAST)
    assert history[-1]["step"] < 10_000 and not frozen.cipher_thawed  # ended before the thaw

    module = to_torch(model)
    history = train(module, corpus, dev, epochs=2, thaw_after=3, thaw_lr_scale=0.5,
                    lr_scales={"output": 0.0, "bias": 0.0}, **FAST)
    assert history[-1]["step"] > 3 and module.cipher_thawed
    assert not torch.equal(module.cipher, to_torch(model).cipher)
    exported = from_torch(module)
    assert exported.cipher.vectors.tobytes() == module.cipher.detach().numpy().tobytes()
    with pytest.raises(ValueError, match="frozen cipher"):
        train(to_torch(model, thaw_cipher=True), corpus, epochs=1, thaw_after=1, **FAST)


def test_thaw_lr_scale_sets_the_cipher_step(model, corpus):
    """With everything else frozen, the cipher moves less at a smaller thaw learning rate."""
    moves = []
    for scale in (1.0, 0.01):
        module = to_torch(model)
        train(module, corpus, epochs=1, thaw_after=0, thaw_lr_scale=scale,
              lr_scales={name: 0.0 for name in PARAMETER_GROUPS}, **FAST)
        moves.append(float((module.cipher.detach() - to_torch(model).cipher).abs().max()))
    assert moves[1] < 0.1 * moves[0]


# --- the clock -------------------------------------------------------------------------------------


def test_cpu_clock_ignores_sleep(model, corpus):
    clock = Stopwatch("cpu")
    time.sleep(0.2)
    assert clock.seconds < 0.1 and Stopwatch("wall").clock == "wall"
    history = train(to_torch(model), corpus, epochs=None, max_seconds=0.05, clock="cpu", **FAST)
    assert history.stopped == "max_seconds" and history[-1]["seconds"] >= 0.05

"""saffu.temperature: temperatures chosen by the fit on a held-out slice of the training documents."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import tiny_documents
from saffu import fit, temperature
from saffu.model import SaffuConfig, SaffuModel

SMALL = dict(tokenizer="char", bits=None, hidden=None, radial=2)


def test_golden_section_finds_the_minimum_and_keeps_the_default():
    result = temperature.golden_section_log(lambda x: (math.log(x) - math.log(2.5)) ** 2,
                                            0.5, 8.0, 12, default=1.5)
    assert abs(result.best - 2.5) < 0.05
    assert (1.5, (math.log(1.5) - math.log(2.5)) ** 2) in result.evaluations
    flat = temperature.golden_section_log(lambda x: 1.0, 0.5, 8.0, 4, default=1.5)
    assert flat.best == 1.5  # ties go to the default


def test_split_held_out_partitions_whole_documents():
    model = SaffuModel(SaffuConfig(**SMALL)).fit(tiny_documents(), verbose=0)
    corpus = model.encode(tiny_documents())
    rest, held_out = temperature.split_held_out(corpus, every=5)
    assert rest.n_documents + held_out.n_documents == corpus.n_documents
    assert held_out.n_documents == 2 and rest.n_tokens + held_out.n_tokens == corpus.n_tokens
    assert temperature.split_held_out(model.encode(tiny_documents(1))) is None
    scored = temperature.scored_targets(held_out, limit=7)
    assert scored.n_tokens - scored.n_documents == min(7, held_out.n_targets)


def test_auto_output_tau_is_never_worse_on_the_slice_than_the_default():
    docs = tiny_documents(30, seed=3)
    model = SaffuModel(SaffuConfig(**SMALL, output_tau=None)).fit(docs, verbose=0)
    chosen = model.fit_info["temperatures"]["output_tau"]
    assert model.config.output_tau == chosen and 0.2 <= chosen <= 4.0
    # Independently: the output layer of the non-held-out documents, scored on the slice by a
    # direct solve at each temperature.
    rest, held_out = temperature.split_held_out(model.encode(docs))
    stats = fit.accumulate_chunks(fit.STAGES[-1], model, rest.chunks()).stats["output"]
    inputs = temperature.held_out_inputs(model, temperature.scored_targets(held_out))
    default = temperature.default_output_tau(model)
    mass = len(model.layers) + model.config.skip  # one unit per hidden vector and skip input
    assert default == temperature.DEFAULT_OUTPUT_TAU / mass
    nll = {tau: temperature._fixed_nll(stats, inputs, model.config.alpha, tau)
           for tau in (chosen, default)}
    assert nll[chosen] <= nll[default] + 1e-9
    recorded = dict(map(tuple, model.fit_info["temperatures"]["output_tau_search"]))
    np.testing.assert_allclose(recorded[chosen], nll[chosen], rtol=1e-5)
    # the final output layer is solved from all the training documents
    full = SaffuModel(SaffuConfig(**SMALL, output_tau=chosen), tokenizer=model.tokenizer)
    full.fit(docs, verbose=0)
    np.testing.assert_allclose(model.output_t, full.output_t, rtol=1e-5, atol=1e-6)


def test_auto_tau_is_never_worse_on_the_slice_than_the_default():
    docs = tiny_documents(30, seed=4)
    model = SaffuModel(SaffuConfig(**SMALL, tau=None, output_tau=None)).fit(docs, verbose=0)
    info = model.fit_info["temperatures"]
    search = dict(map(tuple, info["tau_search"]))
    assert model.config.tau == info["tau"] and temperature.DEFAULT_TAU in search
    assert search[info["tau"]] <= search[temperature.DEFAULT_TAU]
    assert len(search) == temperature.TAU_EVALUATIONS + 1
    assert model.fit_info["tokens"] == model.encode(docs).n_tokens  # fitted on every document


def test_one_document_falls_back_to_the_defaults():
    model = SaffuModel(SaffuConfig(**SMALL, tau=None, output_tau=None))
    model.fit(tiny_documents(1), verbose=0)
    assert (model.config.tau, model.config.output_tau) == (temperature.DEFAULT_TAU,
                                                           temperature.default_output_tau(model))


@pytest.mark.parametrize("change, message", [
    ({"alpha": None}, "alpha must be a finite number > 0"),
    ({"tau": 0.0}, "tau must be None or a finite number > 0"),
    ({"output_tau": -1.0}, "output_tau must be None or a finite number > 0"),
])
def test_config_checks_the_temperatures(change, message):
    with pytest.raises(ValueError, match=message):
        SaffuConfig(**change)

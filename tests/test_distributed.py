"""The explicit fit on a Dask cluster: same weights as one process, and through a worker's death."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from conftest import tiny_documents

distributed = pytest.importorskip("dask.distributed")

from saffu import fit  # noqa: E402
from saffu.corpus import TokenizedCorpus, read_documents  # noqa: E402
from saffu.distributed import (  # noqa: E402
    DaskRunner,
    ShardedCorpus,
    distribute,
    fit_files,
    run_pass_distributed,
    tree_sum,
)
from saffu.model import SaffuConfig, SaffuModel  # noqa: E402
from saffu.tokenize import make_tokenizer  # noqa: E402

CONFIG = SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=3, block=4, document=True,
                     output_tau=1.5)  # automatic temperatures need a local fit
CHUNK_TOKENS = 700  # splits the documents below into several chunks (and shards)


@pytest.fixture(scope="module")
def documents() -> list[str]:
    return tiny_documents(30, seed=3)


@pytest.fixture(scope="module")
def tokenizer(documents):
    return make_tokenizer("char").fit(documents)


@pytest.fixture(scope="module")
def corpus(tokenizer, documents) -> TokenizedCorpus:
    corpus = TokenizedCorpus.from_documents(tokenizer, documents, chunk_tokens=CHUNK_TOKENS)
    assert len(corpus) >= 4
    return corpus


@pytest.fixture(scope="module")
def files(tmp_path_factory, documents) -> list[str]:
    """The documents in 7 files (documents separated by blank lines); one file is blank."""
    root = tmp_path_factory.mktemp("shards")
    paths = []
    for i in range(7):
        path = root / f"part{i}.txt"
        path.write_text("\n\n".join(documents[i * 5:(i + 1) * 5]) if i < 6 else "\n \n")
        paths.append(str(path))
    return paths


def fitted_from_files(files, client) -> SaffuModel:
    return fit_files(SaffuModel(CONFIG), files, client, separator="\n\n", files_per_shard=2,
                     chunk_tokens=CHUNK_TOKENS, verbose=0)


@pytest.fixture(scope="module")
def files_model(files, client) -> SaffuModel:
    return fitted_from_files(files, client)


def assert_same_weights(actual: SaffuModel, expected: SaffuModel, *, rtol: float = 0.0) -> None:
    """Equal arrays, bitwise (rtol 0) or within rtol·max|expected| (summation order differs)."""
    for name, array in expected.state_arrays().items():
        other = actual.state_arrays()[name]
        assert other.shape == array.shape, name
        if rtol == 0:
            np.testing.assert_array_equal(other, array, err_msg=name)
        else:
            np.testing.assert_allclose(other, array, rtol=0, atol=rtol * np.abs(array).max(),
                                       err_msg=name)


# --- same result as one process ------------------------------------------------------------------


def test_distributed_fit_equals_local_fit(client, tokenizer, corpus):
    local = SaffuModel(CONFIG, tokenizer=tokenizer).fit(corpus, n_jobs=1, verbose=0)
    remote = SaffuModel(CONFIG, tokenizer=tokenizer).fit(corpus, verbose=0, runner=DaskRunner(client))
    assert_same_weights(remote, local, rtol=1e-6)
    assert remote.fit_info["tokens"] == local.fit_info["tokens"] == corpus.n_tokens
    for name, stats in local.fit_state.statistics.items():
        for key, part in stats.stats.items():
            assert remote.fit_state.statistics[name].stats[key].n_examples == part.n_examples


def test_one_pass_with_larger_shards_and_fan_in(client, tokenizer, corpus):
    model = SaffuModel(CONFIG, tokenizer=tokenizer)
    fit.prepare(model, corpus)
    stage = fit.STAGES[0]
    local = fit.run_pass(stage, model, corpus, verbose=0)
    sharded = ShardedCorpus.scatter(corpus, client, shard_chunks=2)
    assert len(sharded.shards) == (len(corpus) + 1) // 2
    remote = run_pass_distributed(stage, model, sharded, client, split_every=3)
    assert remote.stats.keys() == local.stats.keys()
    for key, stats in local.stats.items():
        np.testing.assert_allclose(remote.stats[key].FT, stats.FT, rtol=1e-12)
        assert remote.stats[key].n_examples == stats.n_examples


def test_fit_files_equals_local_fit_of_the_same_files(files, files_model):
    local = SaffuModel(CONFIG).fit(read_documents(files, separator="\n\n"), n_jobs=1, verbose=0)
    assert_same_weights(files_model, local, rtol=1e-6)
    assert files_model.fit_info["documents"] == local.fit_info["documents"] == 30


def test_sharded_corpus_acts_as_the_corpus(client, corpus, files, files_model):
    sharded = distribute(corpus, client, shard_chunks=3)
    assert distribute(sharded, client) is sharded
    assert (len(sharded), sharded.n_tokens, sharded.n_documents, sharded.n_characters) == \
        (len(corpus), corpus.n_tokens, corpus.n_documents, corpus.n_characters)
    for (ids, pos), (ids2, pos2) in zip(sharded, corpus, strict=True):
        np.testing.assert_array_equal(ids, ids2)
        np.testing.assert_array_equal(pos, pos2)
    np.testing.assert_array_equal(sharded.token_counts(40), corpus.token_counts(40))
    from_files = ShardedCorpus.from_files(client, files_model.tokenizer,
                                          read_documents(files, separator="\n\n"),
                                          files_per_shard=3)
    assert len(from_files.shards) == 2  # the third shard (the blank file) is dropped
    assert from_files.n_documents == 30


def test_tree_sum_adds_neighbours_in_a_fixed_order(client):
    # 1e16 + 1 rounds to 1e16: the association of the additions shows in the result.
    values = client.scatter([1e16, 1.0, -1e16, 1.0])
    assert tree_sum(client, values).result() == (1e16 + 1.0) + (-1e16 + 1.0) == 0.0
    assert tree_sum(client, values, split_every=4).result() == ((1e16 + 1.0) - 1e16) + 1.0 == 1.0


@pytest.mark.parametrize("call, error, message", [
    (lambda c, corpus: ShardedCorpus.scatter(corpus, c, shard_chunks=0), ValueError, "shard_chunks"),
    (lambda c, corpus: distribute(list(corpus), c), TypeError, "TokenizedCorpus"),
    (lambda c, corpus: ShardedCorpus.from_files(c, None, ["a.txt"]), TypeError, "Corpus"),
    (lambda c, corpus: tree_sum(c, [], split_every=2), ValueError, "nothing to sum"),
    (lambda c, corpus: run_pass_distributed(fit.STAGES[0], None, corpus, c, split_every=1),
     ValueError, "split_every"),
    (lambda c, corpus: run_pass_distributed(fit.STAGES[0], None, corpus, c, kernel_threads=0),
     ValueError, "kernel_threads"),
])
def test_bad_arguments_are_named(client, corpus, call, error, message):
    with pytest.raises(error, match=message):
        call(client, corpus)


# --- fault tolerance ------------------------------------------------------------------------------


def exit_once(marker: str, accumulate, model, ids, pos):
    """``accumulate``, except that the first call anywhere kills its worker process."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return accumulate(model, ids, pos)
    os._exit(1)


def stages_killing_a_worker(marker: str) -> tuple[fit.Stage, ...]:
    """saffu.fit.STAGES, but the first task of the hidden pass (the third) kills its worker."""
    return tuple(fit.Stage(s.name, functools.partial(exit_once, marker, s.accumulate), s.solve)
                 if s.name == "hidden" else s for s in fit.STAGES)


def test_worker_killed_in_a_pass_gives_the_same_weights(client, files, files_model, tmp_path,
                                                        monkeypatch):
    marker = str(tmp_path / "killed")
    monkeypatch.setattr(fit, "STAGES", stages_killing_a_worker(marker))
    model = fitted_from_files(files, client)
    assert os.path.exists(marker)  # a worker did die in the hidden pass
    assert_same_weights(model, files_model)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_scattered_shards_lost_with_a_worker_fail_clearly(client, tokenizer, corpus, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(fit, "STAGES", stages_killing_a_worker(str(tmp_path / "killed")))
    with pytest.raises(RuntimeError, match=r"cancelled the hidden pass.*from_files"):
        SaffuModel(CONFIG, tokenizer=tokenizer).fit(corpus, verbose=0, runner=DaskRunner(client))
    client.wait_for_workers(2, timeout=60)

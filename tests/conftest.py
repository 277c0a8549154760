"""Shared fixtures: the Shakespeare corpus (../shared/data) and a tiny synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import saffu

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
BACKENDS = saffu.available_backends()


@pytest.fixture(scope="session")
def shakespeare_dir() -> Path:
    if not SHAKESPEARE.is_dir():
        pytest.skip(f"shared corpus not found at {SHAKESPEARE}")
    return SHAKESPEARE


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test once per available kernel backend, restoring the default afterwards."""
    previous = saffu.get_backend()
    saffu.set_backend(request.param)
    yield request.param
    saffu.set_backend(previous)


@pytest.fixture(scope="module")
def client():
    """A Dask client of a 2-process LocalCluster (one thread each), shared by a test module."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def tiny_documents(n_documents: int = 12, seed: int = 0) -> list[str]:
    """Small, varied, deterministic English-like documents (some a single word)."""
    rng = np.random.default_rng(seed)
    words = ("the king and queen of a small land spoke to their people about bread , wine "
             "and the sea . o what a night ! good morrow my lord ; how now ?").split()
    docs = []
    for i in range(n_documents):
        length = 1 if i % 5 == 0 else int(rng.integers(5, 60))
        docs.append(" ".join(rng.choice(words, size=length)))
    return docs

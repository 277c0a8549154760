"""The fused SAFFU-pass kernels: every backend against the NumPy reference, independent
constructions of the same quantities, determinism across thread counts, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

import saffu
from saffu import kernels
from saffu._backend import backend_module
from saffu.kinds import Aggregation, ContextKind

reference = backend_module("numpy")
RADIAL, BLOCK, DOCUMENT = (kind.code for kind in ContextKind)
SUM, CAT = (aggregation.code for aggregation in Aggregation)
V, BITS, D, SOD = 11, 5, 4, 2
# Tokens after <sod> per document: empty and one-token documents included.
LENGTHS = (7, 1, 0, 13, 2, 1, 30, 5)
FAST_BACKENDS = [b for b in saffu.available_backends() if b != "numpy"]
# (kind, K): K = 1, K inside the documents, and K longer than every document.
ATTENTION_MODELS = [(RADIAL, 1), (RADIAL, 3), (RADIAL, 40), (BLOCK, 1), (BLOCK, 4), (BLOCK, 40)]
CONTEXT_MODELS = [*ATTENTION_MODELS, (DOCUMENT, 1)]


def make_corpus(lengths=LENGTHS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ids, pos (n,) int32: one <sod> then `length` random tokens per document."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([[SOD, *rng.integers(0, V, length)] for length in lengths])
    pos = np.concatenate([np.arange(length + 1) for length in lengths])
    return ids.astype(np.int32), pos.astype(np.int32)


def unit_rows(rng: np.random.Generator, rows: int, cols: int, density: float = 0.5) -> np.ndarray:
    """(rows, cols) float32, non-negative, sparse, each row summing to 1."""
    X = rng.random((rows, cols)) * (rng.random((rows, cols)) < density)
    X[np.arange(rows), rng.integers(0, cols, rows)] += 0.5  # no empty row
    return (X / X.sum(axis=1, keepdims=True)).astype(np.float32)


class Weights:
    """Random inputs of every kernel for one context model."""

    def __init__(self, kind: int, K: int, aggregation: int, seed: int = 1):
        rng = np.random.default_rng(seed)
        f32 = np.float32
        self.Z = K * BITS if aggregation == CAT else BITS
        self.E = unit_rows(rng, V, BITS)
        self.W = (3 * rng.normal(size=(K, K))).astype(f32)
        self.UT = (3 * rng.normal(size=(D, self.Z))).astype(f32)
        self.codes = unit_rows(rng, V, D)
        self.expert_UT = rng.normal(size=(K, V, BITS)).astype(f32)
        self.expert_b = rng.normal(size=(K, V)).astype(f32)
        self.expert_logz = rng.normal(size=(K, V)).astype(f32)


def run_stats(module, kind, K, aggregation, ids, pos, n_threads=2) -> dict[str, object]:
    """All statistics of one context model from a backend module (or the reference)."""
    w = Weights(kind, K, aggregation)
    result: dict[str, object] = {}
    if kind != DOCUMENT:
        FT, T = np.zeros((K, V, BITS)), np.zeros((K, V))
        module.saffu_expert_stats(ids, pos, kind, K, w.E, FT, T, n_threads)
        result.update(expert_FT=FT, expert_T=T)
        FT = np.zeros((K, K))
        mass = module.saffu_attention_stats(
            ids, pos, kind, K, w.E, w.expert_UT, w.expert_b, w.expert_logz, FT, n_threads
        )
        result.update(attention_FT=FT, attention_mass=mass)
    FT = np.zeros((D, w.Z))
    mass = module.saffu_hidden_stats(ids, pos, kind, K, w.E, w.W, aggregation, w.codes, FT, n_threads)
    result.update(hidden_FT=FT, hidden_mass=mass)
    return result


def run_forward(
    module, kind, K, aggregation, ids, pos, start=0, stop=None, *, hidden=True, n_threads=2, weights=None
):
    """Rows of saffu_forward over [start, stop): h (hidden=True) or z."""
    w = weights or Weights(kind, K, aggregation)
    stop = len(ids) if stop is None else stop
    UT = w.UT if hidden else np.zeros((0, 0), np.float32)
    out = np.full((len(ids), D if hidden else w.Z), np.nan, np.float32)
    rows = module.saffu_forward(ids, pos, kind, K, w.E, w.W, aggregation, UT, start, stop, out, n_threads)
    assert rows == np.count_nonzero(pos[start:stop])
    assert np.isnan(out[rows:]).all(), "rows past the targets must stay untouched"
    return out[:rows]


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


# --- every backend against the reference -------------------------------------------------------


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("aggregation", [SUM, CAT])
@pytest.mark.parametrize(("kind", "K"), CONTEXT_MODELS)
def test_stats_match_reference(backend, kind, K, aggregation, corpus):
    expected = run_stats(reference, kind, K, aggregation, *corpus)
    actual = run_stats(backend_module(backend), kind, K, aggregation, *corpus)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("hidden", [True, False], ids=["h", "z"])
@pytest.mark.parametrize("aggregation", [SUM, CAT])
@pytest.mark.parametrize(("kind", "K"), CONTEXT_MODELS)
def test_forward_matches_reference(backend, kind, K, aggregation, hidden, corpus):
    expected = run_forward(reference, kind, K, aggregation, *corpus, hidden=hidden)
    actual = run_forward(backend_module(backend), kind, K, aggregation, *corpus, hidden=hidden)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize(("kind", "K"), [(RADIAL, 3), (BLOCK, 4), (DOCUMENT, 1)])
def test_forward_matches_reference_with_signed_vectors(backend, kind, K, corpus):
    """A thawed, trained cipher may hold negative entries: the document model's L1 norm and the
    sparse paths must still follow the definitions."""
    weights = Weights(kind, K, CAT)
    weights.E = (weights.E - 0.2 * (weights.E > 0.3)).astype(np.float32)
    expected = run_forward(reference, kind, K, CAT, *corpus, weights=weights)
    actual = run_forward(backend_module(backend), kind, K, CAT, *corpus, weights=weights)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


# --- independent constructions -----------------------------------------------------------------


@pytest.mark.parametrize("backend", saffu.available_backends())
def test_radial1_expert_stats_are_bigram_counts_times_cipher(backend, corpus):
    ids, pos = corpus
    E = Weights(RADIAL, 1, SUM).E
    targets = np.flatnonzero(pos)
    bigrams = np.zeros((V, V))  # bigrams[previous, next]
    np.add.at(bigrams, (ids[targets - 1], ids[targets]), 1.0)
    FT, T = np.zeros((1, V, BITS)), np.zeros((1, V))
    backend_module(backend).saffu_expert_stats(ids, pos, RADIAL, 1, E, FT, T, 2)
    np.testing.assert_allclose(FT[0], bigrams.T @ E, rtol=1e-12)
    np.testing.assert_array_equal(T[0], bigrams.sum(axis=0))


def context_means(ids, pos, E, window: int | None) -> np.ndarray:
    """(targets, bits): mean of the last `window` (None: all) vectors of each target's context."""
    rows = []
    for t in np.flatnonzero(pos):
        first = t - pos[t] if window is None else max(t - pos[t], t - window)
        rows.append(E[ids[first:t]].astype(np.float64).mean(axis=0))
    return np.array(rows)


@pytest.mark.parametrize("backend", saffu.available_backends())
@pytest.mark.parametrize("r", [1, 3, 40])
def test_uniform_attention_averages_the_window(backend, r, corpus):
    """W = 0 attends uniformly: the sum-aggregated z is the mean of the last min(r, pos) vectors."""
    ids, pos = corpus
    w = Weights(RADIAL, r, SUM)
    w.W[:] = 0.0
    z = run_forward(backend_module(backend), RADIAL, r, SUM, ids, pos, hidden=False, weights=w)
    np.testing.assert_allclose(z, context_means(ids, pos, w.E, r), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", saffu.available_backends())
def test_document_model_is_the_running_mean(backend, corpus):
    ids, pos = corpus
    z = run_forward(backend_module(backend), DOCUMENT, 1, SUM, ids, pos, hidden=False)
    np.testing.assert_allclose(z, context_means(ids, pos, Weights(DOCUMENT, 1, SUM).E, None), rtol=1e-5)


@pytest.mark.parametrize("backend", saffu.available_backends())
@pytest.mark.parametrize("aggregation", [SUM, CAT])
@pytest.mark.parametrize(("kind", "K"), [(RADIAL, 3), (BLOCK, 4), (DOCUMENT, 1)])
def test_hidden_and_stats_agree_with_forward_z(backend, kind, K, aggregation, corpus):
    """h = softmax(UT z), and the hidden statistics are Σ codes[y] ⊗ z, from the z rows."""
    ids, pos = corpus
    module, w = backend_module(backend), Weights(kind, K, aggregation)
    z = run_forward(module, kind, K, aggregation, ids, pos, hidden=False).astype(np.float64)
    logits = z @ w.UT.T
    h = np.exp(logits - logits.max(axis=1, keepdims=True))
    h /= h.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(run_forward(module, kind, K, aggregation, ids, pos), h, rtol=2e-5, atol=1e-7)
    stats = run_stats(module, kind, K, aggregation, ids, pos)
    targets = ids[pos > 0]
    np.testing.assert_allclose(stats["hidden_FT"], w.codes[targets].T @ z, rtol=1e-5)
    np.testing.assert_allclose(stats["hidden_mass"], z.sum(), rtol=1e-6)


# --- ranges, threads, determinism --------------------------------------------------------------


@pytest.mark.parametrize("backend", saffu.available_backends())
@pytest.mark.parametrize(("kind", "K"), [(RADIAL, 3), (BLOCK, 4), (DOCUMENT, 1)])
def test_forward_subranges_are_rows_of_the_full_call(backend, kind, K, corpus):
    ids, pos = corpus
    module = backend_module(backend)
    full = run_forward(module, kind, K, CAT, ids, pos)
    n = len(ids)
    # Mid-document starts, document boundaries, empty and single-token ranges.
    for start, stop in [(0, n), (5, 40), (9, 10), (10, 10), (31, n), (0, 3), (n - 1, n), (n, n)]:
        first_row = np.count_nonzero(pos[:start])
        part = run_forward(module, kind, K, CAT, ids, pos, start, stop)
        np.testing.assert_array_equal(part, full[first_row : first_row + len(part)])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize(("kind", "K"), [(RADIAL, 3), (BLOCK, 4), (DOCUMENT, 1)])
def test_thread_counts_agree(backend, kind, K):
    ids, pos = make_corpus(LENGTHS * 4, seed=3)
    module = backend_module(backend)
    stats = [run_stats(module, kind, K, CAT, ids, pos, n_threads=n) for n in (1, 2, 3)]
    for other in stats[1:]:
        for name, value in stats[0].items():
            np.testing.assert_allclose(other[name], value, rtol=1e-12, atol=0, err_msg=name)
    rows = [run_forward(module, kind, K, CAT, ids, pos, 7, len(ids) - 3, n_threads=n) for n in (1, 2, 3)]
    for other in rows[1:]:
        np.testing.assert_array_equal(other, rows[0])


@pytest.mark.parametrize("backend", saffu.available_backends())
def test_statistics_accumulate_in_place(backend, corpus):
    """Adding two halves of a corpus (split between documents) equals one call on all of it."""
    ids, pos = corpus
    split = int(np.flatnonzero(pos == 0)[4])
    module = backend_module(backend)
    whole = run_stats(module, RADIAL, 3, SUM, ids, pos)
    w = Weights(RADIAL, 3, SUM)
    FT, T = np.zeros((3, V, BITS)), np.zeros((3, V))
    for part in (slice(0, split), slice(split, None)):
        module.saffu_expert_stats(ids[part], pos[part], RADIAL, 3, w.E, FT, T, 2)
    np.testing.assert_allclose(FT, whole["expert_FT"], rtol=1e-12)
    np.testing.assert_array_equal(T, whole["expert_T"])


@pytest.mark.parametrize("backend", saffu.available_backends())
@pytest.mark.parametrize("lengths", [(), (0, 0, 0)], ids=["empty", "only-sod"])
def test_corpus_without_targets_adds_nothing(backend, lengths):
    ids, pos = make_corpus(lengths) if lengths else (np.zeros(0, np.int32), np.zeros(0, np.int32))
    module = backend_module(backend)
    for kind, K in [(RADIAL, 3), (DOCUMENT, 1)]:
        stats = run_stats(module, kind, K, CAT, ids, pos)
        assert all(not np.any(value) for value in stats.values())
        assert len(run_forward(module, kind, K, CAT, ids, pos)) == 0


# --- the validated public API ------------------------------------------------------------------


@pytest.fixture(params=saffu.available_backends())
def active_backend(request):
    previous = saffu.get_backend()
    saffu.set_backend(request.param)
    yield request.param
    saffu.set_backend(previous)


def test_public_api_dispatches_to_the_active_backend(active_backend, corpus):
    ids, pos = corpus
    w = Weights(BLOCK, 4, CAT)
    expected = run_stats(reference, BLOCK, 4, CAT, ids, pos)
    FT, T = np.zeros((4, V, BITS)), np.zeros((4, V))
    kernels.saffu_expert_stats(ids, pos, BLOCK, 4, w.E, FT, T)
    np.testing.assert_allclose(FT, expected["expert_FT"], rtol=1e-12)
    FT = np.zeros((4, 4))
    mass = kernels.saffu_attention_stats(ids, pos, BLOCK, 4, w.E, w.expert_UT, w.expert_b, w.expert_logz, FT)
    np.testing.assert_allclose(FT, expected["attention_FT"], rtol=1e-5)
    assert mass == pytest.approx(expected["attention_mass"], rel=1e-6)
    FT = np.zeros((D, w.Z))
    mass = kernels.saffu_hidden_stats(ids, pos, BLOCK, 4, w.E, w.W, CAT, w.codes, FT)
    np.testing.assert_allclose(FT, expected["hidden_FT"], rtol=1e-5)
    assert isinstance(mass, float)
    out = np.empty((np.count_nonzero(pos), D), np.float32)
    rows = kernels.saffu_forward(ids, pos, BLOCK, 4, w.E, w.W, CAT, w.UT, 0, len(ids), out)
    assert rows == len(out)
    np.testing.assert_allclose(out, run_forward(reference, BLOCK, 4, CAT, ids, pos), rtol=1e-5, atol=1e-7)


def forward_args(**changes):
    """Valid saffu_forward arguments (radial r = 3, cat), with some replaced."""
    ids, pos = make_corpus()
    w = Weights(RADIAL, 3, CAT)
    args = dict(
        ids=ids,
        pos=pos,
        kind=RADIAL,
        K=3,
        E=w.E,
        W=w.W,
        aggregation=CAT,
        UT=w.UT,
        start=0,
        stop=len(ids),
        out=np.empty((len(ids), D), np.float32),
    )
    args.update(changes)
    return args


CORPUS = make_corpus()


def corrupted_pos(index: int, value: int) -> np.ndarray:
    """The test corpus's positions with pos[index] = value."""
    pos = CORPUS[1].copy()
    pos[index] = value
    return pos


BAD_FORWARD_INPUTS = [
    (dict(ids=CORPUS[0].astype(np.int64)), TypeError, "ids must have dtype int32"),
    (dict(ids=list(CORPUS[0])), TypeError, "ids must be a numpy.ndarray"),
    (dict(pos=CORPUS[1][:-1]), ValueError, "pos must have shape"),
    (
        dict(ids=np.where(CORPUS[0] == 3, V, CORPUS[0]).astype(np.int32)),
        ValueError,
        r"ids\[\d+\] = 11 is out of range",
    ),
    (dict(ids=np.where(CORPUS[0] == 3, -1, CORPUS[0]).astype(np.int32)), ValueError, "out of range"),
    (dict(pos=corrupted_pos(0, 1)), ValueError, r"pos\[0\]"),
    (dict(pos=corrupted_pos(3, 5)), ValueError, r"pos\[3\] = 5 is inconsistent"),
    (dict(pos=corrupted_pos(3, -1)), ValueError, r"pos\[3\] = -1"),
    (dict(kind=3), ValueError, "kind must be one of"),
    (dict(kind=1.0), TypeError, "kind must be an integer"),
    (dict(K=0), ValueError, "K must be >= 1"),
    (dict(kind=DOCUMENT), ValueError, "K must be 1"),
    (dict(aggregation=2), ValueError, "aggregation must be 0"),
    (dict(E=np.ones((V, BITS))), TypeError, "E must have dtype float32"),
    (dict(E=np.ones((V, BITS, 1), np.float32)), ValueError, "E must be 2-D"),
    (dict(E=np.ones((V - 1, BITS), np.float32)), ValueError, "out of range"),
    (dict(E=np.full((V, BITS), np.nan, np.float32)), ValueError, "E must be finite"),
    (dict(W=np.ones((2, 2), np.float32)), ValueError, r"W must have shape \(3, 3\)"),
    (dict(W=np.ones((6, 6), np.float32)[::2, ::2]), ValueError, "W must be C-contiguous"),
    (dict(UT=np.ones((D, BITS), np.float32)), ValueError, "UT must have shape"),
    (dict(UT=np.ones((0, 15), np.float32)), ValueError, "UT must have shape"),
    (dict(start=-1), ValueError, "start must be >= 0"),
    (dict(start=5, stop=4), ValueError, "stop must be >= 5"),
    (dict(stop=len(CORPUS[0]) + 1), ValueError, "exceeds the corpus length"),
    (dict(out=np.empty((3, D), np.float32)), ValueError, "out must have shape"),
    (dict(out=np.empty((len(CORPUS[0]), D + 1), np.float32)), ValueError, "out must have shape"),
    (dict(out=np.empty((len(CORPUS[0]), D), np.float64)), TypeError, "out must have dtype float32"),
]


@pytest.mark.parametrize(("changes", "error", "match"), BAD_FORWARD_INPUTS)
def test_forward_rejects_bad_input(changes, error, match):
    with pytest.raises(error, match=match):
        kernels.saffu_forward(**forward_args(**changes))


def test_forward_rejects_read_only_or_aliased_output():
    args = forward_args()
    args["out"].flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        kernels.saffu_forward(**args)
    args = forward_args()
    E_inside_out = args["out"].reshape(-1)[: V * BITS].reshape(V, BITS)
    E_inside_out[:] = args["E"]
    with pytest.raises(ValueError, match="out must not share memory with E"):
        kernels.saffu_forward(**{**args, "E": E_inside_out})


def test_forward_checks_only_the_range_it_reads():
    """Tokens before the first target's document and after stop are never read."""
    ids, pos = make_corpus()
    ids = ids.copy()
    second_document = int(np.flatnonzero(pos == 0)[1])
    ids[0] = V  # invalid, but in the first document only
    args = forward_args(ids=ids, pos=pos, start=second_document + 1)
    assert kernels.saffu_forward(**args) == np.count_nonzero(pos[second_document:])
    with pytest.raises(ValueError, match=r"ids\[0\]"):
        kernels.saffu_forward(**forward_args(ids=ids, pos=pos, start=1))


def test_stats_reject_bad_input():
    ids, pos = make_corpus()
    w = Weights(RADIAL, 3, SUM)
    with pytest.raises(ValueError, match="kind must be one of 0 \\(radial\\), 1 \\(block\\)"):
        kernels.saffu_expert_stats(ids, pos, DOCUMENT, 1, w.E, np.zeros((1, V, BITS)), np.zeros((1, V)))
    with pytest.raises(ValueError, match=r"FT must have shape \(3, 11, 5\)"):
        kernels.saffu_expert_stats(ids, pos, RADIAL, 3, w.E, np.zeros((3, V, BITS + 1)), np.zeros((3, V)))
    with pytest.raises(TypeError, match="T must have dtype float64"):
        kernels.saffu_expert_stats(
            ids, pos, RADIAL, 3, w.E, np.zeros((3, V, BITS)), np.zeros((3, V), np.float32)
        )
    FT = np.zeros((3, V, BITS))
    T_inside_FT = FT.reshape(-1)[: 3 * V].reshape(3, V)
    with pytest.raises(ValueError, match="FT must not share memory with T"):
        kernels.saffu_expert_stats(ids, pos, RADIAL, 3, w.E, FT, T_inside_FT)
    with pytest.raises(ValueError, match=r"expert_logz must have shape \(3, 11\)"):
        kernels.saffu_attention_stats(
            ids, pos, RADIAL, 3, w.E, w.expert_UT, w.expert_b, w.expert_logz[:2].copy(), np.zeros((3, 3))
        )
    with pytest.raises(ValueError, match="expert_b must be finite"):
        kernels.saffu_attention_stats(
            ids,
            pos,
            RADIAL,
            3,
            w.E,
            w.expert_UT,
            np.full_like(w.expert_b, -np.inf),
            w.expert_logz,
            np.zeros((3, 3)),
        )
    with pytest.raises(ValueError, match="codes must have one row per token"):
        kernels.saffu_hidden_stats(
            ids, pos, RADIAL, 3, w.E, w.W, SUM, w.codes[:-1].copy(), np.zeros((D, BITS))
        )
    with pytest.raises(ValueError, match=r"FT must have shape \(4, 15\)"):
        kernels.saffu_hidden_stats(ids, pos, RADIAL, 3, w.E, w.W, CAT, w.codes, np.zeros((D, BITS)))
    frozen = np.zeros((D, BITS))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="FT must be writeable"):
        kernels.saffu_hidden_stats(ids, pos, RADIAL, 3, w.E, w.W, SUM, w.codes, frozen)


@pytest.mark.skipif("cpp" not in saffu.available_backends(), reason="compiled module not built")
def test_compiled_module_rejects_wrong_shapes_and_dtypes():
    """Direct calls into saffu._core (bypassing validation) raise instead of crashing."""
    core = backend_module("cpp")
    ids, pos = make_corpus()
    w = Weights(RADIAL, 3, SUM)
    with pytest.raises(ValueError, match="FT has the wrong shape"):
        core.saffu_expert_stats(ids, pos, RADIAL, 3, w.E, np.zeros((3, V, 2)), np.zeros((3, V)), 1)
    with pytest.raises(TypeError):  # no silent conversion of an output array
        core.saffu_expert_stats(
            ids, pos, RADIAL, 3, w.E, np.zeros((3, V, BITS), np.float32), np.zeros((3, V)), 1
        )
    with pytest.raises(ValueError, match="out must have shape"):
        core.saffu_forward(
            ids,
            pos,
            RADIAL,
            3,
            w.E,
            w.W,
            SUM,
            w.UT[:, :BITS].copy(),
            0,
            len(ids),
            np.empty((2, D), np.float32),
            1,
        )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_finiteness_check_refuses_any_bad_entry_and_accepts_an_overflowing_sum(bad):
    from saffu.kernels.saffu_pass import _check_finite

    large = np.full((3, 5), np.finfo(np.float32).max, np.float32)  # its sum overflows to inf
    _check_finite(large=large, negative=-large)
    for index in [(0, 0), (1, 3), (2, 4)]:
        corrupted = large.copy()
        corrupted[index] = bad
        with pytest.raises(ValueError, match="corrupted must be finite"):
            _check_finite(corrupted=corrupted)

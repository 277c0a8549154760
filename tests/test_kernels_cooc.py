"""Co-occurrence and solve kernels: every backend matches the NumPy reference, deterministically."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import saffu
from saffu import kernels
from saffu._backend import backend_module, threads
from saffu.kernels.cooc import cooc_dense_dense

REFERENCE = backend_module("numpy")
FLOATS = (np.float32, np.float64)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_problem(seed: int, n: int, D: int, N: int, dtype, scale: float = 1.0):
    """Counts-like inputs with some all-zero rows, targets, and a non-zero starting FT."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, D)) < 0.4) * rng.integers(1, 5, (n, D)) * scale
    X[rng.random(n) < 0.2] = 0.0
    targets = rng.integers(0, N, n).astype(np.int64)
    FT = rng.integers(0, 3, (N, D)).astype(np.float64)
    return FT, X.astype(dtype), targets


def csr_arrays(X: np.ndarray, seed: int):
    """CSR arrays of X with the entries of each row shuffled and one entry split in two
    duplicates (the kernels must not assume sorted or unique column indices)."""
    rng = np.random.default_rng(seed)
    indptr, indices, weights = [0], [], []
    for row in X:
        cols = rng.permutation(np.flatnonzero(row))
        vals = row[cols]
        if len(cols):
            cols, vals = np.append(cols, cols[0]), np.append(vals, vals[0])
            vals[0] = vals[-1] = vals[0] / 2
        indices.extend(cols)
        weights.extend(vals)
        indptr.append(len(indices))
    return (np.array(indptr, np.int64), np.array(indices, np.int64),
            np.array(weights, X.dtype))


problems = st.tuples(
    st.integers(0, 2**31),  # seed
    st.integers(0, 60),  # examples (0: an empty chunk)
    st.integers(1, 9),  # inputs D
    st.integers(1, 7),  # targets N
    st.sampled_from(FLOATS),
    st.sampled_from([1.0, 1e12]),  # very large counts
    st.integers(1, 5),  # threads
)


@SETTINGS
@given(problem=problems)
def test_dense_onehot_equals_reference(backend, problem):
    seed, n, D, N, dtype, scale, n_threads = problem
    FT, X, targets = random_problem(seed, n, D, N, dtype, scale)
    expected = FT.copy()
    REFERENCE.cooc_dense_onehot(expected, X, targets, 1)
    with threads(n_threads):
        kernels.cooc_dense_onehot(FT, X, targets)
    # Every backend adds each row's examples in example order: bitwise equal.
    np.testing.assert_array_equal(FT, expected)


@SETTINGS
@given(problem=problems)
def test_sparse_onehot_equals_reference(backend, problem):
    seed, n, D, N, dtype, scale, n_threads = problem
    FT, X, targets = random_problem(seed, n, D, N, dtype, scale)
    indptr, indices, weights = csr_arrays(X, seed)
    expected = FT.copy()
    REFERENCE.cooc_sparse_onehot(expected, indptr, indices, weights, targets, 1)
    with threads(n_threads):
        kernels.cooc_sparse_onehot(FT, indptr, indices, weights, targets)
    np.testing.assert_array_equal(FT, expected)


def test_reference_accumulates_the_definition():
    """The oracle itself, against an explicit loop."""
    FT, X, targets = random_problem(1, 30, 4, 3, np.float64)
    expected = FT.copy()
    for m in range(len(X)):
        expected[targets[m]] += X[m]
    dense, sparse = FT.copy(), FT.copy()
    REFERENCE.cooc_dense_onehot(dense, X, targets, 1)
    REFERENCE.cooc_sparse_onehot(sparse, *csr_arrays(X, 1), targets, 1)
    np.testing.assert_array_equal(dense, expected)
    np.testing.assert_array_equal(sparse, expected)


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=st.tuples(st.integers(0, 9), st.integers(1, 9)),
    out_dtype=st.sampled_from(FLOATS),
    alpha=st.floats(1e-6, 10.0),
    tau=st.floats(0.05, 3.0),
    shrink=st.floats(-2.0, 3.0),
    n_threads=st.integers(1, 5),
)
def test_solve_equals_reference(backend, seed, shape, out_dtype, alpha, tau, shrink, n_threads):
    rng = np.random.default_rng(seed)
    FT = rng.integers(0, 4, shape) * rng.choice([1.0, 1e12], shape)
    expected = np.empty(shape, out_dtype)
    REFERENCE.explicit_solve(FT, expected, alpha, tau, shrink, 1)
    out = np.full(shape, np.nan, out_dtype)
    with threads(n_threads):
        kernels.explicit_solve(FT, out, alpha, tau, shrink)
    rtol = 1e-6 if out_dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * np.abs(expected).max(initial=1))


def test_solve_formula(backend):
    FT = np.array([[0.0, 2.0, 6.0], [1.0, 1.0, 0.0]])
    out = np.empty_like(FT)
    kernels.explicit_solve(FT, out, 0.5, 2.0, 0.25)
    expected = 2.0 * np.log(FT + 0.5) - 0.25 * np.log(FT.sum(1, keepdims=True) + 1.5)
    np.testing.assert_allclose(out, expected, rtol=1e-14)


def test_single_example_and_empty_chunk(backend):
    FT = np.zeros((3, 2))
    kernels.cooc_dense_onehot(FT, np.array([[1.0, 2.0]]), np.array([2]))
    kernels.cooc_dense_onehot(FT, np.zeros((0, 2)), np.zeros(0, np.int64))
    kernels.cooc_sparse_onehot(FT, np.array([0, 1]), np.array([0]), np.array([4.0]), np.array([0]))
    kernels.cooc_sparse_onehot(FT, np.array([0]), np.zeros(0, np.int64), np.zeros(0),
                               np.zeros(0, np.int64))
    np.testing.assert_array_equal(FT, [[4.0, 0.0], [0.0, 0.0], [1.0, 2.0]])


@pytest.mark.parametrize("dtype", FLOATS)
def test_same_result_for_every_backend_thread_count_and_repeat(dtype):
    FT0, X, targets = random_problem(7, 3000, 37, 61, dtype, 1e12)
    targets[:1500] = 5  # one heavy target: the partition must still balance and stay exact
    indptr, indices, weights = csr_arrays(X, 7)
    previous = saffu.get_backend()
    results = []
    try:
        for backend in saffu.available_backends():
            saffu.set_backend(backend)
            for n_threads in (1, 2, 3, 8):
                with threads(n_threads):
                    for _ in range(2):
                        dense, sparse = FT0.copy(), FT0.copy()
                        kernels.cooc_dense_onehot(dense, X, targets)
                        kernels.cooc_sparse_onehot(sparse, indptr, indices, weights, targets)
                        results.append((backend, n_threads, dense, sparse))
    finally:
        saffu.set_backend(previous)
    for backend, n_threads, dense, sparse in results:
        np.testing.assert_array_equal(dense, results[0][2], err_msg=f"{backend} {n_threads}")
        np.testing.assert_array_equal(sparse, results[0][3], err_msg=f"{backend} {n_threads}")


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_dense_dense_is_the_matrix_product(chunk):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, (20, 4)).astype(np.float32)
    Y = rng.random((20, 5)).astype(np.float32)
    FT = np.ones((5, 4))
    cooc_dense_dense(FT, X, Y, chunk=chunk)
    expected = 1.0 + Y.astype(np.float64).T @ X.astype(np.float64)
    np.testing.assert_allclose(FT, expected, rtol=1e-14)


# --- validation: bad input is a clear error before any backend sees it ---------------------------


def dense_args():
    return np.zeros((3, 4)), np.ones((5, 4)), np.array([0, 1, 2, 0, 1])


def sparse_args():
    return (np.zeros((3, 4)), np.array([0, 2, 3]), np.array([0, 3, 1]), np.ones(3),
            np.array([2, 0]))


@pytest.mark.parametrize("position, bad, error, message", [
    (0, np.zeros((3, 4), np.float32), TypeError, "FT must have dtype float64"),
    (0, np.zeros((4, 3)).T, ValueError, "FT must be C-contiguous"),
    (0, np.zeros(12), ValueError, "FT must be 2-D"),
    (0, [[0.0] * 4] * 3, TypeError, "FT must be a numpy.ndarray"),
    (1, np.ones((4, 5)).T, ValueError, "X must be C-contiguous"),
    (1, np.ones((5, 4), np.int64), TypeError, "X must have dtype"),
    (1, np.ones((5, 3)), ValueError, "X has 3 columns"),
    (2, np.array([0, 1, 3, 0, 1]), ValueError, r"targets\[2\] = 3 is out of range \[0, 3\)"),
    (2, np.array([0, 1, -1, 0, 1]), ValueError, r"targets\[2\] = -1"),
    (2, np.array([0, 1, 2, 0]), ValueError, "targets has length 4, expected 5"),
    (2, np.array([0, 1, 2, 0, 1], np.int32), TypeError, "targets must have dtype int64"),
])
def test_dense_onehot_rejects(position, bad, error, message):
    args = list(dense_args())
    args[position] = bad
    with pytest.raises(error, match=message):
        kernels.cooc_dense_onehot(*args)


@pytest.mark.parametrize("position, bad, message", [
    (1, np.array([0, 4, 3]), "indptr must be non-decreasing"),
    (1, np.array([0, 2, 2]), "indptr must start at 0 and end at nnz = 3"),
    (1, np.array([1, 2, 3]), "indptr must start at 0"),
    (1, np.array([0, 2]), "indptr has length 2, expected 3"),
    (2, np.array([0, 4, 1]), r"indices\[1\] = 4 is out of range \[0, 4\)"),
    (3, np.ones(2), "weights has length 2, expected 3"),
    (4, np.array([2, 3]), r"targets\[1\] = 3"),
])
def test_sparse_onehot_rejects(position, bad, message):
    args = list(sparse_args())
    args[position] = bad
    with pytest.raises(ValueError, match=message):
        kernels.cooc_sparse_onehot(*args)


def test_readonly_or_aliased_outputs_are_rejected():
    FT, X, targets = dense_args()
    FT.setflags(write=False)
    with pytest.raises(ValueError, match="FT must be writeable"):
        kernels.cooc_dense_onehot(FT, X, targets)
    FT = np.zeros((5, 4))
    with pytest.raises(ValueError, match="must not share memory with FT"):
        kernels.cooc_dense_onehot(FT, FT, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="out must not share memory with FT"):
        kernels.explicit_solve(FT, FT, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("alpha, tau, shrink, message", [
    (0.0, 1.0, 1.0, "alpha must be a positive finite number"),
    (-1.0, 1.0, 1.0, "alpha"),
    (1.0, 0.0, 1.0, "tau must be a positive finite number"),
    (1.0, float("nan"), 1.0, "tau"),
    (1.0, 1.0, float("inf"), "shrink must be finite"),
])
def test_solve_rejects_bad_parameters(alpha, tau, shrink, message):
    with pytest.raises(ValueError, match=message):
        kernels.explicit_solve(np.ones((2, 3)), np.empty((2, 3)), alpha, tau, shrink)


def test_solve_rejects_bad_output():
    with pytest.raises(ValueError, match=r"out has shape \(3, 2\)"):
        kernels.explicit_solve(np.ones((2, 3)), np.empty((3, 2)), 1.0, 1.0, 1.0)
    with pytest.raises(TypeError, match="out must have dtype"):
        kernels.explicit_solve(np.ones((2, 3)), np.empty((2, 3), np.float16), 1.0, 1.0, 1.0)


def test_dense_dense_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected X \(n, 4\) and Y \(n, 3\)"):
        cooc_dense_dense(np.zeros((3, 4)), np.ones((2, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="Y has length 3, expected 2"):
        cooc_dense_dense(np.zeros((3, 4)), np.ones((2, 4)), np.ones((3, 3)))
    with pytest.raises(TypeError, match="X must be a 2-D float32 or float64"):
        cooc_dense_dense(np.zeros((3, 4)), np.ones((2, 4), np.int64), np.ones((2, 3)))
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        cooc_dense_dense(np.zeros((3, 4)), np.ones((2, 4)), np.ones((2, 3)), chunk=0)


@pytest.mark.skipif("cpp" not in saffu.available_backends(), reason="compiled backend not built")
def test_compiled_kernels_refuse_what_would_be_unsafe():
    """Defence in depth: even unvalidated calls into saffu._core fail cleanly."""
    core = backend_module("cpp")
    FT, X, _ = dense_args()
    with pytest.raises(ValueError, match="out of range"):
        core.cooc_dense_onehot(FT, X, np.array([0, 1, 9, 0, 1]), 2)
    with pytest.raises(TypeError):  # no silent conversion of the in-place output
        core.cooc_dense_onehot(FT.astype(np.float32), X, np.zeros(5, np.int64), 2)
    with pytest.raises(ValueError, match="expected FT"):
        core.cooc_dense_onehot(FT, np.ones((5, 3)), np.zeros(5, np.int64), 2)
    with pytest.raises(ValueError, match="indptr"):
        core.cooc_sparse_onehot(FT, np.array([0, 2, 5]), np.zeros(3, np.int64), np.ones(3),
                                np.zeros(2, np.int64), 2)
    np.testing.assert_array_equal(FT, 0.0)

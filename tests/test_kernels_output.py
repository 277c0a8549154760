"""The output-layer scoring kernel: every backend matches the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from saffu import kernels
from saffu._backend import backend_module, threads
from saffu.model import log_softmax, unique_rows

REFERENCE = backend_module("numpy")


def reference_logsumexp(logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    out = np.empty(len(logits))
    REFERENCE.logsumexp_rows(logits, bias, out, 1)
    return out


@pytest.mark.parametrize("m, V, scale", [(1, 1, 1.0), (7, 13, 5.0), (50, 300, 30.0), (0, 4, 1.0)])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_logsumexp_rows_matches_reference(backend, m, V, scale, n_threads):
    rng = np.random.default_rng(m * V)
    logits = (rng.standard_normal((m, V)) * scale).astype(np.float32)
    bias = (rng.standard_normal(V) * scale).astype(np.float32)
    with threads(n_threads):
        actual = kernels.logsumexp_rows(logits, bias)
    assert actual.dtype == np.float64 and actual.shape == (m,)
    np.testing.assert_allclose(actual, reference_logsumexp(logits, bias), rtol=1e-6, atol=1e-6)


def test_logsumexp_rows_is_stable_for_huge_and_tiny_logits(backend):
    logits = np.array([[1e30, 0.0, -1e30], [-500.0, -500.0, -1000.0]], np.float32)
    bias = np.zeros(3, np.float32)
    np.testing.assert_allclose(kernels.logsumexp_rows(logits, bias), [1e30, -500.0 + np.log(2.0)],
                               rtol=1e-6)


def test_logsumexp_rows_gives_the_log_softmax_normalizer(backend):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((20, 50)).astype(np.float32)
    bias = rng.standard_normal(50).astype(np.float32)
    log_p = (logits + bias) - kernels.logsumexp_rows(logits, bias)[:, None]
    np.testing.assert_allclose(log_p, log_softmax((logits + bias).astype(np.float64)), atol=2e-6)


def test_logsumexp_rows_gives_nan_for_rows_with_nan_or_infinite_maximum(backend):
    logits = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 0.0], [-np.inf] * 3, [-np.inf, 0.0, 0.0]],
                      np.float32)
    actual = kernels.logsumexp_rows(logits, np.zeros(3, np.float32))
    expected = reference_logsumexp(logits, np.zeros(3, np.float32))
    np.testing.assert_array_equal(np.isnan(actual), [True, True, True, False])
    np.testing.assert_array_equal(np.isnan(expected), [True, True, True, False])
    assert actual[3] == pytest.approx(np.log(2.0))


@pytest.mark.parametrize("m, V", [(1, 1), (7, 13), (50, 300), (0, 4), (3, 4097)])
@pytest.mark.parametrize("scale", [0.375, 1.0, 2.6180339887, -1.5, 0.0])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_logsumexp_rows_scaled_is_that_of_the_scaled_copy_bit_for_bit(backend, m, V, scale, n_threads):
    rng = np.random.default_rng(m + V)
    logits = (rng.standard_normal((m, V)) * 7).astype(np.float32)
    bias = rng.standard_normal(V).astype(np.float32)
    with threads(n_threads):
        actual = kernels.logsumexp_rows_scaled(logits, scale, bias)
        copied = kernels.logsumexp_rows(logits * np.float32(scale), bias)
    assert actual.dtype == np.float64 and actual.shape == (m,)
    np.testing.assert_array_equal(actual, copied)
    expected = np.empty(m)
    REFERENCE.logsumexp_rows_scaled(logits, scale, bias, expected, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(expected, reference_logsumexp(logits * np.float32(scale), bias), rtol=1e-12)


def test_logsumexp_rows_scaled_gives_nan_as_the_unscaled_kernel(backend):
    logits = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 0.0], [-1.0, 0.0, 0.0]], np.float32)
    actual = kernels.logsumexp_rows_scaled(logits, 2.0, np.zeros(3, np.float32))
    np.testing.assert_array_equal(np.isnan(actual), [True, True, False])
    assert actual[2] == pytest.approx(np.log(2.0 + np.exp(-2.0)))


@pytest.mark.parametrize("scale", [np.nan, np.inf, "two"])
def test_logsumexp_rows_scaled_rejects_a_bad_scale(scale):
    with pytest.raises(ValueError, match="scale must be a finite number"):
        kernels.logsumexp_rows_scaled(np.zeros((2, 3), np.float32), scale, np.zeros(3, np.float32))


@pytest.mark.parametrize("logits, bias, error, match", [
    (np.zeros((2, 3)), np.zeros(3, np.float32), TypeError, "logits must have dtype float32"),
    (np.zeros((2, 3), np.float32), np.zeros(4, np.float32), ValueError, r"bias \(V,\)"),
    (np.zeros((2, 0), np.float32), np.zeros(0, np.float32), ValueError, r"V >= 1"),
    (np.zeros(3, np.float32), np.zeros(3, np.float32), ValueError, "logits must be 2-D"),
    (np.zeros((3, 2), np.float32).T, np.zeros(3, np.float32), ValueError, "C-contiguous"),
])
def test_logsumexp_rows_rejects_bad_input(logits, bias, error, match):
    with pytest.raises(error, match=match):
        kernels.logsumexp_rows(logits, bias)


def test_unique_rows_rebuilds_the_matrix_in_first_appearance_order():
    rows = np.array([[1, 2], [3, 4], [1, 2], [0, -0.0], [3, 4], [0, 0]], np.float32)
    unique, inverse = unique_rows(rows)
    np.testing.assert_array_equal(unique[inverse], rows)
    np.testing.assert_array_equal(unique, [[1, 2], [3, 4], [0, -0.0], [0, 0]])
    assert inverse.tolist() == [0, 1, 0, 2, 1, 3]
    unique, inverse = unique_rows(np.zeros((0, 3), np.float32))
    assert unique.shape == (0, 3) and inverse.shape == (0,)

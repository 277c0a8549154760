"""Output-layer scoring in Numba (same algorithm as ``csrc/output.cpp``)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from saffu._numba.saffu_pass import _part_bounds, _parts


@njit(cache=True, parallel=True)
def _logsumexp_rows(logits, scale, bias, out, parts):
    V = logits.shape[1]
    bounds = _part_bounds(0, logits.shape[0], parts)
    for p in prange(parts):
        for i in range(bounds[p], bounds[p + 1]):
            top = logits[i, 0] * scale + bias[0]
            for j in range(1, V):
                top = max(top, logits[i, j] * scale + bias[j])
            total = 0.0
            for j in range(V):
                total += np.exp(np.float64(logits[i, j] * scale + bias[j] - top))
            out[i] = np.float64(top) + np.log(total)


def logsumexp_rows(logits: np.ndarray, bias: np.ndarray, out: np.ndarray, n_threads: int) -> None:
    """``out[i] = log Σ_j exp(logits[i, j] + bias[j])``; rows split into ``n_threads`` parts."""
    logsumexp_rows_scaled(logits, 1.0, bias, out, n_threads)


def logsumexp_rows_scaled(logits: np.ndarray, scale: float, bias: np.ndarray, out: np.ndarray,
                          n_threads: int) -> None:
    """``out[i] = log Σ_j exp(float32(scale·logits[i, j]) + bias[j])``, as the C++ kernel."""
    _logsumexp_rows(logits, np.float32(scale), bias, out, _parts(n_threads, max(logits.shape[0], 1)))

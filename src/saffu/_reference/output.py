"""Output-layer scoring in plain NumPy (the oracle; ``n_threads`` is ignored)."""

from __future__ import annotations

import numpy as np


def logsumexp_rows(logits: np.ndarray, bias: np.ndarray, out: np.ndarray, n_threads: int) -> None:
    """``out[i] = log Σ_j exp(logits[i, j] + bias[j])``, in float64."""
    logsumexp_rows_scaled(logits, 1.0, bias, out, n_threads)


def logsumexp_rows_scaled(logits: np.ndarray, scale: float, bias: np.ndarray, out: np.ndarray,
                          n_threads: int) -> None:
    """``out[i] = log Σ_j exp(scale·logits[i, j] + bias[j])``: the float32 product, as NumPy's
    ``logits * np.float32(scale)`` rounds it, then the rest in float64."""
    shifted = (logits * np.float32(scale)).astype(np.float64) + bias
    top = shifted.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # NaN for rows with NaN or an infinite maximum
        out[:] = (top + np.log(np.exp(shifted - top).sum(axis=1, keepdims=True)))[:, 0]

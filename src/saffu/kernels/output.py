"""Validated output-layer scoring kernel (contract: docs/internals.md, section "Output layer")."""

from __future__ import annotations

import math

import numpy as np

from saffu._backend import backend_module, get_num_threads
from saffu.errors import InvalidParameterError
from saffu.kernels._validate import check_array as _check_array

_F32 = np.dtype(np.float32)


def logsumexp_rows(logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Log-normalizer of every row of ``logits + bias``, fused in one pass per row.

    Args:
        logits: (m, V) float32, V >= 1.
        bias: (V,) float32, added to every row.
    Returns:
        (m,) float64, ``log Σ_j exp(logits[i, j] + bias[j])``. Entries below the row maximum by
        more than 87 contribute exp(-87) instead of underflowing (a relative error < 1e-37 · V);
        a row holding NaN, or whose maximum is infinite, gives NaN.
    """
    out = _checked_output(logits, bias)
    backend_module().logsumexp_rows(logits, bias, out, get_num_threads())
    return out


def logsumexp_rows_scaled(logits: np.ndarray, scale: float, bias: np.ndarray) -> np.ndarray:
    """Log-normalizer of every row of ``scale · logits + bias``, fused in one pass per row.

    Bit for bit ``logsumexp_rows(logits * np.float32(scale), bias)`` (each product is rounded to
    float32 before the bias is added), without the scaled copy: one pass over the logits instead
    of three. ``scale`` is a finite float; the rest as :func:`logsumexp_rows`.
    """
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise InvalidParameterError(f"scale must be a finite number, got {scale!r}")
    out = _checked_output(logits, bias)
    backend_module().logsumexp_rows_scaled(logits, value, bias, out, get_num_threads())
    return out


def _checked_output(logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Validates logits (m, V >= 1) float32 and bias (V,) float32; returns out (m,) float64."""
    _check_array("logits", logits, _F32, 2)
    _check_array("bias", bias, _F32, 1)
    if logits.shape[1] < 1 or bias.shape[0] != logits.shape[1]:
        raise InvalidParameterError(
            f"need logits (m, V >= 1) and bias (V,), got {logits.shape} and {bias.shape}")
    return np.empty(logits.shape[0])

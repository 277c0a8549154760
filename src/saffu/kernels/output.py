"""Validated output-layer scoring kernel (contract: docs/internals.md, section "Output layer")."""

from __future__ import annotations

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
    _check_array("logits", logits, _F32, 2)
    _check_array("bias", bias, _F32, 1)
    if logits.shape[1] < 1 or bias.shape[0] != logits.shape[1]:
        raise InvalidParameterError(
            f"need logits (m, V >= 1) and bias (V,), got {logits.shape} and {bias.shape}")
    out = np.empty(logits.shape[0])
    backend_module().logsumexp_rows(logits, bias, out, get_num_threads())
    return out

"""Numba implementations of the kernels (same signatures as ``saffu._core``)."""

import numba  # noqa: F401  (ImportError here marks the backend unavailable)

from saffu._numba.cooc import cooc_dense_onehot, cooc_sparse_onehot, explicit_solve
from saffu._numba.output import logsumexp_rows
from saffu._numba.saffu_pass import (
    saffu_attention_stats,
    saffu_expert_stats,
    saffu_forward,
    saffu_hidden_stats,
)

__all__ = [
    "cooc_dense_onehot",
    "cooc_sparse_onehot",
    "explicit_solve",
    "logsumexp_rows",
    "saffu_attention_stats",
    "saffu_expert_stats",
    "saffu_forward",
    "saffu_hidden_stats",
]

"""Plain NumPy reference kernels: the oracle the tests hold the fast backends to."""

from saffu._reference.cooc import cooc_dense_onehot, cooc_sparse_onehot, explicit_solve
from saffu._reference.output import logsumexp_rows
from saffu._reference.saffu_pass import (
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

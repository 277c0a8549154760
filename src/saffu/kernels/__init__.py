"""Validated entry points to the compiled kernels (see docs/internals.md for the contracts).

Each function checks dtypes, shapes, contiguity and index ranges, then calls the active
backend (``saffu._backend``) with the configured thread count.
"""

from saffu.kernels.cooc import cooc_dense_dense, cooc_dense_onehot, cooc_sparse_onehot, explicit_solve
from saffu.kernels.generate import saffu_generate
from saffu.kernels.output import logsumexp_rows, logsumexp_rows_scaled
from saffu.kernels.pretokenize import LETTER, NUMBER, OTHER, SPACE, Pieces, bytelevel_pieces
from saffu.kernels.saffu_pass import (
    saffu_attention_stats,
    saffu_expert_stats,
    saffu_forward,
    saffu_hidden_stats,
)

__all__ = [
    "LETTER",
    "NUMBER",
    "OTHER",
    "SPACE",
    "Pieces",
    "bytelevel_pieces",
    "cooc_dense_dense",
    "cooc_dense_onehot",
    "cooc_sparse_onehot",
    "explicit_solve",
    "logsumexp_rows",
    "logsumexp_rows_scaled",
    "saffu_attention_stats",
    "saffu_expert_stats",
    "saffu_forward",
    "saffu_generate",
    "saffu_hidden_stats",
]

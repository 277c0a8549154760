"""The kernels every backend implements, written once: name → parameter names.

``saffu._core`` (C++), ``saffu._numba`` and ``saffu._reference`` (NumPy) each export exactly
these functions with these parameters (the last, ``n_threads``, is the thread count);
``saffu.kernels`` wraps each one with input validation and the configured thread count.
``tests/test_kernel_registry.py`` checks every backend, the wrappers and ``_core.pyi``
against this table, so a kernel added to one backend only fails a test. Adding a kernel: its
entry here, an implementation in each backend (docs/internals.md), its wrapper in
``saffu.kernels`` and its line in ``src/saffu/_core.pyi``.
"""

from __future__ import annotations

KERNELS: dict[str, tuple[str, ...]] = {
    "cooc_dense_onehot": ("FT", "X", "targets", "n_threads"),
    "cooc_sparse_onehot": ("FT", "indptr", "indices", "weights", "targets", "n_threads"),
    "explicit_solve": ("FT", "out", "alpha", "tau", "shrink", "n_threads"),
    "logsumexp_rows": ("logits", "bias", "out", "n_threads"),
    "logsumexp_rows_scaled": ("logits", "scale", "bias", "out", "n_threads"),
    "bytelevel_pieces": ("code_points", "classes", "doc_starts", "piece_bounds", "piece_ids",
                         "first_piece", "counts", "n_threads"),
    "saffu_expert_stats": ("ids", "pos", "kind", "K", "E", "FT", "T", "n_threads"),
    "saffu_attention_stats": ("ids", "pos", "kind", "K", "E", "expert_UT", "expert_b", "expert_logz",
                              "FT", "n_threads"),
    "saffu_hidden_stats": ("ids", "pos", "kind", "K", "E", "W", "aggregation", "codes", "FT",
                           "n_threads"),
    "saffu_forward": ("ids", "pos", "kind", "K", "E", "W", "aggregation", "UT", "start", "stop", "out",
                      "n_threads"),
    "saffu_generate": ("ids", "pos", "kinds", "sizes", "E", "W", "aggregation", "UT", "output_t",
                       "skip_weight", "bias", "banned", "uniforms", "temperature", "top_k", "top_p",
                       "stop_token", "out", "lengths", "cache_bytes", "n_threads"),
}

ALLOCATED_BY_WRAPPER: dict[str, tuple[str, ...]] = {
    "logsumexp_rows": ("out",),
    "logsumexp_rows_scaled": ("out",),
    "bytelevel_pieces": ("piece_bounds", "piece_ids", "first_piece", "counts"),
}
"""Output arrays that the ``saffu.kernels`` wrapper allocates (and leaves out of its own
parameters) instead of taking them from the caller."""

__all__ = ["ALLOCATED_BY_WRAPPER", "KERNELS"]

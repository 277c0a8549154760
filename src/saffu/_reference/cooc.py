"""Co-occurrence accumulation and explicit solve in plain NumPy (the oracle; see docs/internals.md).

``n_threads`` is accepted for signature parity with the fast backends and ignored.
"""

from __future__ import annotations

import numpy as np


def cooc_sparse_onehot(
    FT: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    targets: np.ndarray,
    n_threads: int,
) -> None:
    """``FT[targets[m], indices[p]] += weights[p]`` for ``p`` in CSR row ``m``; FT (N, D) f64."""
    rows = np.repeat(targets, np.diff(indptr))
    np.add.at(FT, (rows, indices), weights)


def cooc_dense_onehot(FT: np.ndarray, X: np.ndarray, targets: np.ndarray, n_threads: int) -> None:
    """``FT[targets[m], :] += X[m, :]`` for every example ``m``; FT (N, D) f64, X (n, D)."""
    np.add.at(FT, targets, X)


def explicit_solve(
    FT: np.ndarray, out: np.ndarray, alpha: float, tau: float, shrink: float, n_threads: int
) -> None:
    """``out = tau·log(FT + alpha) − shrink·log(C + alpha·D)`` with ``C_i = Σ_j FT[i, j]``."""
    column_sums = FT.sum(axis=1, keepdims=True)
    out[...] = tau * np.log(FT + alpha) - shrink * np.log(column_sums + alpha * FT.shape[1])

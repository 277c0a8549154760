"""Co-occurrence accumulation and explicit solve in Numba (same algorithms as ``csrc/cooc.cpp``).

Target-partitioned: each of ``n_threads`` parts owns a contiguous range of target rows holding
about the same number of examples. Dense rows on several parts are grouped by target (a stable
counting sort); otherwise every part scans all examples in order. Either way every row receives
its examples in their original order, so results are identical for every thread count (and to
the NumPy reference, which also adds in example order).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _target_offsets(targets, n_targets):
    """``offsets[t]`` = number of examples with a target below t (N + 1 entries)."""
    offsets = np.zeros(n_targets + 1, np.int64)
    for m in range(targets.size):
        offsets[targets[m] + 1] += 1
    for t in range(n_targets):
        offsets[t + 1] += offsets[t]
    return offsets


@njit(cache=True)
def _balanced_first_rows(offsets, parts):
    """Part p owns target rows ``[first[p], first[p + 1])``, holding about n / parts examples."""
    n = offsets[-1]
    first = np.empty(parts + 1, np.int64)
    for p in range(parts):
        first[p] = np.searchsorted(offsets, n * p // parts)
    first[parts] = offsets.size - 1
    return first


@njit(cache=True)
def _group_by_target(targets, offsets):
    """Stable counting sort: ``order[offsets[t]:offsets[t + 1]]`` are the examples of target t."""
    cursor = offsets[:-1].copy()
    order = np.empty(targets.size, np.int64)
    for m in range(targets.size):
        order[cursor[targets[m]]] = m
        cursor[targets[m]] += 1
    return order


@njit(cache=True, inline="always")
def _add_row(row, x):
    for j in range(row.size):
        row[j] += x[j]


@njit(cache=True, parallel=True)
def _dense_onehot(FT, X, targets, parts):
    offsets = _target_offsets(targets, FT.shape[0])
    first = _balanced_first_rows(offsets, parts)
    if parts == 1:
        for m in range(targets.size):
            _add_row(FT[targets[m]], X[m])
        return
    order = _group_by_target(targets, offsets)
    for p in prange(parts):
        for t in range(first[p], first[p + 1]):
            for s in range(offsets[t], offsets[t + 1]):
                _add_row(FT[t], X[order[s]])


@njit(cache=True, parallel=True)
def _sparse_onehot(FT, indptr, indices, weights, targets, parts):
    first = _balanced_first_rows(_target_offsets(targets, FT.shape[0]), parts)
    for p in prange(parts):
        for m in range(targets.size):
            t = targets[m]
            if first[p] <= t < first[p + 1]:
                for q in range(indptr[m], indptr[m + 1]):
                    FT[t, indices[q]] += weights[q]


@njit(cache=True, parallel=True)
def _solve(FT, out, alpha, tau, shrink, parts):
    n_rows, n_cols = FT.shape
    for p in prange(parts):
        for i in range(n_rows * p // parts, n_rows * (p + 1) // parts):
            column_sum = 0.0
            for j in range(n_cols):
                column_sum += FT[i, j]
            normalizer = shrink * np.log(column_sum + alpha * n_cols)
            for j in range(n_cols):
                out[i, j] = tau * np.log(FT[i, j] + alpha) - normalizer


def _parts(n_threads: int, work: int) -> int:
    return max(1, min(n_threads, work))


def cooc_sparse_onehot(FT, indptr, indices, weights, targets, n_threads: int) -> None:
    """``FT[targets[m], indices[p]] += weights[p]`` for ``p`` in CSR row ``m``; FT (N, D) f64."""
    if targets.size:
        _sparse_onehot(FT, indptr, indices, weights, targets, _parts(n_threads, targets.size))


def cooc_dense_onehot(FT, X, targets, n_threads: int) -> None:
    """``FT[targets[m], :] += X[m, :]`` for every example ``m``; FT (N, D) f64, X (n, D)."""
    if targets.size:
        _dense_onehot(FT, X, targets, _parts(n_threads, targets.size))


def explicit_solve(FT, out, alpha: float, tau: float, shrink: float, n_threads: int) -> None:
    """``out = tau·log(FT + alpha) − shrink·log(C + alpha·D)`` with ``C_i = Σ_j FT[i, j]``."""
    if FT.shape[0]:
        _solve(FT, out, float(alpha), float(tau), float(shrink), _parts(n_threads, FT.shape[0]))

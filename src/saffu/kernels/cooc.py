"""Validated co-occurrence accumulation and explicit solve (contracts: docs/internals.md).

All matrices are target-major: ``FT`` has shape ``(N targets, D inputs)`` and is the transpose of
the ``F`` of METHOD.md §1. ``FT`` is float64, C-contiguous and updated in place.
"""

from __future__ import annotations

import math

import numpy as np

from saffu._backend import backend_module, get_num_threads
from saffu.errors import InvalidParameterError
from saffu.kernels._validate import check_array as _check_array

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_F64 = (np.dtype(np.float64),)
_I64 = (np.dtype(np.int64),)

DEFAULT_CHUNK = 16_384
"""Rows per BLAS product in :func:`cooc_dense_dense` (bounds the float64 copies of a chunk)."""


def _check_length(name: str, a: np.ndarray, length: int, what: str) -> None:
    if a.shape[0] != length:
        raise InvalidParameterError(f"{name} has length {a.shape[0]}, expected {length} ({what})")


def _check_index_range(name: str, a: np.ndarray, upper: int) -> None:
    """Every entry of ``a`` must lie in ``[0, upper)``."""
    if a.size and (a.min() < 0 or a.max() >= upper):
        first = int(np.flatnonzero((a < 0) | (a >= upper))[0])
        raise InvalidParameterError(f"{name}[{first}] = {a[first]} is out of range [0, {upper})")


def _check_disjoint(name: str, a: np.ndarray, FT: np.ndarray) -> None:
    if np.may_share_memory(a, FT):
        raise InvalidParameterError(f"{name} must not share memory with FT")


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _check_stats(FT: np.ndarray) -> np.ndarray:
    return _check_array("FT", FT, _F64, 2, writeable=True)


def cooc_sparse_onehot(
    FT: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    targets: np.ndarray,
) -> None:
    """Add CSR rows to the rows of their targets: ``FT[targets[m], indices[p]] += weights[p]``.

    Args:
        FT: (N, D) float64 target-major co-occurrences, updated in place.
        indptr: (n + 1,) int64 CSR row pointers, from 0 to nnz, non-decreasing.
        indices: (nnz,) int64 input (column) indices in [0, D).
        weights: (nnz,) float32 or float64 input values.
        targets: (n,) int64 target of each example, in [0, N).
    """
    _check_stats(FT)
    indptr = _check_array("indptr", indptr, _I64, 1)
    indices = _check_array("indices", indices, _I64, 1)
    weights = _check_array("weights", weights, _FLOATS, 1)
    targets = _check_array("targets", targets, _I64, 1)
    _check_length("indptr", indptr, targets.shape[0] + 1, "number of targets + 1")
    _check_length("weights", weights, indices.shape[0], "number of indices")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise InvalidParameterError(
            f"indptr must start at 0 and end at nnz = {indices.shape[0]}, "
            f"got {indptr[0]} and {indptr[-1]}"
        )
    if np.any(indptr[1:] < indptr[:-1]):
        raise InvalidParameterError("indptr must be non-decreasing")
    _check_index_range("indices", indices, FT.shape[1])
    _check_index_range("targets", targets, FT.shape[0])
    _check_disjoint("weights", weights, FT)
    backend_module().cooc_sparse_onehot(FT, indptr, indices, weights, targets, get_num_threads())


def cooc_dense_onehot(FT: np.ndarray, X: np.ndarray, targets: np.ndarray) -> None:
    """Add each input row to the row of its target: ``FT[targets[m], :] += X[m, :]``.

    Args:
        FT: (N, D) float64 target-major co-occurrences, updated in place.
        X: (n, D) float32 or float64 inputs.
        targets: (n,) int64 target of each example, in [0, N).
    """
    _check_stats(FT)
    X = _check_array("X", X, _FLOATS, 2)
    targets = _check_array("targets", targets, _I64, 1)
    if X.shape[1] != FT.shape[1]:
        raise InvalidParameterError(f"X has {X.shape[1]} columns but FT has {FT.shape[1]} (inputs D)")
    _check_length("targets", targets, X.shape[0], "rows of X")
    _check_index_range("targets", targets, FT.shape[0])
    _check_disjoint("X", X, FT)
    backend_module().cooc_dense_onehot(FT, X, targets, get_num_threads())


def cooc_dense_dense(
    FT: np.ndarray, X: np.ndarray, Y: np.ndarray, chunk: int = DEFAULT_CHUNK
) -> None:
    """Add dense co-occurrences ``FT += Yᵀ X`` (i.e. ``F += Xᵀ Y``) through BLAS, in row chunks.

    Each chunk is multiplied in float64, so float32 inputs lose nothing to the product.

    Args:
        FT: (N, D) float64 target-major co-occurrences, updated in place.
        X: (n, D) float32 or float64 inputs.
        Y: (n, N) float32 or float64 targets.
        chunk: examples per BLAS product.
    """
    _check_stats(FT)
    if not isinstance(X, np.ndarray) or X.dtype not in _FLOATS or X.ndim != 2:
        raise InvalidParameterError("X must be a 2-D float32 or float64 numpy.ndarray")
    if not isinstance(Y, np.ndarray) or Y.dtype not in _FLOATS or Y.ndim != 2:
        raise InvalidParameterError("Y must be a 2-D float32 or float64 numpy.ndarray")
    if X.shape[1] != FT.shape[1] or Y.shape[1] != FT.shape[0]:
        raise InvalidParameterError(
            f"expected X (n, {FT.shape[1]}) and Y (n, {FT.shape[0]}) for FT {FT.shape}, "
            f"got X {X.shape} and Y {Y.shape}"
        )
    _check_length("Y", Y, X.shape[0], "rows of X")
    if not isinstance(chunk, int) or chunk < 1:
        raise InvalidParameterError(f"chunk must be a positive integer, got {chunk!r}")
    for start in range(0, X.shape[0], chunk):
        x = X[start : start + chunk].astype(np.float64, copy=False)
        y = Y[start : start + chunk].astype(np.float64, copy=False)
        FT += y.T @ x


def explicit_solve(
    FT: np.ndarray, out: np.ndarray, alpha: float, tau: float, shrink: float
) -> None:
    """Explicit weights ``out = tau·log(FT + alpha) − shrink·log(C + alpha·D)``, C_i = Σ_j FT[i, j].

    Bias form: ``shrink = tau``. Folded form: ``shrink = (tau·K − 1)/K`` (K: priming number).

    Args:
        FT: (N, D) float64 non-negative target-major co-occurrences.
        out: (N, D) float32 or float64 output (target-major weights); must not overlap FT.
        alpha: additive smoothing, > 0.
        tau: scale of the likelihood term, > 0.
        shrink: scale of the log normalizer (any finite number).
    """
    _check_array("FT", FT, _F64, 2)
    out = _check_array("out", out, _FLOATS, 2, writeable=True)
    if out.shape != FT.shape:
        raise InvalidParameterError(f"out has shape {out.shape}, expected FT's shape {FT.shape}")
    _check_disjoint("out", out, FT)
    alpha = _check_positive("alpha", alpha)
    tau = _check_positive("tau", tau)
    shrink = float(shrink)
    if not math.isfinite(shrink):
        raise InvalidParameterError(f"shrink must be finite, got {shrink!r}")
    backend_module().explicit_solve(FT, out, alpha, tau, shrink, get_num_threads())

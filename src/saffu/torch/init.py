"""Explicit (closed-form) initialisation of a PyTorch ``nn.Linear`` that feeds a softmax.

``explicit_init_(layer, X, y)`` streams the data through :class:`saffu.explicit.ExplicitStats`
in chunks and writes the explicit solution of METHOD.md §1 into the layer, in place: backprop can
then start from it (a "warm start") instead of a random init. This module imports torch; the rest
of saffu does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from saffu.errors import InvalidParameterError
from saffu.explicit import FORMS, ExplicitStats, check_positive_scalar

DEFAULT_CHUNK_SIZE = 65_536
"""Rows per :meth:`ExplicitStats.update` call (bounds the memory of converted chunks)."""


def _sliceable(name: str, a: object) -> np.ndarray | sp.csr_matrix:
    """``a`` as a NumPy array (tensors: detached, on the CPU) or, if sparse, a CSR matrix."""
    if sp.issparse(a):
        return sp.csr_matrix(a)
    if isinstance(a, torch.Tensor):
        if a.layout != torch.strided:
            raise InvalidParameterError(f"{name} is a sparse torch tensor; pass a scipy.sparse "
                                        f"matrix instead")
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _row_chunks(X: object, y: object, chunk_size: int) -> Iterator[tuple[object, object]]:
    """``(X, y)`` in consecutive blocks of at most ``chunk_size`` rows, as NumPy/scipy objects."""
    X, y = _sliceable("X", X), _sliceable("y", y)
    if X.ndim != 2:
        raise InvalidParameterError(f"X must be 2-D (examples, inputs), got shape {X.shape}")
    n = X.shape[0]
    if y.ndim == 0 or y.shape[0] != n:
        raise InvalidParameterError(f"y must have one row per row of X ({n}), got shape {y.shape}")
    for start in range(0, n, chunk_size):
        yield X[start : start + chunk_size], y[start : start + chunk_size]


def _chunks(X: object, y: object, chunk_size: int) -> Iterator[tuple[object, object]]:
    """Row blocks of one ``(X, y)`` pair, or of each pair of an iterable of ``(X, y)`` chunks."""
    if y is not None:
        yield from _row_chunks(X, y, chunk_size)
        return
    if isinstance(X, (torch.Tensor, np.ndarray)) or sp.issparse(X):
        raise InvalidParameterError("y is required when X is a tensor or an array")
    if not isinstance(X, Iterable):
        raise InvalidParameterError(f"X must be an array-like, or an iterable of (X, y) chunks, got "
                                    f"{type(X).__name__}")
    for X_chunk, y_chunk in X:
        yield from _row_chunks(X_chunk, y_chunk, chunk_size)


def explicit_init_(
    linear: nn.Linear,
    X: object,
    y: object = None,
    *,
    alpha: float = 1.0,
    tau: float = 1.0,
    form: str | None = None,
    priming: float | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> nn.Linear:
    """Set the weights of ``linear`` (D inputs → N outputs) to the explicit softmax solution.

    The layer is read as ``p(y | x) = softmax(linear(x))``. Its weight (N, D) and bias (N,) are
    overwritten in place (under ``torch.no_grad()``, keeping their dtype and device).

    Args:
        linear: an ``nn.Linear(D, N)``, with or without a bias.
        X: (n, D) non-negative inputs (a dense tensor, a NumPy array or a scipy.sparse matrix),
            or an iterable of ``(X, y)`` chunks (then ``y`` must be ``None``).
        y: (n,) integer labels in [0, N), or (n, N) non-negative targets.
        alpha: additive smoothing, > 0.
        tau: scale of the likelihood terms, > 0.
        form: ``"bias"`` or ``"folded"``; default: ``"bias"`` if the layer has a bias, else
            ``"folded"``. A layer with a bias gets a zero bias in the folded form.
        priming: the priming number K of the folded form; default: the mean input mass K̄.
        chunk_size: rows per statistics update.

    Returns:
        ``linear``.
    """
    if not isinstance(linear, nn.Linear):
        raise InvalidParameterError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    if form is None:
        form = "folded" if linear.bias is None else "bias"
    if form not in FORMS:
        raise InvalidParameterError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    check_positive_scalar("alpha", alpha)
    check_positive_scalar("tau", tau)
    if form == "bias" and linear.bias is None:
        raise InvalidParameterError("the bias form needs a layer with a bias; use form='folded'")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")

    stats = ExplicitStats(n_inputs=linear.in_features, n_outputs=linear.out_features)
    for X_chunk, y_chunk in _chunks(X, y, chunk_size):
        stats.update(X_chunk, y_chunk)
    solved = stats.solve(alpha=alpha, tau=tau, form=form, priming=priming, dtype=np.float64)

    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(solved.weight_t))
        if linear.bias is not None:
            if solved.bias is None:
                linear.bias.zero_()
            else:
                linear.bias.copy_(torch.from_numpy(solved.bias))
    return linear

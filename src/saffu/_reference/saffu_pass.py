"""Plain NumPy statement of the SAFFU-pass kernels (docs/internals.md, "SAFFU passes").

Written for clarity, not speed: one target at a time, the window X built explicitly, all math in
float64. ``n_threads`` is accepted for signature compatibility and ignored.
"""

from __future__ import annotations

import numpy as np

from saffu.kinds import Aggregation, ContextKind

RADIAL, BLOCK, DOCUMENT = (kind.code for kind in ContextKind)
CAT = Aggregation.CAT.code


def _targets(pos: np.ndarray, start: int, stop: int) -> list[int]:
    """Indices t in [start, stop) that are predicted, i.e. not a document's ``<sod>``."""
    return [t for t in range(start, stop) if pos[t] >= 1]


def _window_indices(pos: np.ndarray, t: int, kind: int, K: int) -> tuple[list[int | None], int]:
    """Corpus index of each of the K slots of target t (None when masked), and the pivot slot."""
    doc_start = t - int(pos[t])
    if kind == RADIAL:
        slots = [t - K + k for k in range(K)]
        return [j if j >= doc_start else None for j in slots], K - 1
    if kind == BLOCK:
        q = (int(pos[t]) - 1) % K  # slot of the most recent context token
        return [t - 1 - q + k if k <= q else None for k in range(K)], q
    raise ValueError(f"no window rule for context kind code {kind}")


def _window(
    ids: np.ndarray, pos: np.ndarray, t: int, kind: int, K: int, E: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """X (K, bits) with zero rows where masked, the validity mask (K,), and the pivot slot."""
    indices, pivot = _window_indices(pos, t, kind, K)
    valid = np.array([j is not None for j in indices])
    X = np.zeros((K, E.shape[1]))
    for k, j in enumerate(indices):
        if j is not None:
            X[k] = E[ids[j]]
    return X, valid, pivot


def _softmax(logits: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Softmax over the entries where ``valid`` (default: all); zero elsewhere."""
    if valid is None:
        valid = np.ones(logits.shape, dtype=bool)
    shifted = np.where(valid, logits - logits[valid].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()


def _context(
    ids: np.ndarray,
    pos: np.ndarray,
    t: int,
    kind: int,
    K: int,
    E: np.ndarray,
    W: np.ndarray,
    aggregation: int,
) -> np.ndarray:
    """The aggregated context z of target t: (bits,) for sum/document, (K*bits,) for cat."""
    if kind == DOCUMENT:
        total = E[ids[t - pos[t] : t]].astype(np.float64).sum(axis=0)
        mass = np.abs(total).sum()
        return total / mass if mass > 0 else total
    X, valid, pivot = _window(ids, pos, t, kind, K, E)
    s = X @ X[pivot]
    a = _softmax(s @ W.astype(np.float64), valid)
    weighted = a[:, None] * X
    return weighted.ravel() if aggregation == CAT else weighted.sum(axis=0)


def saffu_expert_stats(ids, pos, kind, K, E, FT, T, n_threads=1) -> None:
    """FT[k, y_t, :] += X_k and T[k, y_t] += 1 for every target t and valid slot k."""
    for t in _targets(pos, 0, len(ids)):
        X, valid, _ = _window(ids, pos, t, kind, K, E)
        FT[valid, ids[t], :] += X[valid]
        T[valid, ids[t]] += 1.0


def saffu_attention_stats(ids, pos, kind, K, E, expert_UT, expert_b, expert_logz, FT, n_threads=1) -> float:
    """FT += outer(w, s) with w the experts' posterior of y_t over valid slots; returns Σ s."""
    mass = 0.0
    for t in _targets(pos, 0, len(ids)):
        X, valid, pivot = _window(ids, pos, t, kind, K, E)
        indices, _ = _window_indices(pos, t, kind, K)
        y = ids[t]
        log_posterior = np.zeros(K)
        for k in np.flatnonzero(valid):
            v = ids[indices[k]]
            log_posterior[k] = X[k] @ expert_UT[k, y] + expert_b[k, y] - expert_logz[k, v]
        w = _softmax(log_posterior, valid)
        s = X @ X[pivot]
        FT += np.outer(w, s)
        mass += s.sum()
    return float(mass)


def saffu_hidden_stats(ids, pos, kind, K, E, W, aggregation, codes, FT, n_threads=1) -> float:
    """FT += outer(codes[y_t], z_t) over targets; returns Σ z."""
    mass = 0.0
    for t in _targets(pos, 0, len(ids)):
        z = _context(ids, pos, t, kind, K, E, W, aggregation)
        FT += np.outer(codes[ids[t]], z)
        mass += z.sum()
    return float(mass)


def saffu_forward(ids, pos, kind, K, E, W, aggregation, UT, start, stop, out, n_threads=1) -> int:
    """Row r of ``out`` := h = softmax(UT z) (or z when UT is (0, 0)) of the r-th target in
    [start, stop); returns the number of rows written."""
    targets = _targets(pos, start, stop)
    for row, t in enumerate(targets):
        z = _context(ids, pos, t, kind, K, E, W, aggregation)
        out[row] = _softmax(UT.astype(np.float64) @ z) if UT.shape[0] > 0 else z
    return len(targets)

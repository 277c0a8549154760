"""SAFFU-pass kernels in Numba (same algorithm as ``csrc/saffu_pass.cpp``).

The token range is split into ``n_threads`` static parts; each part walks its targets, builds
each window on the fly and accumulates into its own partial statistics, which are then added in
part order (deterministic for a fixed ``n_threads``). ``saffu_forward`` writes disjoint rows:
each part starts at the row given by the number of targets before it. Inner loops are explicit
so that no temporary array is allocated per target.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

RADIAL, BLOCK, DOCUMENT = 0, 1, 2
CAT = 1


def _parts(n_threads: int, n: int) -> int:
    return max(1, min(int(n_threads), n))


@njit(cache=True)
def _part_bounds(start, stop, parts):
    """``bounds[p]:bounds[p + 1]`` is part p of the static split of [start, stop)."""
    bounds = np.empty(parts + 1, np.int64)
    for p in range(parts + 1):
        bounds[p] = start + (stop - start) * p // parts
    return bounds


@njit(cache=True)
def _dot(a, b):
    total = np.float32(0.0)
    for j in range(a.size):
        total += a[j] * b[j]
    return total


@njit(cache=True)
def _fill_window(pos, t, kind, index):
    """Corpus index of each slot of target t into ``index`` (-1 when masked); returns the pivot."""
    K = index.size
    if kind == RADIAL:
        doc_start = t - pos[t]
        for k in range(K):
            j = t - K + k
            index[k] = j if j >= doc_start else -1
        return K - 1
    q = (pos[t] - 1) % K  # block: slot of the most recent context token
    for k in range(K):
        index[k] = t - 1 - q + k if k <= q else -1
    return q


@njit(cache=True)
def _comparisons(ids, E, index, pivot, s):
    """s_k = X_k · X_pivot (0 for masked slots)."""
    x_pivot = E[ids[index[pivot]]]
    for k in range(index.size):
        s[k] = _dot(E[ids[index[k]]], x_pivot) if index[k] >= 0 else 0.0


@njit(cache=True)
def _masked_softmax(x, index):
    """In place: softmax over the slots with ``index >= 0``, zero elsewhere (``index=None``: all)."""
    top = -np.inf
    for k in range(x.size):
        if index is None or index[k] >= 0:
            top = max(top, x[k])
    total = 0.0
    for k in range(x.size):
        x[k] = np.exp(x[k] - top) if index is None or index[k] >= 0 else 0.0
        total += x[k]
    for k in range(x.size):
        x[k] /= total


@njit(cache=True)
def _attend_and_aggregate(ids, E, W, aggregation, index, pivot, s, a, z):
    """a = softmax_valid(s W), then z = Σ_k a_k X_k (sum) or concat_k a_k X_k (cat)."""
    K, bits = index.size, E.shape[1]
    _comparisons(ids, E, index, pivot, s)
    a[:] = 0.0
    for kp in range(K):
        if index[kp] >= 0:
            for k in range(K):
                a[k] += s[kp] * W[kp, k]
    _masked_softmax(a, index)
    z[:] = 0.0
    for k in range(K):
        if index[k] >= 0:
            offset = k * bits if aggregation == CAT else 0
            x = E[ids[index[k]]]
            for b in range(bits):
                z[offset + b] += a[k] * x[b]


@njit(cache=True)
def _track_document(ids, pos, E, j, document_sum):
    """Running (float64) sum of the document's vectors; reset at each ``<sod>``."""
    if pos[j] == 0:
        document_sum[:] = 0.0
    x = E[ids[j]]
    for b in range(x.size):
        document_sum[b] += x[b]


@njit(cache=True)
def _prime_document(ids, pos, E, kind, begin, end, document_sum):
    """A part may start inside a document: sum that document's prefix before ``begin``."""
    if kind == DOCUMENT and begin < end:
        for j in range(begin - pos[begin], begin):
            _track_document(ids, pos, E, j, document_sum)


@njit(cache=True)
def _encode(ids, pos, E, kind, W, aggregation, t, index, s, a, z, document_sum):
    """z of target t; for the document model ``document_sum`` must cover the tokens before t."""
    if kind == DOCUMENT:
        mass = np.abs(document_sum).sum()
        scale = 1.0 / mass if mass > 0 else 0.0
        for b in range(z.size):
            z[b] = document_sum[b] * scale
    else:
        pivot = _fill_window(pos, t, kind, index)
        _attend_and_aggregate(ids, E, W, aggregation, index, pivot, s, a, z)


@njit(cache=True)
def _buffers(K, bits, Z):
    """Per-part scratch: slot indices, s, a, z and the document sum."""
    return (
        np.full(K, -1, np.int64),
        np.zeros(K, np.float32),
        np.zeros(K, np.float32),
        np.zeros(Z, np.float32),
        np.zeros(bits, np.float64),
    )


@njit(cache=True)
def _add_parts(out, parts):
    """out += parts[0] + parts[1] + ..., added in part order."""
    flat_out, flat_parts = out.reshape(-1), parts.reshape(parts.shape[0], -1)
    for p in range(flat_parts.shape[0]):
        for i in range(flat_out.size):
            flat_out[i] += flat_parts[p, i]


@njit(cache=True, parallel=True)
def _expert_stats(ids, pos, kind, K, E, FT, T, parts):
    V, bits = E.shape
    bounds = _part_bounds(0, ids.size, parts)
    ft_parts = np.zeros((parts, K, V, bits))
    t_parts = np.zeros((parts, K, V))
    for p in prange(parts):
        index = np.full(K, -1, np.int64)
        for t in range(bounds[p], bounds[p + 1]):
            if pos[t] < 1:
                continue
            _fill_window(pos, t, kind, index)
            y = ids[t]
            for k in range(K):
                if index[k] >= 0:
                    x = E[ids[index[k]]]
                    for b in range(bits):
                        ft_parts[p, k, y, b] += x[b]
                    t_parts[p, k, y] += 1.0
    _add_parts(FT, ft_parts)
    _add_parts(T, t_parts)


@njit(cache=True, parallel=True)
def _attention_stats(ids, pos, kind, K, E, expert_UT, expert_b, expert_logz, FT, parts):
    bounds = _part_bounds(0, ids.size, parts)
    ft_parts = np.zeros((parts, K, K))
    mass = np.zeros(parts)
    for p in prange(parts):
        index = np.full(K, -1, np.int64)
        s = np.zeros(K, np.float32)
        w = np.zeros(K, np.float32)
        for t in range(bounds[p], bounds[p + 1]):
            if pos[t] < 1:
                continue
            pivot = _fill_window(pos, t, kind, index)
            _comparisons(ids, E, index, pivot, s)
            y = ids[t]
            for k in range(K):
                if index[k] >= 0:
                    v = ids[index[k]]
                    w[k] = _dot(E[v], expert_UT[k, y]) + expert_b[k, y] - expert_logz[k, v]
            _masked_softmax(w, index)
            for k_out in range(K):
                for k_in in range(K):
                    ft_parts[p, k_out, k_in] += np.float64(w[k_out]) * s[k_in]
            for k in range(K):
                mass[p] += s[k]
    _add_parts(FT, ft_parts)
    return mass.sum()


@njit(cache=True, parallel=True)
def _hidden_stats(ids, pos, kind, K, E, W, aggregation, codes, FT, parts):
    D, Z = FT.shape
    bounds = _part_bounds(0, ids.size, parts)
    ft_parts = np.zeros((parts, D, Z))
    mass = np.zeros(parts)
    for p in prange(parts):
        index, s, a, z, document_sum = _buffers(K, E.shape[1], Z)
        begin, end = bounds[p], bounds[p + 1]
        _prime_document(ids, pos, E, kind, begin, end, document_sum)
        for t in range(begin, end):
            if pos[t] >= 1:
                _encode(ids, pos, E, kind, W, aggregation, t, index, s, a, z, document_sum)
                code = codes[ids[t]]
                for i in range(D):
                    if code[i] != 0.0:
                        for j in range(Z):
                            ft_parts[p, i, j] += np.float64(code[i]) * z[j]
                for j in range(Z):
                    mass[p] += z[j]
            if kind == DOCUMENT:
                _track_document(ids, pos, E, t, document_sum)
    _add_parts(FT, ft_parts)
    return mass.sum()


@njit(cache=True, parallel=True)
def _forward(ids, pos, kind, K, E, W, aggregation, UT, start, stop, out, parts):
    bits = E.shape[1]
    Z = K * bits if aggregation == CAT else bits
    D = UT.shape[0]
    bounds = _part_bounds(start, stop, parts)
    first_row = np.zeros(parts + 1, np.int64)
    for p in range(parts):
        first_row[p + 1] = first_row[p] + np.count_nonzero(pos[bounds[p] : bounds[p + 1]])
    for p in prange(parts):
        index, s, a, z, document_sum = _buffers(K, bits, Z)
        begin, end = bounds[p], bounds[p + 1]
        _prime_document(ids, pos, E, kind, begin, end, document_sum)
        row = first_row[p]
        for t in range(begin, end):
            if pos[t] >= 1:
                _encode(ids, pos, E, kind, W, aggregation, t, index, s, a, z, document_sum)
                if D == 0:
                    out[row, :Z] = z
                else:
                    h = out[row, :D]
                    for i in range(D):
                        h[i] = _dot(UT[i], z)
                    _masked_softmax(h, None)
                row += 1
            if kind == DOCUMENT:
                _track_document(ids, pos, E, t, document_sum)
    return first_row[parts]


def saffu_expert_stats(ids, pos, kind, K, E, FT, T, n_threads) -> None:
    """See docs/internals.md; FT (K, V, bits) and T (K, V) float64 are updated in place."""
    _expert_stats(ids, pos, kind, K, E, FT, T, _parts(n_threads, ids.size))


def saffu_attention_stats(ids, pos, kind, K, E, expert_UT, expert_b, expert_logz, FT, n_threads) -> float:
    """See docs/internals.md; FT (K, K) float64 is updated in place; returns Σ s."""
    parts = _parts(n_threads, ids.size)
    return float(_attention_stats(ids, pos, kind, K, E, expert_UT, expert_b, expert_logz, FT, parts))


def saffu_hidden_stats(ids, pos, kind, K, E, W, aggregation, codes, FT, n_threads) -> float:
    """See docs/internals.md; FT (D, Z) float64 is updated in place; returns Σ z."""
    parts = _parts(n_threads, ids.size)
    return float(_hidden_stats(ids, pos, kind, K, E, W, aggregation, codes, FT, parts))


def saffu_forward(ids, pos, kind, K, E, W, aggregation, UT, start, stop, out, n_threads) -> int:
    """See docs/internals.md; writes one row of ``out`` per target in [start, stop)."""
    parts = _parts(n_threads, stop - start)
    return int(_forward(ids, pos, kind, K, E, W, aggregation, UT, start, stop, out, parts))

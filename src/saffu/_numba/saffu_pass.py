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

from saffu.kinds import Aggregation, ContextKind

RADIAL, BLOCK, DOCUMENT = (kind.code for kind in ContextKind)
CAT = Aggregation.CAT.code


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
def _window(pos, t, kind, K):
    """Valid slots [begin, end) of target t; slot k holds token t - end + k, the pivot is end - 1."""
    if kind == RADIAL:
        return max(0, K - pos[t]), K
    if kind == BLOCK:  # the positions of the current block seen so far
        return 0, (pos[t] - 1) % K + 1
    raise ValueError("no window rule for this context kind")


@njit(cache=True)
def _comparisons(ids, E, t, begin, end, s):
    """s_k = X_k · X_pivot on the valid slots, 0 elsewhere."""
    s[:] = 0.0
    for k in range(begin, end):
        s[k] = _dot(E[ids[t - end + k]], E[ids[t - 1]])


@njit(cache=True)
def _softmax(x):
    """In place, numerically stable."""
    top = x.max()
    total = 0.0
    for i in range(x.size):
        x[i] = np.exp(x[i] - top)
        total += x[i]
    for i in range(x.size):
        x[i] /= total


@njit(cache=True)
def _attend_and_aggregate(ids, E, W, aggregation, t, begin, end, s, a, z):
    """a = softmax over the valid slots of (s W), then z = Σ_k a_k X_k (sum) or concat (cat)."""
    bits = E.shape[1]
    _comparisons(ids, E, t, begin, end, s)
    a[:] = 0.0
    for kp in range(begin, end):
        for k in range(begin, end):
            a[k] += s[kp] * W[kp, k]
    _softmax(a[begin:end])
    z[:] = 0.0
    for k in range(begin, end):
        offset = k * bits if aggregation == CAT else 0
        x = E[ids[t - end + k]]
        for b in range(bits):
            z[offset + b] += a[k] * x[b]


@njit(cache=True)
def _hidden(UT_by_input, z, h):
    """h = softmax(UT z), UT given input-major (Z, D); zero entries of z are skipped."""
    h[:] = 0.0
    for j in range(z.size):
        if z[j] != 0.0:
            for i in range(h.size):
                h[i] += z[j] * UT_by_input[j, i]
    _softmax(h)


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
def _encode(ids, pos, E, kind, K, W, aggregation, t, s, a, z, document_sum):
    """z of target t; for the document model ``document_sum`` must cover the tokens before t."""
    if kind == DOCUMENT:
        mass = 0.0
        for b in range(document_sum.size):
            mass += abs(document_sum[b])
        scale = 1.0 / mass if mass > 0 else 0.0
        for b in range(z.size):
            z[b] = document_sum[b] * scale
    else:
        begin, end = _window(pos, t, kind, K)
        _attend_and_aggregate(ids, E, W, aggregation, t, begin, end, s, a, z)


@njit(cache=True)
def _buffers(K, bits, Z):
    """Per-part scratch: s, a, z and the document sum."""
    return (
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
        for t in range(bounds[p], bounds[p + 1]):
            if pos[t] < 1:
                continue
            begin, end = _window(pos, t, kind, K)
            y = ids[t]
            for k in range(begin, end):
                x = E[ids[t - end + k]]
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
        s = np.zeros(K, np.float32)
        weight = np.zeros(K, np.float32)
        for t in range(bounds[p], bounds[p + 1]):
            if pos[t] < 1:
                continue
            begin, end = _window(pos, t, kind, K)
            _comparisons(ids, E, t, begin, end, s)
            y = ids[t]
            # weight_k ∝ P̂_k(y | x_k): the expert log-likelihoods, normalized over the valid slots
            for k in range(begin, end):
                v = ids[t - end + k]
                weight[k] = _dot(E[v], expert_UT[k, y]) + expert_b[k, y] - expert_logz[k, v]
            _softmax(weight[begin:end])
            for k_out in range(begin, end):
                for k_in in range(begin, end):
                    ft_parts[p, k_out, k_in] += np.float64(weight[k_out]) * s[k_in]
            for k in range(begin, end):
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
        s, a, z, document_sum = _buffers(K, E.shape[1], Z)
        begin, end = bounds[p], bounds[p + 1]
        _prime_document(ids, pos, E, kind, begin, end, document_sum)
        for t in range(begin, end):
            if pos[t] >= 1:
                _encode(ids, pos, E, kind, K, W, aggregation, t, s, a, z, document_sum)
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
def _forward(ids, pos, kind, K, E, W, aggregation, UT_by_input, start, stop, out, parts):
    bits = E.shape[1]
    Z = K * bits if aggregation == CAT else bits
    bounds = _part_bounds(start, stop, parts)
    first_row = np.zeros(parts + 1, np.int64)
    for p in range(parts):
        first_row[p + 1] = first_row[p] + np.count_nonzero(pos[bounds[p] : bounds[p + 1]])
    for p in prange(parts):
        s, a, z, document_sum = _buffers(K, bits, Z)
        begin, end = bounds[p], bounds[p + 1]
        _prime_document(ids, pos, E, kind, begin, end, document_sum)
        row = first_row[p]
        for t in range(begin, end):
            if pos[t] >= 1:
                _encode(ids, pos, E, kind, K, W, aggregation, t, s, a, z, document_sum)
                if UT_by_input.shape[1] == 0:
                    out[row] = z
                else:
                    _hidden(UT_by_input, z, out[row])
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
    UT_by_input = np.ascontiguousarray(UT.T)  # (Z, D): each nonzero z_j adds one row
    return int(_forward(ids, pos, kind, K, E, W, aggregation, UT_by_input, start, stop, out, parts))

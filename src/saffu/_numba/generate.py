"""Generation in Numba (same algorithm as ``csrc/generate.cpp``; docs/internals.md, "Generation").

Each stream keeps its tokens and its document sums between steps; a step computes the hidden
vectors of the next token with the functions of ``saffu._numba.saffu_pass`` (so they equal its
``saffu_forward`` bit for bit), the logits ``output_t h`` (BLAS, one stream at a time, so a
stream's tokens do not depend on its batch), the skip rows and the bias in the order of
``SaffuModel.logits``, and draws the token as ``sample_token`` does, from the given uniform.
Streams run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from saffu._numba.saffu_pass import _encode, _hidden, _parts, _track_document
from saffu.kinds import ContextKind, flat_layer_slices

DOCUMENT = ContextKind.DOCUMENT.code


@njit(cache=True)
def _pairwise_sum(a):
    """NumPy's pairwise summation (what ``ndarray.sum`` computes for a contiguous array)."""
    n = a.size
    if n < 8:
        total = 0.0
        for i in range(n):
            total += a[i]
        return total
    if n <= 128:
        r = a[:8].copy()
        i = 8
        while i < n - n % 8:
            for lane in range(8):
                r[lane] += a[i + lane]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += a[i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a[:half]) + _pairwise_sum(a[half:])


@njit(cache=True)
def _sample(logits, u, temperature, top_k, top_p):
    """``saffu._reference.generate.sample_from``, step by step."""
    values = logits.astype(np.float64)
    if temperature == 0.0:
        return np.argmax(values)
    order = np.argsort(-values, kind="mergesort")
    if top_k > 0:
        order = order[:top_k]
    probs = np.exp((values[order] - values[order[0]]) / temperature)
    probs /= _pairwise_sum(probs)
    keep = probs.size
    if top_p > 0.0:
        cumulative = np.cumsum(probs)
        keep = min(probs.size, int(np.searchsorted(cumulative, top_p)) + 1)
        probs = probs[:keep] / _pairwise_sum(probs[:keep])
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return order[np.searchsorted(cdf, u, side="right")]


@njit(cache=True)
def _stream(context, kinds, sizes, E, W, aggregation, UT_by_input, w_first, u_first, zs,
            output_t, skip_weight, bias, banned, uniforms, temperature, top_k, top_p, stop_token,
            out):
    """Generate one stream into ``out`` (max_tokens,); returns its length."""
    V, bits = E.shape
    D = output_t.shape[1] // kinds.size
    T = uniforms.size
    tokens = np.empty(context.size + T + 1, np.int32)
    tokens[:context.size] = context
    pos = np.arange(tokens.size).astype(np.int32)
    n = context.size
    hidden = np.empty(output_t.shape[1], np.float32)
    sums = np.zeros((kinds.size, bits))
    tracked = np.zeros(kinds.size, np.int64)
    lags = skip_weight.shape[0] // bits
    length = 0
    for step in range(T):
        for layer in range(kinds.size):
            K, Z = sizes[layer], zs[layer]
            if kinds[layer] == DOCUMENT:
                while tracked[layer] < n:
                    _track_document(tokens, pos, E, tracked[layer], sums[layer])
                    tracked[layer] += 1
            W_l = W[w_first[layer]:w_first[layer] + K * K].reshape((K, K))
            UT_l = UT_by_input[u_first[layer]:u_first[layer] + Z * D].reshape((Z, D))
            s, a, z = np.zeros(K, np.float32), np.zeros(K, np.float32), np.zeros(Z, np.float32)
            _encode(tokens, pos, E, kinds[layer], K, W_l, aggregation, n, s, a, z, sums[layer])
            _hidden(UT_l, z, hidden[layer * D:(layer + 1) * D])
        logits = np.dot(output_t, hidden)
        if lags > 0:
            skip = np.zeros(V, np.float32)
            for k in range(1, min(lags, n) + 1):
                x = E[tokens[n - k]]
                for j in range(bits):
                    if x[j] != 0.0:
                        skip += x[j] * skip_weight[(k - 1) * bits + j]
            logits += skip
        logits += bias
        for v in range(V):
            if banned[v]:
                logits[v] = -np.inf
        token = _sample(logits, uniforms[step], temperature, top_k, top_p)
        if token == stop_token:
            break
        tokens[n] = token
        n += 1
        out[length] = token
        length += 1
    return length


@njit(cache=True, parallel=True)
def _generate(ids, starts, kinds, sizes, E, W, aggregation, UT_by_input, w_first, u_first, zs,
              output_t, skip_weight, bias, banned, uniforms, temperature, top_k, top_p,
              stop_token, out, lengths, parts):
    streams = starts.size - 1
    for p in prange(parts):
        for b in range(streams * p // parts, streams * (p + 1) // parts):
            out[b, :] = -1
            lengths[b] = _stream(ids[starts[b]:starts[b + 1]], kinds, sizes, E, W, aggregation,
                                 UT_by_input, w_first, u_first, zs, output_t, skip_weight, bias,
                                 banned, uniforms[b], temperature, top_k, top_p, stop_token,
                                 out[b])


def saffu_generate(ids, pos, kinds, sizes, E, W, aggregation, UT, output_t, skip_weight, bias,
                   banned, uniforms, temperature, top_k, top_p, stop_token, out, lengths,
                   cache_bytes, n_threads) -> None:
    """See docs/internals.md, "Generation"; writes ``out`` and ``lengths``. ``cache_bytes`` is
    ignored (this kernel caches no output rows)."""
    D = output_t.shape[1] // kinds.size
    slices = flat_layer_slices(sizes.tolist(), aggregation, E.shape[1], D)
    # each layer's UT input-major (Z, D), as saffu_forward's Numba kernel takes it
    UT_by_input = np.concatenate([np.ascontiguousarray(UT[u].reshape(D, Z).T).ravel()
                                  for _, u, Z in slices])
    w_first = np.array([w.start for w, _, _ in slices], dtype=np.int64)
    u_first = np.array([u.start for _, u, _ in slices], dtype=np.int64)
    zs = np.array([Z for _, _, Z in slices], dtype=np.int64)
    starts = np.append(np.flatnonzero(pos == 0), len(ids)).astype(np.int64)
    _generate(ids, starts, kinds, sizes, E, W, aggregation, UT_by_input, w_first, u_first, zs,
              output_t, skip_weight, bias, banned, uniforms, float(temperature), int(top_k),
              float(top_p), int(stop_token), out, lengths,
              _parts(n_threads, max(len(starts) - 1, 1)))

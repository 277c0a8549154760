"""Generation in plain NumPy (the oracle of ``csrc/generate.cpp``; docs/internals.md, "Generation").

One stream and one token at a time, each step rebuilding the whole context and computing its
logits with the same NumPy operations as :meth:`saffu.model.SaffuModel.logits` (hidden states of
the reference ``saffu_forward``, ``h @ output_tᵀ``, the skip rows in CSR order, the bias), then
drawing the token as :func:`saffu.model.sample_token` draws it with ``rng.choice``, from the given
uniform. ``cache_bytes`` and ``n_threads`` are ignored.
"""

from __future__ import annotations

import numpy as np

from saffu._reference.saffu_pass import saffu_forward
from saffu.kinds import flat_layer_slices


def sample_from(logits: np.ndarray, u: float, temperature: float, top_k: int, top_p: float) -> int:
    """``sample_token`` (top_k 0: all tokens; top_p 0: no cut) with ``rng.choice``'s draw given as
    ``u``: ``cdf = cumsum(p) / cdf[-1]``, the token at ``searchsorted(cdf, u, side="right")``."""
    logits = logits.astype(np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    order = np.argsort(-logits, kind="stable")
    if top_k:
        order = order[:top_k]
    probs = np.exp((logits[order] - logits[order[0]]) / temperature)
    probs /= probs.sum()
    if top_p:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    cdf = probs.cumsum()
    cdf /= cdf[-1]
    return int(order[np.searchsorted(cdf, u, side="right")])


def _logits(context: list[int], kinds, sizes, E, W, aggregation, UT, output_t, skip_weight,
            bias) -> np.ndarray:
    """The logits (V,) float32 of the token after ``context``, as ``SaffuModel.logits`` sums them."""
    ids = np.array([*context, 0], dtype=np.int32)
    pos = np.arange(len(ids), dtype=np.int32)
    D = output_t.shape[1] // len(kinds)
    blocks = []
    for (w, u, Z), kind, K in zip(flat_layer_slices(sizes.tolist(), aggregation, E.shape[1], D),
                                  kinds.tolist(), sizes.tolist(), strict=True):
        h = np.empty((1, D), dtype=np.float32)
        saffu_forward(ids, pos, kind, K, E, W[w].reshape(K, K), aggregation, UT[u].reshape(D, Z),
                      len(ids) - 1, len(ids), h)
        blocks.append(h)
    hidden = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    products = hidden @ output_t.T
    bits = E.shape[1]
    if skip_weight.shape[0]:
        skip = np.zeros(len(bias), dtype=np.float32)
        for k in range(1, skip_weight.shape[0] // bits + 1):
            if k <= len(context):
                x = E[context[-k]]
                for j in np.flatnonzero(x):
                    skip += x[j] * skip_weight[(k - 1) * bits + j]
        products += skip
    return (products + bias)[0]


def saffu_generate(ids, pos, kinds, sizes, E, W, aggregation, UT, output_t, skip_weight, bias,
                   banned, uniforms, temperature, top_k, top_p, stop_token, out, lengths,
                   cache_bytes=0, n_threads=1) -> None:
    """Up to ``uniforms.shape[1]`` tokens after each document of (ids, pos) into ``out`` (-1 after
    the last), their counts into ``lengths``; stops a stream at ``stop_token``. ``cache_bytes``
    is ignored."""
    starts = [*np.flatnonzero(pos == 0).tolist(), len(ids)]
    out[:] = -1
    for b in range(len(starts) - 1):
        context = ids[starts[b]:starts[b + 1]].tolist()
        n = 0
        for step in range(uniforms.shape[1]):
            logits = _logits(context, kinds, sizes, E, W, aggregation, UT, output_t, skip_weight,
                             bias)
            logits[banned] = -np.inf
            token = sample_from(logits, uniforms[b, step], temperature, top_k, top_p)
            if token == stop_token:
                break
            context.append(token)
            out[b, n] = token
            n += 1
        lengths[b] = n

"""Validated generation kernel (contract: docs/internals.md, section "Generation")."""

from __future__ import annotations

import numpy as np

from saffu._backend import backend_module, get_num_threads
from saffu.errors import InvalidParameterError
from saffu.kernels._validate import check_array as _check_array
from saffu.kernels.saffu_pass import (
    _check_aggregation,
    _check_context_model,
    _check_documents,
    _check_finite,
    _check_int,
    _check_token_arrays,
    _check_vectors,
)

CACHE_BYTES = 256 << 20  # the default memory for the C++ kernel's cached output rows

_I32 = np.dtype(np.int32)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _check_layers(kinds: np.ndarray, sizes: np.ndarray, aggregation: object, bits: int, D: int,
                  W: object, UT: object) -> None:
    """Each (kind, K) valid; W the layers' (K, K) and UT their (D, Z), flat and concatenated."""
    w_size = ut_size = 0
    for kind, K in zip(kinds.tolist(), sizes.tolist(), strict=True):
        _, K = _check_context_model(kind, K)
        _, Z = _check_aggregation(aggregation, K, bits)  # the document model has K = 1: Z = bits
        w_size, ut_size = w_size + K * K, ut_size + D * Z
    _check_array("W", W, _F32, 1, (w_size,))
    _check_array("UT", UT, _F32, 1, (ut_size,))
    _check_finite(W=W, UT=UT)


def saffu_generate(
    ids: np.ndarray,
    pos: np.ndarray,
    kinds: np.ndarray,
    sizes: np.ndarray,
    E: np.ndarray,
    W: np.ndarray,
    aggregation: int,
    UT: np.ndarray,
    output_t: np.ndarray,
    skip_weight: np.ndarray,
    bias: np.ndarray,
    banned: np.ndarray,
    uniforms: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
    stop_token: int,
    out: np.ndarray,
    lengths: np.ndarray,
    cache_bytes: int = CACHE_BYTES,
) -> None:
    """Sample up to ``max_tokens`` tokens after each prompt, all streams in one call.

    Each document of (ids, pos) is one stream's prompt (``<sod>`` and its tokens); a step
    computes the stream's logits ``[h_c]_c Oᵀ + x_skip S + o`` from its kept window state and
    draws the next token as :func:`saffu.model.sample_token` does with ``rng.choice``, the draw
    being ``uniforms[stream, step]``. A stream stops at ``stop_token`` (not written).

    Args:
        ids: (n,) int32 prompt token ids in the corpus format of ``saffu_forward`` (n >= 1).
        pos: (n,) int32 position of each prompt token inside its stream.
        kinds: (L,) int32 kind code of each context model.
        sizes: (L,) int32 window length K of each context model.
        E: (V, bits) float32 cipher vectors.
        W: (Σ K²,) float32, every context model's attention (K, K), flattened and concatenated.
        aggregation: 0 sum or 1 cat.
        UT: (Σ D·Z,) float32, every context model's hidden weights (D, Z), likewise.
        output_t: (V, L·D) float32 output weights.
        skip_weight: (S·bits, V) float32 skip weights (shape (0, V) without skip inputs).
        bias: (V,) float32 output bias.
        banned: (V,) bool, tokens never sampled.
        uniforms: (streams, max_tokens) float64 in [0, 1), one row per document.
        temperature: >= 0 (0: greedy, the first most likely token).
        top_k: >= 0 (0: every token); top_p: in [0, 1] (0: no nucleus cut).
        stop_token: the id that ends a stream, in [0, V).
        out: (streams, max_tokens) int32, written: each stream's tokens, then -1.
        lengths: (streams,) int32, written: the number of tokens of each stream.
        cache_bytes: >= 0, the memory (bytes, all threads together) the C++ kernel may use to
            cache the output product rows ``h_l O_lᵀ`` of the context models whose hidden state
            is a function of the previous token alone (radial, K = 1), by that token; 0 caches
            none. Caching changes no result; the other backends ignore it.
    """
    V, bits = _check_vectors(E)
    n = _check_token_arrays(ids, pos)
    if n < 1 or pos[0] != 0:
        raise InvalidParameterError("ids must hold at least one prompt, starting with <sod> (pos 0)")
    _check_documents(ids, pos, V, 0, n)
    _check_array("kinds", kinds, _I32, 1)
    _check_array("sizes", sizes, _I32, 1, kinds.shape)
    layers = kinds.size
    if layers < 1:
        raise InvalidParameterError("kinds must list at least one context model")
    _check_array("output_t", output_t, _F32, 2)
    if output_t.shape[0] != V or output_t.shape[1] < layers or output_t.shape[1] % layers:
        raise InvalidParameterError(f"output_t must have shape (V = {V}, L·D) with one block of "
                                    f"D >= 1 columns per context model, got {output_t.shape}")
    _check_layers(kinds, sizes, aggregation, bits, output_t.shape[1] // layers, W, UT)
    _check_array("skip_weight", skip_weight, _F32, 2)
    if skip_weight.shape[1] != V or skip_weight.shape[0] % bits:
        raise InvalidParameterError(f"skip_weight must have shape (S·bits, V = {V}) with bits = "
                                    f"{bits}, got {skip_weight.shape}")
    _check_array("bias", bias, _F32, 1, (V,))
    _check_array("banned", banned, np.dtype(np.bool_), 1, (V,))
    _check_finite(output_t=output_t, skip_weight=skip_weight, bias=bias)
    streams = int(np.count_nonzero(pos == 0))
    _check_array("uniforms", uniforms, _F64, 2)
    if uniforms.shape[0] != streams:
        raise InvalidParameterError(f"uniforms must have one row per prompt ({streams}), got "
                                    f"shape {uniforms.shape}")
    if uniforms.size and not ((uniforms >= 0) & (uniforms < 1)).all():
        raise InvalidParameterError("uniforms must lie in [0, 1)")
    if not np.isfinite(temperature) or temperature < 0:
        raise InvalidParameterError(f"temperature must be finite and >= 0, got {temperature}")
    top_k = _check_int("top_k", top_k, minimum=0)
    if not 0 <= top_p <= 1:
        raise InvalidParameterError(f"top_p must lie in [0, 1] (0: no cut), got {top_p}")
    stop_token = _check_int("stop_token", stop_token, minimum=0)
    if stop_token >= V:
        raise InvalidParameterError(f"stop_token = {stop_token} is out of range [0, {V})")
    _check_array("out", out, _I32, 2, uniforms.shape, writeable=True)
    _check_array("lengths", lengths, _I32, 1, (streams,), writeable=True)
    cache_bytes = _check_int("cache_bytes", cache_bytes, minimum=0)
    backend_module().saffu_generate(ids, pos, kinds, sizes, E, W, aggregation, UT, output_t,
                                    skip_weight, bias, banned, uniforms, float(temperature), top_k,
                                    float(top_p), stop_token, out, lengths, cache_bytes,
                                    get_num_threads())

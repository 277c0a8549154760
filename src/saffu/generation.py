"""Sampling text from a fitted SAFFU model (what :meth:`saffu.model.SaffuModel.generate` runs).

- :func:`generate`: one prompt or a batch; every stream of a batch runs in one call of the
  compiled kernel :func:`saffu.kernels.saffu_generate`, which keeps each stream's window state
  between steps and batches the output products of the active streams.
- :func:`generate_in_chunks`: the same tokens, a chunk of steps per kernel call, for printing
  text as it is made (``saffu generate``); :class:`TextStream` decodes a growing continuation.
- Seeds: stream i of a batch draws from ``numpy.random.default_rng(seed + i)`` (fresh entropy
  for every stream when ``seed`` is None), so it equals ``generate(prompts[i], seed=seed + i)``.
  A stream's draws are ``rng.random(max_tokens)``, taken up front: step j uses draw j, the
  draw ``rng.choice`` would take (greedy sampling takes none).
- Memory: the C++ kernel caches the output product rows of the radial context models (the
  default's ``radial1`` reads the previous token alone) by their window of tokens, within
  ``cache_bytes`` per call (default 256 MB; ``generate_in_chunks(..., cache_bytes=0)`` caches
  none). The cache changes no token, only the speed.
- :func:`reference_generate`: the per-token path of saffu ≤ 0.x (every step rebuilds the
  context and calls the forward pass, the output product and :func:`sample_token` from
  Python), kept as the oracle of the tests and the baseline of ``bench/generate.py``.

Exactness: with the ``numpy`` backend the kernel repeats the reference path's NumPy operations,
so the texts are equal. The ``cpp`` and ``numba`` kernels compute the same hidden states bit
for bit but sum the float32 output product in a fixed order of their own (the reference path
takes BLAS's; the C++ kernel sums each context model's part on its own, then adds the parts),
and the C++ kernel sums the float64 probabilities in another order; a token can
then differ only where two logits lie within rounding (about 1e-6) of each other near the draw,
or the draw lies within about 1e-7 of a CDF boundary (tests/test_generation.py checks equality
on fixed models and seeds).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from saffu import kernels
from saffu.errors import InvalidParameterError
from saffu.kernels.generate import CACHE_BYTES
from saffu.kinds import Aggregation
from saffu.tokenize import EOD, PAD, SOD
from saffu.validation import check_int, check_real

__all__ = ["TextStream", "check_sampling", "generate", "generate_in_chunks", "reference_generate",
           "sample_token", "stream_rngs"]


def check_sampling(max_tokens: int, temperature: float, top_k: int | None,
                   top_p: float | None, seed: int | None) -> None:
    """Raise InvalidParameterError unless the sampling settings are valid."""
    check_int("max_tokens", max_tokens, 0)
    check_real("temperature", temperature, 0)
    check_int("top_k", top_k, 1, optional=True)
    check_int("seed", seed, 0, optional=True)
    check_real("top_p", top_p, 0, 1, exclusive_minimum=True, optional=True)


def sample_token(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None) -> int:
    """Draw one token id from logits (V,) with temperature (0 = greedy), top-k and top-p."""
    logits = logits.astype(np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    order = np.argsort(-logits, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    probs = np.exp((logits[order] - logits[order[0]]) / temperature)
    probs /= probs.sum()
    if top_p is not None:
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])


def stream_rngs(seed: int | None, streams: int) -> list[np.random.Generator]:
    """The generator of each stream: ``default_rng(seed + i)``, or fresh entropy per stream."""
    return [np.random.default_rng(None if seed is None else seed + i) for i in range(streams)]


# --- the fast path ---------------------------------------------------------------------------


def _prompt_ids(model: Any, prompts: Sequence[str]) -> list[np.ndarray]:
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidParameterError(f"prompts[{i}] must be a str, got {type(prompt).__name__}")
    return [np.asarray(ids, dtype=np.int32) for ids in model.tokenizer.encode_batch(prompts)]


def _f32(array: np.ndarray) -> np.ndarray:
    """``array`` as C-contiguous float32 (itself when it is already)."""
    return np.ascontiguousarray(array, dtype=np.float32)


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays flattened and concatenated (a view of a single contiguous array)."""
    return _f32(arrays[0].ravel() if len(arrays) == 1 else np.concatenate([a.ravel() for a in arrays]))


def _kernel_weights(model: Any) -> dict[str, Any]:
    """The model's arrays as the kernel takes them (views where they need no copy)."""
    layers = model.layers
    skip = model.skip_weight if model.skip_weight is not None else \
        np.zeros((0, model.vocab_size), dtype=np.float32)
    return {
        "kinds": np.array([layer.spec.kind_code for layer in layers], dtype=np.int32),
        "sizes": np.array([layer.spec.size for layer in layers], dtype=np.int32),
        "E": _f32(model.cipher.vectors),
        "W": _flat([layer.attention for layer in layers]),
        "aggregation": Aggregation.parse(model.config.aggregation).code,
        "UT": _flat([layer.hidden_t for layer in layers]),
        "output_t": _f32(model.output_t), "skip_weight": _f32(skip), "bias": _f32(model.output_bias),
        "banned": model.generation_mask(),
    }


def generate_in_chunks(model: Any, prompts: Sequence[str], *, max_tokens: int = 100,
                       temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, seed: int | None = None,
                       chunk: int | None = None,
                       cache_bytes: int = CACHE_BYTES) -> Iterator[list[np.ndarray]]:
    """The tokens each stream adds, ``chunk`` steps per kernel call (default: all in one call).

    Yields, after each call, one int32 array per prompt: the tokens that stream added in the
    call (empty once it has stopped at ``<eod>``). The concatenated yields do not depend on
    ``chunk``, nor on ``cache_bytes`` (bytes the C++ kernel may use per call for cached output
    rows, 0 for none): each call restarts from the streams' tokens so far, with their next draws.
    """
    model._require_fitted()
    check_sampling(max_tokens, temperature, top_k, top_p, seed)
    check_int("chunk", chunk, 1, optional=True)
    check_int("cache_bytes", cache_bytes, 0)
    return _chunks(model, _prompt_ids(model, prompts), max_tokens, temperature, top_k, top_p,
                   seed, chunk or max_tokens, cache_bytes)


def _chunks(model: Any, prompt_ids: list[np.ndarray], max_tokens: int, temperature: float,
            top_k: int | None, top_p: float | None, seed: int | None, chunk: int,
            cache_bytes: int = CACHE_BYTES) -> Iterator[list[np.ndarray]]:
    uniforms = np.zeros((len(prompt_ids), max_tokens))
    if temperature > 0:
        for row, rng in zip(uniforms, stream_rngs(seed, len(prompt_ids)), strict=True):
            row[:] = rng.random(max_tokens)
    weights = _kernel_weights(model)
    settings = {"temperature": float(temperature), "top_k": top_k or 0, "top_p": top_p or 0.0,
                "stop_token": EOD, "cache_bytes": cache_bytes}
    contexts = [[SOD, *ids.tolist()] for ids in prompt_ids]
    active = list(range(len(prompt_ids)))
    for first in range(0, max_tokens, chunk):
        if not active:
            return
        steps = min(chunk, max_tokens - first)
        ids = np.array([token for b in active for token in contexts[b]], dtype=np.int32)
        pos = np.concatenate([np.arange(len(contexts[b]), dtype=np.int32) for b in active])
        out = np.empty((len(active), steps), dtype=np.int32)
        lengths = np.empty(len(active), dtype=np.int32)
        draws = np.ascontiguousarray(uniforms[active, first:first + steps])
        kernels.saffu_generate(ids, pos, uniforms=draws, out=out, lengths=lengths, **weights,
                               **settings)
        added = [np.zeros(0, dtype=np.int32) for _ in prompt_ids]
        for row, b in enumerate(active):
            added[b] = out[row, :lengths[row]].copy()
            contexts[b].extend(added[b].tolist())
        active = [b for row, b in enumerate(active) if lengths[row] == steps]
        yield added


def generate(model: Any, prompt: str | Sequence[str] = "", *, max_tokens: int = 100,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None) -> str | list[str]:
    """The continuation of ``prompt``, or one per prompt of a list (see the module docstring)."""
    model._require_fitted()
    check_sampling(max_tokens, temperature, top_k, top_p, seed)
    single = isinstance(prompt, str)
    if isinstance(prompt, (bytes, bytearray)):
        raise InvalidParameterError("prompt must be a str or a list of str, not bytes")
    prompt_ids = _prompt_ids(model, [prompt] if single else list(prompt))
    generated: list[list[int]] = [[] for _ in prompt_ids]
    for added in _chunks(model, prompt_ids, max_tokens, temperature, top_k, top_p, seed,
                         max(max_tokens, 1)):
        for tokens, new in zip(generated, added, strict=True):
            tokens.extend(new.tolist())
    texts = [model._continuation(p.tolist(), g) for p, g in zip(prompt_ids, generated, strict=True)]
    return texts[0] if single else texts


class TextStream:
    """Decodes a growing continuation for printing as it is made.

    :meth:`update` returns the text the tokens so far add to what it returned before. A
    character whose UTF-8 bytes are split over tokens decodes as U+FFFD until its last byte
    arrives, so trailing U+FFFD characters are held back until the next update or :meth:`finish`.
    """

    def __init__(self, model: Any, prompt: str) -> None:
        self._model = model
        self._prompt = _prompt_ids(model, [prompt])[0].tolist()
        self.tokens: list[int] = []
        self.printed = ""

    def _text(self) -> str:
        return self._model._continuation(self._prompt, self.tokens)

    def update(self, added: Sequence[int]) -> str:
        """The new printable text after ``added`` tokens."""
        self.tokens.extend(int(t) for t in added)
        text = self._text().rstrip("\ufffd")
        if not text.startswith(self.printed):
            return ""  # the decoder changed earlier text: wait for finish()
        delta, self.printed = text[len(self.printed):], text
        return delta

    def finish(self) -> str:
        """What is left to print of the whole continuation."""
        text = self._text()
        pairs = zip(text, self.printed, strict=False)
        common = next((i for i, (a, b) in enumerate(pairs) if a != b), len(self.printed))
        delta, self.printed = text[common:], text
        return delta


# --- the reference path ----------------------------------------------------------------------


def reference_generate(model: Any, prompt: str = "", *, max_tokens: int = 100,
                       temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, seed: int | None = None) -> str:
    """The continuation of ``prompt`` as saffu generated it before the generation kernel: each
    step rebuilds the whole context, computes its logits through the model's forward pass and
    draws with :func:`sample_token`. Slow; the oracle of :func:`generate`."""
    model._require_fitted()
    check_sampling(max_tokens, temperature, top_k, top_p, seed)
    rng = np.random.default_rng(seed)
    context = [SOD, *model.tokenizer.encode(prompt).tolist()]
    banned = model.generation_mask()
    generated: list[int] = []
    for _ in range(max_tokens):
        ids = np.array([*context, PAD], dtype=np.int32)
        pos = np.arange(len(ids), dtype=np.int32)
        logits = model._logits_at(ids, pos, len(ids) - 1, len(ids))[0]
        logits[banned] = -np.inf
        token = sample_token(logits, rng, temperature, top_k, top_p)
        if token == EOD:
            break
        context.append(token)
        generated.append(token)
    return model._continuation(context[1:len(context) - len(generated)], generated)

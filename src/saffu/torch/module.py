"""The SAFFU forward pass as a PyTorch module, for backpropagation after (or instead of) the fit.

METHOD.md §5: the same forward pass as :class:`saffu.model.SaffuModel` (docs/internals.md gives
the exact semantics), written with differentiable tensor operations so that every weight can be
refined by gradient descent. A *warm start* copies the explicit weights (:func:`to_torch`); a
*cold start* draws the same shapes at random (:func:`cold_start`). :func:`from_torch` turns the
trained module back into a :class:`SaffuModel`, which scores, generates and saves like any other.

The module never sees a whole corpus: :func:`context_batch` turns a range of targets of one chunk
into index tensors (the token span the contexts read, each target's window as indices into that
span), so memory is bounded by the batch (``n × V`` log-probabilities at most).

This package (:mod:`saffu.torch`: ``module``, ``init``, ``training``) is the only part of saffu that
imports PyTorch (``pip install 'saffu[torch]'``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saffu.cipher import Cipher
from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError
from saffu.kinds import ContextKind
from saffu.model import ContextLayer, ContextSpec, SaffuConfig, SaffuModel, target_batches

__all__ = ["ContextBatch", "SaffuModule", "cold_start", "context_batch", "corpus_batches", "from_torch",
           "to_torch"]

COLD_ATTENTION_STD = 0.02  # cold-start W ~ normal(0, 0.02): near-uniform attention at step 0


# --- batches of contexts -------------------------------------------------------------------------


@dataclass
class ContextBatch:
    """Everything the module reads to predict ``n`` consecutive targets of a chunk.

    Indices point into ``span``, the tokens from the first one any context of the batch reads up
    to the last target; the index ``len(span)`` denotes a masked (zero) slot.

    Attributes:
        span: (L,) int64 token ids.
        targets: (n,) int64 ids of the tokens to predict.
        windows: one entry per context model: (n, K) int64 span index of each window slot
            (``L`` where masked) for radial and block models, ``None`` for the document model.
        pivots: one entry per context model: (n,) int64 slot of the pivot token, or ``None``.
        doc_start: (n,) int64 span index of each target's document start (its ``<sod>``).
        target_index: (n,) int64 span index of each target; the document context of a target
            is the span slice ``[doc_start, target_index)``.
        previous: (n, S) int64 span index of the tokens t−1 … t−S (``L`` before the document
            start): the skip inputs of the output layer (``SaffuConfig.skip``); (n, 0) without.
    """

    span: Tensor
    targets: Tensor
    windows: list[Tensor | None]
    pivots: list[Tensor | None]
    doc_start: Tensor
    target_index: Tensor
    previous: Tensor

    def __len__(self) -> int:
        return len(self.targets)


def context_batch(ids: np.ndarray, pos: np.ndarray, start: int, stop: int,
                  specs: Sequence[ContextSpec], skip: int = 0) -> ContextBatch:
    """Index tensors for the targets (``pos > 0``) in ``[start, stop)`` of a chunk.

    Args:
        ids: (N,) int32 token ids of whole documents (each begins with ``<sod>``).
        pos: (N,) int32 position of each token inside its document.
        start: first token index of the range; contexts may reach back before it.
        stop: end (exclusive) of the range.
        specs: the model's context models (``SaffuConfig.context_specs``).
        skip: S, the previous tokens the output layer reads (``SaffuConfig.skip``).
    Raises:
        ValueError: on mismatched arrays, a range outside the chunk or a range without targets.
    """
    ids, pos = _check_chunk(ids, pos)
    if not 0 <= start < stop <= len(ids):
        raise InvalidParameterError(f"target range [{start}, {stop}) is not inside a chunk of "
                                    f"{len(ids)} tokens")
    t = start + np.flatnonzero(pos[start:stop] > 0)
    if len(t) == 0:
        raise InvalidParameterError(f"target range [{start}, {stop}) holds no targets (only <sod> tokens)")
    doc = t - pos[t]
    first = min(_first_read(t, doc, specs), int(max(doc[0], t[0] - skip)))
    span_length = stop - first
    windows: list[Tensor | None] = []
    pivots: list[Tensor | None] = []
    for spec in specs:
        if spec.attends:
            slots, valid, pivot = _window(t, doc, pos, spec)
            windows.append(torch.from_numpy(np.where(valid, slots - first, span_length)))
            pivots.append(torch.from_numpy(pivot))
        else:
            windows.append(None)
            pivots.append(None)
    previous = t[:, None] - np.arange(1, skip + 1)
    previous = np.where(previous >= doc[:, None], previous - first, span_length)
    return ContextBatch(
        span=torch.from_numpy(ids[first:stop].astype(np.int64)),
        targets=torch.from_numpy(ids[t].astype(np.int64)),
        windows=windows, pivots=pivots,
        doc_start=torch.from_numpy(doc - first), target_index=torch.from_numpy(t - first),
        previous=torch.from_numpy(previous.reshape(len(t), skip)))


def _check_chunk(ids: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids, pos = np.asarray(ids), np.asarray(pos)
    if ids.ndim != 1 or ids.shape != pos.shape:
        raise InvalidParameterError(f"ids and pos must be 1-D arrays of equal length, got "
                                    f"{ids.shape} and {pos.shape}")
    if not (np.issubdtype(ids.dtype, np.integer) and np.issubdtype(pos.dtype, np.integer)):
        raise InvalidParameterError(f"ids and pos must be integer arrays, got {ids.dtype} and {pos.dtype}")
    return ids.astype(np.int64, copy=False), pos.astype(np.int64, copy=False)


def _first_read(t: np.ndarray, doc: np.ndarray, specs: Sequence[ContextSpec]) -> int:
    """Index of the first token any context of the (sorted) targets ``t`` reads."""
    if any(not spec.attends for spec in specs):
        return int(doc[0])
    reach = max(spec.size for spec in specs)
    return int(max(doc[0], t[0] - reach))


def _window(t: np.ndarray, doc: np.ndarray, pos: np.ndarray,
            spec: ContextSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corpus index (n, K) and validity (n, K) of every window slot, and the pivot slots (n,)."""
    slots = np.arange(spec.size)
    if spec.kind is ContextKind.RADIAL:
        indices = t[:, None] - spec.size + slots
        return indices, indices >= doc[:, None], np.full(len(t), spec.size - 1)
    if spec.kind is ContextKind.BLOCK:
        recent = (pos[t] - 1) % spec.size  # slot of the most recent context token
        return t[:, None] - 1 - recent[:, None] + slots, slots <= recent[:, None], recent
    raise InvalidParameterError(f"no window rule for context kind {spec.kind!r}")


def corpus_batches(corpus: TokenizedCorpus, specs: Sequence[ContextSpec], batch_targets: int,
                   rng: np.random.Generator | None = None, skip: int = 0) -> Iterator[ContextBatch]:
    """Stream a corpus as batches of at most ``batch_targets`` consecutive targets.

    With ``rng``, the batches of each chunk come in a random order (chunks stay in corpus order:
    the corpus is streamed, never held whole).
    """
    if not isinstance(batch_targets, int) or batch_targets < 1:
        raise InvalidParameterError(f"batch_targets must be a positive int, got {batch_targets!r}")
    for ids, pos in corpus.chunks():
        ranges = list(target_batches(pos, batch_targets))
        order = rng.permutation(len(ranges)) if rng is not None else range(len(ranges))
        for i in order:
            yield context_batch(ids, pos, *ranges[i], specs, skip)


# --- the module ----------------------------------------------------------------------------------


class SaffuModule(nn.Module):
    """The SAFFU forward pass (METHOD.md §3) with trainable weights.

    Parameters, float32 by default (``module.double()`` works), named like the model's arrays:
        attention: ``{"i": W}`` (K, K) for each attending context model i.
        hidden_t: one ``UT`` (D, Z) per context model.
        output_t: ``O`` transposed, (V, n_contexts·D); output_bias: ``o`` (V,).
        skip_weight: (S·bits, V) weights of the skip inputs (the cipher vectors of the last S
            tokens, ``SaffuConfig.skip``), or absent.
        cipher: the token vectors (V, bits): a frozen buffer, or a parameter when thawed.
    """

    def __init__(self, specs: Sequence[ContextSpec], aggregation: str, cipher: Tensor,
                 attention: dict[int, Tensor], hidden_t: Sequence[Tensor], output_t: Tensor,
                 output_bias: Tensor, *, thaw_cipher: bool = False,
                 skip_weight: Tensor | None = None) -> None:
        super().__init__()
        if len(hidden_t) != len(specs):
            raise InvalidParameterError(f"got {len(hidden_t)} hidden layers for {len(specs)} context models")
        self.specs = tuple(specs)
        self.aggregation = aggregation
        if thaw_cipher:
            self.cipher = nn.Parameter(cipher)
        else:
            self.register_buffer("cipher", cipher)
        self.attention = nn.ParameterDict({str(i): nn.Parameter(w) for i, w in attention.items()})
        self.hidden_t = nn.ParameterList([nn.Parameter(u) for u in hidden_t])
        self.output_t = nn.Parameter(output_t)
        self.output_bias = nn.Parameter(output_bias)
        self.skip = 0 if skip_weight is None else skip_weight.shape[0] // cipher.shape[1]
        if skip_weight is not None:
            if skip_weight.shape != (self.skip * cipher.shape[1], output_t.shape[0]):
                raise InvalidParameterError(f"skip_weight must have shape (S·bits, V), got "
                                            f"{tuple(skip_weight.shape)}")
            self.skip_weight = nn.Parameter(skip_weight)
        self.template: SaffuModel | None = None  # tokenizer, config and codes for from_torch
        self.start = "given"  # "explicit" (to_torch) or "random" (cold_start): the trainer's defaults

    @property
    def cipher_thawed(self) -> bool:
        """Whether the cipher vectors are a trained parameter (not a frozen buffer)."""
        return isinstance(self.cipher, nn.Parameter)

    def thaw_cipher(self) -> None:
        """Turn the frozen cipher buffer into a parameter, in place (same values and name)."""
        if self.cipher_thawed:
            raise InvalidParameterError("the cipher is already thawed")
        vectors = self.cipher
        del self.cipher  # removes the buffer
        self.cipher = nn.Parameter(vectors)

    def forward(self, batch: ContextBatch) -> Tensor:
        """(n, V) next-token log-probabilities of the batch's targets."""
        return F.log_softmax(self.logits(batch), dim=-1)

    def logits(self, batch: ContextBatch) -> Tensor:
        """(n, V) output logits ``[h_c]_c O + o`` (plus the skip inputs' ``x_{t-k} S_k``)."""
        vectors = torch.cat([self.cipher[batch.span], self.cipher.new_zeros(1, self.cipher.shape[1])])
        hidden = [self._hidden(i, spec, vectors, batch) for i, spec in enumerate(self.specs)]
        logits = F.linear(torch.cat(hidden, dim=1), self.output_t, self.output_bias)
        if self.skip:
            logits = logits + self._skip_logits(vectors, batch)
        return logits

    def _skip_logits(self, vectors: Tensor, batch: ContextBatch) -> Tensor:
        """Σ_k x_{t−k} S_k (n, V): the skip inputs' part of the logits. A frozen cipher's vectors
        have a few nonzero bits, so this sums rows of ``skip_weight`` (``embedding_bag``); a
        thawed one may have any, so it is a dense product."""
        n = len(batch)
        if batch.previous.shape[1] != self.skip:
            raise InvalidParameterError(f"the batch holds {batch.previous.shape[1]} previous tokens per "
                                        f"target, the module reads {self.skip}: build it with "
                                        "context_batch(..., skip=module.skip)")
        x = vectors[batch.previous]  # (n, S, bits); the last row of vectors is zero
        if self.cipher_thawed:
            return x.reshape(n, -1) @ self.skip_weight
        rows, columns = torch.nonzero(x.reshape(n, -1), as_tuple=True)
        offsets = torch.searchsorted(rows, torch.arange(n, device=rows.device))
        return F.embedding_bag(columns, self.skip_weight, offsets, mode="sum",
                               per_sample_weights=x.reshape(n, -1)[rows, columns])

    def _hidden(self, i: int, spec: ContextSpec, vectors: Tensor, batch: ContextBatch) -> Tensor:
        """h = softmax(UT z) (n, D) of context model i; ``vectors`` (L+1, bits) ends with a zero row."""
        if spec.attends:
            z = self._attend(self.attention[str(i)], vectors, batch.windows[i], batch.pivots[i])
        else:
            z = _document_mean(vectors[:-1], batch.doc_start, batch.target_index)
        return F.softmax(F.linear(z, self.hidden_t[i]), dim=-1)

    def _attend(self, attention: Tensor, vectors: Tensor, window: Tensor, pivot: Tensor) -> Tensor:
        """z (n, bits) or (n, K·bits): the window weighted by softmax_valid(s W), s = X x_pivot."""
        X = vectors[window]  # (n, K, bits)
        pivot_vector = X[torch.arange(len(X)), pivot]
        s = torch.bmm(X, pivot_vector.unsqueeze(-1)).squeeze(-1)
        scores = (s @ attention).masked_fill(window == len(vectors) - 1, -math.inf)
        weighted = F.softmax(scores, dim=-1).unsqueeze(-1) * X
        return weighted.flatten(1) if self.aggregation == "cat" else weighted.sum(1)


def _document_mean(vectors: Tensor, doc_start: Tensor, target_index: Tensor) -> Tensor:
    """L1-normalized sum of ``vectors[doc_start:target_index]`` per target, (n, bits).

    A cumulative sum over the span, differenced at each document start; float64 so that the
    difference of two long running sums keeps float32 precision.
    """
    totals = F.pad(torch.cumsum(vectors.double(), dim=0), (0, 0, 1, 0))
    z = totals[target_index] - totals[doc_start]
    mass = z.abs().sum(-1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    return (z / mass).to(vectors.dtype)


# --- conversions ----------------------------------------------------------------------------------


def to_torch(model: SaffuModel, thaw_cipher: bool = False) -> SaffuModule:
    """A module holding copies of a fitted model's weights (the warm start)."""
    if not isinstance(model, SaffuModel):
        raise InvalidParameterError(f"to_torch needs a SaffuModel, got {type(model).__name__}")
    model._require_fitted()
    attention = {i: _tensor(layer.attention) for i, layer in enumerate(model.layers) if layer.spec.attends}
    module = SaffuModule(
        model.config.context_specs, model.config.aggregation, _tensor(model.cipher.vectors), attention,
        [_tensor(layer.hidden_t) for layer in model.layers], _tensor(model.output_t),
        _tensor(model.output_bias), thaw_cipher=thaw_cipher,
        skip_weight=None if model.skip_weight is None else _tensor(model.skip_weight))
    module.template, module.start = model, "explicit"
    return module


def _tensor(array: np.ndarray) -> Tensor:
    return torch.tensor(np.asarray(array, dtype=np.float32))


def _array(tensor: Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def from_torch(module: SaffuModule, model: SaffuModel | None = None) -> SaffuModel:
    """A new :class:`SaffuModel` with the module's weights.

    Args:
        module: a trained module.
        model: the template whose config, tokenizer and label codes are kept (default: the model
            the module was made from). Its fit statistics are not carried over: they describe
            the explicit weights, not the trained ones.
    """
    template = model if model is not None else module.template
    if template is None or template.tokenizer is None or template.labels is None:
        raise InvalidParameterError("from_torch needs a template model with a tokenizer, cipher and "
                                    "label codes "
                                    "(the model passed to to_torch or cold_start)")
    _check_template(module, template)
    cipher = template.cipher
    if module.cipher_thawed:
        cipher = cipher.with_vectors(_array(module.cipher))
    layers = [
        ContextLayer(spec, _array(module.attention[str(i)]) if spec.attends
                     else np.zeros((spec.size, spec.size), dtype=np.float32),
                     _array(module.hidden_t[i]))
        for i, spec in enumerate(module.specs)]
    return SaffuModel(config=template.config, tokenizer=template.tokenizer, cipher=cipher,
                      labels=template.labels, layers=layers, output_t=_array(module.output_t),
                      output_bias=_array(module.output_bias),
                      skip_weight=_array(module.skip_weight) if module.skip else None,
                      fit_info=dict(template.fit_info))


def _check_template(module: SaffuModule, template: SaffuModel) -> None:
    if template.config.context_specs != module.specs or template.config.aggregation != module.aggregation \
            or template.config.skip != module.skip:
        raise InvalidParameterError("the template model's context models differ from the module's")
    if template.cipher.vectors.shape != tuple(module.cipher.shape):
        raise InvalidParameterError(f"the template's cipher has shape {template.cipher.vectors.shape}, "
                                    f"the module's {tuple(module.cipher.shape)}")


def cold_start(config_or_model: SaffuConfig | SaffuModel, seed: int = 0, *,
               thaw_cipher: bool = False) -> SaffuModule:
    """A module of the model's shapes with the usual random initialization (the cold start).

    ``W ~ normal(0, 0.02)`` (near-uniform attention), ``UT`` and ``O`` uniform in
    ``±1/sqrt(fan_in)`` (``nn.Linear``'s default), ``o = 0``. The cipher is the bit cipher: from
    the model (prepared with :func:`saffu.fit.prepare`: tokenizer, cipher and label codes, no
    weights needed), or, for a bare config, ranked by token id (no frequencies known) — such a
    module has no tokenizer, so :func:`from_torch` then needs a template model.
    """
    if isinstance(config_or_model, SaffuModel):
        model = config_or_model
        if model.cipher is None or model.labels is None:
            raise InvalidParameterError("cold_start needs a model with a cipher and label codes: run "
                                        "saffu.fit.prepare(model, documents) first, or pass a SaffuConfig")
        config, cipher, width = model.config, model.cipher, model.labels.bits
    elif isinstance(config_or_model, SaffuConfig):
        model, config = None, config_or_model
        cipher = Cipher.fit(np.ones(config.vocab_size), bits=config.bits,
                            smoothing=config.cipher_smoothing)
        width = config.hidden or cipher.bits
    else:
        raise InvalidParameterError(f"cold_start needs a SaffuConfig or SaffuModel, got "
                                    f"{type(config_or_model).__name__}")
    generator = torch.Generator().manual_seed(seed)
    specs = config.context_specs
    vocab = cipher.vectors.shape[0]
    attention = {i: torch.randn(spec.size, spec.size, generator=generator) * COLD_ATTENTION_STD
                 for i, spec in enumerate(specs) if spec.attends}
    hidden_t = [_uniform_fan_in(width, spec.input_dim(cipher.bits, config.aggregation), generator)
                for spec in specs]
    skip_weight = None
    if config.skip:  # nn.Embedding's default, as the skip weights are a lookup by cipher bit
        skip_weight = torch.randn(config.skip * cipher.bits, vocab, generator=generator) / math.sqrt(vocab)
    module = SaffuModule(specs, config.aggregation, _tensor(cipher.vectors), attention, hidden_t,
                         _uniform_fan_in(vocab, width * len(specs), generator), torch.zeros(vocab),
                         thaw_cipher=thaw_cipher, skip_weight=skip_weight)
    module.template, module.start = model, "random"
    return module


def _uniform_fan_in(rows: int, fan_in: int, generator: torch.Generator) -> Tensor:
    """(rows, fan_in) uniform in ±1/sqrt(fan_in), as ``nn.Linear`` initializes its weight."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(rows, fan_in, generator=generator) * 2 - 1) * bound

"""The explicit fit of a SAFFU model (METHOD.md §4): four streaming passes, nothing materialized.

Each pass streams the encoded corpus chunk by chunk and only accumulates sufficient statistics
(:class:`PassStatistics`, additive: shards can be merged by summation), then solves the layers of
that pass in closed form. Later passes use the weights solved by earlier ones:

1. ``experts``:   per-position experts P̂_k(y | x_k) of each attention context model (bias form);
2. ``attention``: attention W from targets t_k ∝ P̂_k(y | x_k) (folded form; skipped if uniform);
3. ``hidden``:    hidden U from z ⊗ code(y) (folded form);
4. ``output``:    output O, o from h ⊗ onehot(y) (bias form).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from saffu import kernels
from saffu._backend import threads
from saffu.cipher import Cipher
from saffu.corpus import TokenizedCorpus
from saffu.explicit import ExplicitStats
from saffu.model import AGGREGATIONS, ContextLayer, SaffuModel, target_batches
from saffu.tokenize import make_tokenizer

OUTPUT_BATCH_FLOATS = 2**22  # floats of h (16 MB) held at once while accumulating the output statistics


@dataclass
class PassStatistics:
    """The statistics of one pass: named :class:`ExplicitStats`, additive across shards."""

    stage: str
    stats: dict[str, ExplicitStats] = field(default_factory=dict)

    def __add__(self, other: PassStatistics) -> PassStatistics:
        """A new sum; both operands stay as they are (a retried Dask task may read them again)."""
        self._check_mergeable(other)
        return PassStatistics(self.stage, {k: v + other.stats[k] for k, v in self.stats.items()})

    def __iadd__(self, other: PassStatistics) -> PassStatistics:
        self._check_mergeable(other)
        for key, stats in self.stats.items():
            stats.merge(other.stats[key])
        return self

    def _check_mergeable(self, other: PassStatistics) -> None:
        if other.stage != self.stage or other.stats.keys() != self.stats.keys():
            raise ValueError(f"cannot merge statistics of pass {other.stage!r} into {self.stage!r}")

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"{name}.{key}": array for name, stats in self.stats.items()
                for key, array in stats.to_arrays().items()}

    @classmethod
    def from_arrays(cls, stage: str, arrays: dict[str, np.ndarray]) -> PassStatistics:
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key, array in arrays.items():
            name, _, field_name = key.rpartition(".")
            grouped.setdefault(name, {})[field_name] = array
        return cls(stage, {name: ExplicitStats.from_arrays(g) for name, g in grouped.items()})

    def save(self, path: str) -> None:
        """Write to a safetensors file atomically (the stage name is kept in its metadata)."""
        from safetensors.numpy import save

        from saffu._io import atomic_write_bytes

        atomic_write_bytes(path, save(self.to_arrays(), metadata={"stage": self.stage}))

    @classmethod
    def load(cls, path: str) -> PassStatistics:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                stage = (handle.metadata() or {}).get("stage")
                arrays = {key: handle.get_tensor(key) for key in handle.keys()}
        except FileNotFoundError:
            raise
        except Exception as error:
            raise ValueError(f"{path} is not a readable statistics file: {error}") from error
        if stage not in STAGE_NAMES:
            raise ValueError(f"{path} holds no saffu pass statistics (stage {stage!r})")
        return cls.from_arrays(stage, arrays)


# --- the four passes ---------------------------------------------------------------------------
# Each pass is a pair: accumulate(model, ids, pos) -> PassStatistics over one chunk of whole
# documents, and solve(model, stats) which writes the solved weights into the model.


def _attending_layers(model: SaffuModel) -> list[tuple[int, ContextLayer]]:
    return [(i, layer) for i, layer in enumerate(model.layers) if layer.spec.attends]


def _signed_cipher(model: SaffuModel) -> bool:
    """Whether a cipher vector has a negative entry (a thawed cipher trained by backprop): then
    the kernels' sums may be negative and must be checked before they are solved."""
    return bool((model.cipher.vectors < 0).any())


def _n_targets(pos: np.ndarray) -> int:
    return int(np.count_nonzero(pos))


def accumulate_experts(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> PassStatistics:
    """Per-position co-occurrences E_k = Σ x_{t,k} ⊗ onehot(y_t), one stats object per (c, k)."""
    vocab, bits = model.cipher.vectors.shape
    result = PassStatistics("experts")
    for i, layer in _attending_layers(model):
        size = layer.spec.size
        ft = np.zeros((size, vocab, bits))
        mass = np.zeros((size, vocab))
        kernels.saffu_expert_stats(ids, pos, layer.spec.kind_code, size, model.cipher.vectors,
                                   ft, mass)
        check = _signed_cipher(model)
        for k in range(size):
            examples = float(mass[k].sum())  # cipher vectors have unit mass
            result.stats[f"{i}.{k}"] = ExplicitStats.from_totals(ft[k], mass[k], examples, examples,
                                                                 check=check)
    return result


@dataclass
class Experts:
    """Solved per-position experts of one context model, in the layout the kernels take."""

    weight_t: np.ndarray  # (K, V, bits) float32
    bias: np.ndarray  # (K, V) float32
    log_normalizer: np.ndarray  # (K, V) float32: logsumexp_y of the logits of each input token


def solve_experts(model: SaffuModel, stats: PassStatistics) -> None:
    vectors = sp.csr_matrix(model.cipher.vectors)
    model.fit_state["experts"] = {}
    for i, layer in _attending_layers(model):
        solved = [stats.stats[f"{i}.{k}"].solve(alpha=model.config.alpha, form="bias")
                  for k in range(layer.spec.size)]
        weight_t = np.stack([s.weight_t for s in solved]).astype(np.float32)
        bias = np.stack([s.bias for s in solved]).astype(np.float32)
        # The normalizer depends only on (position, input token): one product per position,
        # sparse because cipher vectors have few nonzero bits.
        log_normalizer = np.stack([
            kernels.logsumexp_rows(np.ascontiguousarray(vectors @ weight_t[k].T), bias[k])
            for k in range(layer.spec.size)])
        model.fit_state["experts"][i] = Experts(weight_t, bias, log_normalizer.astype(np.float32))


def accumulate_attention(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> PassStatistics:
    """Σ s_t ⊗ t_t per attention context model, targets t from the experts."""
    result = PassStatistics("attention")
    for i, layer in _attending_layers(model):
        experts = model.fit_state["experts"][i]
        size = layer.spec.size
        ft = np.zeros((size, size))
        mass = kernels.saffu_attention_stats(
            ids, pos, layer.spec.kind_code, size, model.cipher.vectors, experts.weight_t,
            experts.bias, experts.log_normalizer, ft)
        # The folded form needs no target mass; t sums to 1 per example, so its total is n.
        result.stats[str(i)] = ExplicitStats.from_totals(ft, np.zeros(size), float(_n_targets(pos)),
                                                         float(mass), check=_signed_cipher(model))
    return result


def solve_attention(model: SaffuModel, stats: PassStatistics) -> None:
    config = model.config
    for i, layer in _attending_layers(model):
        solved = stats.stats[str(i)].solve(alpha=config.alpha, tau=config.tau, form="folded",
                                           priming=config.priming)
        layer.attention = np.ascontiguousarray(solved.weight, dtype=np.float32)


def accumulate_hidden(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> PassStatistics:
    """Σ z_t ⊗ code(y_t) per context model, with W fixed."""
    config = model.config
    codes = model.labels.vectors
    targets = ids[pos > 0]
    target_mass = np.bincount(targets, minlength=codes.shape[0]).astype(np.float64) @ codes
    result = PassStatistics("hidden")
    for i, layer in enumerate(model.layers):
        width = layer.spec.input_dim(model.cipher.bits, config.aggregation)
        ft = np.zeros((codes.shape[1], width))
        mass = kernels.saffu_hidden_stats(
            ids, pos, layer.spec.kind_code, layer.spec.size, model.cipher.vectors, layer.attention,
            AGGREGATIONS[config.aggregation], codes, ft)
        result.stats[str(i)] = ExplicitStats.from_totals(ft, target_mass, float(len(targets)),
                                                         float(mass), check=_signed_cipher(model))
    return result


def solve_hidden(model: SaffuModel, stats: PassStatistics) -> None:
    config = model.config
    for i, layer in enumerate(model.layers):
        solved = stats.stats[str(i)].solve(alpha=config.alpha, tau=config.tau, form="folded",
                                           priming=config.priming)
        layer.hidden_t = np.ascontiguousarray(solved.weight_t, dtype=np.float32)


def accumulate_output(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> PassStatistics:
    """Σ h_t ⊗ onehot(y_t) with W and U fixed, in bounded batches of targets.

    Each context model's block of columns is accumulated on its own (no concatenated copy of
    the hidden states); the blocks are joined once per chunk.
    """
    blocks = [np.zeros((model.vocab_size, layer.hidden_t.shape[0])) for layer in model.layers]
    input_mass = 0.0
    widest = max(layer.hidden_t.shape[0] for layer in model.layers)
    for start, stop in target_batches(pos, max(1024, OUTPUT_BATCH_FLOATS // widest)):
        targets = ids[start:stop][pos[start:stop] > 0].astype(np.int64)
        for layer, block in zip(model.layers, blocks, strict=True):
            hidden = layer.hidden(model, ids, pos, start, stop)
            kernels.cooc_dense_onehot(block, hidden, targets)
            input_mass += float(hidden.sum(dtype=np.float64))
    targets = ids[pos > 0]
    stats = ExplicitStats.from_totals(
        np.hstack(blocks) if len(blocks) > 1 else blocks[0],
        np.bincount(targets, minlength=model.vocab_size).astype(np.float64), float(len(targets)),
        input_mass, check=False)  # softmax outputs: non-negative and finite
    return PassStatistics("output", {"output": stats})


def solve_output(model: SaffuModel, stats: PassStatistics) -> None:
    config = model.config
    solved = stats.stats["output"].solve(alpha=config.alpha, tau=config.output_tau, form="bias")
    model.output_t = np.ascontiguousarray(solved.weight_t, dtype=np.float32)
    model.output_bias = solved.bias.astype(np.float32)


@dataclass(frozen=True)
class Stage:
    name: str
    accumulate: Callable[[SaffuModel, np.ndarray, np.ndarray], PassStatistics]
    solve: Callable[[SaffuModel, PassStatistics], None]


STAGES = (
    Stage("experts", accumulate_experts, solve_experts),
    Stage("attention", accumulate_attention, solve_attention),
    Stage("hidden", accumulate_hidden, solve_hidden),
    Stage("output", accumulate_output, solve_output),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stages_for(model: SaffuModel) -> list[Stage]:
    """The passes this model needs: no experts/attention without attention layers or if uniform."""
    attends = model.config.attention == "explicit" and any(l.spec.attends for l in model.layers)
    return [s for s in STAGES if attends or s.name not in ("experts", "attention")]


# --- driving the passes ------------------------------------------------------------------------


def run_pass(stage: Stage, model: SaffuModel, corpus: TokenizedCorpus, *, verbose: int = 1,
             client: Any = None) -> PassStatistics:
    """Accumulate one pass's statistics over the whole corpus (locally or on a Dask cluster)."""
    if client is not None:
        from saffu.distributed import run_pass_distributed

        return run_pass_distributed(stage, model, corpus, client)
    with _progress(corpus, stage.name, verbose) as bar:
        return accumulate_chunks(stage, model, _counted(corpus.chunks(), bar))


def accumulate_chunks(stage: Stage, model: SaffuModel,
                      chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> PassStatistics | None:
    """The running sum of ``stage.accumulate`` over ``chunks``, in order (None without chunks)."""
    total: PassStatistics | None = None
    for ids, pos in chunks:
        stats = stage.accumulate(model, ids, pos)
        if total is None:
            total = stats
        else:
            total += stats
    return total


def _counted(chunks: Iterable[tuple[np.ndarray, np.ndarray]],
             bar: tqdm) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for ids, pos in chunks:
        yield ids, pos
        bar.update(len(ids))


def _progress(corpus: TokenizedCorpus, name: str, verbose: int) -> tqdm:
    return tqdm(total=corpus.n_tokens, desc=f"saffu {name}", unit="tok", unit_scale=True,
                disable=not verbose or not sys.stderr.isatty(), leave=False)


def prepare(model: SaffuModel, documents: Iterable[str] | TokenizedCorpus) -> TokenizedCorpus:
    """Fit the tokenizer (if missing), encode the corpus, and build the cipher and label codes."""
    config = model.config
    if model.tokenizer is None:
        if isinstance(documents, TokenizedCorpus):
            raise ValueError("an encoded corpus needs a model whose tokenizer is already set")
        documents = _reiterable(documents)
        model.tokenizer = make_tokenizer(config.tokenizer, vocab_size=config.vocab_size)
        model.tokenizer.fit(documents)
    corpus = model.encode(documents)
    if corpus.n_tokens == 0:
        raise ValueError("cannot fit on an empty corpus")
    counts = corpus.token_counts(model.tokenizer.vocab_size)
    model.cipher = Cipher.fit(counts, bits=config.bits, smoothing=config.cipher_smoothing)
    model.labels = model.cipher.label_codes(config.hidden or model.cipher.bits)
    return corpus


def _reiterable(documents: Iterable[str]) -> Iterable[str]:
    """Documents are read twice (tokenizer training, encoding): keep one-shot iterators."""
    if isinstance(documents, Iterator):
        return list(documents)
    return documents


def _init_layers(model: SaffuModel) -> None:
    bits = model.cipher.bits
    width = model.labels.bits
    model.layers = [
        ContextLayer(spec, np.zeros((spec.size, spec.size), dtype=np.float32),
                     np.zeros((width, spec.input_dim(bits, model.config.aggregation)),
                              dtype=np.float32))
        for spec in model.config.context_specs]


def fit_model(model: SaffuModel, documents: Iterable[str] | TokenizedCorpus, *,
              n_jobs: int | None = None, verbose: int = 1, client: Any = None,
              partial: bool = False) -> SaffuModel:
    """Run the explicit fit (see the module docstring) and return ``model``, fitted.

    With ``partial=True`` on a fitted model, the new documents' statistics are added to those of
    earlier calls and every layer is re-solved. Each pass of the new data sees the weights that
    earlier passes solved from *all* data so far, but statistics already accumulated are not
    recomputed under the new weights, so ``partial_fit(A); partial_fit(B)`` is close to, not
    bitwise equal to, ``fit(A + B)`` (the experts and output counts are exact; the attention and
    hidden statistics of A were taken under A's weights). The tokenizer and cipher are kept.
    """
    partial = partial and model.is_fitted
    started = time.perf_counter()
    with threads(n_jobs):
        if partial:
            corpus = model.encode(documents)
        else:
            model.fit_state = {}
            corpus = prepare(model, documents)
            _init_layers(model)
        chosen = _choose_tau(model, corpus, client) if model.config.tau is None else {}
        if client is not None:  # send the corpus to the workers once, not once per pass
            from saffu.distributed import distribute

            corpus = distribute(corpus, client)
        stored = model.fit_state.setdefault("statistics", {})
        for stage in stages_for(model):
            if stage.name == "output" and model.config.output_tau is None:
                stats = _output_pass_choosing_tau(model, corpus, verbose, client, chosen)
            else:
                stats = run_pass(stage, model, corpus, verbose=verbose, client=client)
            if partial and stage.name in stored:
                stats = stored[stage.name] + stats
            stored[stage.name] = stats
            stage.solve(model, stats)
    seconds = time.perf_counter() - started
    totals = model.fit_info if partial else {}
    model.fit_info = {
        "tokens": totals.get("tokens", 0) + corpus.n_tokens,
        "documents": totals.get("documents", 0) + corpus.n_documents,
        "seconds": totals.get("seconds", 0.0) + seconds,
    }
    if chosen:
        model.fit_info["temperatures"] = chosen
    return model


# --- hooks of saffu.temperature (tau / output_tau = None) -------------------------------------


def _check_local(client: Any) -> None:
    if client is not None:
        raise ValueError("automatic temperatures (tau or output_tau None) need a local fit; "
                         "set them when fitting with a Dask client")


def _choose_tau(model: SaffuModel, corpus: TokenizedCorpus, client: Any) -> dict[str, Any]:
    """Set ``model.config.tau`` by the search of saffu.temperature; returns what it chose."""
    from saffu.temperature import choose_tau

    _check_local(client)
    result = choose_tau(model, corpus, {stage.name: stage for stage in stages_for(model)})
    model.config = model.config.replace(tau=result.best)
    return {"tau": result.best, "tau_search": [list(point) for point in result.evaluations]}


def _output_pass_choosing_tau(model: SaffuModel, corpus: TokenizedCorpus, verbose: int,
                              client: Any, chosen: dict[str, Any]) -> PassStatistics:
    """The output pass with ``output_tau`` chosen on a held-out slice (saffu.temperature)."""
    from saffu.temperature import output_pass_choosing_tau

    _check_local(client)
    output = STAGES[-1]
    stats, result = output_pass_choosing_tau(
        model, corpus, lambda part: run_pass(output, model, part, verbose=verbose))
    model.config = model.config.replace(output_tau=result.best)
    chosen.update(output_tau=result.best,
                  output_tau_search=[list(point) for point in result.evaluations])
    return stats

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

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from saffu import kernels
from saffu._backend import threads
from saffu._io import atomic_write_bytes, read_safetensors
from saffu._processes import reusing_freed_memory
from saffu._progress import bar as progress_bar
from saffu._progress import step as progress_step
from saffu.cipher import Cipher
from saffu.config import SaffuConfig
from saffu.corpus import TokenizedCorpus
from saffu.errors import InvalidParameterError, ModelFormatError, NotFittedError
from saffu.explicit import ExplicitStats
from saffu.kinds import Aggregation
from saffu.layers import (
    ContextLayer,
    SkipInputs,
    pair_counts,
    previous_tokens,
    split_output,
    target_batches,
    transposed,
)
from saffu.temperature import choose_tau, output_pass_choosing_tau
from saffu.tokenize import Tokenizer, make_tokenizer

NORMALIZER_ROWS = 1024  # input tokens per block of the experts' log-normalizers (16 MB of logits, V 4096)
OUTPUT_BATCH_FLOATS = 2**24  # floats of h (64 MB) held at once while accumulating the output statistics
# (the output pass's kernel set-up is per batch: 2**22 made it 2x slower, bench/RESULTS.md)


class SaffuModel(Protocol):
    """What the fit reads and writes of a model (:class:`saffu.model.SaffuModel` has it all).

    The fit fills ``tokenizer`` (if missing), ``cipher``, ``labels``, ``layers``, ``output_t``,
    ``output_bias``, ``skip_weight``, ``fit_state`` and ``fit_info``; it never imports the model
    class.
    """

    config: SaffuConfig
    tokenizer: Tokenizer | None
    cipher: Cipher | None
    labels: Cipher | None
    layers: list[ContextLayer]
    output_t: np.ndarray | None
    output_bias: np.ndarray | None
    skip_weight: np.ndarray | None
    fit_info: dict[str, Any]
    fit_state: FitState

    @property
    def is_fitted(self) -> bool: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, documents: Iterable[str] | TokenizedCorpus) -> TokenizedCorpus: ...

    def hidden_states(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                      stop: int | None = None) -> np.ndarray: ...

    def previous_tokens(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                        stop: int | None = None) -> np.ndarray: ...

    def output_products(self, hidden: np.ndarray, previous: np.ndarray | None,
                        weights: tuple[np.ndarray, np.ndarray | None] | None = None) -> np.ndarray: ...


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
            raise InvalidParameterError(
                f"cannot merge statistics of pass {other.stage!r} into {self.stage!r}")

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

        atomic_write_bytes(path, save(self.to_arrays(), metadata={"stage": self.stage}))

    @classmethod
    def load(cls, path: str) -> PassStatistics:
        arrays, metadata = read_safetensors(path)
        stage = metadata.get("stage")
        if stage not in STAGE_NAMES:
            raise ModelFormatError(f"{path} holds no saffu pass statistics (stage {stage!r})")
        return cls.from_arrays(stage, arrays)


@dataclass
class Experts:
    """Solved per-position experts of one context model, in the layout the kernels take."""

    weight_t: np.ndarray  # (K, V, bits) float32
    bias: np.ndarray  # (K, V) float32
    log_normalizer: np.ndarray  # (K, V) float32: logsumexp_y of the logits of each input token


@dataclass
class FitState:
    """What a fit keeps besides the weights: each pass's statistics (so that ``partial_fit`` can
    add to them and a re-solve needs no pass) and the solved experts of each attending context
    model (index in ``model.layers`` → :class:`Experts`), which the attention pass reads."""

    statistics: dict[str, PassStatistics] = field(default_factory=dict)
    experts: dict[int, Experts] = field(default_factory=dict)


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


def solve_experts(model: SaffuModel, stats: PassStatistics) -> None:
    vectors = sp.csr_matrix(model.cipher.vectors)
    vocab, bits = model.cipher.vectors.shape
    model.fit_state.experts = {}
    for i, layer in _attending_layers(model):
        size = layer.spec.size
        experts = Experts(np.empty((size, vocab, bits), dtype=np.float32),
                          np.empty((size, vocab), dtype=np.float32),
                          np.empty((size, vocab), dtype=np.float32))
        for k in range(size):
            solved = stats.stats[f"{i}.{k}"].solve(alpha=model.config.alpha, form="bias")
            experts.weight_t[k], experts.bias[k] = solved.weight_t, solved.bias
            experts.log_normalizer[k] = _log_normalizers(vectors, solved.weight_t, solved.bias)
        model.fit_state.experts[i] = experts


def _log_normalizers(vectors: sp.csr_matrix, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(V,) float64: ``logsumexp_y(x_v · w_y + b_y)`` for every input token v of one expert.

    The normalizer depends only on (position, input token): one product per position, sparse
    because cipher vectors (``vectors`` (V, bits)) have few nonzero bits; ``weight_t`` (V, bits)
    and ``bias`` (V,) are the expert's. In blocks of rows, so that the (V, V) logits are never
    held at once (each block's buffer is reused instead of page-faulted in anew).
    """
    by_input = transposed(weight_t)  # (bits, V): the product reads it row by row
    return np.concatenate([kernels.logsumexp_rows(vectors[first:first + NORMALIZER_ROWS] @ by_input, bias)
                           for first in range(0, vectors.shape[0], NORMALIZER_ROWS)])


def accumulate_attention(model: SaffuModel, ids: np.ndarray, pos: np.ndarray) -> PassStatistics:
    """Σ s_t ⊗ t_t per attention context model, targets t from the experts."""
    result = PassStatistics("attention")
    for i, layer in _attending_layers(model):
        experts = model.fit_state.experts[i]
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
            Aggregation.parse(config.aggregation).code, codes, ft)
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
    """Σ h_t ⊗ onehot(y_t) with W and U fixed.

    Each context model's block of columns is accumulated on its own (no concatenated copy of
    the hidden states) and copied into the statistics once per chunk. A context model that
    reads the previous token only (radial1) has one hidden vector per token id, so its block is
    the bigram counts times that table (:func:`_last_token_block`), with no per-target work;
    other models compute one hidden vector per target, in bounded batches. The skip inputs'
    columns are the (target, previous token) counts times the cipher vectors
    (:meth:`SkipInputs.target_sums`). The input mass of a block is the sum of its entries.
    """
    vectors, aggregation = model.cipher.vectors, model.config.aggregation
    widths = [layer.hidden_t.shape[0] for layer in model.layers]
    skip = SkipInputs(vectors, model.config.skip)
    FT = np.zeros((model.vocab_size, sum(widths) + skip.width))
    where = np.flatnonzero(pos > 0)
    targets, previous = ids[where], ids[where - 1]
    bigrams = None  # the (target, previous token) counts, if a radial1 model or the skip inputs need them
    if skip.lags or any(layer.spec.reads_last_token_only for layer in model.layers):
        bigrams = pair_counts(targets, previous, (model.vocab_size, model.vocab_size))
    input_mass = 0.0
    for layer, first in zip(model.layers, np.cumsum([0, *widths[:-1]]), strict=True):
        block = np.zeros((model.vocab_size, layer.hidden_t.shape[0]))
        if layer.spec.reads_last_token_only:
            input_mass += _last_token_block(layer, block, bigrams, previous, vectors, aggregation)
        else:
            _per_target_block(layer, block, ids, pos, vectors, aggregation)
            input_mass += float(block.sum())
        FT[:, first:first + block.shape[1]] = block
    if skip.lags:  # columns sum(widths) onwards of FT
        sums = skip.target_sums(previous_tokens(ids, pos, 0, len(ids), skip.lags), targets,
                                model.vocab_size, bigrams)
        kernels.cooc_sparse_onehot(FT, sums.indptr.astype(np.int64),
                                   sums.indices.astype(np.int64) + sum(widths), sums.data,
                                   np.arange(model.vocab_size, dtype=np.int64))
        input_mass += float(sums.data.sum())
    stats = ExplicitStats.from_totals(
        FT, np.bincount(targets, minlength=model.vocab_size).astype(np.float64), float(len(targets)),
        input_mass, check=skip.lags > 0 and _signed_cipher(model))  # softmax outputs: non-negative
    return PassStatistics("output", {"output": stats})


def _per_target_block(layer: ContextLayer, block: np.ndarray, ids: np.ndarray, pos: np.ndarray,
                      vectors: np.ndarray, aggregation: str) -> None:
    """Add Σ_t h_t ⊗ onehot(y_t) to ``block`` (V, D), one hidden vector per target, in batches
    of OUTPUT_BATCH_FLOATS floats of h."""
    batch = max(1024, OUTPUT_BATCH_FLOATS // block.shape[1])
    out = np.empty((batch, block.shape[1]), dtype=np.float32)
    for start, stop in target_batches(pos, batch):
        hidden = layer.hidden(ids, pos, start, stop, vectors, aggregation, out=out)
        kernels.cooc_dense_onehot(block, hidden, ids[start:stop][pos[start:stop] > 0].astype(np.int64))


def _last_token_block(layer: ContextLayer, block: np.ndarray, bigrams, previous: np.ndarray,
                      vectors: np.ndarray, aggregation: str) -> float:
    """Add Σ_t h(x_{t−1}) ⊗ onehot(y_t) = Cᵀ H to ``block`` (V, D) for a context model that
    reads the previous token only: H (V, D) its hidden vector per token id, C = ``bigrams``
    (V, V) CSR the (target, previous token) counts of the chunk (count × h is exact in
    float64), ``previous`` (m,) the previous token of each target. Returns the input mass
    Σ_t ‖h_t‖₁."""
    table = layer.hidden_by_last_token(vectors, aggregation).astype(np.float64)
    block += bigrams @ table
    return float(np.bincount(previous, minlength=len(table)) @ table.sum(axis=1))


def solve_output(model: SaffuModel, stats: PassStatistics) -> None:
    config = model.config
    solved = stats.stats["output"].solve(alpha=config.alpha, tau=config.output_tau, form="bias")
    model.output_t, model.skip_weight = split_output(model, solved.weight_t)
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


class PassRunner(Protocol):
    """Runs the passes of a fit over a corpus: in this process (:class:`LocalRunner`, the
    default) or elsewhere (``saffu.distributed.DaskRunner`` runs each pass as Dask tasks)."""

    def prepare(self, corpus: TokenizedCorpus) -> TokenizedCorpus:
        """The corpus as the passes will read it (e.g. scattered to workers once, not per pass)."""
        ...

    def run_pass(self, stage: Stage, model: SaffuModel, corpus: TokenizedCorpus,
                 verbose: int) -> PassStatistics:
        """One pass's statistics summed over the whole corpus."""
        ...


class LocalRunner:
    """Runs each pass chunk by chunk in this process (the kernels use the configured threads)."""

    def prepare(self, corpus: TokenizedCorpus) -> TokenizedCorpus:
        return corpus

    def run_pass(self, stage: Stage, model: SaffuModel, corpus: TokenizedCorpus,
                 verbose: int) -> PassStatistics:
        with progress_bar(f"{stage.name} pass", corpus.n_tokens, verbose) as bar:
            return accumulate_chunks(stage, model, _counted(corpus.chunks(), bar))


def run_pass(stage: Stage, model: SaffuModel, corpus: TokenizedCorpus, *,
             verbose: int = 1) -> PassStatistics:
    """Accumulate one pass's statistics over the whole corpus in this process."""
    return LocalRunner().run_pass(stage, model, corpus, verbose)


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


def prepare(model: SaffuModel, documents: Iterable[str] | TokenizedCorpus,
            verbose: int = 0) -> TokenizedCorpus:
    """Fit the tokenizer (if missing), encode the corpus, and build the cipher and label codes."""
    config = model.config
    if model.tokenizer is None:
        if isinstance(documents, TokenizedCorpus):
            raise InvalidParameterError(
                "an encoded corpus needs a model whose tokenizer is already set")
        documents = _reiterable(documents)
        model.tokenizer = make_tokenizer(config.tokenizer, vocab_size=config.vocab_size)
        with progress_step(f"trained the {config.tokenizer} tokenizer ({config.vocab_size} ids)",
                           verbose):
            model.tokenizer.fit(documents)
    encoding = verbose and not isinstance(documents, TokenizedCorpus)
    with progress_step("encoded the corpus", encoding):
        corpus = model.encode(documents)
    if corpus.n_tokens == 0:
        raise InvalidParameterError("cannot fit on an empty corpus")
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


def estimated_bytes(config: SaffuConfig, vocab_size: int | None = None) -> dict[str, int]:
    """The largest arrays a fit of ``config`` allocates, in bytes, by part (an upper bound for a
    vocabulary of ``vocab_size`` tokens, default ``config.vocab_size``): the per-position expert
    statistics and their solved weights, the hidden and output statistics, the cipher."""
    from saffu.cipher import min_bits

    vocab = vocab_size or config.vocab_size
    bits = config.bits or min_bits(vocab)
    width = config.hidden or bits
    specs = config.context_specs
    positions = sum(spec.size for spec in specs if spec.attends) \
        if config.attention == "explicit" else 0
    return {
        "experts": positions * vocab * bits * (8 + 4),
        "hidden": sum(width * spec.input_dim(bits, config.aggregation) for spec in specs) * (8 + 4),
        "output": vocab * width * len(specs) * (8 + 4),
        "cipher": vocab * bits * 4 * 2,
    }


def check_memory(config: SaffuConfig, vocab_size: int | None = None) -> None:
    """Refuse, before any work, a config whose arrays cannot fit in this machine's memory."""
    total = _physical_memory()
    parts = estimated_bytes(config, vocab_size)
    need = sum(parts.values())
    if total is not None and need > total:
        largest = max(parts, key=parts.get)
        raise InvalidParameterError(
            f"this config needs about {need / 2**30:.1f} GiB for its statistics and weights "
            f"({largest}: {parts[largest] / 2**30:.1f} GiB) but the machine has "
            f"{total / 2**30:.1f} GiB; use fewer bits, a smaller hidden width or fewer positions")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def fit_model(model: SaffuModel, documents: Iterable[str] | TokenizedCorpus, *,
              n_jobs: int | None = None, verbose: int = 1, runner: PassRunner | None = None,
              partial: bool = False) -> SaffuModel:
    """Run the explicit fit (see the module docstring) and return ``model``, fitted.

    With ``partial=True`` on a fitted model, the new documents' statistics are added to those of
    earlier calls and every layer is re-solved. Each pass of the new data sees the weights that
    earlier passes solved from *all* data so far, but statistics already accumulated are not
    recomputed under the new weights, so ``partial_fit(A); partial_fit(B)`` is close to, not
    bitwise equal to, ``fit(A + B)`` (the experts and output counts are exact; the attention and
    hidden statistics of A were taken under A's weights). The tokenizer and cipher are kept.

    ``runner`` runs the passes (default: :class:`LocalRunner`, in this process).
    """
    runner = LocalRunner() if runner is None else runner
    partial = partial and model.is_fitted
    if partial and not model.fit_state.statistics:
        raise NotFittedError(
            "partial_fit needs the statistics of the earlier fit, which a saved model does not "
            "carry (this one was loaded from disk or built by backprop): fit it again on all "
            "documents instead")
    started = time.perf_counter()
    with threads(n_jobs), reusing_freed_memory():
        if partial:
            corpus = model.encode(documents)
        else:
            check_memory(model.config)
            model.fit_state = FitState()
            corpus = prepare(model, documents, verbose)
            _init_layers(model)
        chosen = _choose_tau(model, corpus, runner) if model.config.tau is None else {}
        corpus = runner.prepare(corpus)
        stored = model.fit_state.statistics
        for stage in stages_for(model):
            if stage.name == "output" and model.config.output_tau is None:
                stats = _output_pass_choosing_tau(model, corpus, verbose, runner, chosen)
            else:
                stats = runner.run_pass(stage, model, corpus, verbose)
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


def _check_local(runner: PassRunner) -> None:
    if not isinstance(runner, LocalRunner):
        raise InvalidParameterError(
            "automatic temperatures (tau or output_tau 'auto', output_tau's default) need a local "
            "fit; when the passes run on Dask set them, e.g. output_tau=0.5 (CLI: --output-tau 0.5)")


def _choose_tau(model: SaffuModel, corpus: TokenizedCorpus, runner: PassRunner) -> dict[str, Any]:
    """Set ``model.config.tau`` by the search of saffu.temperature; returns what it chose."""
    _check_local(runner)
    result = choose_tau(model, corpus, {stage.name: stage for stage in stages_for(model)},
                        accumulate_chunks, _init_layers)
    model.config = model.config.replace(tau=result.best)
    return {"tau": result.best, "tau_search": [list(point) for point in result.evaluations]}


def _output_pass_choosing_tau(model: SaffuModel, corpus: TokenizedCorpus, verbose: int,
                              runner: PassRunner, chosen: dict[str, Any]) -> PassStatistics:
    """The output pass with ``output_tau`` chosen on a held-out slice (saffu.temperature)."""
    _check_local(runner)
    output = STAGES[-1]
    with progress_step("output pass, output_tau chosen on a held-out slice", verbose):
        stats, result = output_pass_choosing_tau(
            model, corpus, lambda part: run_pass(output, model, part, verbose=0))
    model.config = model.config.replace(output_tau=result.best)
    chosen.update(output_tau=result.best,
                  output_tau_search=[list(point) for point in result.evaluations])
    return stats

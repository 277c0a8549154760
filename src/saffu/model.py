"""The SAFFU language model (METHOD.md §3): configuration, forward pass, scoring, generation, files.

A model is a stack of *context models* (``radial(r)``, ``block(B)``, ``document``), each a
self-attentive feed-forward unit that turns the cipher vectors of its context into a hidden
distribution ``h_c`` (D values), and an output layer ``p(next) = softmax([h_c]_c O + o)``.
Weights are fitted explicitly by :mod:`saffu.fit`; :meth:`SaffuModel.fit` is the entry point.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saffu import kernels
from saffu._io import atomic_directory, sha256_file
from saffu.cipher import Cipher
from saffu.corpus import TokenizedCorpus
from saffu.tokenize import EOD, PAD, SOD, UNK, Tokenizer

FORMAT_VERSION = 1
KIND_CODES = {"radial": 0, "block": 1, "document": 2}
AGGREGATIONS = {"sum": 0, "cat": 1}
TOKENIZERS = ("bpe", "char", "word")
BATCH_TARGETS = 8192  # the fewest targets per scoring batch (more when the hidden states are narrow)
SCORE_BATCH_FLOATS = 2**22  # hidden-state floats per scoring batch (16 MB)
OUTPUT_ROWS = 1024  # rows of the output product at once while scoring: 1024 × |V| float32 logits
# stay below glibc's mmap threshold, so freed buffers are reused, not faulted in afresh each time


class ModelFormatError(ValueError):
    """A model directory is missing, truncated, corrupted or of an incompatible version."""


@dataclass(frozen=True)
class ContextSpec:
    """One context model: ``kind`` in {"radial", "block", "document"} and its ``size`` (r or B)."""

    kind: str
    size: int

    @property
    def kind_code(self) -> int:
        return KIND_CODES[self.kind]

    @property
    def attends(self) -> bool:
        """Whether the context model has an attention layer (the document model has none)."""
        return self.kind != "document"

    def input_dim(self, bits: int, aggregation: str) -> int:
        """Width Z of the aggregated vector z fed to the hidden layer."""
        return bits * self.size if (aggregation == "cat" and self.attends) else bits

    @property
    def name(self) -> str:
        return self.kind if self.kind == "document" else f"{self.kind}{self.size}"


PREVIOUS_DEFAULTS = {"bits": 256, "hidden": 256, "radial": 1, "aggregation": "sum", "tau": 2.0,
                     "output_tau": 3.0}
"""The defaults before the roadmap (issue 6), for benchmarks whose recorded runs used them."""


@dataclass(frozen=True)
class SaffuConfig:
    """Everything that defines a SAFFU model; validated on construction.

    Attributes:
        tokenizer: "bpe" (byte-level BPE, default), "char" or "word".
        vocab_size: tokenizer vocabulary size including the 4 special tokens.
        bits: cipher code length; ``None`` uses the minimum ``ceil(log2(|V|+1))``.
        hidden: hidden width D per context model = label-code bits; ``None`` uses ``bits``.
        radial: r, the number of previous tokens of the radial context model (0 = off).
        block: B, the block length of the block context model (0 = off).
        document: whether to include the document (running mean) context model.
        aggregation: "sum" (z has ``bits`` values) or "cat" (z has ``K·bits``).
        attention: "explicit" (W fitted from per-position experts) or "uniform" (W = 0).
        tau: temperature on the likelihood terms of the attention and hidden layers; ``None``
            lets the fit choose it on a held-out slice of the training documents
            (saffu.temperature; the fitted model's config holds the chosen value).
        output_tau: temperature on the likelihood terms of the output layer; ``None``: chosen
            by the fit, like ``tau``.
        alpha: additive smoothing of every explicit solve.
        priming: the priming number K of the folded forms; ``None`` uses the mean input mass.
        cipher_smoothing: smooth cipher vectors (METHOD.md §2); off by default.
    """

    tokenizer: str = "bpe"
    vocab_size: int = 4096
    bits: int | None = 2048
    hidden: int | None = 256
    radial: int = 2
    block: int = 0
    document: bool = False
    aggregation: str = "cat"
    attention: str = "explicit"
    tau: float | None = 4.0
    output_tau: float | None = 1.5
    alpha: float = 0.1
    priming: float | None = None
    cipher_smoothing: bool = False

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"invalid SaffuConfig: {message}")

        check(self.tokenizer in TOKENIZERS, f"tokenizer must be one of {TOKENIZERS}")
        check(_is_int(self.vocab_size) and self.vocab_size >= 8, "vocab_size must be an int ≥ 8")
        check(self.bits is None or (_is_int(self.bits) and 1 <= self.bits <= 65536),
              "bits must be None or an int in [1, 65536]")
        check(self.hidden is None or (_is_int(self.hidden) and 1 <= self.hidden <= 65536),
              "hidden must be None or an int in [1, 65536]")
        check(_is_int(self.radial) and 0 <= self.radial <= 1024, "radial must be an int in [0, 1024]")
        check(_is_int(self.block) and 0 <= self.block <= 4096, "block must be an int in [0, 4096]")
        check(isinstance(self.document, bool), "document must be true or false")
        check(self.radial or self.block or self.document,
              "at least one context model (radial, block or document) must be on")
        check(self.aggregation in AGGREGATIONS, f"aggregation must be one of {tuple(AGGREGATIONS)}")
        check(self.attention in ("explicit", "uniform"), "attention must be 'explicit' or 'uniform'")
        for name in ("tau", "output_tau", "alpha"):
            value = getattr(self, name)
            check((value is None and name != "alpha") or (_is_real(value) and 0 < value < math.inf),
                  f"{name} must be a finite number > 0" + ("" if name == "alpha" else " or None"))
        check(self.priming is None or (_is_real(self.priming) and 0 < self.priming < math.inf),
              "priming must be None or a finite number > 0")
        check(isinstance(self.cipher_smoothing, bool), "cipher_smoothing must be true or false")

    @property
    def context_specs(self) -> tuple[ContextSpec, ...]:
        specs = []
        if self.radial:
            specs.append(ContextSpec("radial", self.radial))
        if self.block:
            specs.append(ContextSpec("block", self.block))
        if self.document:
            specs.append(ContextSpec("document", 1))
        return tuple(specs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SaffuConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"invalid SaffuConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> SaffuConfig:
        return dataclasses.replace(self, **changes)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class ContextLayer:
    """Weights of one context model: attention ``W`` (K, K) and hidden ``UT`` (D, Z), float32."""

    spec: ContextSpec
    attention: np.ndarray
    hidden_t: np.ndarray

    def hidden(self, model: SaffuModel, ids: np.ndarray, pos: np.ndarray, start: int,
               stop: int) -> np.ndarray:
        """h = softmax(z Uᵀ) (m, D) float32 for the m targets in ``[start, stop)``.

        One fused kernel call builds each window, attends, aggregates and applies U to the
        nonzero entries of z only (cipher vectors are sparse, so this beats a dense product).
        """
        h = np.empty((int(np.count_nonzero(pos[start:stop])), self.hidden_t.shape[0]), dtype=np.float32)
        kernels.saffu_forward(
            ids, pos, self.spec.kind_code, self.spec.size, model.cipher.vectors, self.attention,
            AGGREGATIONS[model.config.aggregation], self.hidden_t, start, stop, h)
        return h


@dataclass
class SaffuModel:
    """A SAFFU language model.

    Build one with ``SaffuModel(config).fit(documents)``; score with :meth:`score`, sample with
    :meth:`generate`, persist with :meth:`save` / :meth:`load`.
    """

    config: SaffuConfig = field(default_factory=SaffuConfig)
    tokenizer: Tokenizer | None = None
    cipher: Cipher | None = None
    labels: Cipher | None = None
    layers: list[ContextLayer] = field(default_factory=list)
    output_t: np.ndarray | None = None  # (V, n_contexts·D) float32
    output_bias: np.ndarray | None = None  # (V,) float32
    fit_info: dict[str, Any] = field(default_factory=dict)
    fit_state: dict[str, Any] = field(default_factory=dict, repr=False)  # statistics, experts

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, documents: Iterable[str] | TokenizedCorpus, *, n_jobs: int | None = None,
            verbose: int = 1, client: Any = None) -> SaffuModel:
        """Fit the tokenizer (unless one was given), the cipher and all weights explicitly.

        Args:
            documents: document strings, or a corpus already encoded with this model's tokenizer.
            n_jobs: kernel threads (default: all cores).
            verbose: 0 silences the progress bars.
            client: a ``dask.distributed.Client`` to run each pass over the corpus shards.
        """
        from saffu.fit import fit_model

        return fit_model(self, documents, n_jobs=n_jobs, verbose=verbose, client=client)

    def partial_fit(self, documents: Iterable[str] | TokenizedCorpus, *, n_jobs: int | None = None,
                    verbose: int = 1) -> SaffuModel:
        """Add documents to the statistics of a fitted model and re-solve (see saffu.fit)."""
        from saffu.fit import fit_model

        return fit_model(self, documents, n_jobs=n_jobs, verbose=verbose, partial=True)

    @property
    def is_fitted(self) -> bool:
        return self.output_t is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this SaffuModel is not fitted yet; call fit() or load() first")

    def _require_layers(self) -> None:
        """The context layers exist (the output layer may not yet: the fit's last pass reads h)."""
        if not self.layers or self.cipher is None:
            raise RuntimeError("this SaffuModel is not fitted yet; call fit() or load() first")

    @property
    def vocab_size(self) -> int:
        return self.cipher.vectors.shape[0]

    @property
    def n_parameters(self) -> int:
        """Trainable weights: W and U of each context model, plus O and o (cipher excluded)."""
        if not self.is_fitted:
            return 0
        inner = sum(layer.attention.size * layer.spec.attends + layer.hidden_t.size
                    for layer in self.layers)
        return int(inner + self.output_t.size + self.output_bias.size)

    # --- forward -----------------------------------------------------------------------------

    def hidden_states(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                      stop: int | None = None) -> np.ndarray:
        """Concatenated hidden vectors ``[h_c]_c`` for the targets in ``[start, stop)``.

        Args:
            ids: (n,) int32 token ids of whole documents (each begins with ``<sod>``).
            pos: (n,) int32 positions of the tokens inside their documents.
        Returns:
            (m, n_contexts·D) float32, one row per target t (``pos[t] ≥ 1``) in the range.
        """
        self._require_layers()
        stop = len(ids) if stop is None else stop
        blocks = [layer.hidden(self, ids, pos, start, stop) for layer in self.layers]
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Output logits (m, V) from hidden states (m, n_contexts·D)."""
        self._require_fitted()
        return hidden @ self.output_t.T + self.output_bias

    def log_proba(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                  stop: int | None = None) -> np.ndarray:
        """Next-token log-probabilities (m, V) float32 for the targets in ``[start, stop)``."""
        return log_softmax(self.logits(self.hidden_states(ids, pos, start, stop)))

    def target_log_proba(self, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Log-probability (float64) of every target token of a chunk, in batches of targets.

        Targets that share a hidden state (e.g. all targets after the same token when the model
        reads only the last token) share one row of the output product, the cost of scoring.
        """
        self._require_fitted()
        batch = max(BATCH_TARGETS, SCORE_BATCH_FLOATS // self.output_t.shape[1])
        pieces = []
        for start, stop in target_batches(pos, batch):
            rows, row_of = unique_rows(self.hidden_states(ids, pos, start, stop))
            pieces.append(self._log_proba_of(rows, row_of, ids[start:stop][pos[start:stop] > 0]))
        return np.concatenate(pieces) if pieces else np.zeros(0)

    def _log_proba_of(self, rows: np.ndarray, row_of: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log p(targets[i] | hidden state rows[row_of[i]]) (float64), rows in batches."""
        result = np.empty(len(targets))
        order = np.argsort(row_of, kind="stable")
        firsts = range(0, len(rows), OUTPUT_ROWS)
        bounds = np.searchsorted(row_of[order], [*firsts, len(rows)])
        for batch, first in enumerate(firsts):
            logits = rows[first:first + OUTPUT_ROWS] @ self.output_t.T
            log_normalizer = kernels.logsumexp_rows(logits, self.output_bias)
            chosen = order[bounds[batch]:bounds[batch + 1]]
            local, y = row_of[chosen] - first, targets[chosen]
            result[chosen] = (logits[local, y].astype(np.float64) + self.output_bias[y]
                              - log_normalizer[local])
        return result

    # --- evaluation and generation -------------------------------------------------------------

    def encode(self, documents: Iterable[str] | TokenizedCorpus) -> TokenizedCorpus:
        """Encode documents with this model's tokenizer (a TokenizedCorpus passes through)."""
        if isinstance(documents, TokenizedCorpus):
            return documents
        if isinstance(documents, (str, bytes)):
            raise TypeError("documents must be an iterable of strings, not a single string")
        return TokenizedCorpus.from_documents(self.tokenizer, documents)

    def score(self, documents: Iterable[str] | TokenizedCorpus) -> dict[str, float]:
        """Perplexity and bits per character on held-out documents (METHOD.md §6).

        Returns:
            dict with ``perplexity`` (exp of the mean NLL per predicted token, ``<eod>``
            included), ``bits_per_char`` (total NLL / (ln 2 · characters)), ``nll`` (nats),
            ``tokens`` (predicted tokens), ``characters`` and ``documents``.
        """
        self._require_fitted()
        corpus = self.encode(documents)
        nll = 0.0
        tokens = 0
        for ids, pos in corpus.chunks():
            logp = self.target_log_proba(ids, pos)
            nll -= float(logp.sum())
            tokens += logp.size
        if tokens == 0:
            raise ValueError("cannot score an empty corpus: it has no tokens to predict")
        return {
            "perplexity": math.exp(nll / tokens),
            "bits_per_char": nll / (math.log(2) * max(corpus.n_characters, 1)),
            "nll": nll,
            "tokens": tokens,
            "characters": corpus.n_characters,
            "documents": corpus.n_documents,
        }

    def generate(self, prompt: str = "", *, max_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> str:
        """Sample a continuation of ``prompt``; stops at ``<eod>`` or after ``max_tokens``.

        Returns the continuation only (decoded text, without the prompt).
        """
        self._require_fitted()
        _check_sampling(max_tokens, temperature, top_k, top_p)
        rng = np.random.default_rng(seed)
        context = [SOD, *self.tokenizer.encode(prompt).tolist()]
        banned = self.generation_mask()
        generated: list[int] = []
        for _ in range(max_tokens):
            ids = np.array([*context, PAD], dtype=np.int32)
            pos = np.arange(len(ids), dtype=np.int32)
            logits = self.logits(self.hidden_states(ids, pos, len(ids) - 1, len(ids)))[0]
            logits[banned] = -np.inf
            token = sample_token(logits, rng, temperature, top_k, top_p)
            if token == EOD:
                break
            context.append(token)
            generated.append(token)
        return self.tokenizer.decode(np.array(generated, dtype=np.int32))

    def generation_mask(self) -> np.ndarray:
        """(V,) bool: tokens never sampled: ``<pad>``, ``<unk>``, ``<sod>``, and every token
        unseen in training (e.g. lone byte-fallback tokens, which would decode to invalid text)."""
        banned = self.cipher.counts == 0
        banned[[PAD, UNK, SOD]] = True
        return banned

    # --- persistence ---------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """All arrays of a fitted model, by name (what ``weights.safetensors`` holds)."""
        self._require_fitted()
        arrays = {"cipher": self.cipher.vectors, "labels": self.labels.vectors,
                  "output_t": self.output_t, "output_bias": self.output_bias}
        for i, layer in enumerate(self.layers):
            arrays[f"layers.{i}.attention"] = layer.attention
            arrays[f"layers.{i}.hidden_t"] = layer.hidden_t
        return {name: np.ascontiguousarray(a) for name, a in arrays.items()}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model to ``directory`` atomically (safetensors weights + JSON).

        An existing directory is replaced only once the new one is complete.
        """
        from safetensors.numpy import save_file

        self._require_fitted()
        with atomic_directory(directory) as tmp:
            save_file(self.state_arrays(), str(tmp / "weights.safetensors"))
            self.tokenizer.save(tmp / "tokenizer.json")
            self.cipher.save(tmp / "cipher.json")
            self.labels.save(tmp / "labels.json")
            manifest = {
                "format": "saffu-model",
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "fit_info": self.fit_info,
                "checksums": {name: sha256_file(tmp / name) for name in MODEL_FILES},
            }
            (tmp / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SaffuModel:
        """Load a model written by :meth:`save`; raises :class:`ModelFormatError` if invalid."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        try:
            config = SaffuConfig.from_dict(manifest["config"])
        except (TypeError, ValueError) as error:
            raise ModelFormatError(f"{directory}: bad model config: {error}") from error
        arrays = _read_weights(directory / "weights.safetensors")
        try:
            model = cls(
                config=config,
                tokenizer=Tokenizer.load(directory / "tokenizer.json"),
                # The saved vectors are authoritative: backprop may have trained them.
                cipher=Cipher.load(directory / "cipher.json").with_vectors(arrays["cipher"]),
                labels=Cipher.load(directory / "labels.json"),
                output_t=arrays["output_t"],
                output_bias=arrays["output_bias"],
                fit_info=dict(manifest.get("fit_info", {})),
            )
            model.layers = [
                ContextLayer(spec, arrays[f"layers.{i}.attention"], arrays[f"layers.{i}.hidden_t"])
                for i, spec in enumerate(config.context_specs)
            ]
        except KeyError as error:
            raise ModelFormatError(f"{directory}: weights.safetensors lacks {error}") from error
        except ValueError as error:
            raise ModelFormatError(f"{directory}: {error}") from error
        _check_shapes(model, directory)
        return model


MODEL_FILES = ("weights.safetensors", "tokenizer.json", "cipher.json", "labels.json")


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise ModelFormatError(f"model directory {directory} does not exist")
    path = directory / "model.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelFormatError(f"{directory} is not a saffu model: model.json is missing") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path} is corrupted: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != "saffu-model":
        raise ModelFormatError(f"{path} is not a saffu model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{directory} has model format version {version}; this saffu reads version "
            f"{FORMAT_VERSION}")
    checksums = manifest.get("checksums", {})
    for name in MODEL_FILES:
        file = directory / name
        if not file.is_file():
            raise ModelFormatError(f"{directory} is incomplete: {name} is missing")
        if sha256_file(file) != checksums.get(name):
            raise ModelFormatError(f"{file} is corrupted or truncated (checksum mismatch)")
    return manifest


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:  # the kernels take float32: a file written elsewhere in float64 is converted
        return {name: np.ascontiguousarray(array, dtype=np.float32)
                for name, array in load_file(str(path)).items()}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ModelFormatError(f"{path} is not a readable safetensors file: {error}") from error


def _check_shapes(model: SaffuModel, directory: Path) -> None:
    """Raise ModelFormatError unless every array matches the config and the vocabulary."""
    config = model.config
    vocab = model.tokenizer.vocab_size
    bits = model.cipher.vectors.shape[1]
    width = model.labels.vectors.shape[1]
    expected = {"output_t": (vocab, width * len(model.layers)), "output_bias": (vocab,)}
    for i, layer in enumerate(model.layers):
        expected[f"layers.{i}.attention"] = (layer.spec.size, layer.spec.size)
        expected[f"layers.{i}.hidden_t"] = (width, layer.spec.input_dim(bits, config.aggregation))
    actual = {name: a.shape for name, a in model.state_arrays().items()}
    problems = [f"{name} has shape {actual[name]}, expected {shape}"
                for name, shape in expected.items() if actual[name] != shape]
    if model.cipher.vectors.shape[0] != vocab or model.labels.vectors.shape[0] != vocab:
        problems.append("cipher and tokenizer vocabularies differ")
    if problems:
        raise ModelFormatError(f"{directory} is inconsistent: " + "; ".join(problems))


# --- helpers shared with fit and torch ---------------------------------------------------------


def target_batches(pos: np.ndarray, batch: int) -> Iterable[tuple[int, int]]:
    """Split token range [0, n) into ranges holding at most ``batch`` targets (pos > 0) each."""
    target_index = np.flatnonzero(pos > 0)
    for first in range(0, len(target_index), batch):
        last = min(first + batch, len(target_index)) - 1
        yield int(target_index[first]), int(target_index[last]) + 1


def unique_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``matrix`` (m, w) in order of first appearance, and for each row its
    index among them: ``unique[inverse]`` equals ``matrix`` bitwise."""
    matrix = np.ascontiguousarray(matrix)
    index: dict[bytes, int] = {}
    inverse = np.fromiter((index.setdefault(row, len(index)) for row in map(bytes, matrix)),
                          dtype=np.intp, count=len(matrix))
    return matrix[np.unique(inverse, return_index=True)[1]], inverse


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, numerically stable, in the input's dtype."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_sampling(max_tokens: int, temperature: float, top_k: int | None,
                    top_p: float | None) -> None:
    if not _is_int(max_tokens) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative int, got {max_tokens!r}")
    if not _is_real(temperature) or temperature < 0:
        raise ValueError(f"temperature must be ≥ 0, got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


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

"""The SAFFU language model (METHOD.md §3): configuration, forward pass, scoring, generation, files.

A model is a stack of *context models* (``radial(r)``, ``block(B)``, ``document``), each a
self-attentive feed-forward unit that turns the cipher vectors of its context into a hidden
distribution ``h_c`` (D values), and an output layer ``p(next) = softmax([h_c]_c O + o)``.
Weights are fitted explicitly by :mod:`saffu.fit`; :meth:`SaffuModel.fit` is the entry point.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from saffu import generation, kernels
from saffu._io import (
    atomic_write_bytes,
    atomic_write_text,
    check_output_directory,
    interrupted_replacement,
    read_safetensors,
    replace_directory,
    sha256_file,
)
from saffu.cipher import Cipher
from saffu.config import PREVIOUS_DEFAULTS, TOKENIZERS, SaffuConfig
from saffu.corpus import TokenizedCorpus
from saffu.errors import ComputationError, InvalidParameterError, ModelFormatError, NotFittedError
from saffu.fit import FitState, PassRunner, fit_model
from saffu.generation import sample_token
from saffu.layers import (
    ContextLayer,
    ContextSpec,
    SkipInputs,
    distinct_inputs,
    previous_tokens,
    target_batches,
    unique_rows,  # noqa: F401  (re-exported: saffu.model.unique_rows)
)
from saffu.tokenize import PAD, SOD, UNK, Tokenizer
from saffu.validation import check_real, is_int

__all__ = ["FORMAT_VERSION", "PREVIOUS_DEFAULTS", "TOKENIZERS", "ContextLayer", "ContextSpec",
           "ModelFormatError", "SaffuConfig", "SaffuModel", "sample_token"]

FORMAT_VERSION = 1
BATCH_TARGETS = 8192  # the fewest targets per scoring batch (more when the hidden states are narrow)
SCORE_BATCH_FLOATS = 2**22  # hidden-state floats per scoring batch (16 MB)
OUTPUT_ROWS = 1024  # rows of the output product at once while scoring: 1024 × |V| float32 logits
# stay below glibc's mmap threshold, so freed buffers are reused, not faulted in afresh each time


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
    skip_weight: np.ndarray | None = None  # (S·bits, V) float32, input-major; None without skip
    fit_info: dict[str, Any] = field(default_factory=dict)
    fit_state: FitState = field(default_factory=FitState, repr=False)

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, documents: Iterable[str] | TokenizedCorpus, *, n_jobs: int | None = None,
            verbose: int = 1, runner: PassRunner | None = None) -> SaffuModel:
        """Fit the tokenizer (unless one was given), the cipher and all weights explicitly.

        Args:
            documents: document strings, or a corpus already encoded with this model's tokenizer.
            n_jobs: kernel threads (default: all cores).
            verbose: 0 silences the progress bars.
            runner: where the passes run (default: this process); e.g.
                ``saffu.distributed.DaskRunner(client)`` runs each pass over the corpus shards
                on a Dask cluster.
        """
        return fit_model(self, documents, n_jobs=n_jobs, verbose=verbose, runner=runner)

    def partial_fit(self, documents: Iterable[str] | TokenizedCorpus, *, n_jobs: int | None = None,
                    verbose: int = 1) -> SaffuModel:
        """Add documents to the statistics of a fitted model and re-solve (see saffu.fit)."""
        return fit_model(self, documents, n_jobs=n_jobs, verbose=verbose, partial=True)

    @property
    def is_fitted(self) -> bool:
        return self.output_t is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this SaffuModel is not fitted yet; call fit() or load() first")

    def _require_layers(self) -> None:
        """The context layers exist (the output layer may not yet: the fit's last pass reads h)."""
        if not self.layers or self.cipher is None:
            raise NotFittedError("this SaffuModel is not fitted yet; call fit() or load() first")

    @property
    def vocab_size(self) -> int:
        return self.cipher.vectors.shape[0]

    @property
    def n_parameters(self) -> int:
        """Trainable weights: W and U of each context model, plus O and o (cipher excluded)."""
        return sum(self.parameter_counts().values())

    def parameter_counts(self) -> dict[str, int]:
        """Trainable weights by layer: ``{name}.attention`` (W, K × K; none for the document
        model), ``{name}.hidden`` (U, D × Z) per context model, ``output`` (O) and
        ``output_bias`` (o); empty before the fit."""
        if not self.is_fitted:
            return {}
        counts: dict[str, int] = {}
        for layer in self.layers:
            if layer.spec.attends:
                counts[f"{layer.spec.name}.attention"] = int(layer.attention.size)
            counts[f"{layer.spec.name}.hidden"] = int(layer.hidden_t.size)
        counts["output"] = int(self.output_t.size)
        if self.skip_weight is not None:
            counts["skip"] = int(self.skip_weight.size)
        counts["output_bias"] = int(self.output_bias.size)
        return counts

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
        blocks = [layer.hidden(ids, pos, start, stop, self.cipher.vectors, self.config.aggregation)
                  for layer in self.layers]
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]

    def previous_tokens(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                        stop: int | None = None) -> np.ndarray:
        """(m, S) int32 ids of the last ``S = config.skip`` tokens before each target (−1 before
        the document start): the output layer's skip inputs, beside the hidden states."""
        stop = len(ids) if stop is None else stop
        return previous_tokens(ids, pos, start, stop, self.config.skip)

    def logits(self, hidden: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """Output logits (m, V) from hidden states (m, n_contexts·D) and, with ``config.skip``,
        the previous tokens (m, S) of :meth:`previous_tokens`, whose cipher vectors fill the
        output layer's last S·bits inputs."""
        self._require_fitted()
        return self.output_products(hidden, previous) + self.output_bias

    def output_products(self, hidden: np.ndarray, previous: np.ndarray | None,
                        weights: tuple[np.ndarray, np.ndarray | None] | None = None) -> np.ndarray:
        """``h Oᵀ + x_skip S`` (m, V): the logits without the bias, for the output weights
        ``weights = (output_t (V, n_contexts·D), skip_weight (S·bits, V) or None)`` (default: the
        model's). The skip inputs are sparse rows, so their part gathers rows of ``skip_weight``."""
        output_t, skip_weight = (self.output_t, self.skip_weight) if weights is None else weights
        products = hidden @ output_t.T
        if self.config.skip:
            if previous is None:
                raise InvalidParameterError(f"this model reads the last {self.config.skip} tokens "
                                            "too: pass previous=model.previous_tokens(...)")
            products += np.asarray(self._skip_inputs().matrix(previous) @ skip_weight,
                                   dtype=products.dtype)
        return products

    def _skip_inputs(self) -> SkipInputs:
        """The sparse skip inputs of the current cipher (rebuilt when the vectors change)."""
        cached = getattr(self, "_skip_cache", None)
        if cached is None or cached[0] is not self.cipher.vectors:
            cached = (self.cipher.vectors, SkipInputs(self.cipher.vectors, self.config.skip))
            self._skip_cache = cached
        return cached[1]

    def _logits_at(self, ids: np.ndarray, pos: np.ndarray, start: int, stop: int) -> np.ndarray:
        return self.logits(self.hidden_states(ids, pos, start, stop),
                           self.previous_tokens(ids, pos, start, stop))

    def log_proba(self, ids: np.ndarray, pos: np.ndarray, start: int = 0,
                  stop: int | None = None) -> np.ndarray:
        """Next-token log-probabilities (m, V) float32 for the targets in ``[start, stop)``."""
        return log_softmax(self._logits_at(ids, pos, start, len(ids) if stop is None else stop))

    def target_log_proba(self, ids: np.ndarray, pos: np.ndarray,
                         output_scales: Sequence[float] | None = None) -> np.ndarray:
        """Log-probability (float64) of every target token of a chunk, in batches of targets.

        Targets that share a hidden state (e.g. all targets after the same token when the model
        reads only the last token) share one row of the output product, the cost of scoring.

        Args:
            output_scales: k positive factors: score the k models whose output weights (O and
                the skip weights, not the bias o) are this model's times each factor, e.g. this
                model at other output temperatures (the output solve is ``output_tau`` times a
                solve at 1, its bias independent of it). The output product is computed once
                for all k; each costs one log-sum-exp pass more.
        Returns:
            (n,) one value per target, or (k, n) with ``output_scales``.
        """
        self._require_fitted()
        scales = (1.0,) if output_scales is None else _check_scales(output_scales)
        batch = max(BATCH_TARGETS, SCORE_BATCH_FLOATS // max(self.output_t.shape[1], 1))
        pieces = []
        for start, stop in target_batches(pos, batch):
            hidden, previous, row_of = distinct_inputs(self.hidden_states(ids, pos, start, stop),
                                                       self.previous_tokens(ids, pos, start, stop))
            pieces.append(self._log_proba_of(hidden, previous, row_of,
                                             ids[start:stop][pos[start:stop] > 0], scales))
        result = np.concatenate(pieces, axis=1) if pieces else np.zeros((len(scales), 0))
        return result[0] if output_scales is None else result

    def _log_proba_of(self, hidden: np.ndarray, previous: np.ndarray, row_of: np.ndarray,
                      targets: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
        """(k, n) log p(targets[i] | input row_of[i]) (float64) with the output weights times each
        of the k ``scales``; the distinct inputs (``hidden`` (u, W), ``previous`` (u, S): see
        :func:`~saffu.layers.distinct_inputs`) in batches."""
        result = np.empty((len(scales), len(targets)))
        order = np.argsort(row_of, kind="stable")
        firsts = range(0, len(hidden), OUTPUT_ROWS)
        bounds = np.searchsorted(row_of[order], [*firsts, len(hidden)])
        for batch, first in enumerate(firsts):
            products = self.output_products(hidden[first:first + OUTPUT_ROWS],
                                            previous[first:first + OUTPUT_ROWS])
            chosen = order[bounds[batch]:bounds[batch + 1]]
            local, y = row_of[chosen] - first, targets[chosen]
            for k, scale in enumerate(scales):  # the logits are float32(scale · products)
                log_normalizer = kernels.logsumexp_rows_scaled(products, scale, self.output_bias)
                target_logits = products[local, y] * np.float32(scale)
                result[k, chosen] = (target_logits.astype(np.float64) + self.output_bias[y]
                                     - log_normalizer[local])
        return result

    # --- evaluation and generation -------------------------------------------------------------

    def encode(self, documents: Iterable[str] | TokenizedCorpus) -> TokenizedCorpus:
        """Encode documents with this model's tokenizer (a TokenizedCorpus passes through)."""
        if isinstance(documents, TokenizedCorpus):
            return documents
        if isinstance(documents, (str, bytes)):
            raise InvalidParameterError("documents must be an iterable of strings, not a single string")
        return TokenizedCorpus.from_documents(self.tokenizer, documents)

    def score(self, documents: Iterable[str] | TokenizedCorpus) -> dict[str, float]:
        """Perplexity and bits per character on held-out documents (METHOD.md §6).

        Returns:
            dict with ``perplexity`` (exp of the mean NLL per predicted token, ``<eod>``
            included), ``bits_per_char`` (total NLL / (ln 2 · characters)), ``nll`` (nats),
            ``tokens`` (predicted tokens), ``characters`` and ``documents``.
        """
        return self.score_scaled(documents, (1.0,))[0]

    def score_scaled(self, documents: Iterable[str] | TokenizedCorpus,
                     output_scales: Sequence[float]) -> list[dict[str, float]]:
        """:meth:`score` of the models whose output weights (not the bias) are this model's times
        each of ``output_scales`` (see :meth:`target_log_proba`), in one pass over ``documents``:
        e.g. ``output_scales=[t / model.config.output_tau for t in taus]`` scores the fits that
        differ in ``output_tau`` only, at the cost of one output product.

        Returns:
            one :meth:`score` dict per scale.
        """
        self._require_fitted()
        scales = _check_scales(output_scales)
        corpus = self.encode(documents)
        nll = np.zeros(len(scales))
        tokens = 0
        for ids, pos in corpus.chunks():
            logp = self.target_log_proba(ids, pos, scales)
            nll -= logp.sum(axis=1)
            tokens += logp.shape[1]
        if tokens == 0:
            raise InvalidParameterError("cannot score an empty corpus: it has no tokens to predict")
        if not np.isfinite(nll).all():
            raise ComputationError(f"the negative log-likelihood is {nll[~np.isfinite(nll)][0]}: the "
                                   "model's weights give non-finite log-probabilities (a corrupted or "
                                   "diverged model)")
        return [{
            "perplexity": math.exp(value / tokens),
            "bits_per_char": value / (math.log(2) * max(corpus.n_characters, 1)),
            "nll": value,
            "tokens": tokens,
            "characters": corpus.n_characters,
            "documents": corpus.n_documents,
        } for value in nll.tolist()]

    @overload
    def generate(self, prompt: str = "", *, max_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> str: ...

    @overload
    def generate(self, prompt: Sequence[str], *, max_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> list[str]: ...

    def generate(self, prompt: str | Sequence[str] = "", *, max_tokens: int = 100,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> str | list[str]:
        """Sample a continuation of ``prompt``; stops at ``<eod>`` or after ``max_tokens``.

        Returns the continuation only: the text it adds to the prompt, with the separator the
        tokenizer puts between them (``prompt + generate(prompt)`` reads as one text). A list of
        prompts gives a list of continuations, all streams sampled in one compiled call; stream
        i draws from ``numpy.random.default_rng(seed + i)``, so it equals
        ``generate(prompt[i], seed=seed + i)`` (see :mod:`saffu.generation`).
        """
        return generation.generate(self, prompt, max_tokens=max_tokens, temperature=temperature,
                                   top_k=top_k, top_p=top_p, seed=seed)

    def _continuation(self, prompt: list[int], generated: list[int]) -> str:
        """The text ``generated`` adds to ``prompt``, joined as the tokenizer joins tokens (a word
        tokenizer puts a space between "Ruth" and "said"; decoding alone would glue them)."""
        decode = self.tokenizer.decode
        before = decode(np.array(prompt, dtype=np.int32))
        after = decode(np.array(prompt + generated, dtype=np.int32))
        if after.startswith(before):
            return after[len(before):]
        return decode(np.array(generated, dtype=np.int32))

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
        if self.skip_weight is not None:
            arrays["skip_weight"] = self.skip_weight
        for i, layer in enumerate(self.layers):
            arrays[f"layers.{i}.attention"] = layer.attention
            arrays[f"layers.{i}.hidden_t"] = layer.hidden_t
        return {name: np.ascontiguousarray(a) for name, a in arrays.items()}

    @staticmethod
    def check_output(directory: str | os.PathLike) -> Path:
        """Raise :class:`~saffu.errors.InvalidParameterError` unless :meth:`save` may write to
        ``directory`` (absent, empty, or a saffu model); call it before a long fit."""
        return check_model_output(directory)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model to ``directory`` atomically (safetensors weights + JSON).

        ``directory`` must be absent, empty, or a saffu model (which is replaced, only once the
        new one is complete: see :mod:`saffu._io`); anything else is refused, so a save never
        deletes files that saffu did not write. A symlink is followed.
        """
        from safetensors.numpy import save

        self._require_fitted()
        with replace_directory(directory, is_model_directory, "saffu model") as tmp:
            atomic_write_bytes(tmp / "weights.safetensors", save(self.state_arrays()))
            self.tokenizer.save(tmp / "tokenizer.json")
            self.cipher.save(tmp / "cipher.json")
            self.labels.save(tmp / "labels.json")
            manifest = {
                "format": "saffu-model",
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "fit_info": self.fit_info,
                "parameters": self.n_parameters,
                "checksums": {name: sha256_file(tmp / name) for name in MODEL_FILES},
            }
            manifest["manifest_sha256"] = _manifest_checksum(manifest)
            atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
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
                skip_weight=arrays["skip_weight"] if config.skip else None,
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
MANIFEST = "model.json"


def is_model_directory(directory: Path) -> bool:
    """Whether ``directory`` holds a saffu model and nothing else (what :meth:`SaffuModel.save`
    may replace)."""
    names = {entry.name for entry in directory.iterdir()}
    if MANIFEST not in names or not names <= {MANIFEST, *MODEL_FILES}:
        return False
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == "saffu-model"


def check_model_output(directory: str | os.PathLike) -> Path:
    """Where :meth:`SaffuModel.save` would write ``directory``, checked (see ``saffu._io``)."""
    return check_output_directory(directory, is_model_directory, "saffu model")


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest without its own checksum (canonical JSON)."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.exists():
        leftover = interrupted_replacement(directory)
        if leftover is not None:
            raise ModelFormatError(
                f"model directory {directory} does not exist, but an interrupted save left the "
                f"previous model in {leftover}; rename it to {directory} to use it")
        raise ModelFormatError(f"model directory {directory} does not exist")
    if not directory.is_dir():
        raise ModelFormatError(f"{directory} is a file, not a saffu model directory")
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelFormatError(f"{directory} is not a saffu model: model.json is missing") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path} is corrupted: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != "saffu-model":
        raise ModelFormatError(f"{path} is not a saffu model manifest")
    version = manifest.get("format_version")
    if not is_int(version):
        raise ModelFormatError(f"{path} has an invalid format_version {version!r} (not an integer)")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{directory} has model format version {version}; this saffu reads version "
            f"{FORMAT_VERSION}")
    if "manifest_sha256" in manifest and manifest["manifest_sha256"] != _manifest_checksum(manifest):
        raise ModelFormatError(f"{path} was modified after it was saved (checksum mismatch)")
    checksums = manifest.get("checksums", {})
    for name in MODEL_FILES:
        file = directory / name
        if not file.is_file():
            raise ModelFormatError(f"{directory} is incomplete: {name} is missing")
        if sha256_file(file) != checksums.get(name):
            raise ModelFormatError(f"{file} is corrupted or truncated (checksum mismatch)")
    return manifest


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    """Every array of ``weights.safetensors`` as float32 (a file written elsewhere in float64 is
    converted), each checked finite: a NaN or infinite weight is a corrupted model."""
    arrays, _ = read_safetensors(path)
    weights = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in arrays.items()}
    for name, array in weights.items():
        if not np.isfinite(array).all():
            raise ModelFormatError(f"{path}: {name} holds NaN or infinite values")
    return weights


def _check_shapes(model: SaffuModel, directory: Path) -> None:
    """Raise ModelFormatError unless every array matches the config and the vocabulary."""
    config = model.config
    vocab = model.tokenizer.vocab_size
    bits = model.cipher.vectors.shape[1]
    width = model.labels.vectors.shape[1]
    expected = {"output_t": (vocab, width * len(model.layers)), "output_bias": (vocab,)}
    if config.skip:
        expected["skip_weight"] = (config.skip * bits, vocab)
    for i, layer in enumerate(model.layers):
        expected[f"layers.{i}.attention"] = (layer.spec.size, layer.spec.size)
        expected[f"layers.{i}.hidden_t"] = (width, layer.spec.input_dim(bits, config.aggregation))
    actual = {name: a.shape for name, a in model.state_arrays().items()}
    problems = [f"{name} has shape {actual[name]}, expected {shape}"
                for name, shape in expected.items() if actual[name] != shape]
    if model.cipher.vectors.shape[0] != vocab or model.labels.vectors.shape[0] != vocab:
        problems.append("cipher and tokenizer vocabularies differ")
    code_bits = model.cipher.code_bits
    if config.bits is not None and code_bits != config.bits:
        problems.append(f"the cipher has {code_bits} bits but the config says bits = {config.bits}")
    if width != (config.hidden or code_bits):
        problems.append(f"the label codes have {width} bits but the config says hidden = "
                        f"{config.hidden}")
    if model.tokenizer.kind != config.tokenizer:
        problems.append(f"the tokenizer is {model.tokenizer.kind!r} but the config says "
                        f"{config.tokenizer!r}")
    if problems:
        raise ModelFormatError(f"{directory} is inconsistent: " + "; ".join(problems))


# --- helpers -----------------------------------------------------------------------------------


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """``scales`` as a non-empty tuple of positive finite floats (InvalidParameterError if not)."""
    if not isinstance(scales, (Sequence, np.ndarray)) or isinstance(scales, (str, bytes)) \
            or len(scales) == 0:
        raise InvalidParameterError(f"output_scales must be a non-empty sequence of numbers, got {scales!r}")
    return tuple(check_real("output_scales[]", scale, 0.0, exclusive_minimum=True) for scale in scales)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, numerically stable, in the input's dtype."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

"""Warm vs cold backpropagation on the Shakespeare split (METHOD.md §7, claims 1 and 2).

For training sets of about 10k, 100k and 1M tokens (prefixes of the train documents, by
tokens) and each budget of seconds, four ways to spend it:

- ``explicit``: the explicit fit only (its fit time);
- ``cold``: backprop from a random init (:func:`saffu.torch.cold_start`);
- ``warm``: the explicit fit, then backprop from its weights for the rest of the budget (the
  trainer's warm-start learning-rate scales, :data:`saffu.torch.training.WARM_LR_SCALES`);
- ``transformer``: a standard causal transformer from PyTorch's own layers
  (``nn.TransformerEncoder``, causal mask, token + position embeddings, tied output), with a
  parameter count matched to the SAFFU model, trained by backprop for the same budget;

plus an interpolated Kneser-Ney trigram on the same tokens (``saffu.ngram``) for scale.
Every method uses one BPE tokenizer (vocabulary 4096) fitted on the whole train split. The SAFFU
model is ``SaffuConfig()`` as shipped (whatever the defaults are when the script runs);
``--roadmap-config`` gives the defaults before the skip inputs (``saffu.config.ROADMAP_DEFAULTS``:
tau 4, output_tau 1.5, α 0.1, no skip), ``--old-config`` the config of the first recorded run
(radial 8 + document, D = 64, sum).

Budgets: ``--seconds`` for every size, and ``--long-seconds`` also for the ``--long-sizes``.
``--clock cpu`` (default) counts CPU seconds of the process (``time.process_time``; with
``--threads 1`` this is steady on a shared machine), ``--clock wall`` wall-clock seconds.
Seconds exclude evaluations; warm runs include their fit time, so every run ends at the same
budget. Tokens seen are targets trained on (the explicit fit counts each of its streaming passes
over the corpus). Curves (dev and test perplexity vs seconds and vs tokens seen) are measured on
fixed subsets of dev and test (``--curve-tokens``, the first tokens of each document) at
geometrically spaced steps, and early stopping keeps the weights best on the dev subset; the
final numbers (table) score those weights on the whole dev and test sets.

    python bench/warm_vs_cold.py                     # full run, ~1 h of one core
    python bench/warm_vs_cold.py --quick             # 10k and 100k tokens, 10 s runs
    # the same full run in two processes, then one table and figure:
    python bench/warm_vs_cold.py --sizes 1000000 --out bench/out/wvc_1m.json
    python bench/warm_vs_cold.py --sizes 10000 100000 --out bench/out/wvc_small.json
    python bench/warm_vs_cold.py --merge bench/out/wvc_small.json bench/out/wvc_1m.json

Writes ``bench/out/warm_vs_cold.json`` and ``.png`` (git-ignored), copies the figure to
``docs/img/warm_vs_cold.png`` (not with ``--quick``) and prints a Markdown table.
"""

# ruff: noqa: E402  (the imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/tokenize.py would shadow the
# standard library's tokenize (torch needs it). The Kneser-Ney baseline is loaded by file path.
BENCH = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == BENCH:
    sys.path.pop(0)

import argparse
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import saffu
from saffu import ngram
from saffu.config import ROADMAP_DEFAULTS
from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.fit import prepare, stages_for
from saffu.model import PREVIOUS_DEFAULTS, SaffuConfig, SaffuModel, sample_token
from saffu.tokenize import EOD, PAD, SOD, UNK, make_tokenizer
from saffu.torch import cold_start, from_torch, to_torch
from saffu.torch.training import Budget, Stopwatch, evaluate, lr_factor, torch_runtime, train

ROOT = BENCH.parent
SHAKESPEARE = ROOT.parent / "shared" / "data" / "shakespeare"
OUT = BENCH / "out"
FIGURE_COPY = ROOT / "docs" / "img" / "warm_vs_cold.png"
METHODS = ("explicit", "cold", "warm", "transformer")
PROMPT, SAMPLING = "ROMEO.\n", {"max_tokens": 80, "temperature": 0.8, "top_k": 40, "seed": 0}
"""The prompt and settings of every method's sample (those of ``bench/samples.py``)."""
Documents = list[np.ndarray]  # each [<sod>] + ids + [<eod>], int32


# --- data: documents as id arrays, prefixes by tokens ------------------------------------------------


def documents_of(corpus: TokenizedCorpus) -> Documents:
    """The documents of an encoded corpus, one id array each."""
    return [doc for ids, pos in corpus.chunks() for doc in np.split(ids, np.flatnonzero(pos == 0)[1:])]


def cut(doc: np.ndarray, n_tokens: int) -> np.ndarray:
    """The document, or its first ``n_tokens`` tokens with the last replaced by ``<eod>``."""
    return doc if len(doc) <= n_tokens else np.append(doc[:n_tokens - 1], EOD).astype(doc.dtype)


def head(docs: Documents, n_tokens: int) -> Documents:
    """The first documents holding ``n_tokens`` tokens (the last one cut)."""
    kept, left = [], n_tokens
    for doc in docs:
        if left < 2:
            break
        kept.append(cut(doc, left))
        left -= len(kept[-1])
    return kept


def heads(docs: Documents, n_tokens: int | None) -> Documents:
    """Every document cut to an equal share of ``n_tokens`` (``None``: the documents whole)."""
    if n_tokens is None:
        return docs
    share = max(2, n_tokens // len(docs))
    return [cut(doc, share) for doc in docs]


def as_corpus(docs: Documents, tokenizer: Any) -> TokenizedCorpus:
    """One chunk holding ``docs``; characters counted on the decoded text (for bits/char)."""
    ids = np.concatenate(docs).astype(np.int32)
    pos = np.concatenate([np.arange(len(doc)) for doc in docs]).astype(np.int32)
    characters = sum(len(tokenizer.decode(doc)) for doc in docs)
    return TokenizedCorpus([(ids, pos)], n_characters=characters)


# --- the transformer baseline ------------------------------------------------------------------------


class CausalTransformer(nn.Module):
    """Pre-norm causal transformer from ``nn.TransformerEncoder``; output tied to the embedding."""

    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T), T ≤ context."""
        length = ids.shape[1]
        x = self.embed(ids) + self.position(torch.arange(length))
        mask = nn.Transformer.generate_square_subsequent_mask(length)
        return self.head(self.norm(self.encoder(x, mask=mask, is_causal=True)))


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_transformer(vocab_size: int, target: int, args: argparse.Namespace) -> CausalTransformer:
    """The transformer whose width (a multiple of the head count) gives the parameter count
    closest to ``target``."""
    widths = range(args.heads, 1024, args.heads)
    best = min(widths, key=lambda w: abs(_transformer_size(vocab_size, w, args) - target))
    return CausalTransformer(vocab_size, best, args.layers, args.heads, args.context)


def _transformer_size(vocab_size: int, width: int, args: argparse.Namespace) -> int:
    per_layer = 12 * width * width + 13 * width  # attention 4w²+4w, MLP 8w²+5w, two norms 4w
    return vocab_size * width + args.context * width + args.layers * per_layer + 2 * width + vocab_size


def transformer_scores(model: CausalTransformer, docs: Documents, characters: int,
                       batch: int = 32) -> dict[str, float]:
    """Perplexity and bits/char like SaffuModel.score: every token after ``<sod>`` predicted from
    its document prefix, seen through windows of ``context`` tokens sliding by half a window."""
    by_length: dict[int, list[tuple[np.ndarray, int]]] = {}
    for window, first in zip(*_eval_windows(docs, model.context), strict=True):
        by_length.setdefault(len(window), []).append((window, first))
    nll, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for group in by_length.values():
            for start in range(0, len(group), batch):
                chosen = group[start:start + batch]
                windows = torch.from_numpy(np.stack([w for w, _ in chosen]).astype(np.int64))
                first = torch.tensor([f for _, f in chosen])
                logp = F.log_softmax(model(windows[:, :-1]), dim=-1)
                target_logp = logp.gather(2, windows[:, 1:, None])[..., 0]
                scored = torch.arange(windows.shape[1] - 1)[None] >= first[:, None]
                nll -= float(target_logp[scored].sum())
                tokens += int(scored.sum())
    model.train()
    return {"perplexity": math.exp(nll / tokens), "bits_per_char": nll / (math.log(2) * characters),
            "tokens": tokens}


def _eval_windows(docs: Documents, context: int) -> tuple[list[np.ndarray], list[int]]:
    """Windows of at most ``context + 1`` tokens covering each document, and the first target
    of each window not scored by the previous one."""
    windows, first_scored = [], []
    stride = context // 2
    for doc in docs:
        scored, start = 0, 0  # targets doc[1 : scored + 1] are done
        while scored < len(doc) - 1:
            stop = min(start + context + 1, len(doc))
            windows.append(doc[start:stop])
            first_scored.append(scored - start)
            scored = stop - 1
            start = max(0, min(start + stride, len(doc) - 1 - context))
    return windows, first_scored


# --- the runs --------------------------------------------------------------------------------------


class Evaluator:
    """Scores on the curve subsets (every evaluation) and on the final sets (once per run)."""

    def __init__(self, curve: dict[str, Any], final: dict[str, Any]) -> None:
        self.curve, self.final = curve, final

    def saffu(self, module: Any, part: str, which: str) -> dict[str, float]:
        return evaluate(module, getattr(self, which)[part]["corpus"])

    def transformer(self, model: CausalTransformer, part: str, which: str) -> dict[str, float]:
        data = getattr(self, which)[part]
        return transformer_scores(model, data["docs"], data["corpus"].n_characters)


def final_scores(score: Callable[[str, str], dict[str, float]]) -> dict[str, float]:
    dev, test = score("dev", "final"), score("test", "final")
    return {"dev_perplexity": dev["perplexity"], "test_perplexity": test["perplexity"],
            "dev_bits_per_char": dev["bits_per_char"], "test_bits_per_char": test["bits_per_char"]}


def run_explicit(config: SaffuConfig, tokenizer: Any, train_corpus: TokenizedCorpus,
                 evaluator: Evaluator, args: argparse.Namespace) -> tuple[dict[str, Any], SaffuModel]:
    clock = Stopwatch(args.clock)
    model = SaffuModel(config, tokenizer=tokenizer).fit(train_corpus, n_jobs=args.threads, verbose=0)
    seconds = clock.seconds
    module = to_torch(model)
    point = {"seconds": seconds,
             "tokens_seen": len(stages_for(model)) * train_corpus.n_tokens,
             "dev_perplexity": evaluator.saffu(module, "dev", "curve")["perplexity"],
             "test_perplexity": evaluator.saffu(module, "test", "curve")["perplexity"]}
    result = {"parameters": model.n_parameters, "points": [point],
              "final": {**point, **final_scores(lambda part, which: evaluator.saffu(module, part, which))},
              "sample": model.generate(PROMPT, **SAMPLING)}
    return result, model


def run_backprop(module: Any, train_corpus: TokenizedCorpus, evaluator: Evaluator, seconds: float,
                 lr: float, offset: dict[str, float], args: argparse.Namespace,
                 lr_scales: dict[str, float] | None = None) -> dict[str, Any]:
    """Train a SAFFU module for ``seconds``; points are shifted by ``offset`` (the warm start's fit)."""
    def add_test(record: dict[str, Any], trained: Any) -> None:
        record["test_perplexity"] = evaluator.saffu(trained, "test", "curve")["perplexity"]

    history = train(module, train_corpus, evaluator.curve["dev"]["corpus"], lr=lr, lr_scales=lr_scales,
                    batch_targets=args.batch_targets, epochs=None, max_seconds=seconds,
                    warmup_steps=args.warmup_steps, eval_every=args.eval_every, eval_growth=2.0,
                    seed=args.seed, n_jobs=args.threads, verbose=0, on_eval=add_test, clock=args.clock)
    points = [{"seconds": r["seconds"] + offset["seconds"],
               "tokens_seen": r["tokens_seen"] + offset["tokens_seen"],
               "dev_perplexity": r["dev_perplexity"], "test_perplexity": r["test_perplexity"],
               "train_loss": r["train_loss"]} for r in history]
    best = min(points, key=lambda p: p["dev_perplexity"])
    final = {"seconds": points[-1]["seconds"], "tokens_seen": points[-1]["tokens_seen"],
             "best_step_seconds": best["seconds"], "steps": history[-1]["step"],
             **final_scores(lambda part, which: evaluator.saffu(module, part, which))}
    return {"parameters": n_parameters(module), "lr": lr, "points": points, "final": final,
            "sample": from_torch(module).generate(PROMPT, **SAMPLING)}


def transformer_sample(model: CausalTransformer, tokenizer: Any) -> str:
    """A continuation of :data:`PROMPT` drawn like ``SaffuModel.generate`` (same settings, the
    same :func:`~saffu.model.sample_token`; the special tokens but ``<eod>`` never drawn)."""
    settings = dict(SAMPLING)
    rng, max_tokens = np.random.default_rng(settings.pop("seed")), settings.pop("max_tokens")
    prompt = [SOD, *tokenizer.encode(PROMPT).tolist()]
    context = list(prompt)
    model.eval()
    with torch.no_grad():
        for _ in range(max_tokens):
            window = torch.tensor([context[-model.context:]], dtype=torch.int64)
            logits = model(window)[0, -1].numpy()
            logits[[PAD, UNK, SOD]] = -np.inf
            token = sample_token(logits, rng, **settings)
            if token == EOD:
                break
            context.append(token)
    model.train()
    return tokenizer.decode(np.array(context[len(prompt):], dtype=np.int32))


def run_transformer(model: CausalTransformer, train_docs: Documents, evaluator: Evaluator,
                    seconds: float, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Backprop on random windows of the concatenated train documents for ``seconds``; keeps the
    weights best on the dev subset, like :func:`saffu.torch.training.train`."""
    stream = torch.from_numpy(np.concatenate(train_docs).astype(np.int64))
    length = min(args.context, len(stream) - 1)
    batch = max(1, args.batch_targets // length)
    points: list[dict[str, Any]] = []
    with torch_runtime(args.seed, args.threads):
        rng = np.random.default_rng(args.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr_transformer, weight_decay=0.01)
        budget = Budget(None, seconds, None, len(stream) - 1)
        clock, step, tokens = Stopwatch(args.clock), 0, 0
        next_eval, gap = args.eval_every, float(args.eval_every)
        best_state, best = None, math.inf

        def record() -> None:
            nonlocal best_state, best
            with clock.paused():
                dev = evaluator.transformer(model, "dev", "curve")["perplexity"]
                test = evaluator.transformer(model, "test", "curve")["perplexity"]
                points.append({"seconds": clock.seconds, "tokens_seen": tokens, "dev_perplexity": dev,
                               "test_perplexity": test})
                if dev < best:
                    best, best_state = dev, {k: v.clone() for k, v in model.state_dict().items()}

        record()
        while not budget.exhausted(tokens, clock.seconds):
            starts = torch.from_numpy(rng.integers(0, len(stream) - length, batch))
            window = stream[starts[:, None] + torch.arange(length + 1)]
            for group in optimizer.param_groups:
                group["lr"] = args.lr_transformer * lr_factor(step, budget.progress(tokens, clock.seconds),
                                                             args.warmup_steps)
            logits = model(window[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step, tokens = step + 1, tokens + window[:, 1:].numel()
            if step >= next_eval:
                record()
                gap *= 2
                next_eval = step + round(gap)
        if points[-1]["tokens_seen"] != tokens:
            record()
        model.load_state_dict(best_state)
        final = {"seconds": points[-1]["seconds"], "tokens_seen": tokens, "steps": step,
                 **final_scores(lambda part, which: evaluator.transformer(model, part, which))}
    return {"parameters": n_parameters(model), "lr": args.lr_transformer, "width": model.embed.embedding_dim,
            "points": points, "final": final, "sample": transformer_sample(model, tokenizer)}


def kneser_ney_perplexity(train_docs: Documents, eval_docs: Documents, vocab_size: int) -> float:
    """Trigram interpolated Kneser-Ney perplexity (single discount, ``saffu.ngram.KneserNey``)."""
    return ngram.kneser_ney_perplexity(train_docs, eval_docs, vocab_size, order=3)["perplexity"]


def run_size(size: int, budgets: list[float], data: dict[str, Any], evaluator: Evaluator,
             args: argparse.Namespace) -> dict[str, Any]:
    """Every method at one training-set size, for each budget of seconds; one explicit fit."""
    tokenizer = data["tokenizer"]
    train_docs = head(data["train"], size)
    train_corpus = as_corpus(train_docs, tokenizer)
    config = saffu_config(args)
    results: dict[str, Any] = {"train_tokens": train_corpus.n_tokens,
                               "train_documents": train_corpus.n_documents, "budgets": {}}
    log(f"size {size:,}: {train_corpus.n_tokens:,} tokens in {train_corpus.n_documents} documents")
    explicit, model = run_explicit(config, tokenizer, train_corpus, evaluator, args)
    fit = explicit["points"][0]
    if "explicit" in args.methods:
        results["explicit"] = explicit
        log(f"  explicit       {_summary(explicit)}")
    for seconds in budgets:
        runs = results["budgets"][f"{seconds:g}"] = {}
        if "cold" in args.methods:
            template = SaffuModel(config, tokenizer=tokenizer)
            prepare(template, train_corpus)
            runs["cold"] = run_backprop(cold_start(template, args.seed), train_corpus, evaluator, seconds,
                                        args.lr_cold, {"seconds": 0.0, "tokens_seen": 0}, args)
        if "warm" in args.methods:
            runs["warm"] = run_backprop(to_torch(model), train_corpus, evaluator,
                                        max(seconds - fit["seconds"], 1.0), args.lr_warm, fit, args,
                                        args.warm_lr_scales)
        if "transformer" in args.methods:
            with torch_runtime(args.seed, args.threads):
                transformer = matched_transformer(tokenizer.vocab_size, explicit["parameters"], args)
            runs["transformer"] = run_transformer(transformer, train_docs, evaluator, seconds, tokenizer,
                                                  args)
        for method, result in runs.items():
            log(f"  {method:<11} {seconds:>4g} s {_summary(result)}")
    results["kneser_ney_3"] = {
        f"{part}_perplexity{suffix}": kneser_ney_perplexity(train_docs, data[which][part]["docs"],
                                                             tokenizer.vocab_size)
        for part in ("dev", "test") for which, suffix in (("final", ""), ("curve", "_curve"))}
    return results


def _summary(result: dict[str, Any]) -> str:
    final = result["final"]
    return (f"{result['parameters']:>9,} params  {final['seconds']:6.1f} s  "
            f"{final['tokens_seen']:>10,} tokens  dev {final['dev_perplexity']:8.2f}  "
            f"test {final['test_perplexity']:8.2f}")


OLD_CONFIG = {**PREVIOUS_DEFAULTS, "hidden": 64, "radial": 8, "block": 0, "document": True}
"""The SAFFU config of the first recorded run (``--old-config``): radial 8 + document, D 64, sum."""


def saffu_config(args: argparse.Namespace) -> SaffuConfig:
    """``SaffuConfig()`` as shipped (or :data:`OLD_CONFIG`, or the roadmap defaults) at the
    benchmark's vocabulary size."""
    old = OLD_CONFIG if args.old_config else ROADMAP_DEFAULTS if args.roadmap_config else {}
    return SaffuConfig(**{**old, "tokenizer": "bpe", "vocab_size": args.vocab_size})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- data, figure, table -------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    split = shakespeare_split(args.data)
    started = time.perf_counter()
    tokenizer = make_tokenizer("bpe", vocab_size=args.vocab_size).fit(read_documents(split.train))
    log(f"tokenizer fitted in {time.perf_counter() - started:.1f} s")
    parts = {part: documents_of(TokenizedCorpus.from_documents(tokenizer,
                                                               read_documents(getattr(split, part))))
             for part in ("train", "dev", "test")}
    data: dict[str, Any] = {"tokenizer": tokenizer, "train": parts["train"]}
    for which, n_tokens in (("curve", args.curve_tokens), ("final", args.final_tokens)):
        data[which] = {}
        for part in ("dev", "test"):
            docs = heads(parts[part], n_tokens)
            data[which][part] = {"docs": docs, "corpus": as_corpus(docs, tokenizer)}
    return data


def panels(results: dict[str, Any]) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(size results, budget, methods) for every size and budget; the explicit run in each."""
    out = []
    for runs in results["sizes"].values():
        for budget, methods in runs["budgets"].items():
            explicit = {"explicit": runs["explicit"]} if "explicit" in runs else {}
            out.append((runs, budget, {**explicit, **methods}))
    return out


def plot(results: dict[str, Any], curve_tokens: int | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = panels(results)
    fig, axes = plt.subplots(2, len(columns), figsize=(4.2 * len(columns), 7.2), squeeze=False)
    colors = {"explicit": "black", "cold": "tab:blue", "warm": "tab:red", "transformer": "tab:green"}
    for column, (runs, budget, methods) in enumerate(columns):
        for row, axis_key in enumerate(("seconds", "tokens_seen")):
            ax = axes[row][column]
            for method in METHODS:
                if method not in methods:
                    continue
                points = [p for p in methods[method]["points"] if p["tokens_seen"] > 0]  # log axes
                single = method == "explicit"
                ax.plot([p[axis_key] for p in points], [p["dev_perplexity"] for p in points],
                        marker="*" if single else ".", markersize=12 if single else 5,
                        color=colors[method], label=method, linestyle="none" if single else "-")
            ax.axhline(runs["kneser_ney_3"]["dev_perplexity_curve"], color="gray", linestyle=":",
                       label="Kneser-Ney 3-gram")
            ax.set_xscale("log")
            ax.set_yscale("log")
            clock = results["options"]["clock"]
            ax.set_xlabel(f"training seconds ({clock})" if axis_key == "seconds" else "tokens seen")
            ax.set_title(f"train {runs['train_tokens']:,} tokens, {budget} s")
            if column == 0:
                subset = "dev subset" if curve_tokens else "dev"
                ax.set_ylabel(f"{subset} perplexity")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict[str, Any]) -> str:
    lines = ["| train tokens | budget (s) | method | parameters | seconds | tokens seen | dev ppl "
             "| test ppl | test bits/char |", "|---|---|---|---|---|---|---|---|---|"]
    for runs, budget, methods in panels(results):
        for method in METHODS:
            if method in methods:
                r, f = methods[method], methods[method]["final"]
                lines.append(f"| {runs['train_tokens']:,} | {budget} | {method} | {r['parameters']:,} | "
                             f"{f['seconds']:.1f} | {f['tokens_seen']:,} | {f['dev_perplexity']:.1f} | "
                             f"{f['test_perplexity']:.1f} | {f['test_bits_per_char']:.3f} |")
        kn = runs["kneser_ney_3"]
        lines.append(f"| {runs['train_tokens']:,} | | Kneser-Ney 3-gram | | | | {kn['dev_perplexity']:.1f} | "
                     f"{kn['test_perplexity']:.1f} | |")
    return "\n".join(lines)


def samples(results: dict[str, Any]) -> str:
    """Every run's sample, as Markdown (a section per size and budget)."""
    lines = [f"\nSamples: prompt {PROMPT!r}, {SAMPLING}."]
    for runs, budget, methods in panels(results):
        lines.append(f"\n### {runs['train_tokens']:,} train tokens, {budget} s")
        for method in METHODS:
            if "sample" in methods.get(method, {}):
                dev = methods[method]["final"]["dev_perplexity"]
                lines += [f"\n**{method}** (dev perplexity {dev:.1f})\n", "```",
                          (PROMPT + methods[method]["sample"]).strip(), "```"]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "saffu": saffu.__version__, "saffu_backend": saffu.get_backend(), "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the Shakespeare corpus directory")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="training-set sizes in tokens")
    parser.add_argument("--seconds", type=float, default=60.0, help="budget of every run (see --clock)")
    parser.add_argument("--long-seconds", type=float, default=600.0,
                        help="a second budget, for the --long-sizes only")
    parser.add_argument("--long-sizes", type=int, nargs="*", default=[1_000_000],
                        help="sizes that also get --long-seconds")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what the budgets count: CPU seconds of the process, or wall-clock")
    parser.add_argument("--old-config", action="store_true",
                        help="the SAFFU config of the first recorded run instead of SaffuConfig()")
    parser.add_argument("--roadmap-config", action="store_true",
                        help="the defaults before the skip inputs (ROADMAP_DEFAULTS) instead of "
                             "SaffuConfig()")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="no runs: merge these JSON outputs (sizes in order) into --out, figure, table")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--quick", action="store_true",
                        help="sizes 10k and 100k, 10 s runs only, smaller evaluation sets")
    parser.add_argument("--curve-tokens", type=int, default=10_000,
                        help="dev and test tokens scored at every curve point (each split)")
    parser.add_argument("--final-tokens", type=int, default=None,
                        help="dev and test tokens of the final scores (default: whole splits)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--lr-cold", type=float, default=0.1)
    parser.add_argument("--lr-warm", type=float, default=0.1)
    parser.add_argument("--warm-lr-scales", type=json.loads, default=None,
                        help='learning-rate multipliers of the warm runs, a JSON object such as '
                             '\'{"output": 0.03, "skip": 0.03, "bias": 0.03}\' (default: '
                             'saffu.torch.WARM_LR_SCALES)')
    parser.add_argument("--lr-transformer", type=float, default=1e-2)
    parser.add_argument("--batch-targets", type=int, default=512, help="targets per step (every method)")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=8, help="first evaluation step; gaps then double")
    parser.add_argument("--context", type=int, default=64, help="transformer context length")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers")
    parser.add_argument("--heads", type=int, default=4, help="transformer attention heads")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of every method (kernels and PyTorch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT / "warm_vs_cold.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.seconds, args.long_sizes = [10_000, 100_000], 10.0, []
        args.curve_tokens, args.final_tokens = 3_000, 10_000
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.merge:
        results = merge([json.loads(path.read_text()) for path in args.merge])
    else:
        results = run_all(args, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    figure = args.out.with_suffix(".png")
    plot(results, results["options"]["curve_tokens"], figure)
    if not args.quick:  # a quick run is a smoke test: it leaves the documented figure alone
        FIGURE_COPY.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, FIGURE_COPY)
    print(table(results))
    print(samples(results))
    log(f"wrote {args.out} and {figure}")


def run_all(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    started = time.perf_counter()
    data = load_data(args)
    evaluator = Evaluator(data["curve"], data["final"])
    results: dict[str, Any] = {
        "command": "python bench/warm_vs_cold.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "config": saffu_config(args).to_dict(),
        "eval_tokens": {which: {part: data[which][part]["corpus"].n_targets for part in ("dev", "test")}
                        for which in ("curve", "final")},
        "sizes": {}}
    for size in args.sizes:
        budgets = [args.seconds] + ([args.long_seconds] if size in args.long_sizes else [])
        results["sizes"][str(size)] = run_size(size, budgets, data, evaluator, args)
    results["total_seconds"] = time.perf_counter() - started
    results["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    log(f"total {results['total_seconds']:.0f} s wall")
    return results


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs of the same setup (other sizes, or other methods of the same
    sizes, e.g. ``--methods warm`` run apart): their sizes in order, each size's methods joined
    (a method run twice keeps its first run), every command, machine record and total time."""
    settings = {json.dumps({k: part[k] for k in ("config", "eval_tokens")}, sort_keys=True) for part in parts}
    clocks = {part["options"]["clock"] for part in parts}
    if len(settings) != 1 or len(clocks) != 1:
        raise ValueError("the runs to merge differ in config, evaluation sets or clock")
    merged = {**parts[0], "sizes": {}, "merged": [
        {k: part[k] for k in ("command", "machine", "total_seconds")} for part in parts]}
    for part in parts:
        for size, runs in part["sizes"].items():
            into = merged["sizes"].setdefault(size, {**runs, "budgets": {}})
            if "explicit" in runs:
                into.setdefault("explicit", runs["explicit"])
            for budget, methods in runs["budgets"].items():
                joined = into["budgets"].setdefault(budget, {})
                for method, result in methods.items():
                    joined.setdefault(method, result)
    return merged


if __name__ == "__main__":
    main()

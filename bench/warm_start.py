"""Why a warm start first got worse, and what keeps it at or below the explicit fit (issue 13).

At 100k training tokens of the Shakespeare split (BPE 4096, the roadmap defaults that shipped when
it was measured, ``saffu.config.ROADMAP_DEFAULTS``, the
data and dev subset of ``bench/warm_vs_cold.py``), backprop from the explicit weights with
:func:`saffu.torch.training.train` (AdamW, lr 0.1, 512 targets per step, 20 warmup steps, cosine over
``--steps`` steps, clipping at 1), one variant per row: which parameter groups train and at what
learning-rate multiple (``lr_scales``). Dev-subset perplexity at steps 0, 8, 24, 56, 120, 248, …

Then, after 24 steps of the old warm start (every group at lr) and of the default one
(:data:`saffu.torch.training.WARM_LR_SCALES`), the change of the output bias ``o`` and of the dev NLL
by how often each token occurs in the training set.

    python bench/warm_start.py            # ~8 min of one core
    python bench/warm_start.py --steps 600

Writes ``bench/out/warm_start.json`` and prints two Markdown tables.
"""

# ruff: noqa: E402  (the imports follow the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == BENCH:  # bench/tokenize.py shadows tokenize
    sys.path.pop(0)

import argparse
import importlib.util
import itertools
import json
import math
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import saffu
from saffu.config import ROADMAP_DEFAULTS
from saffu.corpus import TokenizedCorpus
from saffu.model import SaffuConfig, SaffuModel
from saffu.torch import SaffuModule, corpus_batches, to_torch
from saffu.torch.training import PARAMETER_GROUPS, WARM_LR_SCALES, train

FROZEN = dict.fromkeys(PARAMETER_GROUPS, 0.0)
VARIANTS: dict[str, dict[str, Any]] = {
    "every group at lr (the old warm start)": {"lr_scales": {}},
    "only o (output bias)": {"lr_scales": {**FROZEN, "bias": 1.0}},
    "only O (output weights)": {"lr_scales": {**FROZEN, "output": 1.0}},
    "only U (hidden)": {"lr_scales": {**FROZEN, "hidden": 1.0}},
    "only W (attention)": {"lr_scales": {**FROZEN, "attention": 1.0}},
    "every group at lr, 200 warmup steps": {"lr_scales": {}, "warmup_steps": 200},
    "every group at lr = 0.03": {"lr_scales": {}, "lr": 0.03},
    "O, o at 0.1·lr": {"lr_scales": {"output": 0.1, "bias": 0.1}},
    "O, o at 0.03·lr (default)": {},
    "O, o at 0.01·lr": {"lr_scales": {"output": 0.01, "bias": 0.01}},
    "O, o frozen": {"lr_scales": {"output": 0.0, "bias": 0.0}},
    "default scales, weight decay 0.01": {"weight_decay": 0.01},
}
SHIPPED_VARIANTS: dict[str, dict[str, Any]] = {
    "O, skip, o at 0.03·lr (default)": {},
    "skip at lr": {"lr_scales": {**WARM_LR_SCALES, "skip": 1.0}},
    "skip at 0.3·lr": {"lr_scales": {**WARM_LR_SCALES, "skip": 0.3}},
    "O, skip at 0.3·lr": {"lr_scales": {**WARM_LR_SCALES, "output": 0.3, "skip": 0.3}},
    "U at 3·lr": {"lr_scales": {**WARM_LR_SCALES, "hidden": 3.0}},
    "W, U at 3·lr": {"lr_scales": {**WARM_LR_SCALES, "attention": 3.0, "hidden": 3.0}},
    "lr 0.3 (every scale as default)": {"lr": 0.3},
    "every group at lr": {"lr_scales": {}},
}
"""The variants of ``--config shipped`` (``SaffuConfig()``, whose output layer also reads skip
inputs: a separate group, ``skip``)."""
CONFIGS = {"roadmap": (ROADMAP_DEFAULTS, VARIANTS), "shipped": ({}, SHIPPED_VARIANTS)}
COUNT_EDGES = (0, 1, 10, 100, 1000, math.inf)


def _warm_vs_cold() -> Any:
    spec = importlib.util.spec_from_file_location("warm_vs_cold", BENCH / "warm_vs_cold.py")
    module = sys.modules["warm_vs_cold"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(module: SaffuModule, corpus: TokenizedCorpus, dev: TokenizedCorpus | None, steps: int,
        options: dict[str, Any]) -> list[dict[str, Any]]:
    """Train for ``steps`` steps of 512 targets; the evaluation records (step, dev perplexity).
    With ``dev``, the weights best on it are kept; without, the last ones."""
    settings = {"lr": 0.1, "batch_targets": 512, "warmup_steps": 20, "epochs": None,
                "max_tokens": 512 * steps, "eval_every": 8, "eval_growth": 2.0, "n_jobs": 1,
                "verbose": 0, "clock": "cpu", **options}
    history = train(module, corpus, dev, **settings)
    return [{"step": r["step"], "dev_perplexity": r["dev_perplexity"]} for r in history]


def target_nll(module: SaffuModule, corpus: TokenizedCorpus) -> tuple[np.ndarray, np.ndarray]:
    """(n,) NLL in nats of every target of ``corpus`` and (n,) the target ids."""
    nll, targets = [], []
    with torch.no_grad():
        for batch in corpus_batches(corpus, module.specs, 4096, skip=module.skip):
            nll.append(F.cross_entropy(module.logits(batch), batch.targets, reduction="none").numpy())
            targets.append(batch.targets.numpy())
    return np.concatenate(nll), np.concatenate(targets)


def by_frequency(model: SaffuModel, corpus: TokenizedCorpus, dev: TokenizedCorpus,
                 options: dict[str, Any]) -> list[dict[str, Any]]:
    """After 24 steps: Δo (mean over the token types) and Δ dev NLL (sum and mean over the dev
    targets), for tokens grouped by their count in the training set."""
    start, trained = to_torch(model), to_torch(model)
    run(trained, corpus, None, 24, {**options, "eval_every": 10_000})  # no dev: the last weights
    counts = np.bincount(np.concatenate([ids[pos > 0] for ids, pos in corpus.chunks()]),
                         minlength=len(start.output_bias))
    before, targets = target_nll(start, dev)
    after, _ = target_nll(trained, dev)
    change = (trained.output_bias - start.output_bias).detach().numpy()
    rows = []
    for low, high in itertools.pairwise(COUNT_EDGES):
        types = (counts >= low) & (counts < high)
        chosen = types[targets]
        rows.append({"count": f"[{low}, {high})", "types": int(types.sum()), "dev_targets": int(chosen.sum()),
                     "mean_bias_change": float(change[types].mean()),
                     "dev_nll_change": float(after[chosen].sum() - before[chosen].sum()),
                     "dev_nll_change_per_target": float((after[chosen] - before[chosen]).mean())})
    rows.append({"count": "all", "dev_perplexity_before": math.exp(before.mean()),
                 "dev_perplexity_after": math.exp(after.mean())})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=248)
    parser.add_argument("--size", type=int, default=100_000, help="training tokens")
    parser.add_argument("--no-curves", action="store_true", help="only the table by token count")
    parser.add_argument("--config", choices=CONFIGS, default="roadmap",
                        help="roadmap: ROADMAP_DEFAULTS and the study recorded first; shipped: SaffuConfig()")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "warm_start.json")
    args = parser.parse_args(argv)
    saffu.set_num_threads(1)
    torch.set_num_threads(1)
    wvc = _warm_vs_cold()
    data = wvc.load_data(wvc.parse_args(["--threads", "1"]))
    corpus = wvc.as_corpus(wvc.head(data["train"], args.size), data["tokenizer"])
    dev = data["curve"]["dev"]["corpus"]
    changes, variants = CONFIGS[args.config]
    model = SaffuModel(SaffuConfig(**changes), tokenizer=data["tokenizer"]).fit(
        corpus, n_jobs=1, verbose=0)
    results: dict[str, Any] = {"command": "python bench/warm_start.py " + " ".join(sys.argv[1:]),
                               "config": model.config.to_dict(), "warm_lr_scales": WARM_LR_SCALES,
                               "load_average_1min": os.getloadavg()[0], "curves": {}}
    for name, options in {} if args.no_curves else variants.items():
        started = time.process_time()
        results["curves"][name] = run(to_torch(model), corpus, dev, args.steps, options)
        wvc.log(f"{name}: {time.process_time() - started:.0f} CPU s")
    results["by_frequency"] = {name: by_frequency(model, corpus, dev, options) for name, options in
                               (("old", VARIANTS["every group at lr (the old warm start)"]), ("default", {}))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(tables(results))


def tables(results: dict[str, Any]) -> str:
    lines = []
    if results["curves"]:
        steps = [r["step"] for r in next(iter(results["curves"].values()))]
        lines = ["| variant | " + " | ".join(f"step {s}" for s in steps) + " |",
                 "|---|" + "---|" * len(steps)]
        for name, curve in results["curves"].items():
            lines.append(f"| {name} | " + " | ".join(f"{r['dev_perplexity']:.1f}" for r in curve) + " |")
    lines += ["", "| after 24 steps | train count | types | dev targets | mean Δo | Δ dev NLL (nats) "
              "| per target |", "|---|---|---|---|---|---|---|"]
    for name, rows in results["by_frequency"].items():
        for row in rows[:-1]:
            lines.append(f"| {name} | {row['count']} | {row['types']} | {row['dev_targets']} | "
                         f"{row['mean_bias_change']:+.3f} | {row['dev_nll_change']:+.1f} | "
                         f"{row['dev_nll_change_per_target']:+.3f} |")
        total = rows[-1]
        lines.append(f"| {name} | all | | | | dev ppl {total['dev_perplexity_before']:.1f} → "
                     f"{total['dev_perplexity_after']:.1f} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Where a variant's time goes: CPU seconds of each fit pass and of scoring, for a few
representative roadmap variants on the Shakespeare split (one kernel and one BLAS thread, as in
a sweep worker). Runs against whatever saffu is importable, so the same command measures two
versions side by side (e.g. a checkout of an older commit installed in another environment).

    python bench/variant_costs.py [--root ../shared/data/shakespeare] [--json bench/out/variant_costs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

import saffu
from saffu import fit
from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.fit import FitState
from saffu.model import SaffuConfig, SaffuModel
from saffu.tokenize import make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
BASE = {"bits": 256, "hidden": 256, "radial": 1, "block": 0, "document": False, "aggregation": "sum",
        "attention": "explicit", "tau": 2.0, "output_tau": 3.0, "alpha": 0.1}  # the roadmap reference
VARIANTS = {
    "radial 1": {"radial": 1, "attention": "uniform"},
    "radial 2, cat": {"radial": 2, "aggregation": "cat"},
    "block 16, cat": {"radial": 0, "block": 16, "aggregation": "cat"},
    "radial 1 + document": {"radial": 1, "document": True, "attention": "uniform"},
    "radial 2 + block 16 + document, cat": {"radial": 2, "block": 16, "document": True,
                                            "aggregation": "cat"},
}


def cpu_seconds(function, *args):
    started = time.process_time()
    result = function(*args)
    return result, time.process_time() - started


def measure(config: SaffuConfig, tokenizer, splits: dict[str, TokenizedCorpus]) -> dict[str, float]:
    """CPU seconds of preparing (cipher), each pass with its solve, and scoring dev and test."""
    model = SaffuModel(config, tokenizer=tokenizer)
    row: dict[str, float] = {}
    corpus, row["prepare"] = cpu_seconds(fit.prepare, model, splits["train"])
    fit._init_layers(model)
    model.fit_state = FitState()
    for stage in fit.STAGES:
        if stage in fit.stages_for(model):
            stats, seconds = cpu_seconds(lambda s=stage: fit.run_pass(s, model, corpus, verbose=0))
            _, solve_seconds = cpu_seconds(stage.solve, model, stats)
            model.fit_state.statistics[stage.name] = stats
            row[stage.name] = seconds + solve_seconds
    row["fit"] = sum(row.values())
    for split in ("dev", "test"):
        scores, row[f"score {split}"] = cpu_seconds(model.score, splits[split])
        row[f"{split} perplexity"] = scores["perplexity"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--json", type=Path, default=Path("bench/out/variant_costs.json"))
    args = parser.parse_args()
    threadpool_limits(1)
    saffu.set_num_threads(1)
    split = shakespeare_split(args.root)
    documents = {name: read_documents(getattr(split, name)) for name in ("train", "dev", "test")}
    tokenizer = make_tokenizer("bpe", vocab_size=4096)
    tokenizer.fit(documents["train"])
    splits = {name: TokenizedCorpus.from_documents(tokenizer, docs) for name, docs in documents.items()}
    rows = {}
    columns = ["prepare", "experts", "attention", "hidden", "output", "fit", "score dev",
               "score test", "dev perplexity"]
    print("| variant (bits 256, D 256) | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, changes in VARIANTS.items():
        row = measure(SaffuConfig(**{**BASE, **changes}), tokenizer, splits)
        rows[name] = row
        cells = [f"{row[c]:.2f}" if c in row else "-" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(saffu.__file__).parent).stdout.strip()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "saffu": saffu.__file__, "commit": commit, "backend": saffu.get_backend(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "cpu_seconds": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

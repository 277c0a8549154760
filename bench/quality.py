"""Explicit model quality levers (issue 13) on the Shakespeare split: dev perplexity of each.

    python bench/quality.py [--quick] [--only discount,temperature,contextual,multi,inputs,other,batch]
                            [--json bench/quality.json] [--data /tmp/saffu-quality]

One kernel and one BLAS thread; the encoded split (BPE 4096) is cached in ``--data`` (made by
saffu.sweep.prepare_data) so only the first run tokenizes. Every row is a fit on all training
documents scored on dev (never test); ``fit_cpu_s`` is the CPU time of the fit (process_time),
``+`` rows re-solve the output layer of the row above at another ``output_tau`` (no refit).

Sections:
- ``discount``: Kneser-Ney-style / absolute discounting (ExplicitStats.solve ``discount``,
  ``lower``) in one layer at a time (experts, attention, hidden, output), then experts + hidden.
- ``temperature``: tau / output_tau fixed vs chosen by the fit (None, saffu.temperature).
- ``contextual``: contextual bit-cipher vectors (cipher.contextual_vectors, radius R, top).
- ``multi``: several context models side by side (``SaffuConfig.extra_contexts``).
- ``inputs``: the output layer also reads previous tokens' cipher vectors (``SaffuConfig.skip``).
- ``other``: hidden width D, alpha, bits, and the tau × output_tau ridge.
- ``batch``: CPU seconds of the output pass at two batch sizes (a cost lever, no perplexity).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

import saffu
from saffu import fit
from saffu.cipher import contextual_vectors
from saffu.corpus import read_documents, shakespeare_split
from saffu.explicit import ExplicitStats
from saffu.model import SaffuConfig, SaffuModel
from saffu.sweep import SweepData, prepare_data

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
SECTIONS = ("discount", "temperature", "contextual", "multi", "inputs", "other", "batch")


@contextlib.contextmanager
def solve_options(stages: tuple[str, ...], options: dict[str, Any]) -> Iterator[None]:
    """Inside the block, ExplicitStats.solve gets ``options`` while one of ``stages`` is solved
    (e.g. ``discount`` of one layer only; SaffuConfig has no such field)."""
    original_solve = ExplicitStats.solve

    def with_options(stage_solve):
        def solve(model: SaffuModel, stats: fit.PassStatistics) -> None:
            ExplicitStats.solve = lambda self, *a, **k: original_solve(self, *a, **{**k, **options})
            try:
                stage_solve(model, stats)
            finally:
                ExplicitStats.solve = original_solve
        return solve

    saved = fit.STAGES
    fit.STAGES = tuple(fit.Stage(s.name, s.accumulate, with_options(s.solve)) if s.name in stages
                       else s for s in saved)
    try:
        yield
    finally:
        fit.STAGES = saved


@contextlib.contextmanager
def contextual_cipher(radius: int, top: int | None) -> Iterator[None]:
    """Inside the block, fits replace the cipher vectors by contextual ones (cipher.py)."""
    saved = fit.prepare

    def prepare(model: SaffuModel, documents: Any, *args: Any) -> Any:
        corpus = saved(model, documents, *args)
        model.cipher = model.cipher.with_vectors(
            contextual_vectors(model.cipher.vectors, corpus.chunks(), radius, top=top))
        return corpus

    fit.prepare = prepare
    try:
        yield
    finally:
        fit.prepare = saved


def fit_and_score(data: SweepData, config: SaffuConfig, lever: str, variant: str,
                  output_taus: tuple[float, ...] = ()) -> list[dict[str, Any]]:
    """Fit ``config`` on train, score dev; then re-solve the output at each of ``output_taus``."""
    started = time.process_time()
    model = SaffuModel(config, tokenizer=data.tokenizer).fit(data.splits["train"], verbose=0,
                                                             n_jobs=1)
    seconds = time.process_time() - started
    rows = [_row(lever, variant, model, data, seconds)]
    for output_tau in output_taus:
        model.config = model.config.replace(output_tau=output_tau)
        fit.solve_output(model, model.fit_state.statistics["output"])
        rows.append(_row(lever, f"+ output_tau {output_tau:g}", model, data, None))
    return rows


def _row(lever: str, variant: str, model: SaffuModel, data: SweepData,
         seconds: float | None) -> dict[str, Any]:
    dev = model.score(data.splits["dev"])
    row = {"lever": lever, "variant": variant, "dev_perplexity": dev["perplexity"],
           "dev_bits_per_char": dev["bits_per_char"], "fit_cpu_s": seconds,
           "tau": model.config.tau, "output_tau": model.config.output_tau,
           "parameters": model.n_parameters}
    print(f"| {lever} | {variant} | {row['dev_perplexity']:.2f} | "
          f"{'' if seconds is None else f'{seconds:.1f}'} | {row['tau']:.3g} | "
          f"{row['output_tau']:.3g} |", flush=True)
    return row


def discount_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    base = SaffuConfig()
    rows = []
    grid = {"experts": (0.5, 0.8), "attention": (0.5, 2.0), "hidden": (0.2, 0.5),
            "output": (0.1, 0.5)}
    lowers = ("continuation",) if quick else ("marginal", "continuation")
    for stage, discounts in grid.items():
        for lower in lowers:
            for d in discounts[:1] if quick else discounts:
                with solve_options((stage,), {"discount": d, "lower": lower}):
                    rows += fit_and_score(data, base, "discount", f"{stage}: d {d:g}, {lower}")
    for d in (0.2,) if quick else (0.2, 0.5, 0.8):
        with solve_options(("experts", "hidden"), {"discount": d, "lower": "continuation"}):
            rows += fit_and_score(data, base, "discount",
                                  f"experts + hidden: d {d:g}, continuation")
    return rows


def temperature_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for hidden in (256,) if quick else (256, 512):
        base = SaffuConfig(hidden=hidden)
        rows += fit_and_score(data, base, "temperature", f"D {hidden}, fixed tau 4, output_tau 1.5")
        rows += fit_and_score(data, base.replace(output_tau=None), "temperature",
                              f"D {hidden}, output_tau auto")
        rows += fit_and_score(data, base.replace(tau=None, output_tau=None), "temperature",
                              f"D {hidden}, tau and output_tau auto")
    return rows


def contextual_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    rows = []
    variants = [(256, 0, 4), (256, 1, 4), (2048, 1, 4)] + ([] if quick else [(256, 1, 16),
                                                                              (256, 2, 4)])
    for bits, radius, top in variants:
        name = f"bits {bits}, R {radius}" + (f", top {top}" if radius else "")
        with contextual_cipher(radius, top) if radius else contextlib.nullcontext():
            rows += fit_and_score(data, SaffuConfig(bits=bits), "contextual", name,
                                  output_taus=(1.0, 2.0))
    return rows


def multi_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    """Several context models side by side (``SaffuConfig.extra_contexts``), output_tau auto."""
    rows = []
    combos = [("radial 2 + radial 1", {"extra_contexts": "radial1"}),
              ("radial 2 + radial 3", {"extra_contexts": "radial3"}),
              ("radial 2 + block 16", {"block": 16}),
              ("radial 2 + document", {"document": True}),
              ("radial 2 + radial 1 + radial 3", {"extra_contexts": "radial1,radial3"}),
              ("radial 2, D 512 (the width of two models in one)", {"hidden": 512}),
              ("radial 2 + radial 1, D 512 each", {"hidden": 512, "extra_contexts": "radial1"})]
    for name, fields in combos[:2] if quick else combos:
        rows += fit_and_score(data, SaffuConfig(**fields), "multi", name)
    return rows


def inputs_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    rows = []
    variants = [(1, "h + x_{t-1}"), (2, "h + x_{t-1} + x_{t-2}")]
    configs = [SaffuConfig()] + ([] if quick else [SaffuConfig(hidden=512),
                                                   SaffuConfig(hidden=512, bits=4096)])
    for config in configs:
        for skip, name in variants[:1] if quick else variants:
            rows += fit_and_score(
                data, config.replace(skip=skip, output_tau=None), "inputs",
                f"bits {config.bits}, D {config.hidden}: output reads {name}, output_tau auto")
    return rows


def batch_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    """CPU seconds of the output pass at two sizes of its hidden-state batches (a cost lever:
    each kernel call regroups U input-major, so fewer, larger batches cost less)."""
    rows = []
    configs = [SaffuConfig(), SaffuConfig(hidden=512), SaffuConfig(bits=4096, hidden=512)]
    saved = fit.OUTPUT_BATCH_FLOATS
    try:
        for floats in (2**22, 2**24):
            fit.OUTPUT_BATCH_FLOATS = floats
            for config in configs[:1] if quick else configs:
                model = SaffuModel(config, tokenizer=data.tokenizer)
                corpus = fit.prepare(model, data.splits["train"])
                fit._init_layers(model)
                for stage in fit.stages_for(model):
                    started = time.process_time()
                    stats = fit.run_pass(stage, model, corpus, verbose=0)
                    seconds = time.process_time() - started
                    stage.solve(model, stats)
                variant = (f"bits {config.bits}, D {config.hidden}, "
                           f"batches of 2^{floats.bit_length() - 1} floats")
                rows.append({"lever": "batch", "variant": variant, "output_pass_cpu_s": seconds})
                print(f"| batch | {variant} | output pass {seconds:.2f} s CPU |", flush=True)
    finally:
        fit.OUTPUT_BATCH_FLOATS = saved
    return rows


def other_rows(data: SweepData, quick: bool) -> list[dict[str, Any]]:
    rows = []
    variants = [{"hidden": 512}, {"hidden": 768}, {"hidden": 1024}, {"bits": 4096},
                {"bits": 1024}, {"alpha": 0.01}, {"alpha": 1.0}, {"radial": 3},
                {"hidden": 512, "radial": 3}, {"hidden": 512, "bits": 4096}]
    for changes in variants[:1] if quick else variants:
        rows += fit_and_score(data, SaffuConfig(**changes), "other", json.dumps(changes))
    for tau in (3.0,) if quick else (3.0, 6.0):
        rows += fit_and_score(data, SaffuConfig(hidden=512, tau=tau), "other",
                              f'{{"hidden": 512, "tau": {tau:g}}}', output_taus=(1.25, 2.0, 2.5))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--data", type=Path, default=Path("/tmp/saffu-quality"))
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer variants per section")
    parser.add_argument("--json", type=Path, default=Path("bench/quality.json"))
    args = parser.parse_args()
    sections = args.only.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    saffu.set_num_threads(1)
    threadpool_limits(1)
    split = shakespeare_split(args.root)
    documents = {name: list(read_documents(getattr(split, name))) for name in ("train", "dev")}
    data = prepare_data(args.data, documents, SaffuConfig(), verbose=0)
    print("| lever | variant | dev ppl | fit CPU s | tau | output_tau |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = fit_and_score(data, SaffuConfig(), "baseline", "SaffuConfig()")
    for name in sections:
        rows += globals()[f"{name}_rows"](data, args.quick)
    result = {"rows": rows, "command": " ".join(sys.argv), "quick": args.quick,
              "load_average": os.getloadavg(), "platform": platform.platform(),
              "backend": saffu.get_backend()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""Generation speed: tokens per second of one stream and of a batch of 64, on one core, against
the reference path (the per-token loop of saffu before the generation kernel) in the same run.

    python bench/generate.py [--model DIR] [--root ../shared/data/shakespeare] [--threads 1]
                             [--repeats 1] [--json bench/out/generate.json]

The model is the default config (``SaffuConfig()``) fitted on the Shakespeare train split (or
loaded from ``--model``); the prompts are the first words of 64 lines of the dev split. Kernel
threads: 1 (``--threads``). Times are CPU seconds of this process (``time.process_time``; wall
seconds are reported beside them, as the machine may be shared; with more than one thread the
batch is also given per wall second; ``--repeats N``: the best of N runs of each batch). The
batch runs twice, with the kernel's cache of output
rows (the default, 256 MB) and without it (``cache_bytes=0``), side by side. For every setting
the new path's texts are checked equal to the reference path's on the streams the reference
runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import saffu
from saffu._io import atomic_write_text
from saffu.corpus import read_documents, shakespeare_split
from saffu.generation import generate_in_chunks, reference_generate
from saffu.kernels.generate import CACHE_BYTES
from saffu.model import SaffuModel

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
SETTINGS = {"temperature 1": {}, "temperature 0.8, top-k 40": {"temperature": 0.8, "top_k": 40},
            "top-p 0.9": {"top_p": 0.9}, "greedy": {"temperature": 0}}


def dev_prompts(root: Path, count: int, words: int = 4) -> list[str]:
    """The first ``words`` words of ``count`` lines spread evenly over the dev split."""
    lines = [line.strip() for document in read_documents(shakespeare_split(root).dev)
             for line in document.splitlines() if len(line.split()) >= words]
    step = len(lines) // count
    return [" ".join(lines[i * step].split()[:words]) for i in range(count)]


def clocked(function):
    """(result, CPU seconds, wall seconds) of function()."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def best_clocked(function, repeats: int):
    """clocked(function) of the run of least CPU time among ``repeats`` runs."""
    return min((clocked(function) for _ in range(repeats)), key=lambda run: run[1])


def new_path(model: SaffuModel, prompts: list[str], max_tokens: int, settings: dict,
             seed: int = 0, cache_bytes: int = CACHE_BYTES) -> int:
    """Tokens generated for all prompts in one batch (stream i draws with seed + i)."""
    return sum(len(added) for chunk in generate_in_chunks(
        model, prompts, max_tokens=max_tokens, seed=seed, cache_bytes=cache_bytes, **settings)
        for added in chunk)


def measure(model: SaffuModel, prompts: list[str], settings: dict, args) -> dict:
    single, single_cpu, single_wall = clocked(lambda: sum(
        new_path(model, [p], args.tokens, settings, seed=i) for i, p in enumerate(prompts[:args.streams])))
    batch, batch_cpu, batch_wall = best_clocked(
        lambda: new_path(model, prompts, args.batch_tokens, settings), args.repeats)
    uncached, uncached_cpu, uncached_wall = best_clocked(
        lambda: new_path(model, prompts, args.batch_tokens, settings, cache_bytes=0), args.repeats)
    reference_prompts = prompts[:args.reference_streams]
    texts, reference_cpu, reference_wall = clocked(lambda: [
        reference_generate(model, p, max_tokens=args.reference_tokens, seed=i, **settings)
        for i, p in enumerate(reference_prompts)])
    same = texts == model.generate(reference_prompts, max_tokens=args.reference_tokens, seed=0,
                                   **settings)
    reference = sum(new_path(model, [p], args.reference_tokens, settings, seed=i)  # the reference's
                    for i, p in enumerate(reference_prompts))  # tokens, when the texts are equal
    return {
        "single_tokens": single, "single_cpu_s": single_cpu, "single_wall_s": single_wall,
        "single_tokens_per_s": single / single_cpu, "single_tokens_per_wall_s": single / single_wall,
        "batch_tokens": batch, "batch_cpu_s": batch_cpu, "batch_wall_s": batch_wall,
        "batch_tokens_per_s": batch / batch_cpu, "batch_tokens_per_wall_s": batch / batch_wall,
        "uncached_batch_tokens": uncached, "uncached_batch_cpu_s": uncached_cpu,
        "uncached_batch_wall_s": uncached_wall, "uncached_batch_tokens_per_s": uncached / uncached_cpu,
        "uncached_batch_tokens_per_wall_s": uncached / uncached_wall,
        "reference_tokens": reference, "reference_cpu_s": reference_cpu,
        "reference_wall_s": reference_wall, "reference_tokens_per_s": reference / reference_cpu,
        "same_text_as_reference": same,
    }


def call_cost(model: SaffuModel, prompt: str, repeats: int = 5) -> dict:
    """CPU milliseconds of a greedy generate call of 1 and of 100 tokens (the best of repeats):
    what a call costs before its first step, and per token after it."""
    def best(max_tokens: int) -> float:
        return min(clocked(lambda: model.generate(prompt, max_tokens=max_tokens, temperature=0))[1]
                   for _ in range(repeats)) * 1e3
    return {"one_token_cpu_ms": best(1), "hundred_tokens_cpu_ms": best(100)}


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "backend": saffu.get_backend(), "commit": commit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a saved model (default: fit "
                        "SaffuConfig() on the train split)")
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--tokens", type=int, default=500, help="most tokens per single stream")
    parser.add_argument("--streams", type=int, default=8, help="single streams, one after another")
    parser.add_argument("--batch", type=int, default=64, help="prompts in the batch")
    parser.add_argument("--batch-tokens", type=int, default=200, help="most tokens per batch stream")
    parser.add_argument("--reference-tokens", type=int, default=40)
    parser.add_argument("--reference-streams", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="kernel threads")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each batch; the one of least CPU time is reported")
    parser.add_argument("--json", type=Path, default=Path("bench/out/generate.json"))
    parser.add_argument("--call-cost", action="store_true",
                        help="only measure what one call costs (1 and 100 greedy tokens)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    if args.model is None:
        model = SaffuModel().fit(read_documents(shakespeare_split(args.root).train), verbose=0)
    else:
        model = SaffuModel.load(args.model)
    saffu.set_num_threads(args.threads)
    prompts = dev_prompts(args.root, args.batch)
    model.generate(prompts, max_tokens=2, seed=0)  # warm up: first use of the weights' pages
    if args.call_cost:
        cost = call_cost(model, prompts[0])
        print(f"one call: {cost['one_token_cpu_ms']:.1f} ms CPU for 1 token, "
              f"{cost['hundred_tokens_cpu_ms']:.1f} ms for 100 (greedy, 1 thread; load average "
              f"{os.getloadavg()[0]:.2f})")
        return
    reference_generate(model, prompts[0], max_tokens=2, seed=0)
    results = {name: measure(model, prompts, settings, args) for name, settings in SETTINGS.items()}
    load_after = os.getloadavg()

    wall = args.threads > 1
    print(f"{'setting':<28}{'single tok/s':>14}{'batch-64 tok/s':>16}"
          + (f"{'(per wall s)':>14}" if wall else "") + f"{'no cache':>10}{'reference tok/s':>17}"
          f"{'x single':>10}{'x batch':>9}  same text")
    for name, r in results.items():
        print(f"{name:<28}{r['single_tokens_per_s']:>14,.0f}{r['batch_tokens_per_s']:>16,.0f}"
              + (f"{r['batch_tokens_per_wall_s']:>14,.0f}" if wall else "")
              + f"{r['uncached_batch_tokens_per_s']:>10,.0f}{r['reference_tokens_per_s']:>17,.1f}"
              f"{r['single_tokens_per_s'] / r['reference_tokens_per_s']:>10,.0f}"
              f"{r['batch_tokens_per_s'] / r['reference_tokens_per_s']:>9,.0f}  "
              f"{'yes' if r['same_text_as_reference'] else 'NO'}")
    print(f"(CPU time, {args.threads} kernel thread{'s' if wall else ''}; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after)")
    report = {"machine": machine(), "load_average_before": load_before,
              "load_average_after": load_after, "config": model.config.to_dict(),
              "arguments": {k: str(v) for k, v in vars(args).items()}, "prompts": prompts,
              "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Strong scaling of the explicit fit on one machine, and an estimate for large corpora.

Side by side in one run, on the Shakespeare train split (``saffu.corpus.shakespeare_split``),
tokenized once (BPE, the default ``SaffuConfig``) and cut into chunks of ``--chunk-tokens``:

- ``local``: ``SaffuModel.fit(corpus, n_jobs=T)``, T kernel threads (what ``saffu fit --jobs``
  sets);
- ``dask``: ``SaffuModel.fit(corpus, client=...)`` on a ``LocalCluster`` of W worker processes
  of 1 thread each, or of 1 in-process worker with 2 threads (shards run in parallel threads);
  one chunk per shard, 1 kernel thread per task.

Every configuration fits the same encoded corpus, in turn, ``--rounds`` times. Reported: fit
seconds (the median over rounds), the seconds of each pass as the client sees them, and, from
Dask's task stream, the compute seconds of every accumulate task (per shard and pass) and every
reduction task. From the 2-process runs come the constants of the estimate for 100M and 1B tokens
on N machines (see :func:`estimate`).

    python bench/scaling.py --json bench/out/scaling.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from dask.distributed import Client, LocalCluster, get_task_stream
from dask.utils import key_split

import saffu
from saffu import fit
from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.model import PREVIOUS_DEFAULTS, SaffuConfig, SaffuModel
from saffu.tokenize import Tokenizer, make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare"
PASSES = tuple(stage.name for stage in fit.STAGES)
LOCAL = {"local, 1 thread": 1, "local, 2 threads": 2}
CLUSTERS = {  # name: LocalCluster arguments
    "dask, 1 process": {"n_workers": 1, "threads_per_worker": 1, "processes": True},
    "dask, 2 processes": {"n_workers": 2, "threads_per_worker": 1, "processes": True},
    "dask, 1 process x 2 threads": {"n_workers": 1, "threads_per_worker": 2, "processes": False},
}
REFERENCE = "dask, 2 processes"  # the runs that give the estimate's constants
NETWORK_BYTES_PER_S = 1.25e9  # assumed, not measured: 10 GbE between machines
SHARD_TOKENS = 1 << 20  # shard size assumed for the estimate (the default chunk size)


# --- measuring ------------------------------------------------------------------------------


def load_corpus(root: Path, n_documents: int | None, vocab_size: int,
                chunk_tokens: int) -> tuple[Tokenizer, TokenizedCorpus, dict[str, float]]:
    documents = list(read_documents(list(shakespeare_split(root).train)))[:n_documents]
    started = time.perf_counter()
    tokenizer = make_tokenizer("bpe", vocab_size=vocab_size).fit(documents)
    trained = time.perf_counter()
    corpus = TokenizedCorpus.from_documents(tokenizer, documents, chunk_tokens=chunk_tokens)
    encoded = time.perf_counter()
    return tokenizer, corpus, {"tokenizer_s": trained - started, "encode_s": encoded - trained}


@contextlib.contextmanager
def pass_timer(seconds: dict[str, float]) -> Iterator[None]:
    """Record the wall seconds of each ``saffu.fit.run_pass`` call (fit_model calls it by name)."""
    original = fit.run_pass

    def timed(stage: fit.Stage, *args: Any, **kwargs: Any) -> fit.PassStatistics:
        started = time.perf_counter()
        result = original(stage, *args, **kwargs)
        seconds[stage.name] = time.perf_counter() - started
        return result

    fit.run_pass = timed
    try:
        yield
    finally:
        fit.run_pass = original


def timed_fit(tokenizer: Tokenizer, corpus: TokenizedCorpus, config: SaffuConfig,
              **fit_options: Any) -> tuple[SaffuModel, dict[str, Any]]:
    passes: dict[str, float] = {}
    cpu_started = time.process_time()
    with pass_timer(passes):
        model = SaffuModel(config, tokenizer=tokenizer).fit(corpus, verbose=0, **fit_options)
    return model, {"fit_s": model.fit_info["seconds"], "pass_s": passes,
                   "client_cpu_s": time.process_time() - cpu_started}


def task_costs(task_stream: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Compute and transfer seconds of the fit's tasks, by pass and kind (accumulate, sum)."""
    costs: dict[str, dict[str, list[float]]] = {}
    for task in task_stream:
        name = key_split(task["key"])  # e.g. "saffu-output-accumulate"
        parts = name.split("-")
        if len(parts) != 3 or parts[1] not in PASSES:
            continue
        by_kind = costs.setdefault(parts[1], {})
        for action in task["startstops"]:
            if action["action"] in ("compute", "transfer"):
                by_kind.setdefault(f"{parts[2]} {action['action']}", []).append(
                    action["stop"] - action["start"])
    return costs


def scheduling_overhead(client: Client, n_tasks: int = 400) -> float:
    """Seconds per task of ``n_tasks`` no-op tasks, submitted and gathered at once."""
    started = time.perf_counter()
    client.gather([client.submit(int, i, pure=False) for i in range(n_tasks)])
    return (time.perf_counter() - started) / n_tasks


def statistics_bytes(model: SaffuModel) -> dict[str, int]:
    return {name: sum(a.nbytes for a in stats.to_arrays().values())
            for name, stats in model.fit_state.statistics.items()}


def max_relative_difference(model: SaffuModel, reference: SaffuModel) -> float:
    return max(float(np.abs(a.astype(np.float64) - reference.state_arrays()[name]).max()
                     / max(np.abs(a).max(), 1e-30))
               for name, a in model.state_arrays().items())


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    tokenizer, corpus, preparation = load_corpus(args.data, args.documents, args.vocab_size,
                                                 args.chunk_tokens)
    config = SaffuConfig(**PREVIOUS_DEFAULTS, vocab_size=args.vocab_size)  # as in the recorded runs
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*LOCAL, *CLUSTERS]}
    clusters: dict[str, dict[str, Any]] = {}
    reference: SaffuModel | None = None
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, options in CLUSTERS.items():
            started = time.perf_counter()
            cluster = stack.enter_context(LocalCluster(dashboard_address=":0", **options))
            client = stack.enter_context(Client(cluster))
            client.run(saffu.get_backend)  # import the kernels on the workers before timing
            clusters[name] = {"start_s": time.perf_counter() - started,
                              "task_overhead_s": scheduling_overhead(client)}
            clients[name] = client
        for _ in range(args.rounds):
            for name, n_jobs in LOCAL.items():
                model, result = timed_fit(tokenizer, corpus, config, n_jobs=n_jobs)
                reference = reference or model
                runs[name].append(result)
            for name, client in clients.items():
                with get_task_stream(client) as stream:
                    model, result = timed_fit(tokenizer, corpus, config, client=client)
                result["tasks"] = task_costs(stream.data)
                result["max_relative_difference"] = max_relative_difference(model, reference)
                runs[name].append(result)
    return {
        "runs": runs,
        "clusters": clusters,
        "corpus": {"tokens": corpus.n_tokens, "documents": corpus.n_documents,
                   "chunks": len(corpus), **preparation},
        "statistics_bytes": statistics_bytes(reference),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "backend": saffu.get_backend(), "load_average_before": load_before,
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "args": {key: str(value) for key, value in vars(args).items()},
    }


# --- summarizing -----------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(get(run) for run in runs)


def summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Median fit and pass seconds of each configuration, and its speed-up over 1 local thread."""
    baseline = median(results["runs"]["local, 1 thread"], lambda r: r["fit_s"])
    table = {}
    for name, runs in results["runs"].items():
        row = {"fit_s": median(runs, lambda r: r["fit_s"])}
        for stage in PASSES:
            row[f"{stage}_s"] = median(runs, lambda r, s=stage: r["pass_s"].get(s, 0.0))
        row["other_s"] = row["fit_s"] - sum(row[f"{stage}_s"] for stage in PASSES)
        row["client_cpu_s"] = median(runs, lambda r: r["client_cpu_s"])
        row["speedup"] = baseline / row["fit_s"]
        table[name] = row
    return table


def constants(results: dict[str, Any]) -> dict[str, Any]:
    """The estimate's constants, from the runs of REFERENCE (median over rounds).

    Per pass p: ``cost`` = Σ accumulate compute seconds / tokens (seconds per token on one
    single-threaded worker); ``overhead`` = pass wall seconds − Σ accumulate compute / workers
    (model broadcast, scheduling, reduction, result transfer, imbalance); ``sum_task`` = mean
    compute + transfer seconds of one reduction task. ``fixed`` = fit seconds − Σ pass seconds
    (token counts, cipher, solves, scattering the corpus).
    """
    runs = results["runs"][REFERENCE]
    workers = CLUSTERS[REFERENCE]["n_workers"]
    tokens = results["corpus"]["tokens"]
    per_pass = {}
    for stage in PASSES:
        def compute(run: dict[str, Any], stage: str = stage) -> float:
            return sum(run["tasks"][stage].get("accumulate compute", []))

        def sum_task(run: dict[str, Any], stage: str = stage) -> float:
            tasks = run["tasks"][stage]
            seconds = tasks.get("sum compute", []) + tasks.get("sum transfer", [])
            return sum(seconds) / max(len(tasks.get("sum compute", [])), 1)

        per_pass[stage] = {
            "cost_s_per_token": median(runs, compute) / tokens,
            "local_cost_s_per_token": median(results["runs"]["local, 1 thread"],
                                             lambda r, s=stage: r["pass_s"][s]) / tokens,
            "overhead_s": median(runs, lambda r, c=compute, s=stage: r["pass_s"][s] - c(r) / workers),
            "sum_task_s": median(runs, sum_task),
            "shard_s": median(runs, lambda r, c=compute: c(r)) / results["corpus"]["chunks"],
        }
    fixed = median(runs, lambda r: r["fit_s"] - sum(r["pass_s"].values()))
    return {"passes": per_pass, "fixed_s": fixed, "shards": results["corpus"]["chunks"],
            "encode_s_per_token": results["corpus"]["encode_s"] / tokens,
            "task_overhead_s": results["clusters"][REFERENCE]["task_overhead_s"]}


def estimate(measured: dict[str, Any], statistics_bytes: dict[str, int], tokens: float,
             workers: int, cost: str = "cost_s_per_token") -> float:
    """Fit seconds for ``tokens`` on ``workers`` single-threaded workers (fit_files: encoding on
    the workers too), with S = tokens / SHARD_TOKENS shards:

        T = (encode + Σ_p cost_p) · tokens / workers + fixed
            + Σ_p [overhead_p + 2·(S − S₀)·task + (⌈log₂ S⌉ − ⌈log₂ S₀⌉)·(sum_p + bytes_p / bw)]

    S₀ shards were measured; each extra shard adds an accumulate and a reduction task to the
    scheduler's work, each extra tree level one reduction (add + transfer at NETWORK_BYTES_PER_S).
    ``cost`` picks the per-token costs: those of the Dask tasks, or ``"local_cost_s_per_token"``,
    those of the 1-thread local fit (its pass seconds, all compute).
    """
    shards = max(1, math.ceil(tokens / SHARD_TOKENS))
    extra_levels = max(0, math.ceil(math.log2(shards)) - math.ceil(math.log2(measured["shards"])))
    extra_tasks = 2 * max(0, shards - measured["shards"])
    compute = measured["encode_s_per_token"] * tokens / workers
    passes = 0.0
    for stage, pass_constants in measured["passes"].items():
        compute += pass_constants[cost] * tokens / workers
        level = pass_constants["sum_task_s"] + statistics_bytes[stage] / NETWORK_BYTES_PER_S
        passes += (pass_constants["overhead_s"] + extra_tasks * measured["task_overhead_s"]
                   + extra_levels * level)
    return compute + passes + measured["fixed_s"]


# --- reporting ---------------------------------------------------------------------------------


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    corpus, machine = results["corpus"], results["machine"]
    print(f"{corpus['tokens']:,} tokens, {corpus['documents']} documents, {corpus['chunks']} "
          f"chunks; tokenizer {corpus['tokenizer_s']:.1f} s, encode {corpus['encode_s']:.1f} s; "
          f"{machine['cpu_count']} cores, load {machine['load_average_before']} -> "
          f"{machine['load_average_after']}")
    for name, cluster in results["clusters"].items():
        print(f"{name}: cluster start {cluster['start_s']:.1f} s, "
              f"{cluster['task_overhead_s'] * 1e3:.2f} ms per no-op task")
    columns = ["fit_s", *(f"{stage}_s" for stage in PASSES), "other_s", "client_cpu_s", "speedup"]
    print(f"\n{'configuration (median of ' + str(len(results['runs'][REFERENCE])) + ')':<30}"
          + "".join(f"{c:>13}" for c in columns))
    for name, row in results["summary"].items():
        print(f"{name:<30}" + "".join(f"{row[c]:13.2f}" for c in columns))
    for name in CLUSTERS:
        worst = max(run["max_relative_difference"] for run in results["runs"][name])
        print(f"{name}: weights within {worst:.1e} (relative to max |w|) of the local fit")
    measured = results["constants"]
    print(f"\nper-pass constants ({REFERENCE}):")
    print(f"{'pass':<10}{'µs/token':>10}{'local µs/token':>16}{'s/shard':>10}{'overhead s':>12}"
          f"{'sum task s':>12}{'stats MB':>10}")
    for stage, c in measured["passes"].items():
        print(f"{stage:<10}{c['cost_s_per_token'] * 1e6:10.2f}"
              f"{c['local_cost_s_per_token'] * 1e6:16.2f}{c['shard_s']:10.3f}"
              f"{c['overhead_s']:12.2f}{c['sum_task_s']:12.3f}"
              f"{results['statistics_bytes'][stage] / 1e6:10.1f}")
    print(f"fixed {measured['fixed_s']:.2f} s per fit; encoding "
          f"{measured['encode_s_per_token'] * 1e6:.2f} µs/token")
    print(f"\nestimated fit time, {args.cores_per_machine} single-threaded workers per machine:")
    print(f"{'tokens':>8} {'per-token costs':<16}"
          + "".join(f"{str(n) + ' machines':>14}" for n in args.machines))
    for tokens in (1e8, 1e9):
        for cost, label in (("cost_s_per_token", "Dask tasks"),
                            ("local_cost_s_per_token", "local 1 thread")):
            cells = [estimate(measured, results["statistics_bytes"], tokens,
                              n * args.cores_per_machine, cost) for n in args.machines]
            print(f"{tokens:8.0e} {label:<16}" + "".join(f"{_duration(s):>14}" for s in cells))


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the Shakespeare corpus")
    parser.add_argument("--documents", type=int, default=None, help="first N train documents")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--chunk-tokens", type=int, default=1 << 17, help="tokens per shard")
    parser.add_argument("--rounds", type=int, default=1, help="fits per configuration")
    parser.add_argument("--cores-per-machine", type=int, default=16)
    parser.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--report", type=Path, help="print the report of a --json file; no runs")
    args = parser.parse_args()
    if args.report:
        print_report(json.loads(args.report.read_text()), args)
        return
    results = run(args)
    results["summary"] = summary(results)
    results["constants"] = constants(results)
    print_report(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""What ``saffu sweep`` costs, side by side in two (or more) saffu source trees: e.g. a checkout
before a change and the worktree after it. Each run is the command itself
(``python -m saffu.cli sweep --shakespeare ROOT --grid GRID --jobs J --test-top K``) in a fresh
output folder that holds the prepared data already (tokenizer and encoded splits, made once, so
that the runs measure the variants, not the tokenizer fit); the trees take turns, ``--repeat``
times. Per run: wall seconds of the whole command, of the dev phase (from the start to the
line "scoring test for …") and of the test phase (from that line to the end), the CPU seconds
of the command and its workers (user + system, ``getrusage`` of the children), and from the
records the fit and scoring CPU seconds summed over the variants. The records of every tree
are compared with the first tree's (largest relative difference of dev and test perplexity).

    python bench/sweep_ab.py --tree old=/tmp/old/src --tree new=src --grid bench/grids/shared_work.toml \\
        --jobs 2 --test-top 3 --repeat 2 --json bench/out/sweep_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "shakespeare"
DATA_FILES = ("sweep.json", "tokenizer.json", "data.npz")  # what saffu.sweep.data prepares


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _command(args: argparse.Namespace, out: Path) -> list[str]:
    return [sys.executable, "-m", "saffu.cli", "sweep", "--shakespeare", str(args.root),
            "--grid", str(args.grid), "--out", str(out), "--jobs", str(args.jobs),
            "--test-top", str(args.test_top), "--verbose", "1"]


def prepare(args: argparse.Namespace, source: str, folder: Path) -> None:
    """The sweep's data (tokenizer and encoded splits) in ``folder``, prepared by the tree's own
    ``saffu.sweep.prepare_data`` from the documents as the command reads them."""
    code = ("import sys; from pathlib import Path; from saffu.corpus import read_documents, "
            "shakespeare_split; from saffu.sweep import load_grid, prepare_data\n"
            "parts = shakespeare_split(sys.argv[1])\n"
            "docs = {n: list(read_documents(getattr(parts, n))) for n in ('train', 'dev', 'test')}\n"
            "prepare_data(Path(sys.argv[3]), docs, load_grid(sys.argv[2]).reference, verbose=0)\n")
    subprocess.run([sys.executable, "-c", code, str(args.root), str(args.grid), str(folder)],
                   env={**os.environ, "PYTHONPATH": source}, check=True)


def run_once(args: argparse.Namespace, source: str, template: Path, out: Path) -> dict:
    """One sweep command in ``out`` (seeded with the prepared data); its timings and totals."""
    out.mkdir(parents=True)
    for name in DATA_FILES:
        shutil.copy(template / name, out / name)
    cpu, started = _children_cpu(), time.perf_counter()
    process = subprocess.Popen(_command(args, out), env={**os.environ, "PYTHONPATH": source},
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    test_started = None
    for line in process.stderr:
        if "scoring test for" in line and test_started is None:
            test_started = time.perf_counter()
    if process.wait() != 0:
        raise SystemExit(f"the sweep in {out} failed (exit {process.returncode})")
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    records = json.loads((out / "results.json").read_text())["variants"]
    dev_phase = wall if test_started is None else test_started - started
    return {"wall_s": wall, "dev_phase_wall_s": dev_phase, "test_phase_wall_s": wall - dev_phase,
            "cpu_s": cpu, "variants": len(records),
            "fits": sum(not r["fit_shared"] for r in records),
            "fit_cpu_s": sum(r["fit_cpu_seconds"] for r in records if not r["fit_shared"]),
            "eval_cpu_s": sum(r["eval_cpu_seconds"] for r in records),
            "test_scored": sum(r.get("test_perplexity") is not None for r in records),
            "records": {r["key"]: (r["dev_perplexity"], r.get("test_perplexity")) for r in records}}


def _largest_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        raise SystemExit("the trees ran different variants")
    return max(abs(y / x - 1) for key in a for x, y in zip(a[key], b[key], strict=True)
               if x is not None or y is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=SRC",
                        help="a saffu source tree (its src folder) to run, e.g. new=src")
    parser.add_argument("--grid", type=Path, default=ROOT / "bench" / "grids" / "shared_work.toml")
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--test-top", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    trees = dict(tree.split("=", 1) for tree in args.tree)
    trees = {name: str(Path(source).resolve()) for name, source in trees.items()}
    load = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="saffu-sweep-ab-") as scratch:
        template = Path(scratch) / "data"
        prepare(args, next(iter(trees.values())), template)
        for repeat in range(args.repeat):
            for name, source in trees.items():
                run = run_once(args, source, template, Path(scratch) / f"{name}-{repeat}")
                runs[name].append(run)
                print(f"{name} #{repeat + 1}: {run['wall_s']:.1f} s wall (dev phase "
                      f"{run['dev_phase_wall_s']:.1f}, test {run['test_phase_wall_s']:.1f}), "
                      f"{run['cpu_s']:.1f} CPU s; {run['fits']} fits {run['fit_cpu_s']:.1f} CPU s, "
                      f"scoring {run['eval_cpu_s']:.1f} CPU s, test for {run['test_scored']}",
                      flush=True)
    first = next(iter(runs.values()))[0]["records"]
    print(f"\n{'tree':<10}{'wall s':>9}{'dev s':>8}{'test s':>8}{'CPU s':>8}{'fit CPU':>9}"
          f"{'score CPU':>10}{'max rel diff':>14}")
    summary = {}
    for name, found in runs.items():
        best = min(found, key=lambda run: run["wall_s"])
        difference = max(_largest_difference(first, run["records"]) for run in found)
        summary[name] = {key: value for key, value in best.items() if key != "records"}
        summary[name]["max_rel_difference"] = difference
        print(f"{name:<10}{best['wall_s']:>9.1f}{best['dev_phase_wall_s']:>8.1f}"
              f"{best['test_phase_wall_s']:>8.1f}{best['cpu_s']:>8.1f}{best['fit_cpu_s']:>9.1f}"
              f"{best['eval_cpu_s']:>10.1f}{difference:>14.2e}")
    print(f"(the fastest of {args.repeat} runs each; load average at the start {load:.2f}, "
          f"now {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "grid": str(args.grid), "jobs": args.jobs,
            "test_top": args.test_top, "trees": trees, "summary": summary,
            "runs": {name: [{k: v for k, v in run.items() if k != "records"} for run in found]
                     for name, found in runs.items()},
            "load_average_start": load, "load_average_end": os.getloadavg()[0],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()

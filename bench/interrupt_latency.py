"""How long an interrupted command takes to end (issue 14): seconds from the first signal to the
exit of ``saffu train --cold`` and of ``saffu fit --dask-scheduler`` (a LocalCluster of 2
in-process workers reached over TCP), for one Ctrl-C, two, and SIGTERM.

Each command runs on the bundled sample (``saffu.datasets.sample_dir()``, char tokenizer, one
thread) and is interrupted once its work is under way (training: the step-0 checkpoint exists;
Dask: the scheduler holds a pass's tasks). Also measured: the exit of an undisturbed
``python -c "import saffu.torch.training"`` (imports only), which bounds what an exit costs.

    python bench/interrupt_latency.py             # ~2 min
    python bench/interrupt_latency.py --repeats 5

Writes ``bench/out/interrupt_latency.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = {"ctrl-c": [signal.SIGINT], "ctrl-c twice": [signal.SIGINT, signal.SIGINT],
           "sigterm": [signal.SIGTERM]}
CONFIG = ["--tokenizer", "char", "--bits", "32", "--hidden", "32", "--radial", "3", "--jobs", "1",
          "--verbose", "0"]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
            "SAFFU_NUM_THREADS": "1"}


def interrupted_seconds(argv: list[str], ready: Callable[[], bool], signals: list[int]) -> float:
    """Seconds from the first of ``signals`` to the exit of ``saffu ARGV`` (status 130 checked)."""
    process = subprocess.Popen([sys.executable, "-m", "saffu.cli", *argv], env=_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"saffu {argv[0]} ended before the interrupt: {process.stderr.read()}")
        time.sleep(0.01)
    started = time.perf_counter()
    for signum in signals:
        os.kill(process.pid, signum)
        time.sleep(0.05)
    status = process.wait(timeout=60)
    seconds = time.perf_counter() - started
    if status != 130:
        raise RuntimeError(f"saffu {argv[0]} exited with {status}: {process.stderr.read()}")
    return seconds


def import_exit_seconds() -> float:
    """Seconds an undisturbed interpreter takes to exit after importing the training module."""
    code = "import time, saffu.torch.training; print(time.time(), flush=True)"
    process = subprocess.Popen([sys.executable, "-c", code], env=_environment(),
                               stdout=subprocess.PIPE, text=True)
    printed = float(process.stdout.readline())
    process.wait()
    return time.time() - printed


def train_cases(root: Path, repeats: int) -> dict[str, list[float]]:
    from saffu.datasets import sample_dir

    results = {}
    for name, signals in SIGNALS.items():
        results[f"saffu train --cold, {name}"] = []
        for _ in range(repeats):
            out = Path(tempfile.mkdtemp(dir=root)) / "model"
            argv = ["train", "--cold", str(sample_dir()), "--out", str(out), *CONFIG,
                    "--batch-targets", "256", "--max-tokens", "100000000", "--eval-every", "200"]
            results[f"saffu train --cold, {name}"].append(
                interrupted_seconds(argv, (out / "model.json").is_file, signals))
    return results


def dask_cases(root: Path, repeats: int) -> dict[str, list[float]]:
    from dask.distributed import Client, LocalCluster

    from saffu.datasets import sample_dir

    def passes_running(client: Client) -> bool:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
        return any("-accumulate-" in key for key in keys)

    results = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        for name, signals in SIGNALS.items():
            results[f"saffu fit --dask-scheduler, {name}"] = []
            for _ in range(repeats):
                out = Path(tempfile.mkdtemp(dir=root)) / "model"
                argv = ["fit", str(sample_dir()), "--out", str(out), *CONFIG, "--output-tau", "1.5",
                        "--dask-scheduler", cluster.scheduler_address]
                results[f"saffu fit --dask-scheduler, {name}"].append(
                    interrupted_seconds(argv, lambda: passes_running(client), signals))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory:
        results = {**train_cases(Path(directory), args.repeats),
                   **dask_cases(Path(directory), args.repeats)}
    results["exit after importing saffu.torch.training (no signal)"] = [
        import_exit_seconds() for _ in range(args.repeats)]
    print(f"| command, signal | median s | max s |  (load {load:.2f}, {os.cpu_count()} CPUs)")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {statistics.median(seconds):.2f} | {max(seconds):.2f} |")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "interrupt_latency.json").write_text(json.dumps(
        {"load_average_start": load, "load_average_end": os.getloadavg()[0],
         "cpu_count": os.cpu_count(), "repeats": args.repeats, "seconds": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""How promptly Ctrl-C stops a sweep on a Dask cluster: ``saffu sweep --dask-scheduler``.

Starts a ``LocalCluster`` (``--workers`` worker processes, one thread each), runs ``saffu sweep``
on the Shakespeare split in a subprocess against it, sends SIGINT once a fit task has run for
``--after`` seconds, and measures (wall-clock, from the signal) when the scheduler holds none of
the sweep's tasks (polled every 20 ms) and when the command has exited. Repeats ``--repeat``
times, each in a fresh output folder.

    python bench/sweep_interrupt.py --repeat 3 --json bench/out/sweep_interrupt.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dask.distributed import Client, LocalCluster

from saffu.sweep.cluster import KEY_PREFIX

ROOT = Path(__file__).resolve().parents[1]
GRID = "[fixed]\nbits = 64\n[[grid]]\ntau = [1, 2, 3]\n"  # 3 tasks of a few seconds each


def _running_fits(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        KEY_PREFIX in str(key) and ts.state == "processing"
        for key, ts in dask_scheduler.tasks.items()))


def _sweep_tasks(client: Client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        KEY_PREFIX in str(key) for key in dask_scheduler.tasks))


def _executing(client: Client) -> int:
    """Tasks running on the workers (a cancelled task runs to its end, its result dropped)."""
    return sum(client.run(lambda dask_worker: dask_worker.state.executing_count).values())


def _wait(condition, timeout: float = 300.0, step: float = 0.02) -> float:
    """Poll until ``condition()``; the time.monotonic() it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not become true")
        time.sleep(step)
    return time.monotonic()


def one_run(client: Client, shakespeare: str, after: float, work: Path) -> dict:
    (work / "grid.toml").write_text(GRID)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "saffu.cli", "sweep", "--shakespeare", shakespeare,
         "--grid", str(work / "grid.toml"), "--out", str(work / "out"),
         "--dask-scheduler", client.scheduler.address, "--verbose", "0"],
        env=env, stderr=subprocess.PIPE, text=True)
    _wait(lambda: _running_fits(client) > 0)
    time.sleep(after)
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    released = _wait(lambda: _sweep_tasks(client) == 0)
    process.wait(timeout=120)
    exited = time.monotonic()
    return {"released_s": released - signalled, "exited_s": exited - signalled,
            "returncode": process.returncode, "stderr": process.stderr.read().strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shakespeare", default=str(ROOT.parent / "shared/data/shakespeare"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--after", type=float, default=1.0, help="seconds into the first fit")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as work:
                runs.append(one_run(client, args.shakespeare, args.after, Path(work)))
            _wait(lambda: _executing(client) == 0)  # the cancelled task finishes unheard
    print(f"{'run':>3} {'tasks released s':>17} {'command exited s':>17} {'status':>6}")
    for i, run in enumerate(runs):
        print(f"{i:>3} {run['released_s']:17.3f} {run['exited_s']:17.3f} {run['returncode']:>6}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": vars(args), "runs": runs,
                                         "load_average": os.getloadavg()}, indent=2, default=str))


if __name__ == "__main__":
    main()

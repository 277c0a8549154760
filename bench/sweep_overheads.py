"""The sweep's fixed costs beside fitting and scoring, to tell whether they are worth cutting:
rewriting ``results.json``/``results.csv`` after every variant (for the records of a finished
sweep, 1 to all of them), starting a pool of spawned workers that load the sweep's data, and
``unique_rows`` (the distinct hidden states) per dev scoring of two roadmap variants.

    python bench/sweep_overheads.py SWEEP_DIR [--jobs 2]

``SWEEP_DIR``: the ``--out`` folder of a finished ``saffu sweep`` on the Shakespeare split (its
``results.json``, ``data.npz`` and ``tokenizer.json`` are read, nothing there is written).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from threadpoolctl import threadpool_limits

from saffu import set_num_threads
from saffu.layers import target_batches, unique_rows
from saffu.model import SaffuModel
from saffu.sweep import SweepData, canonical, load_grid
from saffu.sweep.run import _init_worker, _write_results

VARIANTS = {"radial 1": {}, "radial 4 + document": {"radial": 4, "document": True}}


def _ready() -> bool:
    return True


def publish_cost(results: Path) -> tuple[int, float]:
    """CPU seconds of writing the results files after each of the records, 1 to all."""
    document = json.loads(results.read_text())
    records, meta = document["variants"], document["sweep"]
    with tempfile.TemporaryDirectory() as folder:
        started = time.process_time()
        for n in range(1, len(records) + 1):
            _write_results(Path(folder), records[:n], meta)
        return len(records), time.process_time() - started


def pool_start(directory: Path, jobs: int) -> float:
    """Wall seconds until ``jobs`` spawned workers have loaded the data and answered once."""
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(str(directory),)) as pool:
        assert all(future.result() for future in [pool.submit(_ready) for _ in range(jobs)])
        return time.perf_counter() - started


def unique_rows_cost(data: SweepData, changes: dict) -> tuple[float, int]:
    """CPU seconds of ``unique_rows`` over the dev split's scoring batches, and the rows kept."""
    config = canonical(load_grid(None).reference.replace(**changes))
    model = SaffuModel(config, tokenizer=data.tokenizer).fit(data.splits["train"], verbose=0)
    hidden = [model.hidden_states(ids, pos, start, stop) for ids, pos in data.splits["dev"].chunks()
              for start, stop in target_batches(pos, 8192)]
    started = time.process_time()
    kept = sum(len(unique_rows(block)[0]) for block in hidden)
    return time.process_time() - started, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a finished sweep's --out folder")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    set_num_threads(1)
    threadpool_limits(1)
    load = os.getloadavg()[0]
    count, seconds = publish_cost(args.directory / "results.json")
    print(f"results files rewritten after each of {count} records: {seconds:.2f} CPU s in all")
    for attempt in (1, 2):
        print(f"pool of {args.jobs} workers started, data loaded (#{attempt}): "
              f"{pool_start(args.directory, args.jobs):.2f} s wall")
    data = SweepData.load(args.directory)
    for name, changes in VARIANTS.items():
        seconds, kept = unique_rows_cost(data, changes)
        print(f"unique_rows over dev, {name}: {seconds:.3f} CPU s ({kept:,} distinct rows)")
    print(f"(load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()

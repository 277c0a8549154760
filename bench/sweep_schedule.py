"""An estimate, from a finished sweep's records, of what its phases take on ``--jobs`` workers:
the tasks (groups of variants that differ in ``output_tau`` only) replayed most expensive
first onto the first free worker, with their recorded CPU seconds as durations. Not a
measurement: it shows what sharing the scoring of ``output_tau`` siblings and running the test
refits in the pool should save, to be checked by timing the sweep itself.

- dev phase, as recorded: each task costs its fit plus every variant's own scoring;
- dev phase, siblings scored together: the first variant's scoring plus ``--sibling-share``
  of it per further variant (``bench/score_scaled.py`` measured ~0.1);
- test phase: each refit of a variant dev selects costs its fit plus its dev scoring scaled to
  the test split's targets (the variants are refitted one by one, as they are not siblings).

    python bench/sweep_schedule.py /tmp/rm/roadmap-now/results.json --jobs 2 [--test-top 10]
"""

from __future__ import annotations

import argparse
import heapq
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from saffu.model import SaffuConfig
from saffu.sweep import CONFIG_FIELDS, output_tau_groups, selected_on_dev
from saffu.sweep.run import _estimated_cost


def makespan(durations: Sequence[float], workers: int) -> float:
    """Seconds until the last task ends, each task going to the first free worker in order."""
    free = [0.0] * workers
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="results.json of a finished sweep")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--test-top", type=int, default=10)
    parser.add_argument("--sibling-share", type=float, default=0.1)
    args = parser.parse_args()
    document = json.loads(args.results.read_text())
    records = {SaffuConfig(**{name: r[name] for name in CONFIG_FIELDS}): r for r in document["variants"]}
    groups = sorted(output_tau_groups(records), key=_estimated_cost, reverse=True)
    targets = {name: split["targets"] for name, split in document["sweep"]["splits"].items()}

    def fit(group: list[SaffuConfig]) -> float:
        return records[group[0]]["fit_cpu_seconds"]

    def alone(group: list[SaffuConfig]) -> float:
        return fit(group) + sum(records[config]["eval_cpu_seconds"] for config in group)

    def together(group: list[SaffuConfig]) -> float:
        first = records[group[0]]["eval_cpu_seconds"]
        return fit(group) + first * (1 + args.sibling_share * (len(group) - 1))

    chosen = {r["key"] for r in selected_on_dev(list(records.values()), args.test_top)}
    selected = [config for config, record in records.items() if record["key"] in chosen]
    refits = sorted(output_tau_groups(selected), key=_estimated_cost, reverse=True)

    def refit(group: list[SaffuConfig]) -> float:
        return fit(group) + records[group[0]]["eval_cpu_seconds"] * targets.get("test", 0) / targets["dev"]

    rows: list[tuple[str, Callable[[list[SaffuConfig]], float], list[list[SaffuConfig]], int]] = [
        ("dev phase, each variant scored alone", alone, groups, args.jobs),
        ("dev phase, siblings scored together", together, groups, args.jobs),
        ("test phase, in the main process", refit, refits, 1),
        (f"test phase, in {args.jobs} workers", refit, refits, args.jobs)]
    print(f"{len(records)} variants, {len(groups)} tasks; {len(selected)} selected on dev "
          f"({len(refits)} refits); recorded wall time {document['sweep']['wall_seconds_this_run']:.0f} s")
    print(f"{'phase':<40}{'CPU s':>9}{'wall s (estimate)':>19}")
    for name, cost, tasks, workers in rows:
        durations = [cost(group) for group in tasks]
        print(f"{name:<40}{sum(durations):>9.1f}{makespan(durations, workers):>19.1f}")
    print("(the test phase in the main process ran with the default kernel threads: its recorded "
          "wall time is shorter than this one-thread estimate)")


if __name__ == "__main__":
    main()

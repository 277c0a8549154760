"""Where the time of a fit goes: the end-to-end fit of a config on the Shakespeare train split,
stage by stage (tokenizer training, encoding, cipher, each pass's accumulation and solve, the
output-temperature search), wall and CPU seconds.

    python bench/fit_profile.py [--config '{"extra_contexts": ""}'] [--repeat 3]
                                [--json bench/out/fit_profile.json]

Each repeat fits a fresh model from the documents, as ``SaffuModel(config).fit(documents)`` does
for a user. The stages are timed by wrapping the functions the fit calls (the wrappers add a few
microseconds per call); a stage's time is exclusive of the stages it calls (the temperature
search's own time excludes the output passes it runs). "other" is the rest of the fit. Run it
against two checkouts one after the other (``PYTHONPATH=...``) to compare them side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import saffu
import saffu.fit as fit
import saffu.temperature as temperature
from saffu.cipher import Cipher
from saffu.corpus import read_documents, shakespeare_split
from saffu.model import SaffuConfig, SaffuModel
from saffu.tokenize import Tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"


class StageClock:
    """Exclusive wall and CPU seconds per stage name, for nested timed calls."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._inner: list[list[float]] = []  # per open stage: [wall, cpu] of the stages inside

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        self._inner.append([0.0, 0.0])
        try:
            yield
        finally:
            inner_wall, inner_cpu = self._inner.pop()
            spent_wall, spent_cpu = time.perf_counter() - wall, time.process_time() - cpu
            self.wall[name] += spent_wall - inner_wall
            self.cpu[name] += spent_cpu - inner_cpu
            if self._inner:
                self._inner[-1][0] += spent_wall
                self._inner[-1][1] += spent_cpu

    def wrap(self, name: str, function: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return function(*args, **kwargs)
        return timed


def instrument(clock: StageClock) -> None:
    """Time the functions a fit calls (module and class attributes replaced in place)."""
    fit.STAGES = tuple(
        fit.Stage(stage.name, clock.wrap(f"{stage.name} pass", stage.accumulate),
                  clock.wrap(f"{stage.name} solve", stage.solve))
        for stage in fit.STAGES)
    fit.output_pass_choosing_tau = clock.wrap("output_tau search", fit.output_pass_choosing_tau)
    temperature.choose_output_tau = clock.wrap("output_tau search", temperature.choose_output_tau)
    fit.prepare = clock.wrap("other", fit.prepare)
    Tokenizer.fit = clock.wrap("tokenizer training", Tokenizer.fit)
    SaffuModel.encode = clock.wrap("encoding", SaffuModel.encode)
    Cipher.fit = clock.wrap("cipher and labels", Cipher.fit)
    Cipher.label_codes = clock.wrap("cipher and labels", Cipher.label_codes)


def profile_once(clock: StageClock, config: SaffuConfig, documents: list[str]) -> dict[str, Any]:
    """One end-to-end fit of ``config``: exclusive seconds per stage."""
    clock.reset()
    with clock.stage("other"):
        model = SaffuModel(config).fit(documents, verbose=0)
    return {"wall": dict(clock.wall), "cpu": dict(clock.cpu), "total_wall": sum(clock.wall.values()),
            "total_cpu": sum(clock.cpu.values()), "tokens": model.fit_info["tokens"],
            "temperatures": {k: v for k, v in model.fit_info.get("temperatures", {}).items()
                             if not k.endswith("_search")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--config", default="{}", help="SaffuConfig overrides as JSON")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/out/fit_profile.json"))
    args = parser.parse_args()

    config = SaffuConfig.from_dict(json.loads(args.config))
    documents = list(read_documents(shakespeare_split(args.root).train))
    clock = StageClock()
    instrument(clock)
    load_start = os.getloadavg()
    runs = [profile_once(clock, config, documents) for _ in range(args.repeat)]
    stages = list(dict.fromkeys(name for run in runs for name in run["wall"]))
    summary = {name: {"wall": statistics.median(run["wall"].get(name, 0.0) for run in runs),
                      "cpu": statistics.median(run["cpu"].get(name, 0.0) for run in runs)}
               for name in stages}
    result = {
        "config": config.to_dict(), "runs": runs, "median": summary,
        "total_wall": [run["total_wall"] for run in runs],
        "backend": saffu.get_backend(), "threads": saffu._backend.get_num_threads(),
        "cpus": os.cpu_count(), "platform": platform.platform(), "command": " ".join(sys.argv),
        "saffu": saffu.__version__, "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
    }
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


def print_table(result: dict[str, Any]) -> None:
    totals = result["total_wall"]
    print(f"{result['runs'][0]['tokens']:,} train tokens; backend {result['backend']}, "
          f"{result['threads']} threads; load average {result['load_average_start'][0]:.1f} → "
          f"{result['load_average_end'][0]:.1f}; fit end to end "
          + ", ".join(f"{t:.2f}" for t in totals) + " s")
    total = statistics.median(totals)
    print("\n| stage | wall s (median) | share | CPU s |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in sorted(result["median"].items(), key=lambda item: -item[1]["wall"]):
        print(f"| {name} | {times['wall']:.2f} | {times['wall'] / total:.0%} | {times['cpu']:.2f} |")


if __name__ == "__main__":
    main()

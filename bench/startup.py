"""Start-up time of the command line: ``saffu --help`` and ``saffu info``, each a fresh process.

    python bench/startup.py [--repeat 5] [--json bench/out/startup.json]

Runs ``python -m saffu.cli ...`` (the installed console script does the same) ``--repeat``
times and prints the best and median wall seconds of each; the target (issue 15) is < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"saffu --help": ["--help"], "saffu info": ["info"]}


def wall_seconds(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saffu.cli", *arguments], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("bench/out/startup.json"))
    args = parser.parse_args()
    wall_seconds(["--help"])  # warm the file cache and the bytecode
    result = {"load_average_start": os.getloadavg(), "command": " ".join(sys.argv), "runs": {}}
    print("| command | best s | median s |")
    print("| --- | ---: | ---: |")
    for name, arguments in COMMANDS.items():
        runs = [wall_seconds(arguments) for _ in range(args.repeat)]
        result["runs"][name] = runs
        print(f"| `{name}` | {min(runs):.2f} | {statistics.median(runs):.2f} |")
    result["load_average_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {result['load_average_start'][0]:.1f} → {result['load_average_end'][0]:.1f}; "
          f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Wall and CPU seconds of the build steps that issue 16 added to the test suite and to CI.

Each step runs as a subprocess from the repository root (children's CPU time from
``os.wait4``): the docs tools' install into a fresh virtual environment, ``mkdocs build
--strict``, the fallback wheel (``CXX=/bin/false``), the normal wheel (C++ compiled, LTO), and
the two test files that exercise them. Needs the ``test`` extra and the build backend installed.

    python bench/build_times.py --json bench/out/build_times.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "--no-cache-dir"]
DOCS_TOOLS = ["mkdocs>=1.6", "mkdocstrings>=1.0", "mkdocstrings-python>=2.0"]


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the process and its children) of ``command``; fails if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def steps(tmp: Path) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """The steps by name: (command, environment or None for this one)."""
    venv = tmp / "venv"
    no_compiler = {**os.environ, "CXX": "/bin/false"}
    test_env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return {
        "venv + docs tools install": (["bash", "-c", f"{sys.executable} -m venv {venv} && "
                                       f"{venv}/bin/python -m pip -q --disable-pip-version-check "
                                       "install " + " ".join(f"'{t}'" for t in DOCS_TOOLS)], None),
        "mkdocs build --strict": ([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                                   str(tmp / "site")], None),
        "fallback wheel (CXX=/bin/false)": ([*PIP[:3], "wheel", *PIP[3:], "--no-deps",
                                             "--no-build-isolation", "-w", str(tmp / "w1"), "."],
                                            no_compiler),
        "normal wheel (C++ compiled)": ([*PIP[:3], "wheel", *PIP[3:], "--no-deps",
                                         "--no-build-isolation", "-w", str(tmp / "w2"), "."], None),
        "pytest tests/test_fallback_wheel.py": ([sys.executable, "-m", "pytest", "-q", "-p",
                                                 "no:cacheprovider", "tests/test_fallback_wheel.py"],
                                                test_env),
        "pytest tests/test_docs.py": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       "tests/test_docs.py"], test_env),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "steps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (command, env) in steps(Path(tmp)).items():
            wall, cpu = timed(command, env)
            results["steps"][name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
            print(f"{name:<40} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    results["load_after"] = os.getloadavg()[0]
    print(f"load average {results['load_before']:.2f} before, {results['load_after']:.2f} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

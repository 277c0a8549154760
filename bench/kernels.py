"""Benchmark of the co-occurrence and solve kernels on every available backend, side by side.

The data is shaped like the output-layer fit of a language model: each example has
``positions`` context positions of ``bits``-bit codes (D = positions × bits inputs, about
``active`` of the bits set per position, each position of unit mass) and one of ``targets``
one-hot targets drawn from a Zipf law (like next-token ids). The dense kernel gets the (n, D)
float32 matrix, the sparse kernel the same data in CSR form.

The kernels are called through the backend modules directly (what ``saffu.kernels`` dispatches
to after validation). Numba is warmed up on a tiny input first; that compile/cache-load time is
reported separately.

    python bench/kernels.py --examples 1000000 --repeat 3 --json bench/out/kernels.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import saffu
from saffu._backend import backend_module, get_num_threads


def make_codes(rng: np.random.Generator, n: int, positions: int, bits: int, active: int) -> np.ndarray:
    """(n, positions·bits) float32: per position, ``active`` random bits of mass 1/active each."""
    X = np.zeros((n, positions, bits), dtype=np.float32)
    keys = rng.random((n, positions, bits), dtype=np.float32)
    chosen = np.argpartition(keys, active, axis=2)[:, :, :active]
    np.put_along_axis(X, chosen, np.float32(1.0 / active), axis=2)
    return X.reshape(n, positions * bits)


def make_targets(rng: np.random.Generator, n: int, n_targets: int) -> np.ndarray:
    """(n,) int64 targets from a Zipf law (rank r has probability ∝ 1/(r + 1))."""
    p = 1.0 / np.arange(1, n_targets + 1)
    return rng.choice(n_targets, size=n, p=p / p.sum()).astype(np.int64)


def to_csr(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (indptr int64, indices int64, data float32) of a dense matrix."""
    rows, cols = np.nonzero(X)
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int64), X[rows, cols]


def cpu_model() -> str:
    """The CPU model name (what ``lscpu`` reports), or the machine type where unknown."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def warm_up(module, D: int) -> float:
    """Call every kernel once on a tiny input (compiles or loads the Numba cache); seconds."""
    start = time.perf_counter()
    FT = np.zeros((3, D))
    X = np.ones((2, D), dtype=np.float32)
    targets = np.array([0, 2], dtype=np.int64)
    indptr, indices, data = to_csr(X)
    module.cooc_dense_onehot(FT, X, targets, 2)
    module.cooc_sparse_onehot(FT, indptr, indices, data, targets, 2)
    module.explicit_solve(FT, np.empty_like(FT, dtype=np.float32), 1.0, 1.0, 1.0, 2)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    D, N = args.positions * args.bits, args.targets
    X = make_codes(rng, args.examples, args.positions, args.bits, args.active)
    targets = make_targets(rng, args.examples, N)
    indptr, indices, data = to_csr(X)
    nnz = len(indices)
    threads = args.threads or get_num_threads()
    solve_FT = rng.random((N, D)) * 100.0  # the cost of a solve does not depend on the values
    solve_out = np.empty((N, D), dtype=np.float32)
    kernels = {
        # name: (call(module, FT), items per call, bytes of F read + written per call):
        # accumulation updates float64 entries of FT (8 B read + 8 B written each); the solve
        # reads FT (8 B per entry) and writes float32 weights (4 B per entry).
        "cooc_dense_onehot": (
            lambda m, FT: m.cooc_dense_onehot(FT, X, targets, threads), args.examples, 16 * X.size),
        "cooc_sparse_onehot": (
            lambda m, FT: m.cooc_sparse_onehot(FT, indptr, indices, data, targets, threads),
            args.examples, 16 * nnz),
        "explicit_solve": (
            lambda m, FT: m.explicit_solve(solve_FT, solve_out, 1.0, 1.0, 1.0, threads), N,
            12 * N * D),
    }
    modules = {backend: backend_module(backend) for backend in args.backends}
    results: dict = {"kernels": {}, "warmup_s": {}}
    for backend, module in modules.items():
        results["warmup_s"][backend] = warm_up(module, D)
    for name, (call, items, F_bytes) in kernels.items():
        # Backends take turns within every repeat, so a load change on the machine affects all.
        best = dict.fromkeys(modules, np.inf)
        FT = {backend: np.zeros((N, D)) for backend in modules}
        for _ in range(args.repeat):
            for backend, module in modules.items():
                start = time.perf_counter()
                call(module, FT[backend])
                best[backend] = min(best[backend], time.perf_counter() - start)
        results["kernels"][name] = {
            backend: {"seconds": s, "items_per_s": items / s, "F_bytes_per_s": F_bytes / s}
            for backend, s in best.items()
        }
    results["config"] = {
        **vars(args), "threads": threads, "D": D, "nnz": nnz,
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    return results


def print_table(results: dict) -> None:
    c = results["config"]
    print(f"{c['examples']:,} examples, D = {c['D']}, N = {c['targets']}, nnz/example = "
          f"{c['nnz'] / c['examples']:.1f}, {c['threads']} threads, best of {c['repeat']}; "
          f"{c['cpu']} ({c['cpu_count']} CPUs)")
    print("items: examples (accumulation) or rows of F (solve)\n")
    print(f"{'kernel':<20} {'backend':<7} {'seconds':>9} {'items/s':>12} {'F GB/s':>8}")
    for name, by_backend in results["kernels"].items():
        for backend, r in by_backend.items():
            print(f"{name:<20} {backend:<7} {r['seconds']:9.4f} {r['items_per_s']:12.4g} "
                  f"{r['F_bytes_per_s'] / 1e9:8.2f}")
    print("\nspeed-up (same run):")
    for name, by_backend in results["kernels"].items():
        if "cpp" not in by_backend:
            continue
        for other in ("numpy", "numba"):
            if other in by_backend:
                ratio = by_backend[other]["seconds"] / by_backend["cpp"]["seconds"]
                print(f"  {name:<20} cpp / {other:<6} {ratio:8.1f}x")
    warmups = ", ".join(f"{b} {s:.2f} s" for b, s in results["warmup_s"].items())
    print(f"\nfirst call on a tiny input (Numba compile or cache load): {warmups}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls; the best is reported")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--positions", type=int, default=16)
    parser.add_argument("--bits", type=int, default=14)
    parser.add_argument("--active", type=int, default=3, help="bits set per position")
    parser.add_argument("--targets", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=None, help="default: saffu's default")
    parser.add_argument("--backends", nargs="+", default=saffu.available_backends())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = run(args)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

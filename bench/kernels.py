"""Benchmark of the co-occurrence and solve kernels on every available backend, side by side.

The data is shaped like the output-layer fit of a language model: each example has
``positions`` context positions of ``bits``-bit codes (D = positions × bits inputs, about
``active`` of the bits set per position, each position of unit mass) and one of ``targets``
one-hot targets drawn from a Zipf law (like next-token ids). The dense kernel gets the (n, D)
float32 matrix, the sparse kernel the same data in CSR form.

The kernels are called through the backend modules directly (what ``saffu.kernels`` dispatches
to after validation). Numba is warmed up on a tiny input first; that compile/cache-load time is
reported separately.

``--peers`` also times the C++ dense accumulation against other ways to compute the same
``F[targets[m]] += X[m]`` on the same data, taking turns with it in every repeat (see
:func:`peers`): one read of X (a lower bound), ``torch.index_add_``, a SciPy one-hot sparse
product, sort + ``np.add.reduceat``, and ``np.add.at``; each result is checked against the kernel's.

    python bench/kernels.py --examples 1000000 --repeat 3 --json bench/out/kernels.json
    python bench/kernels.py --backends cpp --peers --threads 2 --repeat 5 --json bench/out/kernel_peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
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


def peers(X: np.ndarray, targets: np.ndarray, n_targets: int,
          threads: int) -> dict[str, Callable[[], np.ndarray | None]]:
    """Other ways to compute the dense one-hot accumulation ``F[targets[m], :] += X[m, :]``:
    calls that return the (n_targets, D) sums (``None``: not the sums, a lower bound).

    - ``one read (X.sum)``: NumPy's column sums of X, one thread: reading X once, the least any
      accumulation must do; ``one read (torch.sum)`` the same with ``threads`` threads.
    - ``torch.index_add_``: float32 sums, ``threads`` threads.
    - ``scipy one-hot @ X``: build the (n_targets, n) CSR one-hot matrix of the targets and
      multiply it by X (float32; SciPy's product is single-threaded).
    - ``sort + np.add.reduceat``: stable argsort of the targets, gather the rows of X in that
      order, sum each run of equal targets (float32; float64 sums like the kernel's,
      ``dtype=np.float64``, are slower still: bench/RESULTS.md).
    - ``np.add.at``: the NumPy reference backend (float64, one thread).
    """
    import scipy.sparse
    import torch

    torch.set_num_threads(threads)
    X_torch, targets_torch = torch.from_numpy(X), torch.from_numpy(targets)
    n, D = X.shape

    def index_add() -> np.ndarray:
        return torch.zeros((n_targets, D)).index_add_(0, targets_torch, X_torch).numpy()

    def one_hot_product() -> np.ndarray:
        one_hot = scipy.sparse.csr_matrix((np.ones(n, dtype=np.float32), (targets, np.arange(n))),
                                          shape=(n_targets, n))
        return one_hot @ X

    def sort_reduceat() -> np.ndarray:
        order = np.argsort(targets, kind="stable")
        ordered = targets[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        F = np.zeros((n_targets, D))
        F[ordered[starts]] = np.add.reduceat(X[order], starts, axis=0)
        return F

    def add_at() -> np.ndarray:
        F = np.zeros((n_targets, D))
        np.add.at(F, targets, X)
        return F

    return {
        "one read (X.sum)": lambda: _discard(X.sum(axis=0)),
        "one read (torch.sum)": lambda: _discard(torch.sum(X_torch, 0)),
        "torch.index_add_": index_add,
        "scipy one-hot @ X": one_hot_product,
        "sort + np.add.reduceat": sort_reduceat,
        "np.add.at": add_at,
    }


def _discard(value: object) -> None:
    """A lower-bound peer's result is not the sums: nothing to check."""


KERNEL = "cooc_dense_onehot (cpp)"


def run_peers(X: np.ndarray, targets: np.ndarray, n_targets: int, threads: int,
              repeat: int) -> dict:
    """Best-of-``repeat`` wall and CPU seconds (this process, all threads) of the C++ dense
    kernel and of each of :func:`peers`, taking turns in every repeat; each peer's ratios to
    the kernel and its largest difference from the kernel's sums (relative to their maximum).
    Every call allocates its (n_targets, D) result."""
    module = backend_module("cpp")

    def kernel() -> np.ndarray:
        F = np.zeros((n_targets, X.shape[1]))
        module.cooc_dense_onehot(F, X, targets, threads)
        return F

    calls = {KERNEL: kernel, **peers(X, targets, n_targets, threads)}
    best = {name: {"seconds": np.inf, "cpu_seconds": np.inf} for name in calls}
    outputs: dict[str, np.ndarray | None] = {}
    for _ in range(repeat):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = call()
            times = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
            best[name] = {clock: min(best[name][clock], times[clock]) for clock in times}
    reference = outputs[KERNEL]
    scale = np.abs(reference).max()
    return {name: {**times, "peer_over_kernel": times["seconds"] / best[KERNEL]["seconds"],
                   "cpu_peer_over_kernel": times["cpu_seconds"] / best[KERNEL]["cpu_seconds"],
                   "max_abs_difference_over_max": None if outputs[name] is None else
                   float(np.abs(np.asarray(outputs[name], dtype=np.float64) - reference).max() / scale)}
            for name, times in best.items()}


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
    if args.peers:
        results["peers"] = run_peers(X, targets, N, threads, args.repeat)
    results["config"] = {
        **vars(args), "threads": threads, "D": D, "nnz": nnz,
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "numpy": np.__version__, "load_average": os.getloadavg(),
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
    if "peers" in results:
        print(f"\ndense accumulation and its peers (same run, taking turns, best of {c['repeat']}):")
        print(f"{'call':<26} {'seconds':>9} {'/ kernel':>9} {'CPU s':>9} {'/ kernel':>9} "
              f"{'max |diff| / max':>17}")
        for name, r in results["peers"].items():
            difference = r["max_abs_difference_over_max"]
            print(f"{name:<26} {r['seconds']:9.4f} {r['peer_over_kernel']:9.2f} "
                  f"{r['cpu_seconds']:9.4f} {r['cpu_peer_over_kernel']:9.2f} "
                  f"{'-' if difference is None else f'{difference:.1e}':>17}")
    print(f"load average (1, 5, 15 min) at the end: {c['load_average']}")


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
    parser.add_argument("--peers", action="store_true",
                        help="also time the C++ dense accumulation against its peers (torch, "
                             "scipy, sort + reduceat, np.add.at, one read of X)")
    args = parser.parse_args()
    results = run(args)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

"""A/B timing of two builds of saffu._core in one process (e.g. before and after a C++ change).

Loads both extension files, calls each kernel directly (no saffu.kernels validation) on the same
inputs, alternating A and B on every repeat, and prints the best CPU seconds of each and their
ratio; one thread unless --threads. Inputs: the synthetic workloads of bench/saffu_pass.py and
bench/kernels.py. Build the baseline from another commit into a directory, e.g.

    git archive <commit> csrc CMakeLists.txt | tar -x -C /tmp/base && \\
      cmake -S /tmp/base -B /tmp/base/build -G Ninja -DCMAKE_BUILD_TYPE=Release \\
        -Dpybind11_DIR=$(python -c "import pybind11; print(pybind11.get_cmake_dir())") && \\
      cmake --build /tmp/base/build
    PYTHONPATH=src:bench python bench/cpp_ab.py /tmp/base/build/_core*.so src/saffu/_core*.so
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from kernels import make_codes, make_targets, to_csr
from saffu_pass import CONTEXT_MODELS, NO_HIDDEN, Workload, cipher_vectors, zipf_corpus


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("_core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pass_calls(core: ModuleType, w: Workload, threads: int) -> dict[str, Callable[[], object]]:
    """The SAFFU-pass kernels of bench/saffu_pass.py, called on `core` directly."""
    calls = {}
    ids, pos, E = w.ids, w.pos, w.E
    V, bits = E.shape
    targets = np.flatnonzero(pos)
    bounds = [*targets[:: w.batch], len(ids)]
    for name, (kind, K, aggregation) in CONTEXT_MODELS.items():
        Z = K * bits if aggregation == 1 else bits
        weights = w.weights(K, Z)

        def forward(UT, kind=kind, K=K, aggregation=aggregation, Z=Z, W=weights["W"]):
            out = np.empty((w.batch, UT.shape[0] or Z), dtype=np.float32)
            for start, stop in itertools.pairwise(bounds):
                core.saffu_forward(ids, pos, kind, K, E, W, aggregation, UT, int(start), int(stop), out,
                                   threads)

        if kind != 2:
            calls[f"{name} expert_stats"] = lambda kind=kind, K=K: core.saffu_expert_stats(
                ids, pos, kind, K, E, np.zeros((K, V, bits)), np.zeros((K, V)), threads)
            calls[f"{name} attention_stats"] = lambda kind=kind, K=K, x=weights: core.saffu_attention_stats(
                ids, pos, kind, K, E, x["expert_UT"], x["expert_b"], x["expert_logz"], np.zeros((K, K)),
                threads)
        calls[f"{name} hidden_stats"] = lambda kind=kind, K=K, a=aggregation, Z=Z, x=weights: (
            core.saffu_hidden_stats(ids, pos, kind, K, E, x["W"], a, w.codes, np.zeros((w.D, Z)), threads))
        calls[f"{name} forward z"] = lambda f=forward: f(NO_HIDDEN)
        calls[f"{name} forward h"] = lambda f=forward, x=weights: f(x["UT"])
    return calls


def cooc_calls(core: ModuleType, args: argparse.Namespace, threads: int) -> dict[str, Callable[[], object]]:
    """The kernels of bench/kernels.py (and logsumexp_rows on a 1024 x 4096 block)."""
    rng = np.random.default_rng(args.seed)
    X = make_codes(rng, args.examples, 16, 14, 3).reshape(args.examples, -1)
    targets = make_targets(rng, args.examples, 8192)
    indptr, indices, weights = to_csr(X)
    D = X.shape[1]
    FT = rng.random((8192, D)) * 10
    out = np.empty_like(FT, dtype=np.float32)
    logits = rng.standard_normal((1024, 4096)).astype(np.float32)
    bias = rng.standard_normal(4096).astype(np.float32)
    lse = np.empty(1024)
    return {
        "cooc_dense_onehot": lambda: core.cooc_dense_onehot(np.zeros((8192, D)), X, targets, threads),
        "cooc_sparse_onehot": lambda: core.cooc_sparse_onehot(np.zeros((8192, D)), indptr, indices,
                                                              weights, targets, threads),
        "explicit_solve": lambda: core.explicit_solve(FT, out, 0.5, 1.0, 1.0, threads),
        "logsumexp_rows": lambda: core.logsumexp_rows(logits, bias, lse, threads),
    }


def cpu_seconds(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="baseline _core*.so")
    parser.add_argument("b", help="candidate _core*.so")
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--examples", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=7, help="alternating A/B calls; the best is kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    ids, pos = zipf_corpus(rng, args.tokens, 4101, 500)
    workload = Workload(ids, pos, cipher_vectors(4101, 13), 256, 65_536, args.seed)
    cores = {"a": load(args.a), "b": load(args.b)}
    calls = {side: {**pass_calls(core, workload, args.threads), **cooc_calls(core, args, args.threads)}
             for side, core in cores.items()}
    results = {}
    print(f"{'kernel':30s} {'A ms':>8s} {'B ms':>8s} {'B/A':>7s}")
    for name in calls["a"]:
        best = {"a": np.inf, "b": np.inf}
        for _ in range(args.repeat):
            for side in ("a", "b"):
                best[side] = min(best[side], cpu_seconds(calls[side][name]))
        results[name] = {"a_cpu_s": best["a"], "b_cpu_s": best["b"], "ratio": best["b"] / best["a"]}
        print(f"{name:30s} {best['a'] * 1e3:8.2f} {best['b'] * 1e3:8.2f} {best['b'] / best['a']:7.3f}")
    ratios = [r["ratio"] for r in results.values()]
    print(f"geometric mean B/A: {np.exp(np.mean(np.log(ratios))):.3f}; load {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "config": vars(args) | {"json": str(args.json)}},
                                        indent=2))


if __name__ == "__main__":
    main()

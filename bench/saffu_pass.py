"""Benchmark of the fused SAFFU-pass kernels, C++ and Numba side by side in the same run.

Synthetic corpus: ``--tokens`` Zipfian token ids (rank r has probability ∝ 1/(r + 1); id = rank,
so frequent tokens get the sparsest codes) cut into documents of random lengths, each starting
with ``<sod>``; bit-cipher vectors as in METHOD.md §2 (codes enumerated by number of set bits,
unit sum). Every kernel is called through ``saffu.kernels`` (validation included) after a
warm-up call on a tiny input (Numba compile or cache load, reported separately).
``saffu_forward`` runs like the output-layer pass, in buffers of ``--batch`` targets, both
writing z (what the model uses; it applies U through BLAS) and writing h = softmax(U z).

    python bench/saffu_pass.py --tokens 1000000 --json bench/out/saffu_pass.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import saffu
from saffu import kernels
from saffu._backend import get_num_threads

# name: (kind, K, aggregation); kind 0 radial, 1 block, 2 document; aggregation 0 sum, 1 cat.
CONTEXT_MODELS = {
    "radial16-sum": (0, 16, 0),
    "radial16-cat": (0, 16, 1),
    "block16-sum": (1, 16, 0),
    "document": (2, 1, 0),
}
NO_HIDDEN = np.zeros((0, 0), dtype=np.float32)


def cipher_vectors(vocab_size: int, bits: int) -> np.ndarray:
    """(V, bits) float32: token r gets the r-th code in order of popcount, scaled to unit sum."""
    codes = itertools.chain.from_iterable(
        itertools.combinations(range(bits), ones) for ones in range(1, bits + 1)
    )
    E = np.zeros((vocab_size, bits), dtype=np.float32)
    for row, code in zip(E, itertools.islice(codes, vocab_size), strict=True):
        row[list(code)] = 1.0 / len(code)
    return E


def zipf_corpus(
    rng: np.random.Generator, n_tokens: int, vocab_size: int, mean_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """ids, pos (n,) int32 of documents with geometric lengths; ``<sod>`` is id 2."""
    p = 1.0 / np.arange(1, vocab_size + 1)
    ids = rng.choice(vocab_size, size=n_tokens, p=p / p.sum()).astype(np.int32)
    starts = np.union1d([0], np.flatnonzero(rng.random(n_tokens) < 1.0 / mean_length))
    ids[starts] = 2
    pos = np.arange(n_tokens) - np.repeat(starts, np.diff(np.append(starts, n_tokens)))
    return ids, pos.astype(np.int32)


def best_times(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds (all threads) of ``repeat`` calls. CPU time is the
    steadier figure when other jobs share the machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


class Workload:
    """Inputs of every kernel for one corpus, with random (shape-correct) weights."""

    def __init__(self, ids, pos, E, hidden_dim: int, batch: int, seed: int):
        rng = np.random.default_rng(seed)
        self.ids, self.pos, self.E = ids, pos, E
        V, self.bits = E.shape
        self.codes = cipher_vectors(V, hidden_dim)  # label codes, D = hidden_dim
        self.batch = batch
        self.rng = rng
        self.D = hidden_dim

    def weights(self, K: int, Z: int) -> dict[str, np.ndarray]:
        V = self.E.shape[0]
        f32 = np.float32
        return {
            "W": self.rng.normal(size=(K, K)).astype(f32),
            "UT": self.rng.normal(size=(self.D, Z)).astype(f32),
            "expert_UT": self.rng.normal(size=(K, V, self.bits)).astype(f32),
            "expert_b": self.rng.normal(size=(K, V)).astype(f32),
            "expert_logz": self.rng.normal(size=(K, V)).astype(f32),
        }

    def calls(self, kind: int, K: int, aggregation: int) -> dict[str, Callable[[], object]]:
        """Kernel name -> a call that runs it over the whole corpus."""
        ids, pos, E = self.ids, self.pos, self.E
        V, bits = E.shape
        Z = K * bits if aggregation == 1 else bits
        w = self.weights(K, Z)
        calls = {}
        if kind != 2:
            calls["expert_stats"] = lambda: kernels.saffu_expert_stats(
                ids, pos, kind, K, E, np.zeros((K, V, bits)), np.zeros((K, V))
            )
            experts = (w["expert_UT"], w["expert_b"], w["expert_logz"])
            calls["attention_stats"] = lambda: kernels.saffu_attention_stats(
                ids, pos, kind, K, E, *experts, np.zeros((K, K))
            )
        calls["hidden_stats"] = lambda: kernels.saffu_hidden_stats(
            ids, pos, kind, K, E, w["W"], aggregation, self.codes, np.zeros((self.D, Z))
        )
        calls["forward z"] = lambda: self.forward(kind, K, aggregation, w["W"], NO_HIDDEN)
        calls["forward h"] = lambda: self.forward(kind, K, aggregation, w["W"], w["UT"])
        return calls

    def forward(self, kind: int, K: int, aggregation: int, W: np.ndarray, UT: np.ndarray) -> int:
        """saffu_forward over the corpus in buffers of ``batch`` targets (the output pass);
        UT of shape (0, 0) writes z (the model then applies U with BLAS)."""
        width = UT.shape[0] or (K * self.bits if aggregation == 1 else self.bits)
        out = np.empty((self.batch, width), dtype=np.float32)
        target_index = np.flatnonzero(self.pos)
        bounds = [*target_index[:: self.batch], len(self.ids)]
        rows = 0
        for start, stop in itertools.pairwise(bounds):
            rows += kernels.saffu_forward(
                self.ids, self.pos, kind, K, self.E, W, aggregation, UT, int(start), int(stop), out
            )
        return rows


def warm_up(workload: Workload) -> float:
    """Run every kernel once on the first 2,000 tokens; seconds (Numba compile/cache load)."""
    tiny = Workload(workload.ids[:2000], workload.pos[:2000], workload.E, workload.D, workload.batch, 0)
    start = time.perf_counter()
    for kind, K, aggregation in CONTEXT_MODELS.values():
        for call in tiny.calls(kind, K, aggregation).values():
            call()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    E = cipher_vectors(args.vocab, args.bits)
    ids, pos = zipf_corpus(rng, args.tokens, args.vocab, args.mean_length)
    workload = Workload(ids, pos, E, args.hidden, args.batch, args.seed)
    if args.threads:
        saffu.set_num_threads(args.threads)
    results: dict = {"kernels": {}, "warmup_s": {}}
    for backend in args.backends:
        saffu.set_backend(backend)
        results["warmup_s"][backend] = warm_up(workload)
        for model, (kind, K, aggregation) in CONTEXT_MODELS.items():
            for name, call in workload.calls(kind, K, aggregation).items():
                seconds, cpu_seconds = best_times(call, args.repeat)
                results["kernels"].setdefault(f"{model} {name}", {})[backend] = {
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "tokens_per_s": args.tokens / seconds,
                }
    results["config"] = {
        **vars(args),
        "threads": get_num_threads(),
        "targets": int(np.count_nonzero(pos)),
        "documents": int(np.count_nonzero(pos == 0)),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return results


def print_table(results: dict) -> None:
    backends = list(results["warmup_s"])
    header = "".join(f" {b + ' s':>9} {b + ' cpu s':>10} {b + ' tok/s':>12}" for b in backends)
    both = {"cpp", "numba"} <= set(backends)
    print(f"{'kernel':<30}{header}{' numba/cpp' if both else ''}")
    for name, by_backend in results["kernels"].items():
        cells = "".join(
            f" {r['seconds']:9.3f} {r['cpu_seconds']:10.3f} {r['tokens_per_s']:12.3g}"
            for r in (by_backend[b] for b in backends)
        )
        if both:
            cells += f" {by_backend['numba']['seconds'] / by_backend['cpp']['seconds']:9.2f}x"
        print(f"{name:<30}{cells}")
    warmups = ", ".join(f"{b} {s:.2f} s" for b, s in results["warmup_s"].items())
    print(f"\nwarm-up on 2,000 tokens (Numba compile or cache load): {warmups}")
    print(f"load average after the run: {results['config']['load_average']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=4101)
    parser.add_argument("--bits", type=int, default=13)
    parser.add_argument("--hidden", type=int, default=256, help="label-code dimension D")
    parser.add_argument("--mean-length", type=int, default=500, help="mean document length")
    parser.add_argument("--batch", type=int, default=65_536, help="targets per forward buffer")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="default: saffu's default")
    parser.add_argument("--backends", nargs="+", default=["cpp", "numba"])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = run(args)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

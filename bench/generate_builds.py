"""Side-by-side batch generation speed of several builds of the C++ core (how the levers of
bench/RESULTS.md, "Generation (issue 15)", were compared): one process per build and round, the
builds alternating, each timing the kernel on the batch of bench/generate.py (64 dev prompts, up
to 200 tokens each, stream i drawing with default_rng(i)).

    python bench/generate_builds.py --model M OLD.so NEW.so [--rounds 3] [--repeats 3]

Each build is a ``_core*.so`` of this source tree's kernel signature (``cache_bytes`` included),
loaded in place of ``saffu._core``; it prints, per build and setting, the best batch tokens per
CPU second of its rounds and a hash of the tokens (equal hashes: equal tokens).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = {"temperature 1": (1.0, 0, 0.0), "temperature 0.8, top-k 40": (0.8, 40, 0.0),
            "top-p 0.9": (1.0, 0, 0.9), "greedy": (0.0, 0, 0.0)}


def time_build(build: Path, model_dir: Path, repeats: int) -> None:
    """In this process: load ``build`` as saffu._core, print one line per setting."""
    spec = importlib.util.spec_from_file_location("saffu._core", build)
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    sys.modules["saffu._core"] = core
    sys.path.insert(0, str(Path(__file__).parent))
    from generate import SHAKESPEARE, dev_prompts
    from saffu.generation import _kernel_weights
    from saffu.model import SaffuModel
    from saffu.tokenize import EOD, SOD

    model = SaffuModel.load(model_dir)
    prompts = dev_prompts(SHAKESPEARE, 64)
    contexts = [[SOD, *model.tokenizer.encode(p).tolist()] for p in prompts]
    ids = np.array([t for c in contexts for t in c], dtype=np.int32)
    pos = np.concatenate([np.arange(len(c), dtype=np.int32) for c in contexts])
    uniforms = np.stack([np.random.default_rng(i).random(200) for i in range(len(prompts))])
    weights = _kernel_weights(model)
    for name, (temperature, top_k, top_p) in SETTINGS.items():
        best, digest = 0.0, ""
        for _ in range(repeats):
            out = np.empty(uniforms.shape, dtype=np.int32)
            lengths = np.empty(len(prompts), dtype=np.int32)
            cpu = time.process_time()
            core.saffu_generate(ids, pos, **weights, uniforms=uniforms, temperature=temperature,
                                top_k=top_k, top_p=top_p, stop_token=EOD, out=out,
                                lengths=lengths, cache_bytes=256 << 20, n_threads=1)
            best = max(best, lengths.sum() / (time.process_time() - cpu))
            digest = hashlib.sha1(out.tobytes()).hexdigest()[:8]
        print(f"{build.name:<24}{name:<28}{best:>10,.0f} tok/s  tokens {digest}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", type=Path, nargs="+", help="_core*.so files")
    parser.add_argument("--model", type=Path, required=True, help="a saved default model")
    parser.add_argument("--rounds", type=int, default=3, help="processes per build, alternating")
    parser.add_argument("--repeats", type=int, default=3, help="kernel calls per process")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return time_build(args.child, args.model, args.repeats)
    for _ in range(args.rounds):
        for build in args.builds:
            subprocess.run([sys.executable, __file__, "--child", str(build), "--model",
                            str(args.model), "--repeats", str(args.repeats), str(build)],
                           check=True, env=os.environ)
    print(f"(CPU time, 1 kernel thread; load average {os.getloadavg()[0]:.2f} after)")


if __name__ == "__main__":
    main()

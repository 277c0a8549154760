"""Scoring variants that differ in ``output_tau`` only together (``SaffuModel.score_scaled``, as
``saffu sweep`` does) against fitting and scoring each alone: CPU seconds of scoring the dev
split and the relative difference of the perplexities, on the Shakespeare split (BPE 4,096 ids,
the roadmap's reference config), one kernel and one BLAS thread as in a sweep worker.

    python bench/score_scaled.py [--root ../shared/data/shakespeare] [--json bench/out/score_scaled.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from saffu import set_num_threads
from saffu.corpus import read_documents, shakespeare_split
from saffu.model import SaffuModel
from saffu.sweep import canonical, load_grid, prepare_data

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "shakespeare"
CASES = {  # changes to the roadmap's reference, and the output temperatures scored together
    "radial 4 + document": ({"radial": 4, "document": True}, [0.5, 1.0, 3.0, 6.0]),
    "radial 1, skip 2": ({"skip": 2}, [1.0, 2.0, 6.0, 12.0]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    set_num_threads(1)
    threadpool_limits(1)
    parts = shakespeare_split(args.root)
    documents = {name: list(read_documents(getattr(parts, name))) for name in ("train", "dev", "test")}
    reference = load_grid(None).reference
    with tempfile.TemporaryDirectory() as folder:
        data = prepare_data(Path(folder), documents, reference, verbose=0)
    train, dev = data.splits["train"], data.splits["dev"]
    load = os.getloadavg()[0]
    rows = []
    print(f"{'variants':<22}{'output_tau':>11}{'ppl alone':>12}{'ppl together':>14}{'rel diff':>10}")
    for name, (changes, taus) in CASES.items():
        config = canonical(reference.replace(**changes, output_tau=taus[0]))
        first = SaffuModel(config, tokenizer=data.tokenizer).fit(train, verbose=0)
        started = time.process_time()
        together = first.score_scaled(dev, [tau / taus[0] for tau in taus])
        together_cpu = time.process_time() - started
        alone_cpu = 0.0
        for tau, scores in zip(taus, together, strict=True):
            model = SaffuModel(config.replace(output_tau=tau), tokenizer=data.tokenizer).fit(train, verbose=0)
            started = time.process_time()
            alone = model.score(dev)
            alone_cpu += time.process_time() - started
            difference = abs(scores["perplexity"] / alone["perplexity"] - 1)
            rows.append({"case": name, "output_tau": tau, "alone": alone["perplexity"],
                         "together": scores["perplexity"], "rel_difference": difference})
            print(f"{name:<22}{tau:>11}{alone['perplexity']:>12.6g}{scores['perplexity']:>14.6g}"
                  f"{difference:>10.1e}")
        rows.append({"case": name, "variants": len(taus), "together_cpu_s": together_cpu,
                     "alone_cpu_s": alone_cpu})
        print(f"{name}: {len(taus)} variants scored on dev together {together_cpu:.2f} CPU s, "
              f"alone {alone_cpu:.2f} CPU s")
    print(f"(load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "load_average": load}, indent=1) + "\n")


if __name__ == "__main__":
    main()

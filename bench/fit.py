"""The explicit fit on the Shakespeare split: time, peak memory, dev/test perplexity and bits/char,
side by side with an interpolated Kneser-Ney trigram on the same tokenization.

    python bench/fit.py [--root ../shared/data/shakespeare] [--config '{"radial": 4}']
                        [--json bench/out/fit.json]

Run it as its own process: the peak memory reported is this process's maximum resident set
(ru_maxrss), which includes the Python interpreter and the libraries (~150 MB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import saffu
from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.model import SaffuConfig, SaffuModel
from saffu.ngram import kneser_ney_perplexity
from saffu.tokenize import make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def documents_of(corpus: TokenizedCorpus) -> list:
    """Split the chunks of a corpus back into one int array per document (for the n-gram model)."""
    docs = []
    for ids, pos in corpus.chunks():
        starts = [int(i) for i in (pos == 0).nonzero()[0]] + [len(ids)]
        docs += [ids[a:b].astype("int64") for a, b in itertools.pairwise(starts)]
    return docs


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--config", default="{}", help="SaffuConfig overrides as JSON")
    parser.add_argument("--json", type=Path, default=Path("bench/out/fit.json"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the Kneser-Ney trigram")
    parser.add_argument("--dev-only", action="store_true",
                        help="score dev only (for choosing among candidates: test is scored once, "
                             "for what dev chose)")
    args = parser.parse_args()

    split = shakespeare_split(args.root)
    config = SaffuConfig.from_dict(json.loads(args.config))
    # The end-to-end fit, as a user runs it: tokenizer training, encoding, cipher, four passes.
    model, total_seconds = timed(SaffuModel(config).fit, read_documents(split.train), verbose=0)
    total_peak = peak_megabytes()
    # The same again with the tokenizer and the encoded corpus given: the explicit passes alone.
    tokenizer = model.tokenizer
    train, encode_seconds = timed(TokenizedCorpus.from_documents, tokenizer, read_documents(split.train))
    refit, passes_seconds = timed(SaffuModel(config, tokenizer=tokenizer).fit, train, verbose=0)
    _, tokenizer_seconds = timed(make_tokenizer(config.tokenizer, vocab_size=config.vocab_size).fit,
                                 read_documents(split.train))
    splits = {"dev": TokenizedCorpus.from_documents(tokenizer, read_documents(split.dev))}
    if not args.dev_only:
        splits["test"] = TokenizedCorpus.from_documents(tokenizer, read_documents(split.test))
    scores = {}
    for name, corpus in splits.items():
        scores[name], seconds = timed(refit.score, corpus)
        scores[name]["seconds"] = seconds
    result = {
        "config": config.to_dict(), "parameters": model.n_parameters,
        "train_tokens": train.n_tokens, "vocab_size": tokenizer.vocab_size,
        "fit_seconds_total": total_seconds, "peak_rss_mb_fit": total_peak,
        "tokenizer_train_seconds": tokenizer_seconds, "encode_seconds": encode_seconds,
        "explicit_passes_seconds": passes_seconds, "saffu": scores,
        "backend": saffu.get_backend(), "threads": saffu._backend.get_num_threads(),
        "cpus": os.cpu_count(), "platform": platform.platform(), "command": " ".join(sys.argv),
        "load_average": os.getloadavg(),
    }
    if not args.no_baseline:
        train_docs = documents_of(train)
        result["kneser_ney_trigram"] = {}
        for name, corpus in splits.items():
            kn = kneser_ney_perplexity(train_docs, documents_of(corpus), tokenizer.vocab_size, order=3)
            kn["bits_per_char"] = kn["nll"] * kn["tokens"] / (math.log(2) * corpus.n_characters)
            result["kneser_ney_trigram"][name] = kn
    result["peak_rss_mb_process"] = peak_megabytes()
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


def print_table(result: dict) -> None:
    print(f"config: {json.dumps(result['config'])}")
    print(f"{result['parameters']:,} parameters; {result['train_tokens']:,} train tokens; "
          f"V = {result['vocab_size']}; backend {result['backend']}, {result['threads']} threads; "
          f"load average {result['load_average'][0]:.1f}")
    print(f"fit end to end {result['fit_seconds_total']:.1f} s "
          f"(peak RSS {result['peak_rss_mb_fit']:.0f} MB): "
          f"tokenizer training {result['tokenizer_train_seconds']:.1f} s, encoding "
          f"{result['encode_seconds']:.1f} s, explicit passes {result['explicit_passes_seconds']:.1f} s")
    print("\n| model | dev ppl | dev bits/char | test ppl | test bits/char |")
    print("| --- | --- | --- | --- | --- |")
    rows = [("SAFFU explicit", result["saffu"])]
    if "kneser_ney_trigram" in result:
        rows.append(("Kneser-Ney trigram", result["kneser_ney_trigram"]))
    for name, s in rows:
        test = s.get("test")
        test_cells = f"{test['perplexity']:.1f} | {test['bits_per_char']:.3f}" if test else "- | -"
        print(f"| {name} | {s['dev']['perplexity']:.1f} | {s['dev']['bits_per_char']:.3f} | "
              f"{test_cells} |")


if __name__ == "__main__":
    main()

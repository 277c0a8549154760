"""Tokenizer throughput on the Shakespeare train split: fit, batch encoding, and encode_corpus.

The row "bpe via HF" is the same BPE tokenizer trained and encoded by Hugging Face's own
pipeline (its byte-level pre-tokenizer on the documents, ``encode_batch_fast``), as saffu did
before its compiled pre-tokenizer, side by side in the same run; the script checks that both
give the same tokenizer file and the same ids.

Usage (from the repository root):
    python bench/tokenizer_speed.py [--root ../shared/data/shakespeare] [--repeat 3]
                             [--json bench/tokenizer_speed.json]

Documents are read into memory first, so the timings exclude disk reads. Each figure is the
best of ``--repeat`` runs. Throughput is in tokens per second, counting the tokens that the
tokenizer produces for the whole train split (``<sod>``/``<eod>`` excluded).
"""

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.tokenize import BPETokenizer, make_tokenizer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (("bpe", {"vocab_size": 4096}), ("char", {}), ("word", {"vocab_size": 8000}))


def best_time(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls of ``run``, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(kind: str, options: dict[str, Any], documents: list[str],
            repeat: int) -> dict[str, Any]:
    fit_s, tokenizer = best_time(lambda: make_tokenizer(kind, **options).fit(documents), repeat)
    encode_s, encoded = best_time(lambda: tokenizer.encode_batch(documents), repeat)
    corpus_s, _ = best_time(lambda: TokenizedCorpus.from_documents(tokenizer, documents), repeat)
    tokens = sum(len(ids) for ids in encoded)
    characters = sum(len(document) for document in documents)
    return {"tokenizer": kind, "options": options, "vocab_size": tokenizer.vocab_size,
            "tokens": tokens, "characters": characters,
            "characters_per_token": characters / tokens,
            "fit_seconds": fit_s, "fit_tokens_per_second": tokens / fit_s,
            "encode_batch_seconds": encode_s, "encode_batch_tokens_per_second": tokens / encode_s,
            "encode_corpus_seconds": corpus_s, "encode_corpus_tokens_per_second": tokens / corpus_s}


def hugging_face_bpe(documents: list[str], vocab_size: int) -> HFTokenizer:
    """The BPE tokenizer as Hugging Face trains it from the documents themselves."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(documents, trainer=BPETokenizer(vocab_size=vocab_size)._trainer())
    return hf


def measure_hugging_face(documents: list[str], repeat: int, saffu_row: dict[str, Any]) -> dict[str, Any]:
    """The "bpe via HF" row; raises if its tokenizer or ids differ from saffu's."""
    vocab_size = saffu_row["options"]["vocab_size"]
    fit_s, hf = best_time(lambda: hugging_face_bpe(documents, vocab_size), repeat)

    def encode() -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int32)
                for e in hf.encode_batch_fast(documents, add_special_tokens=False)]

    encode_s, encoded = best_time(encode, repeat)
    ours = BPETokenizer(vocab_size=vocab_size).fit(documents)
    if json.loads(ours._hf.to_str()) != json.loads(hf.to_str()):
        raise SystemExit("saffu's BPE tokenizer differs from Hugging Face's")
    if any(not np.array_equal(a, b) for a, b in zip(ours.encode_batch(documents), encoded, strict=True)):
        raise SystemExit("saffu's BPE ids differ from Hugging Face's")
    tokens = saffu_row["tokens"]
    return {**saffu_row, "tokenizer": "bpe via HF", "fit_seconds": fit_s,
            "fit_tokens_per_second": tokens / fit_s, "encode_batch_seconds": encode_s,
            "encode_batch_tokens_per_second": tokens / encode_s,
            "encode_corpus_seconds": None, "encode_corpus_tokens_per_second": None,
            "same_tokenizer_and_ids": True}


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'tokenizer':<12}{'vocab':>7}{'tokens':>11}{'chars/tok':>10}{'fit s':>8}"
              f"{'fit tok/s':>12}{'encode tok/s':>14}{'corpus tok/s':>14}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['tokenizer']:<12}{row['vocab_size']:>7}{row['tokens']:>11,}"
              f"{row['characters_per_token']:>10.2f}{row['fit_seconds']:>8.2f}"
              f"{row['fit_tokens_per_second']:>12,.0f}"
              f"{row['encode_batch_tokens_per_second']:>14,.0f}"
              f"{row['encode_corpus_tokens_per_second'] or float('nan'):>14,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared/data/shakespeare",
                        help="folder of the Shakespeare *_gut.txt files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/tokenizer_speed.json",
                        help="where to write the results")
    args = parser.parse_args()

    train = shakespeare_split(args.root).train
    documents = list(read_documents(train))
    print(f"Shakespeare train split: {len(documents)} works, "
          f"{sum(map(len, documents)):,} characters; best of {args.repeat} runs\n")
    rows = [measure(kind, options, documents, args.repeat) for kind, options in CONFIGS]
    rows.insert(1, measure_hugging_face(documents, args.repeat, rows[0]))
    print_table(rows)
    report = {"command": " ".join(sys.argv), "rows": rows, "repeat": args.repeat,
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "tokenizers": tokenizers.__version__, "platform": platform.platform()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

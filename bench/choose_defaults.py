"""Dev perplexity of SAFFU config variants on a Shakespeare subset (how the defaults were chosen).

    python bench/choose_defaults.py --plays 8 --variants '[{"radial": 1}, {"radial": 4}]'
                                    [--base '{"bits": 256}']

Train: the first ``--plays`` works of the fixed train split; dev: macbeth. A BPE-4096 tokenizer is
trained once (on the whole train split) and shared by every variant. Each variant is ``--base``
updated with one JSON object of ``--variants``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.model import PREVIOUS_DEFAULTS, SaffuConfig, SaffuModel
from saffu.tokenize import make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHAKESPEARE)
    parser.add_argument("--plays", type=int, default=8)
    parser.add_argument("--base", default=json.dumps(PREVIOUS_DEFAULTS),
                        help="SaffuConfig fields shared by all variants (default: the defaults "
                             "before the roadmap, which the recorded runs used)")
    parser.add_argument("--variants", default="[{}]", help="JSON list of field overrides")
    args = parser.parse_args()
    split = shakespeare_split(args.root)
    tokenizer = make_tokenizer("bpe", vocab_size=4096).fit(read_documents(split.train))
    train = TokenizedCorpus.from_documents(tokenizer, read_documents(split.train[: args.plays]))
    dev = TokenizedCorpus.from_documents(tokenizer, read_documents(split.dev[:1]))
    print(f"train tokens {train.n_tokens:,}, dev tokens {dev.n_tokens:,}")
    base = json.loads(args.base)
    for change in json.loads(args.variants):
        config = SaffuConfig(**{**base, **change})
        started = time.perf_counter()
        scores = SaffuModel(config, tokenizer=tokenizer).fit(train, verbose=0).score(dev)
        print(f"{json.dumps(change)}: dev ppl {scores['perplexity']:.1f}, "
              f"{scores['bits_per_char']:.3f} bits/char, {time.perf_counter() - started:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()

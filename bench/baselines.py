"""Kneser-Ney n-gram baselines (``saffu.ngram``) on the Shakespeare split, and NLTK's reference.

saffu's language-model benchmarks are compared with Kneser-Ney n-gram models on the same
token-id sequences. The models live in the package (``saffu.ngram``): ``NgramModel.fit`` is
interpolated modified Kneser-Ney (three discounts per order, equal to KenLM's ``lmplz``),
``KneserNey`` the single-discount estimate of the earlier benchmarks (NLTK's, tested equal to
``nltk.lm.KneserNeyInterpolated``; NLTK itself is far too slow at benchmark scale, see
bench/RESULTS.md, "Kneser-Ney baselines"). This script keeps the NLTK reference used by the
tests, and the commands that produced the tables:

    python bench/baselines.py --demo               # dev/test perplexity and bits/char per order
    python bench/baselines.py --mix                # SaffuModel() mixed with the modified-KN trigram
    python bench/baselines.py --time-nltk          # time NLTK's implementation on a slice
    python bench/baselines.py --files /tmp/kn      # time ARPA and safetensors round trips
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import saffu
from saffu.corpus import TokenizedCorpus, read_documents, shakespeare_split
from saffu.ngram import (
    KneserNey,
    NgramModel,
    choose_interpolation_weight,
    interpolate_log_proba,
    scores_from_log_proba,
)
from saffu.tokenize import EOD, N_SPECIAL, TOKENIZER_KINDS, Tokenizer, make_tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
PARTS = ("train", "dev", "test")

Documents = Sequence[np.ndarray]


# --- NLTK, the reference definition -------------------------------------------------------------


def fit_nltk_reference(train_docs: Documents, vocab_size: int, order: int = 3, discount: float = 0.75, *,
                       continuation: bool = True) -> Any:
    """NLTK's ``KneserNeyInterpolated`` (or, with ``continuation=False``,
    ``AbsoluteDiscountingInterpolated``) fitted on the same n-grams as :class:`KneserNey`.

    Token ids become decimal strings; the vocabulary is every id below ``vocab_size``.
    """
    from nltk.lm import AbsoluteDiscountingInterpolated, KneserNeyInterpolated, Vocabulary

    contexts, tokens = KneserNey(vocab_size, order).windows(list(train_docs), "train_docs")
    grams = np.column_stack([contexts, tokens]).astype(str).tolist()
    model_class = KneserNeyInterpolated if continuation else AbsoluteDiscountingInterpolated
    model = model_class(order, discount=discount, vocabulary=Vocabulary(map(str, range(vocab_size))))
    model.fit([[tuple(gram[order - 1 - k:]) for gram in grams for k in range(order)]])
    return model


def nltk_probabilities(model: Any, eval_docs: Documents, vocab_size: int) -> np.ndarray:
    """(m,) ``model.score`` of every predicted token of ``eval_docs`` (as in :class:`KneserNey`)."""
    contexts, tokens = KneserNey(vocab_size, model.order).windows(list(eval_docs), "eval_docs")
    return np.array([model.score(token, tuple(context))
                     for context, token in zip(contexts.astype(str).tolist(),
                                               tokens.astype(str).tolist(), strict=True)])


# --- data ---------------------------------------------------------------------------------------


def shakespeare_corpora(root: Path, tokenizer: str,
                        vocab_size: int) -> tuple[dict[str, TokenizedCorpus], Tokenizer]:
    """The fixed Shakespeare split encoded by a saffu tokenizer fitted on its train part.

    Returns ``({"train"|"dev"|"test": corpus}, tokenizer)``; each work is one document
    ``[<sod>] + ids + [<eod>]``.
    """
    split = shakespeare_split(root)
    fitted = make_tokenizer(tokenizer, vocab_size=vocab_size).fit(read_documents(split.train))
    return {part: TokenizedCorpus.from_documents(fitted, read_documents(getattr(split, part)))
            for part in PARTS}, fitted


def documents_of(corpus: TokenizedCorpus) -> list[np.ndarray]:
    """One int64 array ``[<sod>] + ids + [<eod>]`` per document of a corpus."""
    docs = []
    for ids, pos in corpus.chunks():
        starts = [*np.flatnonzero(pos == 0).tolist(), len(ids)]
        docs += [ids[a:b].astype(np.int64) for a, b in itertools.pairwise(starts)]
    return docs


def shakespeare_documents(root: Path, tokenizer: str,
                          vocab_size: int) -> tuple[dict[str, list[np.ndarray]], int]:
    """:func:`shakespeare_corpora` as lists of documents, with the number of token ids."""
    corpora, fitted = shakespeare_corpora(root, tokenizer, vocab_size)
    return {part: documents_of(corpus) for part, corpus in corpora.items()}, fitted.vocab_size


# --- the tables ---------------------------------------------------------------------------------


def _scores(log_p: np.ndarray, corpus: TokenizedCorpus) -> dict[str, Any]:
    return scores_from_log_proba(log_p, n_characters=corpus.n_characters, n_documents=corpus.n_documents)


Scorer = Callable[[TokenizedCorpus], np.ndarray]  # natural log-probability of each predicted token


def _estimators(vocab_size: int, discount: float) -> dict[str, Callable[[TokenizedCorpus, int], Scorer]]:
    """Each smoothing: fit on train at an order, return the scorer of held-out corpora."""
    return {
        "Kneser-Ney, one discount":
            lambda train, order: KneserNey(vocab_size, order, discount).fit(train).log_probabilities,
        "absolute discounting":
            lambda train, order: KneserNey(vocab_size, order, discount, continuation=False)
            .fit(train).log_probabilities,
        "modified Kneser-Ney":
            lambda train, order: NgramModel.fit(train, vocab_size, order).token_log_proba,
        "modified KN, KenLM vocab": _kenlm_vocabulary,
    }


def _kenlm_vocabulary(train: TokenizedCorpus, order: int) -> Scorer:
    """Modified KN on the ids written as words (``fit_words``), i.e. what lmplz computes on them:
    the uniform base covers the ids seen in train plus one ``<unk>`` for all others."""
    def words(corpus: TokenizedCorpus) -> list[str]:
        return [" ".join(map(str, doc[1:-1].tolist())) for doc in documents_of(corpus)]

    model = NgramModel.fit_words(words(train), order)
    return lambda corpus: model.token_log_proba(model.encode_words(words(corpus)))


def demo(corpora: dict[str, TokenizedCorpus], vocab_size: int, orders: list[int],
         discount: float) -> list[dict[str, Any]]:
    """Dev and test scores of single-discount KN, absolute discounting and modified KN per order."""
    rows = []
    print(f"{'order':>5} {'smoothing':<25} {'dev ppl':>8} {'dev bpc':>7} {'test ppl':>8} "
          f"{'test bpc':>8} {'fit+score CPU s':>16}")
    for order in orders:
        for name, fit in _estimators(vocab_size, discount).items():
            start = time.process_time()
            scorer = fit(corpora["train"], order)
            scores = {part: _scores(scorer(corpora[part]), corpora[part]) for part in ("dev", "test")}
            seconds = time.process_time() - start
            rows.append({"order": order, "smoothing": name, "cpu_seconds": seconds, **scores})
            print(f"{order:5d} {name:<25} {scores['dev']['perplexity']:8.2f} "
                  f"{scores['dev']['bits_per_char']:7.4f} {scores['test']['perplexity']:8.2f} "
                  f"{scores['test']['bits_per_char']:8.4f} {seconds:16.2f}")
    return rows


def mix(corpora: dict[str, TokenizedCorpus], tokenizer: Tokenizer, order: int) -> dict[str, Any]:
    """SaffuModel() and the modified-KN n-gram model, alone and mixed with λ chosen on dev."""
    from saffu.model import SaffuConfig, SaffuModel

    start = time.process_time()
    saffu_model = SaffuModel(SaffuConfig(), tokenizer=tokenizer).fit(corpora["train"], verbose=0)
    saffu_seconds = time.process_time() - start
    start = time.process_time()
    ngram = NgramModel.fit(corpora["train"], tokenizer.vocab_size, order)
    ngram_seconds = time.process_time() - start
    log_p = {}
    for part in ("dev", "test"):
        log_p["saffu", part] = np.concatenate([saffu_model.target_log_proba(ids, pos)
                                               for ids, pos in corpora[part].chunks()])
        log_p["ngram", part] = ngram.token_log_proba(corpora[part])
    weight, _ = choose_interpolation_weight(log_p["saffu", "dev"], log_p["ngram", "dev"])
    for part in ("dev", "test"):  # test: scored once, with the weight chosen on dev
        log_p["mixture", part] = interpolate_log_proba(log_p["saffu", part], log_p["ngram", part], weight)
    result = {"order": order, "saffu_weight": weight, "saffu_fit_cpu_seconds": saffu_seconds,
              "ngram_fit_cpu_seconds": ngram_seconds}
    print(f"λ (weight of SAFFU, chosen on dev) = {weight:.4f}; CPU s to fit: SAFFU "
          f"{saffu_seconds:.1f}, {order}-gram {ngram_seconds:.1f}")
    print(f"{'model':<34} {'dev ppl':>8} {'dev bpc':>7} {'test ppl':>8} {'test bpc':>8}")
    for name, label in (("saffu", "SaffuModel()"), ("ngram", f"modified KN {order}-gram"),
                        ("mixture", "mixture (λ on dev)")):
        scores = {part: _scores(log_p[name, part], corpora[part]) for part in ("dev", "test")}
        result[name] = scores
        print(f"{label:<34} {scores['dev']['perplexity']:8.2f} {scores['dev']['bits_per_char']:7.4f} "
              f"{scores['test']['perplexity']:8.2f} {scores['test']['bits_per_char']:8.4f}")
    return result


def files(corpora: dict[str, TokenizedCorpus], vocab_size: int, order: int, folder: Path) -> dict[str, Any]:
    """Wall and CPU seconds and sizes of ARPA and safetensors round trips of a modified-KN model."""
    model = NgramModel.fit(corpora["train"], vocab_size, order)
    folder.mkdir(parents=True, exist_ok=True)
    arpa, native = folder / f"kn{order}.arpa", folder / f"kn{order}.safetensors"
    steps = {"to_arpa": lambda: model.to_arpa(arpa), "from_arpa": lambda: NgramModel.from_arpa(arpa),
             "save": lambda: model.save(native), "load": lambda: NgramModel.load(native)}
    result: dict[str, Any] = {"order": order, "n_grams": model.n_grams}
    loaded = {}
    for name, step in steps.items():
        wall, cpu = time.perf_counter(), time.process_time()
        loaded[name] = step()
        result[name] = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
    expected = model.token_log_proba(corpora["dev"])
    for name in ("from_arpa", "load"):
        result[name]["dev_scores_identical"] = bool(np.array_equal(
            loaded[name].token_log_proba(corpora["dev"]), expected))
    result["arpa_megabytes"] = arpa.stat().st_size / 1e6
    result["safetensors_megabytes"] = native.stat().st_size / 1e6
    print(json.dumps(result, indent=2))
    return result


def _truncate(docs: list[np.ndarray], n_tokens: int) -> list[np.ndarray]:
    """The first documents holding about ``n_tokens`` tokens; the last is cut and re-closed."""
    kept, left = [], n_tokens
    for doc in docs:
        if left < 2:
            break
        kept.append(doc if len(doc) <= left else np.append(doc[:left - 1], EOD))
        left -= len(kept[-1])
    return kept


def _predicted(docs: list[np.ndarray]) -> int:
    return sum(map(len, docs)) - len(docs)


def time_nltk(parts: dict[str, list[np.ndarray]], vocab_size: int, order: int, discount: float,
              train_tokens: int, eval_tokens: int) -> None:
    """Time NLTK and :class:`KneserNey` on a slice, check they agree, extrapolate NLTK to the split."""
    train, dev = _truncate(parts["train"], train_tokens), _truncate(parts["dev"], eval_tokens)
    start = time.process_time()
    reference = fit_nltk_reference(train, vocab_size, order, discount)
    fit_s = time.process_time() - start
    start = time.process_time()
    expected = nltk_probabilities(reference, dev, vocab_size)
    score_s = time.process_time() - start
    start = time.process_time()
    ours = KneserNey(vocab_size, order, discount, uniform_base=False).fit(train)
    actual = np.exp(ours.log_probabilities(dev))
    ours_s = time.process_time() - start
    full_types = KneserNey(vocab_size, order).fit(parts["train"]).n_types
    # each NLTK score scans every stored n-gram of 2 or more tokens, so its cost per token
    # grows with their number
    growth = sum(full_types[1:]) / sum(ours.n_types[1:])
    n_train, n_dev = _predicted(train), len(expected)
    full_train, full_eval = _predicted(parts["train"]), _predicted(parts["dev"] + parts["test"])
    print(f"NLTK KneserNeyInterpolated(order={order}, discount={discount}), vocab {vocab_size}:")
    print(f"  CPU time: fit {n_train} tokens {fit_s:.2f} s, score {n_dev} tokens {score_s:.2f} s "
          f"({1e3 * score_s / n_dev:.1f} ms/token)")
    print(f"  max |p_nltk − p_ours| = {np.max(np.abs(expected - actual)):.2e} "
          f"(ours: fit + score {ours_s:.3f} CPU s)")
    print(f"  n-grams of 2..{order} tokens: {sum(ours.n_types[1:])} on the slice, "
          f"{sum(full_types[1:])} on train ({growth:.1f}×)")
    print(f"  extrapolated CPU time for train {full_train} + dev/test {full_eval} tokens: fit "
          f"{fit_s * full_train / n_train:.0f} s, score {score_s / n_dev * growth * full_eval / 3600:.1f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="dev/test scores on the fixed split")
    mode.add_argument("--mix", action="store_true", help="SaffuModel() + modified-KN mixture")
    mode.add_argument("--time-nltk", action="store_true", help="time NLTK's KneserNeyInterpolated")
    mode.add_argument("--files", type=Path, metavar="FOLDER",
                      help="time ARPA and safetensors round trips of a --mix-order model in FOLDER")
    parser.add_argument("--data", type=Path, default=SHAKESPEARE, help="the Shakespeare folder")
    parser.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="word")
    parser.add_argument("--vocab-size", type=int, default=N_SPECIAL + 7999,
                        help="token ids, the 4 special tokens included (default: 7,999 words)")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4], help="--demo: n-gram orders")
    parser.add_argument("--discount", type=float, default=0.75, help="single-discount KN's D")
    parser.add_argument("--mix-order", type=int, default=3, help="--mix, --files: the n-gram order")
    parser.add_argument("--nltk-order", type=int, default=3)
    parser.add_argument("--nltk-train-tokens", type=int, default=100_000)
    parser.add_argument("--nltk-eval-tokens", type=int, default=1_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--threads", type=int, default=1, help="--mix: saffu kernel threads")
    args = parser.parse_args()
    saffu.set_num_threads(args.threads)
    corpora, tokenizer = shakespeare_corpora(args.data, args.tokenizer, args.vocab_size)
    print(f"{args.tokenizer} tokens, {tokenizer.vocab_size} ids; predicted tokens: "
          + ", ".join(f"{part} {corpus.n_targets}" for part, corpus in corpora.items())
          + f"; load average {os.getloadavg()[0]:.1f}")
    result: Any
    if args.demo:
        result = demo(corpora, tokenizer.vocab_size, args.orders, args.discount)
    elif args.mix:
        result = mix(corpora, tokenizer, args.mix_order)
    elif args.files:
        result = files(corpora, tokenizer.vocab_size, args.mix_order, args.files)
    else:
        parts = {part: documents_of(corpus) for part, corpus in corpora.items()}
        time_nltk(parts, tokenizer.vocab_size, args.nltk_order, args.discount, args.nltk_train_tokens,
                  args.nltk_eval_tokens)
        return
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "platform": platform.platform(),
                                         "load_average": os.getloadavg(), "results": result},
                                        indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

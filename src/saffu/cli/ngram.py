"""``saffu ngram fit | eval``: the Kneser-Ney baselines (saffu.ngram), on a SAFFU model's tokens.

The interpolation of an n-gram with a SAFFU model is ``saffu eval DIR CORPUS --ngram FILE`` (in
:mod:`saffu.cli.models`); its weight comes from ``--weight`` or is tuned on ``--tune-on`` (dev).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from saffu.cli._options import (
    UsageError,
    add_corpus_argument,
    add_output_options,
    emit,
    read_corpus,
    score_lines,
)
from saffu.corpus import TokenizedCorpus
from saffu.model import SaffuModel
from saffu.ngram import NgramModel, choose_interpolation_weight, interpolate_log_proba, scores_from_log_proba
from saffu.tokenize import make_tokenizer


def load_ngram(path: str, tokenizer_model: str | None = None) -> NgramModel:
    """A saved n-gram model, or an ARPA file (then its tokens are ids: see ``default_vocabulary``)."""
    if Path(path).suffix.lower() == ".arpa":
        model = NgramModel.from_arpa(path)
        if tokenizer_model:
            model.tokenizer = SaffuModel.load(tokenizer_model).tokenizer
        return model
    return NgramModel.load(path)


def cmd_ngram_fit(args: argparse.Namespace) -> None:
    if args.tokenizer_from:
        tokenizer = SaffuModel.load(args.tokenizer_from).tokenizer
    else:
        tokenizer = make_tokenizer(args.tokenizer, vocab_size=args.vocab_size).fit(
            read_corpus(args, args.corpus))
    corpus = TokenizedCorpus.from_documents(tokenizer, read_corpus(args, args.corpus))
    model = NgramModel.fit(corpus, order=args.order, tokenizer=tokenizer)
    path = model.save(args.out)
    if args.arpa:
        model.to_arpa(args.arpa)
    emit(args, {"out": str(path), "arpa": args.arpa, "order": model.order, "n_grams": model.n_grams,
                "train_tokens": corpus.n_tokens},
         [f"fitted a modified Kneser-Ney {model.order}-gram model ({sum(model.n_grams):,} n-grams) on "
          f"{corpus.n_tokens:,} tokens; saved to {path}" + (f" and {args.arpa}" if args.arpa else "")])


def cmd_ngram_eval(args: argparse.Namespace) -> None:
    model = load_ngram(args.ngram, args.tokenizer_from)
    if model.tokenizer is None:
        raise UsageError(f"{args.ngram} has no tokenizer: pass --tokenizer-from MODEL_DIR")
    corpus = TokenizedCorpus.from_documents(model.tokenizer, read_corpus(args, args.corpus))
    scores = model.score(corpus, n_characters=corpus.n_characters)
    emit(args, scores, score_lines("", scores))


def saffu_log_proba(model: SaffuModel, corpus: TokenizedCorpus) -> np.ndarray:
    """(m,) log-probabilities of every predicted token of ``corpus`` under the SAFFU model."""
    return np.concatenate([model.target_log_proba(ids, pos) for ids, pos in corpus.chunks()])


def mixed_scores(args: argparse.Namespace, model: SaffuModel, corpus: TokenizedCorpus) -> dict[str, Any]:
    """Scores of the per-token mixture λ·SAFFU + (1 − λ)·n-gram, λ given or tuned on dev."""
    ngram = load_ngram(args.ngram)
    if ngram.vocab_size != model.vocab_size:
        raise UsageError(f"{args.ngram} has {ngram.vocab_size} token ids but the SAFFU model has "
                         f"{model.vocab_size}: fit the n-gram with --tokenizer-from {args.model}")
    if (args.weight is None) == (not args.tune_on):
        raise UsageError("--ngram needs exactly one of --weight or --tune-on DEV")
    weight, dev_nll = args.weight, None
    if args.tune_on:
        dev = model.encode(read_corpus(args, args.tune_on))
        weight, dev_nll = choose_interpolation_weight(saffu_log_proba(model, dev), ngram.token_log_proba(dev))
    mixed = interpolate_log_proba(saffu_log_proba(model, corpus), ngram.token_log_proba(corpus), weight)
    scores = scores_from_log_proba(mixed, n_characters=corpus.n_characters, n_documents=corpus.n_documents)
    return {**scores, "weight": weight, "tuned_on_dev_nll": dev_nll}


def add_ngram_eval_options(parser: argparse.ArgumentParser) -> None:
    """``--ngram``, ``--weight``, ``--tune-on`` of ``saffu eval``."""
    parser.add_argument("--ngram", default=None, metavar="FILE",
                        help="mix the SAFFU model per token with this n-gram model (saffu ngram fit)")
    parser.add_argument("--weight", type=float, default=None, metavar="λ",
                        help="weight of the SAFFU model in the mixture, in [0, 1]")
    parser.add_argument("--tune-on", nargs="+", default=None, metavar="DEV",
                        help="choose the weight on these held-out (dev) files; never tune on test")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``saffu ngram fit`` and ``saffu ngram eval``."""
    ngram = commands.add_parser("ngram", help="Kneser-Ney n-gram baselines (fit, eval)",
                                description="Interpolated modified Kneser-Ney n-gram models on the "
                                            "same tokens as a SAFFU model.")
    actions = ngram.add_subparsers(dest="ngram_command", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="fit an n-gram model and save it",
                             description="Fit a modified Kneser-Ney model on text files.")
    add_corpus_argument(fit)
    fit.add_argument("--out", required=True, help="n-gram model file to write (safetensors)")
    fit.add_argument("--order", type=int, default=3, help="the longest n-gram (default: 3)")
    fit.add_argument("--arpa", default=None, metavar="FILE", help="also write the model as ARPA")
    fit.add_argument("--tokenizer-from", default=None, metavar="MODEL_DIR",
                     help="use this SAFFU model's tokenizer (needed to mix the two)")
    fit.add_argument("--tokenizer", default="bpe", choices=("bpe", "char", "word"),
                     help="tokenizer to fit when --tokenizer-from is not given (default: bpe)")
    fit.add_argument("--vocab-size", type=int, default=4096,
                     help="its vocabulary size (default: 4096)")
    add_output_options(fit, corpus=True)
    fit.set_defaults(handler=cmd_ngram_fit)

    evaluate = actions.add_parser("eval", help="perplexity and bits/char of an n-gram model",
                                  description="Score an n-gram model (or an ARPA file) on text files.")
    evaluate.add_argument("ngram", help="n-gram model file (or .arpa with --tokenizer-from)")
    add_corpus_argument(evaluate)
    evaluate.add_argument("--tokenizer-from", default=None, metavar="MODEL_DIR",
                          help="the SAFFU model whose tokenizer an ARPA file's ids belong to")
    add_output_options(evaluate, corpus=True)
    evaluate.set_defaults(handler=cmd_ngram_eval)

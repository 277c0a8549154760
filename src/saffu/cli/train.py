"""``saffu finetune | train``: backpropagation from an explicit fit (warm) or a random init (cold).

PyTorch is imported only when one of these commands runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from saffu._backend import threads
from saffu.cli._options import (
    UsageError,
    add_config_options,
    add_corpus_argument,
    add_fitting_options,
    add_model_argument,
    add_output_options,
    config_from_args,
    emit,
    read_corpus,
)
from saffu.corpus import TokenizedCorpus
from saffu.fit import prepare
from saffu.model import SaffuModel


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` and ``train`` subcommands (with handlers) to the ``saffu`` parser."""
    finetune = commands.add_parser(
        "finetune", help="refine a saved model by backpropagation (warm start)",
        description="Load a fitted model, train all its weights by backpropagation (AdamW) on "
                    "text files, and save the result to --out (PyTorch needed).")
    add_model_argument(finetune)
    add_corpus_argument(finetune)
    _training_options(finetune)
    add_output_options(finetune, corpus=True)
    add_fitting_options(finetune)
    finetune.set_defaults(handler=finetune_command)

    train_parser = commands.add_parser(
        "train", help="fit explicitly then backprop, or backprop from a random start (--cold)",
        description="Train a model by backpropagation on text files and save it to --out: from "
                    "the explicit fit (default, a warm start) or from a random init (--cold). "
                    "PyTorch needed.")
    add_corpus_argument(train_parser)
    train_parser.add_argument("--cold", action="store_true",
                              help="start from a random init instead of the explicit fit")
    _training_options(train_parser)
    add_output_options(train_parser, corpus=True)
    add_fitting_options(train_parser)
    add_config_options(train_parser)
    train_parser.set_defaults(handler=train_command)


def _training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="model directory to write (the best model)")
    parser.add_argument("--dev", nargs="+", default=None, metavar="CORPUS",
                        help="held-out files for dev perplexity, early stopping and the best model")
    group = parser.add_argument_group("backpropagation")
    group.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default: 0.1)")
    group.add_argument("--weight-decay", type=float, default=0.0,
                       help="AdamW weight decay (default: 0)")
    group.add_argument("--batch-targets", type=int, default=1024,
                       help="targets per mini-batch (default: 1024)")
    group.add_argument("--epochs", type=float, default=None,
                       help="passes over the corpus (default: 1 when no other budget is given)")
    group.add_argument("--max-seconds", type=float, default=None,
                       help="training wall-clock budget, evaluations excluded (default: none)")
    group.add_argument("--max-tokens", type=int, default=None,
                       help="targets to train on (default: none)")
    group.add_argument("--warmup-steps", type=int, default=100,
                       help="linear warmup steps (default: 100)")
    group.add_argument("--eval-every", type=int, default=200,
                       help="steps between dev evaluations (default: 200)")
    group.add_argument("--patience", type=int, default=None,
                       help="stop after this many evaluations without a better dev perplexity "
                            "(default: never)")
    group.add_argument("--seed", type=int, default=0,
                       help="batch order and random init (default: 0)")
    group.add_argument("--thaw-cipher", action="store_true", help="train the cipher vectors too")


def finetune_command(args: argparse.Namespace) -> None:
    """``saffu finetune MODEL CORPUS... --out DIR``: backprop from a saved (explicit) model."""
    options = _training_arguments(args)
    SaffuModel.check_output(args.out)
    saffu_torch = _import_saffu_torch()
    model = SaffuModel.load(args.model)
    corpus = model.encode(read_corpus(args, args.corpus))
    module = saffu_torch.to_torch(model, thaw_cipher=args.thaw_cipher)
    _train_and_save(args, options, module, corpus, {"start": "warm", "from": args.model})


def train_command(args: argparse.Namespace) -> None:
    """``saffu train [--cold] CORPUS... --out DIR``: explicit fit (unless cold), then backprop."""
    options = _training_arguments(args)
    SaffuModel.check_output(args.out)
    saffu_torch = _import_saffu_torch()
    model = SaffuModel(config_from_args(args))
    with threads(args.jobs):
        corpus = prepare(model, read_corpus(args, args.corpus))
    if args.cold:
        module = saffu_torch.cold_start(model, args.seed, thaw_cipher=args.thaw_cipher)
        _train_and_save(args, options, module, corpus, {"start": "cold"})
        return
    model.fit(corpus, n_jobs=args.jobs, verbose=args.verbose)
    module = saffu_torch.to_torch(model, thaw_cipher=args.thaw_cipher)
    _train_and_save(args, options, module, corpus,
                    {"start": "warm", "fit_seconds": model.fit_info["seconds"]})


def _training_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`saffu.trainer.train` from the command line, validated before any
    slow work. Without a budget option, training runs for one epoch."""
    from saffu.trainer import Budget, _check_options

    no_budget = args.epochs is None and args.max_seconds is None and args.max_tokens is None
    options = dict(lr=args.lr, weight_decay=args.weight_decay, batch_targets=args.batch_targets,
                   epochs=1 if no_budget else args.epochs, max_seconds=args.max_seconds,
                   max_tokens=args.max_tokens, warmup_steps=args.warmup_steps,
                   eval_every=args.eval_every, patience=args.patience, seed=args.seed)
    Budget(options["epochs"], options["max_seconds"], options["max_tokens"], n_targets=1)
    _check_options(lr=args.lr, weight_decay=args.weight_decay, batch_targets=args.batch_targets,
                   warmup_steps=args.warmup_steps, eval_every=args.eval_every,
                   patience=args.patience, eval_growth=1.0, max_grad_norm=None)
    return options


def _import_saffu_torch() -> ModuleType:
    try:
        import saffu.torch
    except ImportError as error:
        raise UsageError(f"backpropagation needs PyTorch: pip install 'saffu[torch]' ({error})") from error
    return saffu.torch


def _train_and_save(args: argparse.Namespace, options: dict[str, Any], module: Any,
                    corpus: TokenizedCorpus, result: dict[str, Any]) -> None:
    from saffu.trainer import train

    dev = module.template.encode(read_corpus(args, args.dev)) if args.dev else None
    history = train(module, corpus, dev, **options, checkpoint_dir=args.out, n_jobs=args.jobs,
                    verbose=args.verbose)
    last = history[-1]
    best = min((r["dev_perplexity"] for r in history if r["dev_perplexity"] is not None), default=None)
    result.update(out=args.out, parameters=sum(p.numel() for p in module.parameters()),
                  steps=last["step"], tokens_seen=last["tokens_seen"], seconds=last["seconds"],
                  train_loss=last["train_loss"], initial_dev_perplexity=history[0]["dev_perplexity"],
                  dev_perplexity=best, stopped=history.stopped, history=list(history))
    lines = [f"trained {result['parameters']:,} parameters for {last['step']} steps "
             f"({last['tokens_seen']:,} targets, {last['seconds']:.1f} s; stopped by {history.stopped})"]
    if best is not None:
        lines.append(f"dev perplexity {history[0]['dev_perplexity']:.2f} -> {best:.2f} (best)")
    lines.append(f"saved to {args.out}")
    emit(args, result, lines)

"""``saffu finetune | train``: backpropagation from an explicit fit (warm) or a random init (cold).

PyTorch is imported only when one of these commands runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
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
from saffu.train_config import BUDGETS, TrainConfig
from saffu.validation import field_type


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
    """``--out``, ``--dev``, ``--thaw-cipher`` and one option per TrainConfig field."""
    parser.add_argument("--out", required=True, help="model directory to write (the best model)")
    parser.add_argument("--dev", nargs="+", default=None, metavar="CORPUS",
                        help="held-out files for dev perplexity, early stopping and the best model")
    group = parser.add_argument_group("backpropagation")
    defaults = TrainConfig()
    for name in TrainConfig.field_names():
        default = getattr(defaults, name)
        shown = "1 when no other budget is given" if name == "epochs" else \
            "none" if default is None else default
        group.add_argument("--" + name.replace("_", "-"), dest=f"train_{name}", default=argparse.SUPPRESS,
                           type=_train_type(name), metavar="VALUE",
                           help=f"{TrainConfig.help(name)} (default: {shown})")
    group.add_argument("--thaw-cipher", action="store_true",
                       help="train the cipher vectors from the first step")


def _train_type(name: str):
    base = field_type(TrainConfig, name)

    def parse(text: str) -> Any:
        if text.strip().lower() == "none":
            return None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {base.__name__} or none, got {text!r}") from None
    parse.__name__ = name
    return parse


def finetune_command(args: argparse.Namespace) -> None:
    """``saffu finetune MODEL CORPUS... --out DIR``: backprop from a saved (explicit) model."""
    options = _training_arguments(args)
    SaffuModel.check_output(args.out)
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise UsageError(f"--out {args.out} is the model to fine-tune: training saves checkpoints "
                         "to --out, so an interrupted run would lose the model it started from; "
                         "write to another directory")
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
        module = saffu_torch.cold_start(model, options.seed, thaw_cipher=args.thaw_cipher)
        _train_and_save(args, options, module, corpus, {"start": "cold"})
        return
    model.fit(corpus, n_jobs=args.jobs, verbose=args.verbose)
    module = saffu_torch.to_torch(model, thaw_cipher=args.thaw_cipher)
    _train_and_save(args, options, module, corpus,
                    {"start": "warm", "fit_seconds": model.fit_info["seconds"]})


def _training_arguments(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the command line, validated before any slow work. Without a budget
    option, training runs for one epoch."""
    given = {name: getattr(args, f"train_{name}") for name in TrainConfig.field_names()
             if hasattr(args, f"train_{name}")}
    if any(name in given for name in BUDGETS) and "epochs" not in given:
        given["epochs"] = None  # the budgets given replace the default of one epoch
    return TrainConfig().replace(**given)


def _import_saffu_torch() -> ModuleType:
    try:
        import saffu.torch
    except ImportError as error:
        raise UsageError(f"backpropagation needs PyTorch: pip install 'saffu[torch]' ({error})") from error
    return saffu.torch


def _train_and_save(args: argparse.Namespace, options: TrainConfig, module: Any,
                    corpus: TokenizedCorpus, result: dict[str, Any]) -> None:
    from saffu.torch.training import train

    dev = module.template.encode(read_corpus(args, args.dev)) if args.dev else None
    history = train(module, corpus, dev, options, checkpoint_dir=args.out, n_jobs=args.jobs,
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

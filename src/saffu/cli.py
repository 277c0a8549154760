"""The ``saffu`` command line: demo, fit, eval, generate, finetune, train, sweep, info.

User mistakes (a missing file, a bad option value, a corrupted model) print one line on stderr
and exit with status 2; ``--json`` makes a command print exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from saffu.model import ModelFormatError, SaffuConfig, SaffuModel

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


# --- config options, generated from SaffuConfig -------------------------------------------------


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "auto", "min") else int(text)


def _parse_optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "auto") else float(text)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_FIELD_HELP = {
    "tokenizer": "tokenizer kind: bpe, char or word",
    "vocab_size": "tokenizer vocabulary size (special tokens included)",
    "bits": "cipher bits (default: the minimum for the vocabulary)",
    "hidden": "hidden width D per context model (label-code bits; 'none' = bits)",
    "radial": "r, previous tokens seen by the radial context model (0 = off)",
    "block": "B, block length of the block context model (0 = off)",
    "document": "include the document context model (true/false)",
    "aggregation": "attention aggregation: sum or cat",
    "attention": "attention weights: explicit or uniform",
    "tau": "temperature of the attention and hidden layers' likelihood terms",
    "output_tau": "temperature of the output layer's likelihood terms",
    "alpha": "additive smoothing of every explicit solve",
    "priming": "priming number K of the folded forms (default: mean input mass)",
    "cipher_smoothing": "smooth the cipher vectors (true/false)",
}


def _field_parser(f: dataclasses.Field) -> Callable[[str], Any]:
    default = f.default
    if f.name in ("bits", "hidden"):
        return _parse_optional_int
    if f.name == "priming":
        return _parse_optional_float
    if isinstance(default, bool):
        return _parse_bool
    return type(default)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per SaffuConfig field (defaults come from SaffuConfig)."""
    group = parser.add_argument_group("model configuration")
    for f in dataclasses.fields(SaffuConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"config_{f.name}",
                           type=_field_parser(f), default=None, metavar="VALUE",
                           help=f"{_FIELD_HELP[f.name]} (default: {f.default})")
    group.add_argument("--config", dest="config_file", default=None, metavar="JSON",
                       help="read the configuration from a JSON file (options above override it)")


def config_from_args(args: argparse.Namespace) -> SaffuConfig:
    values: dict[str, Any] = {}
    if args.config_file:
        try:
            with open(args.config_file) as handle:
                values = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"cannot read config {args.config_file}: {error}") from error
    for f in dataclasses.fields(SaffuConfig):
        value = getattr(args, f"config_{f.name}")
        if value is not None:
            values[f.name] = value
    return SaffuConfig.from_dict(values)


# --- commands ------------------------------------------------------------------------------------


def _read_corpus(patterns: Sequence[str], separator: str | None) -> Any:
    from saffu.corpus import read_documents

    return read_documents(patterns, separator=separator)


def _emit(args: argparse.Namespace, result: dict[str, Any], lines: Sequence[str]) -> None:
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in lines:
            print(line)


def _score_lines(prefix: str, scores: dict[str, Any]) -> list[str]:
    return [f"{prefix} perplexity {scores['perplexity']:.2f}, {scores['bits_per_char']:.4f} bits/char "
            f"over {scores['tokens']:,} tokens ({scores['documents']} documents)"]


def cmd_demo(args: argparse.Namespace) -> None:
    from saffu.datasets import sample

    data = sample()
    model = SaffuModel(config_from_args(args))
    model.fit(_read_corpus(data.train, None), n_jobs=args.jobs, verbose=args.verbose)
    scores = model.score(_read_corpus(data.dev, None))
    text = model.generate(args.prompt, max_tokens=args.max_tokens, temperature=0.8, top_k=40,
                          seed=args.seed)
    result = {**_prefixed("dev_", scores), "fit_seconds": model.fit_info["seconds"],
              "train_tokens": model.fit_info["tokens"], "parameters": model.n_parameters,
              "generated": args.prompt + text}
    _emit(args, result, [
        f"fitted {model.n_parameters:,} parameters on {model.fit_info['tokens']:,} tokens "
        f"in {model.fit_info['seconds']:.1f} s",
        *_score_lines("dev", scores),
        "sample:", args.prompt + text])


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}


def cmd_fit(args: argparse.Namespace) -> None:
    model = SaffuModel(config_from_args(args))
    model.fit(_read_corpus(args.corpus, args.separator), n_jobs=args.jobs, verbose=args.verbose,
              client=_dask_client(args.dask_scheduler))
    model.save(args.out)
    result = {"out": args.out, "parameters": model.n_parameters, **model.fit_info}
    _emit(args, result, [f"fitted {model.n_parameters:,} parameters on {model.fit_info['tokens']:,} "
                         f"tokens in {model.fit_info['seconds']:.1f} s; saved to {args.out}"])


def _dask_client(address: str | None) -> Any:
    if not address:
        return None
    try:
        from dask.distributed import Client
    except ImportError as error:
        raise UserError("--dask-scheduler needs dask.distributed: pip install 'saffu[dask]'") from error
    return Client(address)


def cmd_eval(args: argparse.Namespace) -> None:
    model = SaffuModel.load(args.model)
    started = time.perf_counter()
    scores = model.score(_read_corpus(args.corpus, args.separator))
    scores["seconds"] = time.perf_counter() - started
    _emit(args, scores, _score_lines("", scores))


def cmd_generate(args: argparse.Namespace) -> None:
    model = SaffuModel.load(args.model)
    text = model.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    _emit(args, {"prompt": args.prompt, "text": text}, [args.prompt + text])


def cmd_info(args: argparse.Namespace) -> None:
    from saffu._backend import config_info, show_config

    if args.json:
        print(json.dumps(config_info(), sort_keys=True))
    else:
        show_config()


# --- the parser ----------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, corpus: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    if corpus:
        parser.add_argument("--separator", default=None,
                            help="split files into documents at this string (default: a file is "
                                 "one document); use '\\n\\n' for blank lines")


def _fitting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=None, help="threads (default: all cores)")
    parser.add_argument("--verbose", type=int, default=1, help="0 hides progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saffu", description="Explicitly fitted SAFFU language models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser("demo", help="fit the bundled sample and show what the model does",
                               description="Fit the bundled Shakespeare sample, report dev "
                                           "perplexity and bits/char, and generate a passage.")
    _common(demo)
    _fitting(demo)
    demo.add_argument("--prompt", default="ROMEO.", help="generation prompt")
    demo.add_argument("--max-tokens", type=int, default=60)
    demo.add_argument("--seed", type=int, default=0)
    add_config_options(demo)
    demo.set_defaults(handler=cmd_demo)

    fit = commands.add_parser("fit", help="fit a model explicitly and save it",
                              description="Fit a SAFFU model on text files and save it to --out.")
    fit.add_argument("corpus", nargs="+", help="files, directories or glob patterns")
    fit.add_argument("--out", required=True, help="model directory to write")
    fit.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                     help="run the passes on this dask.distributed scheduler")
    _common(fit, corpus=True)
    _fitting(fit)
    add_config_options(fit)
    fit.set_defaults(handler=cmd_fit)

    evaluate = commands.add_parser("eval", help="perplexity and bits/char on held-out text",
                                   description="Score a saved model on text files.")
    evaluate.add_argument("model", help="model directory")
    evaluate.add_argument("corpus", nargs="+", help="files, directories or glob patterns")
    _common(evaluate, corpus=True)
    evaluate.set_defaults(handler=cmd_eval)

    generate = commands.add_parser("generate", help="sample text from a saved model",
                                   description="Sample a continuation of --prompt.")
    generate.add_argument("model", help="model directory")
    generate.add_argument("--prompt", default="", help="text to continue")
    generate.add_argument("--max-tokens", type=int, default=100)
    generate.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--seed", type=int, default=None)
    _common(generate)
    generate.set_defaults(handler=cmd_generate)

    info = commands.add_parser("info", help="versions, backends and threads")
    _common(info)
    info.set_defaults(handler=cmd_info)

    # Commands defined beside the features they drive; their heavy imports (torch) are lazy.
    from saffu import sweep, trainer

    trainer.register_commands(commands)
    sweep.register_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saffu`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (UserError, ModelFormatError, ValueError, FileNotFoundError, NotADirectoryError,
            IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        print(f"saffu {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"saffu {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

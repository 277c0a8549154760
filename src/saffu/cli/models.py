"""``saffu demo | fit | eval | generate | info``: fit, score and sample explicit models."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saffu.cli._options import (
    add_config_options,
    add_corpus_argument,
    add_fitting_options,
    add_model_argument,
    add_output_options,
    config_from_args,
    dask_client,
    emit,
    prefixed,
    read_corpus,
    score_lines,
)
from saffu.cli.generate import add_generate_command
from saffu.cli.ngram import add_ngram_eval_options, mixed_scores
from saffu.model import SaffuModel


def cmd_demo(args: argparse.Namespace) -> None:
    """Fit the bundled sample, compare with a Kneser-Ney trigram on the same tokens, generate a
    passage, save the model and say what to run next."""
    from saffu.datasets import sample, sample_dir
    from saffu.ngram import NgramModel

    SaffuModel.check_output(args.out)
    data = sample()
    model = SaffuModel(config_from_args(args))
    model.fit(read_corpus(args, data.train), n_jobs=args.jobs, verbose=args.verbose)
    dev = model.encode(read_corpus(args, data.dev))
    scores = model.score(dev)
    train = model.encode(read_corpus(args, data.train))
    ngram = NgramModel.fit(train, order=3, tokenizer=model.tokenizer).score(
        dev, n_characters=dev.n_characters)
    text = model.generate(args.prompt, max_tokens=args.max_tokens, temperature=0.8, top_k=40,
                          seed=args.seed)
    model.save(args.out)
    result = {**prefixed("dev_", scores), **prefixed("kneser_ney_trigram_dev_", ngram),
              "fit_seconds": model.fit_info["seconds"], "train_tokens": model.fit_info["tokens"],
              "parameters": model.n_parameters, "generated": args.prompt + text, "out": args.out}
    emit(args, result, [
        f"fitted {model.n_parameters:,} parameters on {model.fit_info['tokens']:,} tokens "
        f"in {model.fit_info['seconds']:.1f} s; saved to {args.out}",
        *score_lines("SAFFU dev", scores),
        *score_lines("Kneser-Ney trigram dev (same tokens)", ngram),
        "sample:", args.prompt + text, "",
        "next:",
        f"  saffu show {args.out}",
        f"  saffu generate {args.out} --prompt 'ROMEO.' --max-tokens 80 --temperature 0.8 --top-k 40",
        f"  saffu eval {args.out} {sample_dir()}",
        "  saffu fit YOUR_TEXTS/ --out my-model      # your own corpus",
        f"  saffu train {sample_dir()} --out tuned --max-seconds 60   # backprop warm start "
        "(PyTorch)"])


def cmd_fit(args: argparse.Namespace) -> None:
    SaffuModel.check_output(args.out)  # before the fit, not after it
    model = SaffuModel(config_from_args(args))
    with _dask_runner(args.dask_scheduler) as runner:
        model.fit(read_corpus(args, args.corpus), n_jobs=args.jobs, verbose=args.verbose,
                  runner=runner)
    model.save(args.out)
    result = {"out": args.out, "parameters": model.n_parameters, **model.fit_info}
    emit(args, result, [f"fitted {model.n_parameters:,} parameters on {model.fit_info['tokens']:,} "
                        f"tokens in {model.fit_info['seconds']:.1f} s; saved to {args.out}"])


@contextlib.contextmanager
def _dask_runner(address: str | None) -> Iterator[Any]:
    """A DaskRunner on the scheduler at ``address`` (None without one). On the way out, also
    on Ctrl-C or SIGTERM, this fit's tasks are cancelled (see :mod:`saffu.distributed`) and the
    client disconnects; the cluster, which saffu did not start, keeps running."""
    if not address:
        yield None
        return
    client = dask_client(address)
    from saffu.distributed import DaskRunner

    with client:
        yield DaskRunner(client)


def cmd_eval(args: argparse.Namespace) -> None:
    model = SaffuModel.load(args.model)
    started = time.perf_counter()
    if args.ngram:
        scores = mixed_scores(args, model, model.encode(read_corpus(args, args.corpus)))
        lines = [*score_lines(f"mixture (SAFFU weight {scores['weight']:.3f})", scores)]
    else:
        scores = model.score(read_corpus(args, args.corpus))
        lines = score_lines("", scores)
    scores["seconds"] = time.perf_counter() - started
    emit(args, scores, lines)


def cmd_show(args: argparse.Namespace) -> None:
    """``saffu show DIR``: what a saved model is (loading it verifies every checksum)."""
    from saffu.model import FORMAT_VERSION

    model = SaffuModel.load(args.model)
    directory = Path(args.model)
    files = {entry.name: entry.stat().st_size for entry in sorted(directory.iterdir())}
    info = model.fit_info
    result = {"model": str(directory), "format_version": FORMAT_VERSION, "checksums": "verified",
              "config": model.config.to_dict(), "parameters": model.n_parameters,
              "parameters_by_layer": model.parameter_counts(), "vocab_size": model.vocab_size,
              "cipher_bits": model.cipher.bits, "hidden": model.labels.bits,
              "context_models": [layer.spec.name for layer in model.layers],
              "fit_info": info, "files": files}
    changed = model.config.non_default()
    lines = [
        f"{directory}: saffu model, format version {FORMAT_VERSION}, checksums verified",
        f"  context models: {', '.join(result['context_models'])}; cipher {model.cipher.bits} bits, "
        f"hidden D = {model.labels.bits}, vocabulary {model.vocab_size:,} ({model.config.tokenizer})",
        "  config: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "the defaults"),
        f"  parameters: {model.n_parameters:,} ("
        + ", ".join(f"{name} {count:,}" for name, count in model.parameter_counts().items()) + ")",
        f"  fitted on {info.get('tokens', 0):,} tokens in {info.get('documents', 0):,} documents "
        f"in {info.get('seconds', 0.0):.1f} s" + (" (then backprop)" if "backprop" in info else ""),
        "  files: " + ", ".join(f"{name} {size / 2**20:.1f} MB" for name, size in files.items()),
    ]
    emit(args, result, lines)


def cmd_info(args: argparse.Namespace) -> None:
    from saffu._backend import config_info, show_config

    if args.json:
        print(json.dumps(config_info(), sort_keys=True))
    else:
        show_config()


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``fit``, ``eval``, ``generate`` and ``info`` to the ``saffu`` parser."""
    demo = commands.add_parser("demo", help="fit the bundled sample and show what the model does",
                               description="Fit the bundled Shakespeare sample, report dev "
                                           "perplexity and bits/char, and generate a passage.")
    add_output_options(demo)
    add_fitting_options(demo)
    demo.add_argument("--out", default="saffu-demo-model",
                      help="where to save the fitted model (default: saffu-demo-model)")
    demo.add_argument("--prompt", default="ROMEO.", help="generation prompt (default: ROMEO.)")
    demo.add_argument("--max-tokens", type=int, default=60, help="tokens to generate (default: 60)")
    demo.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    add_config_options(demo)
    demo.set_defaults(handler=cmd_demo)

    fit = commands.add_parser("fit", help="fit a model explicitly and save it",
                              description="Fit a SAFFU model on text files and save it to --out.")
    add_corpus_argument(fit)
    fit.add_argument("--out", required=True, help="model directory to write")
    fit.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                     help="run the passes on this dask.distributed scheduler")
    add_output_options(fit, corpus=True)
    add_fitting_options(fit)
    add_config_options(fit)
    fit.set_defaults(handler=cmd_fit)

    evaluate = commands.add_parser("eval", help="perplexity and bits/char on held-out text",
                                   description="Score a saved model on text files.")
    add_model_argument(evaluate)
    add_corpus_argument(evaluate)
    add_output_options(evaluate, corpus=True)
    add_ngram_eval_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    add_generate_command(commands)

    show = commands.add_parser("show", help="describe a saved model (config, parameters, files)",
                               description="Load a saved model (verifying its checksums) and print "
                                           "its config, parameters per layer, vocabulary, training "
                                           "data, format version and file sizes.")
    add_model_argument(show)
    add_output_options(show)
    show.set_defaults(handler=cmd_show)

    info = commands.add_parser("info", help="versions, backends and threads")
    add_output_options(info)
    info.set_defaults(handler=cmd_info)

"""``saffu sweep | sweep-report``: fit and score many variants, and report on them."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from saffu.cli._options import UsageError, add_separator_option, dask_client, read_corpus
from saffu.corpus import read_documents, shakespeare_split
from saffu.sweep import load_grid, run_sweep, write_report


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``saffu sweep`` and ``saffu sweep-report`` to the CLI's subcommands."""
    sweep = subparsers.add_parser(
        "sweep", help="fit and score many model variants (the roadmap)",
        description="Fit every variant of a grid file explicitly on the train documents and score "
                    "it on dev, and on test the variants dev selects (--test-top); results go to "
                    "--out, one file per variant, so an interrupted sweep resumes where it stopped.")
    sweep.add_argument("corpus", nargs="*", help="train files, directories or glob patterns")
    sweep.add_argument("--grid", default=None, metavar="GRID.toml",
                       help="grid file (default: the roadmap shipped with saffu)")
    sweep.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sweep.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    sweep.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                       help="fit the variants as tasks on this dask.distributed scheduler's "
                            "workers (instead of --jobs); results go to --out as in a local run")
    sweep.add_argument("--dev", nargs="+", default=None, metavar="FILE", help="dev files")
    sweep.add_argument("--test", nargs="+", default=None, metavar="FILE", help="test files")
    sweep.add_argument("--shakespeare", default=None, metavar="ROOT",
                       help="use the fixed Shakespeare split of ROOT for train, dev and test")
    add_separator_option(sweep)
    sweep.add_argument("--test-top", type=_test_top, default=10, metavar="K",
                       help="score test only for the Pareto front and the K best variants by dev "
                            "perplexity (selected on dev; 'all' scores every variant) (default: 10)")
    sweep.add_argument("--verbose", type=int, default=1, help="0 hides the per-variant lines")
    sweep.add_argument("--json", action="store_true", help="print one JSON object")
    sweep.set_defaults(handler=sweep_command)

    report = subparsers.add_parser(
        "sweep-report", help="figures and a Markdown table of a sweep's results",
        description="Write pareto.png, effects.png and report.md into a sweep folder.")
    report.add_argument("directory", metavar="DIR", help="the --out folder of saffu sweep")
    report.add_argument("--top", type=int, default=10, help="rows of the best-variants table")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=sweep_report_command)


def _test_top(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of variants or 'all', got {text!r}")
    return int(text)


def _split_documents(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    if args.shakespeare is not None:
        if args.corpus or args.dev or args.test:
            raise UsageError("--shakespeare takes train, dev and test from the fixed split; "
                             "do not also give CORPUS, --dev or --test")
        parts = shakespeare_split(args.shakespeare)
        return tuple(read_documents(files) for files in (parts.train, parts.dev, parts.test))
    if not args.corpus:
        raise UsageError("give the train CORPUS files (or --shakespeare ROOT)")
    if not args.dev:
        raise UsageError("give --dev FILES: variants are compared by dev perplexity")
    return tuple(None if files is None else read_corpus(args, files)
                 for files in (args.corpus, args.dev, args.test))


def sweep_command(args: argparse.Namespace) -> None:
    grid = load_grid(args.grid)  # a mistake in the grid file is reported before any fitting
    if args.dask_scheduler and args.jobs != 1:
        raise UsageError("--jobs sets local worker processes: do not give it with --dask-scheduler")
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(args.dask_scheduler)) if args.dask_scheduler else None
        train, dev, test = _split_documents(args)
        records = run_sweep(train, dev, test, grid=grid, out=args.out, jobs=args.jobs,
                            verbose=args.verbose, test_top=args.test_top, client=client)
    best = min(records, key=lambda r: r["dev_perplexity"])
    summary = {"out": args.out, "variants": len(records), "best": best}
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"{len(records)} variants in {args.out}; best dev perplexity "
              f"{best['dev_perplexity']:.2f} ({best['key']}); see results.csv")


def sweep_report_command(args: argparse.Namespace) -> None:
    paths = write_report(args.directory, top=args.top)
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, sort_keys=True))
    else:
        print(f"wrote {', '.join(str(path) for path in paths.values())}")

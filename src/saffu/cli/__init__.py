"""The ``saffu`` command line: the top layer of the package; nothing in saffu imports it.

One module per command family: :mod:`~saffu.cli.models` (demo, fit, eval, generate, info),
:mod:`~saffu.cli.train` (finetune, train), :mod:`~saffu.cli.sweep` (sweep, sweep-report),
:mod:`~saffu.cli.ngram` (ngram fit, ngram eval; the mixture of ``saffu eval --ngram``),
:mod:`~saffu.cli.export` (export --onnx).
:mod:`~saffu.cli._options` holds the options they share, generated from the settings' own
definitions (:class:`saffu.config.SaffuConfig`).

Errors saffu raises for a user's mistake (:class:`saffu.errors.SaffuError`) and operating-system
conditions (a missing file, no permission) print one line on stderr and exit with status 2; any
other exception is a bug in saffu and shows its traceback. ``--json`` makes a command print
exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from saffu._processes import install_interrupt_handlers
from saffu._version import __version__
from saffu.cli import export, models, ngram, sweep, train
from saffu.cli._options import UsageError
from saffu.errors import SaffuError

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
COMMAND_FAMILIES = (models, train, sweep, ngram, export)


def build_parser() -> argparse.ArgumentParser:
    """The ``saffu`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="saffu", description="Explicitly fitted SAFFU language models.")
    parser.add_argument("--version", action="version", version=f"saffu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in COMMAND_FAMILIES:
        family.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saffu`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if argv is None:  # the console script, not a call from Python code
        install_interrupt_handlers()
        warnings.formatwarning = _one_line_warning
    try:
        args.handler(args)
    except (SaffuError, UsageError, OSError, UnicodeDecodeError) as error:
        print(f"saffu {args.command}: error: {_describe(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"saffu {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"saffu: warning: {message}\n"


def _describe(error: BaseException) -> str:
    """One line for a user: an OSError names its path and cause."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)

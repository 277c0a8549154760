"""Options and output shared by the ``saffu`` commands.

The model options are generated from :class:`saffu.config.SaffuConfig` (names, help texts,
the words that stand for ``None``), so a new config field reaches every command by itself.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any

from saffu.config import SaffuConfig
from saffu.corpus import read_documents
from saffu.errors import SaffuError


class UsageError(SaffuError):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


DASK_CONNECT_SECONDS = 10
"""How long ``--dask-scheduler`` waits for the scheduler before a command gives up."""


def dask_client(address: str) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``--dask-scheduler``).

    Raises:
        UsageError: dask.distributed is not installed, or the scheduler does not answer within
            ``DASK_CONNECT_SECONDS``.
    """
    try:
        from dask.distributed import Client
    except ImportError as error:
        raise UsageError("--dask-scheduler needs dask.distributed: pip install 'saffu[dask]'") from error
    try:
        return Client(address, timeout=DASK_CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as error:  # ValueError: a malformed address
        raise UsageError(f"cannot reach the Dask scheduler at {address} within "
                         f"{DASK_CONNECT_SECONDS} s ({error})") from None


def _option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _field_type(name: str):
    def parse(text: str) -> Any:
        try:
            return SaffuConfig.parse_value(name, text)
        except SaffuError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = name  # argparse names the option's type in its messages
    return parse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per SaffuConfig field (defaults come from SaffuConfig)."""
    group = parser.add_argument_group("model configuration")
    defaults = SaffuConfig()
    for name in SaffuConfig.field_names():
        default = getattr(defaults, name)
        shown = SaffuConfig.none_word(name) if default is None else str(default).lower() \
            if isinstance(default, bool) else default
        group.add_argument(_option_name(name), dest=f"config_{name}", type=_field_type(name),
                           default=argparse.SUPPRESS, metavar="VALUE",
                           help=f"{SaffuConfig.help(name)} (default: {shown})")
    group.add_argument("--config", dest="config_file", default=None, metavar="JSON",
                       help="read the configuration from a JSON file (options above override it)")


def config_from_args(args: argparse.Namespace) -> SaffuConfig:
    """The SaffuConfig of a command's options (and of ``--config FILE``, which they override)."""
    values: dict[str, Any] = {}
    if args.config_file:
        try:
            with open(args.config_file) as handle:
                values = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise UsageError(f"cannot read config {args.config_file}: {error}") from error
    for name in SaffuConfig.field_names():
        if hasattr(args, f"config_{name}"):  # given on the command line (None: 'min', 'mean', ...)
            values[name] = getattr(args, f"config_{name}")
    return SaffuConfig.from_dict(values)


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model directory")


def add_corpus_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", nargs="+", help="files, directories or glob patterns")


def add_output_options(parser: argparse.ArgumentParser, *, corpus: bool = False) -> None:
    """``--json``, and ``--separator`` for commands that read a corpus."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    if corpus:
        add_separator_option(parser)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """``text`` with the escapes \\n, \\t, \\r and \\\\ replaced (what a shell passes for '\\n\\n')."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def add_separator_option(parser: argparse.ArgumentParser) -> None:
    """``--separator`` (escapes such as \\n understood) and ``--errors``."""
    parser.add_argument("--separator", default=None, type=unescape,
                        help="split files into documents at this string; \\n, \\t and \\\\ are "
                             "escapes, so '\\n\\n' splits at blank lines (default: a file is one "
                             "document)")
    parser.add_argument("--errors", choices=("strict", "replace"), default="strict",
                        help="invalid UTF-8 in a corpus: strict stops with an error naming the "
                             "byte offset, replace substitutes U+FFFD (default: strict)")


def add_fitting_options(parser: argparse.ArgumentParser) -> None:
    """``--jobs`` (kernel threads) and ``--verbose``."""
    parser.add_argument("--jobs", type=int, default=None, help="threads (default: all cores)")
    parser.add_argument("--verbose", type=int, default=1,
                        help="1 shows progress (bars on a terminal, a line per step in a log), "
                             "0 hides it (default: 1)")
    parser.add_argument("--quiet", dest="verbose", action="store_const", const=0,
                        help="no progress output (same as --verbose 0)")


def read_corpus(args: argparse.Namespace, patterns: Sequence[str]) -> Any:
    """The documents of files, directories or glob patterns (a lazy corpus), split and decoded
    as the command's ``--separator`` and ``--errors`` say."""
    return read_documents(patterns, separator=getattr(args, "separator", None),
                          errors=getattr(args, "errors", "strict"))


def emit(args: argparse.Namespace, result: dict[str, Any], lines: Sequence[str]) -> None:
    """Print ``result`` as one JSON object with ``--json``, else the human-readable ``lines``."""
    if args.json:
        print(json.dumps(result, sort_keys=True, allow_nan=False))
    else:
        for line in lines:
            print(line)


def score_lines(prefix: str, scores: dict[str, Any]) -> list[str]:
    return [f"{prefix} perplexity {scores['perplexity']:.2f}, {scores['bits_per_char']:.4f} bits/char "
            f"over {scores['tokens']:,} tokens ({scores['documents']} documents)".lstrip()]


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}

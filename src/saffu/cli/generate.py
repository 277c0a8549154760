"""``saffu generate``: sample text from a saved model, printed as it is made.

One prompt (``--prompt``): the prompt, then the continuation as the kernel makes it, a chunk of
tokens at a time (:class:`saffu.generation.TextStream` holds back a character whose bytes are
not all made yet). Many prompts (``--prompts FILE``, one per line): all streams in one batch,
one continuation per line (``--json``: one JSON object per line). Ctrl-C prints what was made
so far and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saffu.cli._options import UsageError, add_model_argument, add_output_options
from saffu.generation import TextStream, generate_in_chunks
from saffu.model import SaffuModel

STREAM_CHUNK = 32  # tokens per kernel call while printing (a call costs ~16 ms before its first step)


def read_prompts(path: str) -> list[str]:
    """The prompts of a file, one per line (a final line break ends the last line; ``\\r\\n``
    line ends are accepted); a one-line UsageError for a missing, unreadable, empty or non-UTF-8
    file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"--prompts {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"--prompts {path} is not valid UTF-8 (byte {error.start}: "
                         f"{error.reason})") from None
    if not text:
        raise UsageError(f"--prompts {path} is empty: write one prompt per line")
    lines = text.removesuffix("\n").split("\n")
    return [line.removesuffix("\r") for line in lines]


def one_line(text: str) -> str:
    """``text`` on one line: a backslash as ``\\\\``, line breaks as ``\\n`` and ``\\r``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def cmd_generate(args: argparse.Namespace) -> None:
    if args.prompts is not None and args.prompt is not None:
        raise UsageError("give --prompt or --prompts, not both")
    prompts = read_prompts(args.prompts) if args.prompts is not None else None
    model = SaffuModel.load(args.model)
    settings = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    if prompts is None:
        _generate_one(model, args.prompt or "", settings, as_json=args.json)
    else:
        _generate_many(model, prompts, settings, as_json=args.json)


def _generate_one(model: SaffuModel, prompt: str, settings: dict, *, as_json: bool) -> None:
    """Print the prompt and its continuation as it is made (``--json``: one object at the end)."""
    stream = TextStream(model, prompt)
    chunks = generate_in_chunks(model, [prompt], chunk=STREAM_CHUNK, **settings)  # checks them
    if not as_json:
        _write(prompt)
    try:
        for added in chunks:
            piece = stream.update(added[0].tolist())
            if not as_json:
                _write(piece)
    except KeyboardInterrupt:
        _finish_one(stream, prompt, as_json=as_json, interrupted=True)
        raise
    _finish_one(stream, prompt, as_json=as_json, interrupted=False)


def _finish_one(stream: TextStream, prompt: str, *, as_json: bool, interrupted: bool) -> None:
    rest = stream.finish()
    if as_json:
        print(_json_line(prompt, stream, interrupted), flush=True)
    else:
        _write(rest + "\n")


def _generate_many(model: SaffuModel, prompts: list[str], settings: dict, *, as_json: bool) -> None:
    """One batch for every prompt; one line each (continuation, or JSON), printed at the end or
    when interrupted."""
    streams = [TextStream(model, prompt) for prompt in prompts]
    chunks = generate_in_chunks(model, prompts, chunk=STREAM_CHUNK, **settings)
    interrupted = False
    try:
        for added in chunks:
            for stream, new in zip(streams, added, strict=True):
                stream.tokens.extend(new.tolist())
    except KeyboardInterrupt:
        interrupted = True
    for prompt, stream in zip(prompts, streams, strict=True):
        stream.finish()
        if as_json:
            print(_json_line(prompt, stream, interrupted))
        else:
            print(one_line(stream.printed))
    sys.stdout.flush()
    if interrupted:
        raise KeyboardInterrupt


def _json_line(prompt: str, stream: TextStream, interrupted: bool) -> str:
    """The ``--json`` line of one finished stream (``"interrupted": true`` after Ctrl-C)."""
    line = {"prompt": prompt, "text": stream.printed}
    return json.dumps({**line, "interrupted": True} if interrupted else line)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def add_generate_command(commands: argparse._SubParsersAction) -> None:
    """Add ``generate`` to the ``saffu`` parser."""
    generate = commands.add_parser(
        "generate", help="sample text from a saved model",
        description="Sample a continuation of --prompt, printed as it is made, or of every line "
                    "of --prompts FILE (one batch; one continuation per line). Ctrl-C prints what "
                    "was made and exits with status 130.")
    add_model_argument(generate)
    generate.add_argument("--prompt", default=None, help="text to continue (default: empty)")
    generate.add_argument("--prompts", default=None, metavar="FILE",
                          help="UTF-8 file of prompts, one per line, sampled in one batch; prints "
                               "one continuation per line (line breaks in it as \\n, a backslash "
                               "as \\\\), or with --json one JSON object per line; prompt i "
                               "draws with seed + i")
    generate.add_argument("--max-tokens", type=int, default=100,
                          help="most tokens to generate; stops earlier at <eod> (default: 100)")
    generate.add_argument("--temperature", type=float, default=1.0,
                          help="sampling temperature; 0 = greedy (default: 1.0)")
    generate.add_argument("--top-k", type=int, default=None,
                          help="sample among the k most likely tokens (default: all)")
    generate.add_argument("--top-p", type=float, default=None,
                          help="sample among the most likely tokens of total probability p "
                               "(default: 1, all)")
    generate.add_argument("--seed", type=int, default=None,
                          help="random seed for reproducible samples (default: fresh entropy)")
    add_output_options(generate)
    generate.set_defaults(handler=cmd_generate)

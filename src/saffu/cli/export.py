"""``saffu export DIR --onnx FILE``: write a saved model as an ONNX file (:mod:`saffu.export`)."""

from __future__ import annotations

import argparse

from saffu.cli._options import add_model_argument, add_output_options, emit
from saffu.export import INPUT, OPSET, OUTPUT, context_window, to_onnx
from saffu.model import SaffuModel


def cmd_export(args: argparse.Namespace) -> None:
    model = SaffuModel.load(args.model)
    path = to_onnx(model, args.onnx)
    window = context_window(model)
    reads = "the whole document from <sod>" if window is None else f"the last {window} tokens"
    result = {"model": args.model, "onnx": str(path), "bytes": path.stat().st_size, "opset": OPSET,
              "input": INPUT, "output": OUTPUT, "window": window, "vocab_size": model.vocab_size}
    emit(args, result, [
        f"wrote {path} ({result['bytes'] / 2**20:.1f} MB, ONNX opset {OPSET})",
        f"  input {INPUT}: int64 (batch, length), token ids left-padded with -1; each row is read "
        f"as {reads}",
        f"  output {OUTPUT}: float32 (batch, {model.vocab_size}), next-token log-probabilities",
        "  the tokenizer (Hugging Face format) is in the file's metadata: saffu.tokenizer"])


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``saffu`` parser."""
    export = commands.add_parser(
        "export", help="write a saved model as an ONNX file (runs with onnxruntime alone)",
        description="Write a saved model as one ONNX file: a graph from token ids to next-token "
                    "log-probabilities, with the tokenizer in its metadata (README: Running an "
                    "exported model). An existing FILE is replaced only if saffu exported it. "
                    "Needs pip install 'saffu[onnx]'.")
    add_model_argument(export)
    export.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    add_output_options(export)
    export.set_defaults(handler=cmd_export)

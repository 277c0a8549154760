"""Export a fitted :class:`~saffu.model.SaffuModel` to ONNX, to run it without saffu.

:func:`to_onnx` writes one ``.onnx`` file: a graph that maps a batch of token windows to
next-token log-probabilities, with every weight inside, and the tokenizer and what generation
needs in its metadata. ``onnxruntime`` and ``tokenizers`` are then all a program needs
(README "Running an exported model"; ``pip install 'saffu[onnx]'`` for the export itself).

The graph (opset :data:`OPSET`, IR version :data:`IR_VERSION`):

- input ``input_ids``: int64 (batch, length). Each row is a document so far, most recent token
  last, beginning with ``<sod>`` (id 2); shorter rows are padded on the left with −1 (any
  negative id means "no token", what the model sees before a document's start). A model
  whose context models are all radial (with or without skip inputs) reads only the last
  ``saffu.window`` tokens of a row, so a row may be cut to those; a block or document context
  model needs the row from its ``<sod>`` (``saffu.window`` is then ``"document"``), as its window
  depends on the position in the document. A row with no token at all gives finite output
  that means nothing.
- output ``log_probs``: float32 (batch, V), log p(next token | row), equal to
  :meth:`SaffuModel.log_proba` to float32 rounding (``tests/test_export.py``: 1e-5, or 1e-6 of
  a row's largest |log p| above 10).

Metadata (``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``), all
strings: ``saffu.format`` (``"saffu-onnx"``), ``saffu.format_version``, ``saffu.version``,
``saffu.config`` (the model's SaffuConfig as JSON), ``saffu.window``, ``saffu.special_ids``
(JSON: pad, unk, sod, eod), ``saffu.banned_ids`` (JSON list: tokens :meth:`SaffuModel.generate`
never samples) and ``saffu.tokenizer``: the tokenizer in the Hugging Face ``tokenizers`` JSON
format (``tokenizers.Tokenizer.from_str``). Its encodings equal saffu's for every kind (byte-level
BPE as is; char as a BPE without merges and with byte fallback; word as a word-level model
behind the word pattern, rewritten for Hugging Face's regex engine when it is the default one:
a custom pattern may split combining marks differently); decoding a word model joins tokens
with plain spaces. Token ids must be below V (onnxruntime rejects larger ones).

Writing: atomically (a temporary file and a rename); an existing file is replaced only if it is
a saffu ONNX export (its ``saffu.format`` metadata), anything else is refused.

Built with the ``onnx`` helper API rather than ``torch.onnx.export``: the export then needs no
PyTorch (an optional extra), the graph is exactly the forward pass of docs/internals.md with no
tracing of the training module's sparse paths (``embedding_bag``, ``nonzero``), and the opset and
IR version are chosen for older runtimes on small devices.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from saffu._io import atomic_write_bytes, check_output_file
from saffu._version import __version__
from saffu.errors import InvalidParameterError, MissingDependencyError
from saffu.kinds import Aggregation, ContextKind
from saffu.layers import ContextLayer
from saffu.model import SaffuModel
from saffu.tokenize import DEFAULT_WORD_PATTERN, EOD, PAD, SOD, UNK, Tokenizer

__all__ = ["FORMAT", "INPUT", "OUTPUT", "context_window", "huggingface_tokenizer", "is_saffu_onnx",
           "onnx_model", "to_onnx"]

FORMAT = "saffu-onnx"
FORMAT_VERSION = 1
OPSET = 17
IR_VERSION = 8  # what opset 17 needs; onnxruntime ≥ 1.13 runs it
INPUT, OUTPUT = "input_ids", "log_probs"
MASKED_SCORE = -1e30  # masked attention slots: finite, so a row with no tokens gives no NaN
MAX_FILE_BYTES = 2**31 - 2**24  # protobuf's 2 GiB limit on one message, less room for the graph
ONIGURUMA_WORD_PATTERN = r"[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s\x{1c}-\x{1f}]"
""":data:`saffu.tokenize.DEFAULT_WORD_PATTERN` for Oniguruma, the regex engine of Hugging Face
``tokenizers``: its ``\\w`` also takes combining marks and connector punctuation, its ``\\s``
leaves out U+001C-U+001F. The two split alike on every code point Python's Unicode tables
assign (tests/test_export.py checks the first three planes)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise MissingDependencyError.extra("ONNX export", "onnx", error) from None
    return onnx


def context_window(model: SaffuModel) -> int | None:
    """The most recent tokens the exported graph reads per row, or None when a block or document
    context model needs the whole document from its ``<sod>``."""
    if any(spec.kind is not ContextKind.RADIAL for spec in model.config.context_specs):
        return None
    return max(model.config.radial, model.config.skip)


def to_onnx(model: SaffuModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (see the module docstring for the graph).

    Raises:
        NotFittedError: the model is not fitted.
        MissingDependencyError: ``onnx`` is not installed (``pip install 'saffu[onnx]'``).
        InvalidParameterError: ``path`` is a directory, a file that is not a saffu ONNX
            export or in a folder that does not exist, or the weights exceed the 2 GiB an ONNX
            file holds.
        OSError: the file cannot be written (no permission, a full disk).
    """
    target = check_output_file(path, is_saffu_onnx, "saffu ONNX export")
    if not target.parent.is_dir():
        raise InvalidParameterError(f"cannot write {target}: {target.parent} is not an existing folder")
    data = onnx_model(model).SerializeToString()
    try:
        atomic_write_bytes(target, data)
    except OSError as error:  # name the file asked for, not the temporary one
        raise OSError(error.errno, error.strerror, os.fspath(target)) from error
    return target


def is_saffu_onnx(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ONNX file that :func:`to_onnx` wrote (what it may replace)."""
    onnx = _onnx()
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # not protobuf, not ONNX, unreadable: not ours
        return False
    return any(entry.key == "saffu.format" and entry.value == FORMAT for entry in proto.metadata_props)


def onnx_model(model: SaffuModel) -> Any:
    """The ``onnx.ModelProto`` of a fitted model, checked by ``onnx.checker``."""
    if not isinstance(model, SaffuModel):
        raise InvalidParameterError(f"to_onnx needs a SaffuModel, got {type(model).__name__}")
    model._require_fitted()
    onnx = _onnx()
    _check_size(model)
    graph = _Graph(onnx, model)
    proto = onnx.helper.make_model(
        graph.build(), producer_name="saffu", producer_version=__version__,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        doc_string="SAFFU language model: next-token log-probabilities of token windows")
    window = context_window(model)
    onnx.helper.set_model_props(proto, {
        "saffu.format": FORMAT,
        "saffu.format_version": str(FORMAT_VERSION),
        "saffu.version": __version__,
        "saffu.config": json.dumps(model.config.to_dict()),
        "saffu.window": "document" if window is None else str(window),
        "saffu.special_ids": json.dumps({"pad": PAD, "unk": UNK, "sod": SOD, "eod": EOD}),
        "saffu.banned_ids": json.dumps(np.flatnonzero(model.generation_mask()).tolist()),
        "saffu.tokenizer": huggingface_tokenizer(model.tokenizer).to_str(),
    })
    onnx.checker.check_model(proto)
    return proto


def _check_size(model: SaffuModel) -> None:
    total = sum(array.nbytes for array in model.state_arrays().values())
    if total > MAX_FILE_BYTES:
        raise InvalidParameterError(f"the model's weights take {total / 2**30:.2f} GiB; an ONNX file "
                                    f"holds at most 2 GiB, so this model cannot be exported")


class _Graph:
    """Builds the forward pass (docs/internals.md, "SAFFU passes") node by node.

    Shapes: N rows, L tokens per row after the left padding the graph adds itself, V the
    vocabulary, b the cipher bits, K a context model's size, D its hidden width.
    """

    def __init__(self, onnx: Any, model: SaffuModel) -> None:
        self.onnx, self.helper, self.model = onnx, onnx.helper, model
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()
        self.vocab, self.bits = model.cipher.vectors.shape

    # --- plumbing ---------------------------------------------------------------------------

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        """Append a node; returns the name of its (single) output."""
        output = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def const(self, name: str, value: Any = None, dtype: Any = np.int64) -> str:
        """An initializer holding ``value`` (weights float32, indices int64); a name seen before
        is the initializer made then (``value`` may be left out)."""
        if name not in self.names:
            self.names.add(name)
            array = np.ascontiguousarray(value, dtype=dtype)
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(f"ints_{len(self.initializers)}", list(values))

    def last(self, tensor: str, count: int) -> str:
        """The last ``count`` columns of an (N, L) tensor."""
        return self.op("Slice", tensor, self.ints(-count), self.ints(np.iinfo(np.int64).max), self.ints(1))

    # --- the forward pass -------------------------------------------------------------------

    def build(self) -> Any:
        model, helper = self.model, self.helper
        vectors = np.vstack([model.cipher.vectors, np.zeros((1, self.bits), dtype=np.float32)])
        self.cipher = self.const("cipher", vectors, np.float32)  # row V: "no token", zero
        reach = max(spec.size for spec in model.config.context_specs)
        padded = self.op("Pad", INPUT, self.ints(0, max(reach, model.config.skip, 1), 0, 0),
                         self.const("no_token", -1))
        self.valid = self.op("GreaterOrEqual", padded, self.const("zero", 0))
        self.index = self.op("Where", self.valid, padded, self.const("vocab", self.vocab))
        self.pivot = self.op("Gather", self.cipher, self.last(self.index, 1))  # (N, 1, b)
        hidden = [self.hidden(i, layer) for i, layer in enumerate(model.layers)]
        joined = hidden[0] if len(hidden) == 1 else self.op("Concat", *hidden, axis=1)
        logits = self.op("Add", self.op("MatMul", joined, self.const("output", model.output_t.T, np.float32)),
                         self.const("output_bias", model.output_bias, np.float32))
        if model.config.skip:
            logits = self.op("Add", logits, self.skip_logits())
        self.nodes.append(helper.make_node("LogSoftmax", [logits], [OUTPUT], axis=-1))
        return helper.make_graph(
            self.nodes, "saffu", [helper.make_tensor_value_info(INPUT, self.onnx.TensorProto.INT64,
                                                                ["batch", "length"])],
            [helper.make_tensor_value_info(OUTPUT, self.onnx.TensorProto.FLOAT, ["batch", self.vocab])],
            self.initializers)

    def hidden(self, i: int, layer: ContextLayer) -> str:
        """h = softmax(z U) (N, D) of context model i."""
        spec = layer.spec
        if spec.kind is ContextKind.RADIAL:
            z = self.attend(i, layer, self.last(self.index, spec.size))
        elif spec.kind is ContextKind.BLOCK:
            z = self.attend(i, layer, self.block_window(spec.size))
        elif spec.kind is ContextKind.DOCUMENT:
            z = self.document_mean()
        else:
            raise InvalidParameterError(f"ONNX export has no rule for context kind {spec.kind.value!r}")
        weights = self.const(f"hidden_{i}", layer.hidden_t.T, np.float32)  # (Z, D)
        return self.op("Softmax", self.op("MatMul", z, weights), axis=-1)

    def block_window(self, size: int) -> str:
        """(N, B) cipher-table rows of block(B)'s window: slot k holds token t−1−q+k for k ≤ q,
        with q = (pos − 1) mod B and pos the row's token count; row V (no token) for k > q."""
        count = self.op("ReduceSum", self.op("Cast", self.valid, to=self.onnx.TensorProto.INT64),
                        self.ints(1), keepdims=1)  # (N, 1): pos of the target
        recent = self.op("Mod", self.op("Sub", count, self.const("one", 1)), self.const("block", size))
        slots = self.const(f"slots_{size}", np.arange(size))
        last_slot = self.const(f"block_last_{size}", size - 1)
        column = self.op("Min", self.op("Add", self.op("Sub", last_slot, recent), slots), last_slot)
        tokens = self.op("GatherElements", self.last(self.index, size), column, axis=1)
        inside = self.op("LessOrEqual", slots, recent)
        return self.op("Where", inside, tokens, self.const("vocab"))

    def attend(self, i: int, layer: ContextLayer, window: str) -> str:
        """z (N, b) or (N, K·b): the window's vectors weighted by softmax_valid(s W), s = X x_pivot."""
        X = self.op("Gather", self.cipher, window)  # (N, K, b)
        s = self.op("ReduceSum", self.op("Mul", X, self.pivot), self.ints(2), keepdims=0)  # (N, K)
        scores = self.op("MatMul", s, self.const(f"attention_{i}", layer.attention, np.float32))
        inside = self.op("Less", window, self.const("vocab"))
        scores = self.op("Where", inside, scores, self.const("masked", MASKED_SCORE, np.float32))
        weighted = self.op("Mul", self.op("Unsqueeze", self.op("Softmax", scores, axis=-1), self.ints(2)), X)
        if Aggregation.parse(self.model.config.aggregation) is Aggregation.CAT:
            return self.op("Reshape", weighted, self.ints(0, -1))
        return self.op("ReduceSum", weighted, self.ints(1), keepdims=0)

    def document_mean(self) -> str:
        """z (N, b): the row's vectors summed (in float64) and divided by their L1 norm."""
        double, single = self.onnx.TensorProto.DOUBLE, self.onnx.TensorProto.FLOAT
        X = self.op("Cast", self.op("Gather", self.cipher, self.index), to=double)
        total = self.op("ReduceSum", X, self.ints(1), keepdims=0)
        mass = self.op("ReduceSum", self.op("Abs", total), self.ints(1), keepdims=1)
        mass = self.op("Max", mass, self.const("tiny", np.finfo(np.float64).tiny, np.float64))
        return self.op("Cast", self.op("Div", total, mass), to=single)

    def skip_logits(self) -> str:
        """x_skip S (N, V): the vectors of tokens t−1 … t−S side by side, times skip_weight."""
        lags = self.model.config.skip
        previous = self.op("Gather", self.last(self.index, lags), self.ints(*range(lags - 1, -1, -1)), axis=1)
        x = self.op("Reshape", self.op("Gather", self.cipher, previous), self.ints(0, -1))
        return self.op("MatMul", x, self.const("skip_weight", self.model.skip_weight, np.float32))


# --- the tokenizer in the Hugging Face format ---------------------------------------------------


def huggingface_tokenizer(tokenizer: Tokenizer) -> Any:
    """A ``tokenizers.Tokenizer`` whose ``encode(text).ids`` equal ``tokenizer.encode(text)``.

    ``encode_special_tokens`` is not part of the Hugging Face file: set it to True after loading
    a BPE tokenizer, so that a literal ``"<eod>"`` in a text is encoded as text (as saffu does).
    A word tokenizer's own pattern (not the default) is passed to Hugging Face's regex engine
    (Oniguruma) as it is: where it uses ``\\w`` or ``\\s``, a combining mark may split apart
    differently (see :data:`ONIGURUMA_WORD_PATTERN`).
    """
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    document = json.loads(tokenizer.to_json())
    if tokenizer.kind == "bpe":
        return HFTokenizer.from_str(json.dumps(document["vocabulary"]))
    vocabulary = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}
    if tokenizer.kind == "char":
        hf = HFTokenizer(models.BPE(vocabulary, [], unk_token="<unk>",
                                    byte_fallback=document["options"]["byte_fallback"]))
        shown = {"<pad>": "", "<unk>": "\ufffd", "<sod>": "", "<eod>": ""}  # as saffu decodes them
        hf.decoder = decoders.Sequence([*(decoders.Replace(token, text) for token, text in shown.items()),
                                        decoders.ByteFallback(), decoders.Fuse()])
        return hf
    if tokenizer.kind == "word":
        pattern = document["options"]["pattern"]
        try:
            words = Regex(ONIGURUMA_WORD_PATTERN if pattern == DEFAULT_WORD_PATTERN else pattern)
        except Exception as error:  # tokenizers raises its own exception type
            raise InvalidParameterError(f"the word pattern {pattern!r} is not a regular expression "
                                        f"that Hugging Face tokenizers reads ({error})") from None
        hf = HFTokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
        hf.pre_tokenizer = pre_tokenizers.Split(words, "removed", invert=True)
        return hf
    raise InvalidParameterError(f"ONNX export has no Hugging Face form of the {tokenizer.kind!r} tokenizer")

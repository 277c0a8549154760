"""ONNX export (saffu.export, ``saffu export``): onnxruntime equals the NumPy model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_documents

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from saffu.cli import main  # noqa: E402
from saffu.errors import InvalidParameterError, MissingDependencyError, NotFittedError  # noqa: E402
from saffu.export import context_window, huggingface_tokenizer, is_saffu_onnx, to_onnx  # noqa: E402
from saffu.model import SaffuConfig, SaffuModel  # noqa: E402
from saffu.tokenize import DEFAULT_WORD_PATTERN, make_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(tokenizer="char", bits=None, hidden=None, tau=1.0, output_tau=1.0, radial=3, block=4,
             document=True, skip=0)
CONFIGS = {
    "defaults, smaller": dict(tokenizer="bpe", vocab_size=300, bits=64, hidden=32),  # radial 2 cat, skip 2
    "all kinds, sum": SMALL,
    "all kinds, cat, skip": {**SMALL, "aggregation": "cat", "skip": 2},
    "block only": {**SMALL, "radial": 0, "block": 5, "document": False, "aggregation": "cat"},
    "radial only, skip": {**SMALL, "radial": 6, "block": 0, "document": False, "skip": 3},
    "document only, skip": {**SMALL, "radial": 0, "block": 0, "skip": 1},
    "word, uniform attention": {**SMALL, "tokenizer": "word", "attention": "uniform", "skip": 5,
                                "cipher_smoothing": True},
}
TEXTS = ["héllo wörld ☃ 日本語 — naïve o'er <eod> <sod>x", "", "  the\tking\n\nand  queen ", "can't 3.14"]


def fitted(config: dict, seed: int | None = 1) -> SaffuModel:
    """A model fitted on the tiny corpus; with ``seed``, random attention, hidden and cipher
    weights (sharper than the explicit ones, and vectors of any sign, as a thawed cipher's)."""
    model = SaffuModel(SaffuConfig(**config)).fit(tiny_documents(), verbose=0)
    if seed is not None:
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            layer.attention = rng.normal(size=layer.attention.shape).astype(np.float32)
            layer.hidden_t = rng.normal(size=layer.hidden_t.shape).astype(np.float32)
        noise = rng.normal(scale=0.02, size=model.cipher.vectors.shape)
        model.cipher = model.cipher.with_vectors((model.cipher.vectors + noise).astype(np.float32))
    return model


def rows(ids: np.ndarray, pos: np.ndarray, window: int | None = None) -> np.ndarray:
    """(m, L) int64: for each target of a chunk, its document so far (cut to the last ``window``
    tokens), left-padded with −1 to the longest row."""
    contexts = [ids[t - pos[t]:t][-window if window else 0:] for t in np.flatnonzero(pos > 0)]
    out = np.full((len(contexts), max(map(len, contexts))), -1, dtype=np.int64)
    for row, context in zip(out, contexts, strict=True):
        row[len(row) - len(context):] = context
    return out


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to 1e-5, or to 1e-6 of the row's largest |log p| where that is above 10: float32
    holds log-probabilities near −80 (the small default-shaped model's) to 8e-6, and there the
    NumPy model is itself 2e-5 from a float64 forward pass (tests/test_model.py's reference)."""
    assert got.shape == expected.shape and got.dtype == np.float32
    scale = np.maximum(np.abs(expected).max(axis=1, keepdims=True), 10.0)
    worst = (np.abs(got - expected) / scale).max()
    assert worst <= 1e-6, f"max |ONNX − NumPy| is {worst:.2e} of the row's largest |log p|"


def run(path: Path, input_ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["log_probs"], {"input_ids": input_ids})[0]


def metadata(path: Path) -> dict[str, str]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta() \
        .custom_metadata_map


@pytest.fixture(scope="module")
def model() -> SaffuModel:
    return fitted({**SMALL, "skip": 2})


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    return to_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


# --- the graph equals the model ---------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_onnx_equals_numpy_log_proba(name, tmp_path):
    model = fitted(CONFIGS[name])
    path = to_onnx(model, tmp_path / "m.onnx")
    ids, pos = next(iter(model.encode(tiny_documents(4, seed=1)).chunks()))
    expected = model.log_proba(ids, pos)
    assert_close(run(path, rows(ids, pos)), expected)  # every target: short and long contexts
    t = int(np.flatnonzero(pos > 0)[5])  # one row alone, without padding
    assert_close(run(path, ids[None, t - pos[t]:t].astype(np.int64)), expected[5:6])
    window = context_window(model)
    if window is not None:  # a radial-only model reads the last `window` tokens: cut rows agree
        assert_close(run(path, rows(ids, pos, window)), expected)


def test_the_explicit_weights_export_too(tmp_path):
    model = fitted(CONFIGS["all kinds, cat, skip"], seed=None)
    ids, pos = next(iter(model.encode(tiny_documents(3, seed=2)).chunks()))
    assert_close(run(to_onnx(model, tmp_path / "m.onnx"), rows(ids, pos)), model.log_proba(ids, pos))


def test_window_depends_on_the_context_kinds():
    assert context_window(fitted(CONFIGS["radial only, skip"], seed=None)) == 6
    assert context_window(fitted({**CONFIGS["radial only, skip"], "skip": 9}, seed=None)) == 9
    assert context_window(fitted(CONFIGS["block only"], seed=None)) is None


def test_a_row_without_tokens_gives_finite_output(exported):
    out = run(exported, np.full((2, 3), -1, dtype=np.int64))
    assert np.isfinite(out).all()


def test_metadata_holds_what_generation_needs(model, exported):
    meta = metadata(exported)
    assert meta["saffu.format"] == "saffu-onnx"
    assert SaffuConfig.from_dict(json.loads(meta["saffu.config"])) == model.config
    assert meta["saffu.window"] == "document"
    assert json.loads(meta["saffu.special_ids"]) == {"pad": 0, "unk": 1, "sod": 2, "eod": 3}
    banned = np.zeros(model.vocab_size, dtype=bool)
    banned[json.loads(meta["saffu.banned_ids"])] = True
    np.testing.assert_array_equal(banned, model.generation_mask())
    from tokenizers import Tokenizer

    hf = Tokenizer.from_str(meta["saffu.tokenizer"])
    assert hf.encode(TEXTS[0]).ids == model.tokenizer.encode(TEXTS[0]).tolist()
    assert is_saffu_onnx(exported)


@pytest.mark.parametrize("kind, options", [("bpe", {"vocab_size": 300}), ("char", {}),
                                           ("char", {"byte_fallback": False}), ("word", {"vocab_size": 20})])
def test_huggingface_tokenizer_encodes_like_saffu(kind, options):
    tokenizer = make_tokenizer(kind, **options).fit(tiny_documents())
    hf = huggingface_tokenizer(tokenizer)
    hf.encode_special_tokens = True
    for text in [*TEXTS, *tiny_documents(3, seed=4)]:
        ids = tokenizer.encode(text)
        assert hf.encode(text, add_special_tokens=False).ids == ids.tolist(), (kind, text)
        if kind != "word":  # a word model's decoding joins tokens with plain spaces
            assert hf.decode([2, *ids.tolist(), 3]) == tokenizer.decode(ids)


def test_default_word_pattern_splits_like_python_re():
    """Oniguruma's reading of the default word pattern splits every assigned code point of the
    first three planes (combining marks, U+001C-U+001F, ...) as Python's ``re`` does."""
    import unicodedata

    from tokenizers import pre_tokenizers

    split = huggingface_tokenizer(make_tokenizer("word").fit(["a b"])).pre_tokenizer
    assert isinstance(split, pre_tokenizers.Split)
    python = re.compile(DEFAULT_WORD_PATTERN)
    bad = [hex(code) for code in range(0x30000) if unicodedata.category(chr(code)) not in ("Cn", "Cs")
           and [w for w, _ in split.pre_tokenize_str(f"a{chr(code)}b")] != python.findall(f"a{chr(code)}b")]
    assert bad == []


def test_a_word_pattern_huggingface_cannot_read_is_refused(tmp_path):
    tokenizer = make_tokenizer("word", pattern=r"(?a:\w+)|[^\w\s]").fit(["a b"])
    with pytest.raises(InvalidParameterError, match="Hugging Face"):
        huggingface_tokenizer(tokenizer)


def _snippet(document: Path) -> str:
    """The Python block of the "Running an exported model" section of ``document``."""
    text = document.read_text()
    section = text[text.index("Running an exported model"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_snippet_generates_like_the_model(tmp_path):
    """The README's onnxruntime loop (the same in docs/api.md), greedy, samples what
    SaffuModel.generate samples; it reads the file alone (no saffu import)."""
    snippet = _snippet(ROOT / "README.md")
    assert snippet == _snippet(ROOT / "docs" / "api.md")
    assert "saffu" not in snippet.replace("saffu.", "").replace('"saffu', "")
    texts = []
    for name in ("defaults, smaller", "all kinds, cat, skip", "radial only, skip"):  # bpe, char; rows cut
        model = fitted(CONFIGS[name], seed=None)
        path = to_onnx(model, tmp_path / "model.onnx")
        namespace: dict = {}
        exec(compile(snippet.replace('"model.onnx"', repr(str(path))), "README", "exec"), namespace)
        for prompt in ("the king", ""):
            texts.append(namespace["generate"](prompt, max_tokens=12, temperature=0))
            assert texts[-1] == model.generate(prompt, max_tokens=12, temperature=0)
    assert all(texts)


# --- files and errors ---------------------------------------------------------------------------


def test_export_replaces_only_its_own_files(model, tmp_path):
    path = tmp_path / "m.onnx"
    to_onnx(model, path)
    to_onnx(model, path)  # a saffu export: replaced
    assert is_saffu_onnx(path) and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not saffu's")
    with pytest.raises(InvalidParameterError, match="not a saffu ONNX export"):
        to_onnx(model, other)
    assert other.read_bytes() == b"not saffu's"
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX file saffu did not write
    graph = onnx.helper.make_graph([], "g", [], [])
    onnx.save(onnx.helper.make_model(graph), foreign)
    with pytest.raises(InvalidParameterError, match="not a saffu ONNX export"):
        to_onnx(model, foreign)
    for bad in (tmp_path, tmp_path / "missing" / "m.onnx", other / "m.onnx"):
        with pytest.raises(InvalidParameterError):
            to_onnx(model, bad)


def test_bad_models_are_refused(model, tmp_path, monkeypatch):
    with pytest.raises(NotFittedError):
        to_onnx(SaffuModel(SaffuConfig(**SMALL)), tmp_path / "m.onnx")
    with pytest.raises(InvalidParameterError, match="needs a SaffuModel"):
        to_onnx("model", tmp_path / "m.onnx")
    monkeypatch.setattr("saffu.export.MAX_FILE_BYTES", 1000)
    with pytest.raises(InvalidParameterError, match="at most 2 GiB"):
        to_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_names_the_extra(model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'saffu\[onnx\]'"):
        to_onnx(model, tmp_path / "m.onnx")


def test_cli_export_writes_a_loadable_file(model, tmp_path, capsys):
    model.save(tmp_path / "model")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "model"), "--onnx", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["onnx"] == str(out) and result["bytes"] == out.stat().st_size
    assert result["window"] is None and result["vocab_size"] == model.vocab_size
    ids, pos = next(iter(model.encode(tiny_documents(2, seed=3)).chunks()))
    assert_close(run(out, rows(ids, pos)), model.log_proba(ids, pos))
    assert main(["export", str(tmp_path / "model"), "--onnx", str(out)]) == 0
    assert "next-token log-probabilities" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing model", "missing folder", "folder is a file", "foreign file"])
def test_cli_export_errors_are_one_line(case, model, tmp_path, capsys):
    model.save(tmp_path / "model")
    (tmp_path / "file.txt").write_text("mine")
    directory, target = {
        "missing model": (tmp_path / "nope", tmp_path / "m.onnx"),
        "missing folder": (tmp_path / "model", tmp_path / "nope" / "m.onnx"),
        "folder is a file": (tmp_path / "model", tmp_path / "file.txt" / "m.onnx"),
        "foreign file": (tmp_path / "model", tmp_path / "file.txt"),
    }[case]
    assert main(["export", str(directory), "--onnx", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saffu export: error: ") and err.count("\n") == 1
    assert (tmp_path / "file.txt").read_text() == "mine"

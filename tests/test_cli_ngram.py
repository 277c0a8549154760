"""``saffu ngram fit|eval`` and ``saffu eval --ngram`` end to end on a tiny corpus."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_documents
from saffu.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ngram")
    for name, docs in (("train", tiny_documents(16)), ("dev", tiny_documents(4, seed=7)),
                       ("test", tiny_documents(4, seed=8))):
        (root / name).mkdir()
        for i, text in enumerate(docs):
            (root / name / f"{i}.txt").write_text(text)
    assert main(["fit", str(root / "train"), "--out", str(root / "m"), "--tokenizer", "char",
                 "--bits", "min", "--hidden", "bits", "--verbose", "0"]) == 0
    return root


def run_json(capsys, argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_eval_and_mix_with_a_saffu_model(files, capsys):
    root = files
    fitted = run_json(capsys, ["ngram", "fit", str(root / "train"), "--out", str(root / "kn.safetensors"),
                               "--order", "3", "--tokenizer-from", str(root / "m"),
                               "--arpa", str(root / "kn.arpa")])
    assert fitted["order"] == 3 and (root / "kn.arpa").read_text().startswith("\\data\\")
    alone = run_json(capsys, ["ngram", "eval", str(root / "kn.safetensors"), str(root / "test")])
    arpa = run_json(capsys, ["ngram", "eval", str(root / "kn.arpa"), str(root / "test"),
                             "--tokenizer-from", str(root / "m")])
    assert arpa["perplexity"] == pytest.approx(alone["perplexity"], rel=1e-6)
    saffu = run_json(capsys, ["eval", str(root / "m"), str(root / "test")])
    mixed = run_json(capsys, ["eval", str(root / "m"), str(root / "test"), "--ngram",
                              str(root / "kn.safetensors"), "--tune-on", str(root / "dev")])
    assert 0 <= mixed["weight"] <= 1 and mixed["tokens"] == saffu["tokens"] == alone["tokens"]
    fixed = run_json(capsys, ["eval", str(root / "m"), str(root / "test"), "--ngram",
                              str(root / "kn.safetensors"), "--weight", "1"])
    assert fixed["perplexity"] == pytest.approx(saffu["perplexity"], rel=1e-5)


def test_mistakes_are_one_line_errors(files, capsys):
    root = files
    (root / "mine.txt").write_text("not a model")
    assert main(["ngram", "fit", str(root / "train"), "--out", str(root / "mine.txt"),
                 "--tokenizer", "char"]) == 2
    assert "exists and is not a saffu n-gram model" in capsys.readouterr().err
    assert (root / "mine.txt").read_text() == "not a model"
    assert main(["eval", str(root / "m"), str(root / "test"), "--ngram", str(root / "mine.txt"),
                 "--weight", "0.5"]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err

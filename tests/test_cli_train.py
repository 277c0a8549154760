"""``saffu train`` and ``saffu finetune`` end to end on a tiny corpus (PyTorch needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import tiny_documents
from saffu.cli import build_parser
from saffu.model import SaffuModel


def test_cli_imports_without_torch():
    """Every command is registered without importing PyTorch (only train/finetune need it)."""
    code = "import sys, saffu.cli; saffu.cli.build_parser(); sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def run_command(argv: list[str], capsys) -> dict:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return json.loads(capsys.readouterr().out)


def test_cli_train_cold_then_finetune(tmp_path, capsys):
    pytest.importorskip("torch")
    for i, text in enumerate(tiny_documents()):
        (tmp_path / f"doc{i:02d}.txt").write_text(text)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "held.txt").write_text(" ".join(tiny_documents(4, seed=1)))
    files = [str(p) for p in sorted(tmp_path.glob("doc*.txt"))]
    options = ["--json", "--verbose", "0", "--jobs", "1", "--batch-targets", "64",
               "--dev", str(tmp_path / "dev")]
    cold = run_command(["train", "--cold", *files, "--out", str(tmp_path / "cold"), "--tokenizer", "char",
                        "--radial", "3", "--lr", "0.01", "--epochs", "2", *options], capsys)
    assert cold["start"] == "cold" and cold["stopped"] == "epochs"
    assert cold["dev_perplexity"] < cold["initial_dev_perplexity"]
    tuned = run_command(["finetune", str(tmp_path / "cold"), *files, "--out", str(tmp_path / "tuned"),
                         "--max-tokens", "200", *options], capsys)
    assert tuned["initial_dev_perplexity"] == pytest.approx(cold["dev_perplexity"], rel=1e-5)
    assert tuned["stopped"] == "max_tokens" and tuned["tokens_seen"] >= 200
    assert SaffuModel.load(tmp_path / "tuned").config.radial == 3
    with pytest.raises(ValueError, match="epochs"):  # before any slow work
        run_command(["finetune", str(tmp_path / "missing"), *files, "--out", str(tmp_path / "x"),
                     "--epochs", "-1"], capsys)

"""The ``saffu`` command line end to end on a tiny corpus."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import tiny_documents
from saffu.cli import main
from saffu.model import SaffuModel

SMALL = ["--tokenizer", "char", "--bits", "none", "--hidden", "none", "--radial", "3", "--block", "4",
         "--verbose", "0"]


def write_tiny_corpus(root):
    """``tiny_documents(8)`` as ``root/doc0.txt`` ... ``doc7.txt``; returns ``root``."""
    for i, text in enumerate(tiny_documents(8)):
        (root / f"doc{i}.txt").write_text(text + "\n")
    return root


def fit_small(corpus, out):
    """``saffu fit`` of the tiny corpus in ``corpus`` with the SMALL options, to ``out``."""
    assert main(["fit", str(corpus / "doc*.txt"), "--out", str(out), *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = write_tiny_corpus(tmp_path_factory.mktemp("corpus"))
    held = root / "held"
    held.mkdir()
    (held / "a.txt").write_text(" ".join(tiny_documents(3, seed=4)) + "\n")
    return root


@pytest.fixture(scope="module")
def model_dir(corpus, tmp_path_factory):
    return fit_small(corpus, tmp_path_factory.mktemp("models") / "m")


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_writes_a_loadable_model(model_dir):
    model = SaffuModel.load(model_dir)
    assert model.config.radial == 3 and model.config.tokenizer == "char"


def test_eval_json_equals_the_api(capsys, corpus, model_dir):
    result = run_json(capsys, ["eval", str(model_dir), str(corpus / "held"), "--json"])
    from saffu.corpus import read_documents

    api = SaffuModel.load(model_dir).score(read_documents([str(corpus / "held")]))
    assert result["perplexity"] == pytest.approx(api["perplexity"])
    assert result["bits_per_char"] == pytest.approx(api["bits_per_char"])
    assert result["tokens"] == api["tokens"]


def test_generate_json_is_seeded(capsys, model_dir):
    argv = ["generate", str(model_dir), "--prompt", "the", "--max-tokens", "15", "--seed", "3", "--json"]
    first = run_json(capsys, argv)
    assert first == run_json(capsys, argv)
    assert first["prompt"] == "the"


def test_fit_json_summary(capsys, corpus, tmp_path):
    result = run_json(capsys, ["fit", str(corpus / "doc*.txt"), "--out", str(tmp_path / "m"),
                               "--json", *SMALL])
    assert result["parameters"] > 0 and result["tokens"] > 0 and result["seconds"] > 0


@pytest.mark.parametrize("argv, message", [
    (["eval", "/nonexistent/model", "x.txt"], "does not exist"),
    (["fit", "/nonexistent/*.txt", "--out", "/tmp/never"], "no"),
    (["fit", "x.txt", "--out", "/tmp/never", "--tau", "-1"], "tau"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_corrupted_model_is_a_user_error(capsys, corpus, model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "weights.safetensors").write_bytes(b"garbage")
    assert main(["eval", str(broken), str(corpus / "held")]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_console_script_info_json():
    result = subprocess.run([sys.executable, "-m", "saffu.cli", "info", "--json"],
                            capture_output=True, text=True, check=True)
    info = json.loads(result.stdout)
    assert info["backend"] in info["available_backends"]


@pytest.mark.slow
def test_demo_compares_with_kneser_ney_saves_and_says_what_next(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_json(capsys, ["demo", "--out", str(out), "--max-tokens", "5", "--verbose", "0",
                               "--json"])
    assert result["dev_perplexity"] > 1 and result["kneser_ney_trigram_dev_perplexity"] > 1
    assert (out / "model.json").is_file()
    assert main(["demo", "--out", str(out), "--max-tokens", "5", "--verbose", "0"]) == 0
    assert "next:" in capsys.readouterr().out


def test_show_describes_a_saved_model(model_dir, capsys):
    shown = run_json(capsys, ["show", str(model_dir), "--json"])
    assert shown["checksums"] == "verified" and shown["parameters"] == sum(
        shown["parameters_by_layer"].values())
    assert shown["context_models"] == ["radial3", "block4", "radial1"] and shown["files"]["model.json"] > 0


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("saffu ")


def test_info_reads_versions_without_importing_the_heavy_packages():
    code = ("import sys; from saffu._backend import config_info; info = config_info(); "
            "sys.exit(any(m in sys.modules for m in ('torch', 'dask', 'sklearn')) or not info['numpy'])")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_fit_logs_one_line_per_step_when_stderr_is_not_a_terminal(corpus, tmp_path):
    result = subprocess.run([sys.executable, "-m", "saffu.cli", "fit", str(corpus / "doc*.txt"), "--out",
                             str(tmp_path / "m"), "--tokenizer", "char", "--bits", "min"],
                            capture_output=True, text=True, check=True)
    lines = result.stderr.splitlines()
    assert any("tokenizer" in line for line in lines) and any("experts pass" in line for line in lines)
    assert any("encoded the corpus" in line for line in lines)
    quiet = subprocess.run([sys.executable, "-m", "saffu.cli", "fit", str(corpus / "doc*.txt"), "--out",
                            str(tmp_path / "m"), "--tokenizer", "char", "--quiet"],
                           capture_output=True, text=True, check=True)
    assert quiet.stderr == ""


def test_the_first_numba_use_with_an_empty_cache_says_it_compiles(monkeypatch, capsys):
    from saffu import _backend

    if "numba" not in _backend.available_backends():
        pytest.skip("numba not installed")
    monkeypatch.setattr(_backend, "_announced", [])
    monkeypatch.setattr(_backend, "numba_cache_files", lambda: 0)
    _backend.backend_module("numba")
    _backend.backend_module("numba")
    assert capsys.readouterr().err.count("compiling the Numba kernels") == 1

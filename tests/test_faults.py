"""Fault injection: interrupted commands end promptly, leave no orphaned process, and a rerun
completes; bad files and impossible requests give one-line errors (docs/guarantees.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import tiny_documents

TESTS = Path(__file__).parent
GRID = """
[fixed]
tokenizer = "char"
hidden = 16
document = false
[[grid]]
bits = ["min", 32, 64, 128]
radial = [1, 2, 3]
tau = [1, 2, 3]
"""


@pytest.fixture
def sweep_files(tmp_path):
    docs = tiny_documents(60, seed=5)
    for name, part in (("train", docs[:48]), ("dev", docs[48:54]), ("test", docs[54:])):
        (tmp_path / name).mkdir()
        for i, text in enumerate(part):
            (tmp_path / name / f"{i}.txt").write_text(text)
    (tmp_path / "grid.toml").write_text(GRID)
    return tmp_path


def _sweep_command(root: Path) -> list[str]:
    return [sys.executable, "-m", "saffu.cli", "sweep", str(root / "train"), "--dev", str(root / "dev"),
            "--test", str(root / "test"), "--grid", str(root / "grid.toml"), "--out", str(root / "out"),
            "--jobs", "2", "--verbose", "0"]


def _start_and_wait_for_workers(root: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    process = subprocess.Popen(_sweep_command(root), cwd=TESTS, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        workers = psutil.Process(process.pid).children(recursive=True)
        variants = root / "out" / "variants"
        stored = list(variants.glob("*.json")) if variants.is_dir() else []
        if len(workers) >= 2 and stored:
            return process, workers
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the sweep did not start its workers in time")


def _assert_gone(workers: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"


@pytest.mark.slow
@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
def test_an_interrupted_sweep_stops_promptly_without_orphans_and_resumes(sweep_files, signals):
    process, workers = _start_and_wait_for_workers(sweep_files)
    for signum in signals:
        os.kill(process.pid, signum)
        time.sleep(0.1)
    try:
        status = process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the sweep hung after the interrupt") from None
    assert status == 130 and process.stderr.read() == "saffu sweep: interrupted\n"  # one line
    _assert_gone(workers)
    rerun = subprocess.run([*_sweep_command(sweep_files), "--json"], cwd=TESTS, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["variants"] == 36


@pytest.mark.slow
def test_a_killed_sweep_takes_its_workers_with_it(sweep_files):
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux-only")
    process, workers = _start_and_wait_for_workers(sweep_files)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    _assert_gone(workers)


def test_separator_escapes_and_a_warning_when_it_never_matches(tmp_path, capsys):
    from saffu.cli import main

    (tmp_path / "a.txt").write_text("first document\n\nsecond document\n")
    (tmp_path / "b.txt").write_text("one document only\n")
    out = tmp_path / "m"
    argv = ["fit", str(tmp_path / "*.txt"), "--out", str(out), "--tokenizer", "char", "--verbose", "0",
            "--json", "--separator"]
    assert main([*argv, "\\n\\n"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3
    with pytest.warns(UserWarning, match="occurs in none of the 2 corpus file"):
        assert main([*argv, "@@"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["generate", "{model}", "--seed", "-1"], "seed must be None or an int ≥ 0"),
    (["generate", "{model}", "--temperature", "nan"], "temperature must be a finite number"),
    (["eval", "{model}", "/dev/null"], "not a regular file or a directory"),
    (["eval", "{corpus}", "{corpus}"], "is a file, not a saffu model directory"),
])
def test_ordinary_mistakes_get_one_line_errors(tmp_path, capsys, argv, message):
    from saffu.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(tiny_documents(4)))
    model = tmp_path / "m"
    assert main(["fit", str(corpus), "--out", str(model), "--tokenizer", "char", "--verbose", "0"]) == 0
    capsys.readouterr()
    assert main([a.format(model=model, corpus=corpus) for a in argv]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_a_word_model_continues_the_prompt_with_a_space():
    from saffu.model import SaffuConfig, SaffuModel

    docs = ["And Ruth said to her mother that she would go", "And Ruth said nothing more"] * 5
    model = SaffuModel(SaffuConfig(tokenizer="word", vocab_size=64, bits=None, hidden=None,
                                   radial=1)).fit(docs, verbose=0)
    text = model.generate("And Ruth", max_tokens=3, temperature=0)
    assert text.startswith(" said")


def test_partial_fit_of_a_loaded_model_refuses_instead_of_forgetting(tmp_path):
    from saffu.errors import NotFittedError
    from saffu.model import SaffuConfig, SaffuModel

    model = SaffuModel(SaffuConfig(tokenizer="char", bits=None, hidden=None)).fit(tiny_documents(),
                                                                                  verbose=0)
    loaded = SaffuModel.load(model.save(tmp_path / "m"))
    with pytest.raises(NotFittedError, match="partial_fit needs the statistics"):
        loaded.partial_fit(tiny_documents(3, seed=9), verbose=0)


def test_the_classifier_refuses_counts_whose_logits_overflow():
    import numpy as np

    from saffu.classify import ExplicitSoftmaxClassifier
    from saffu.errors import InvalidParameterError

    X = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 2.0], [1.0, 1.0, 0.0]])
    clf = ExplicitSoftmaxClassifier().fit(X, [0, 1, 0])
    with pytest.raises(InvalidParameterError, match=r"X\[1\] holds counts so large"):
        clf.predict_proba(np.array([[1.0, 0.0, 0.0], [1e308, 1e308, 1e308]]))
    assert np.isfinite(clf.predict_proba(X)).all()


def test_a_config_too_large_for_the_machine_is_refused_before_any_work():
    from saffu.errors import InvalidParameterError
    from saffu.fit import estimated_bytes
    from saffu.model import SaffuConfig, SaffuModel

    huge = SaffuConfig(bits=65536, hidden=65536, radial=1024, vocab_size=65536)
    assert sum(estimated_bytes(huge).values()) > 2**46
    with pytest.raises(InvalidParameterError, match="GiB for its statistics"):
        SaffuModel(huge).fit(iter(["never read"]), verbose=0)
    assert sum(estimated_bytes(SaffuConfig()).values()) < 2**31  # the default fits in 2 GB


@pytest.mark.slow
def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_model(tmp_path):
    """SIGKILL a process that saves a model over and over: after every kill the directory holds
    a complete model (the old one or the new one), and the next save clears the leftovers."""
    import random

    from saffu.model import SaffuConfig, SaffuModel

    model = SaffuModel(SaffuConfig(tokenizer="char", bits=None, hidden=None)).fit(tiny_documents(),
                                                                                  verbose=0)
    source = model.save(tmp_path / "source")
    target = tmp_path / "model"
    model.save(target)
    code = ("import sys; from saffu.model import SaffuModel; m = SaffuModel.load(sys.argv[1])\n"
            "while True: m.save(sys.argv[2])\n")
    rng = random.Random(0)
    for _ in range(6):
        writer = subprocess.Popen([sys.executable, "-c", code, str(source), str(target)], cwd=TESTS)
        time.sleep(1.0 + rng.random())  # start-up, then somewhere inside a save
        writer.kill()
        writer.wait(timeout=10)
        assert SaffuModel.load(target).config == model.config
    model.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "source"]

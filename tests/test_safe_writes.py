"""saffu never deletes or replaces what it did not write, and a model on disk is what was saved."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from conftest import tiny_documents
from saffu import _io
from saffu.cli import main
from saffu.errors import InvalidParameterError, ModelFormatError
from saffu.model import SaffuConfig, SaffuModel

SMALL = SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=2)


@pytest.fixture(scope="module")
def model() -> SaffuModel:
    return SaffuModel(SMALL).fit(tiny_documents(), verbose=0)


def test_a_directory_with_other_files_is_refused_and_left_intact(tmp_path, model):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    with pytest.raises(InvalidParameterError, match="not a saffu model"):
        model.save(project)
    assert (project / "notes.txt").read_text() == "mine" and sorted(os.listdir(project)) == ["notes.txt"]
    model.save(project / "model")  # a new directory inside it is fine


def test_a_saffu_model_is_replaced_and_an_empty_directory_used(tmp_path, model):
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")
    other = SaffuModel(SMALL.replace(radial=1)).fit(tiny_documents(), verbose=0)
    other.save(tmp_path / "empty")
    assert SaffuModel.load(tmp_path / "empty").config.radial == 1
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no temporary left behind
    (tmp_path / "empty" / "extra.txt").write_text("a file saffu did not write")
    with pytest.raises(InvalidParameterError, match="not a saffu model"):
        model.save(tmp_path / "empty")


@pytest.mark.parametrize("out", ["", ".", "..", "./"])
def test_the_working_directory_and_its_parents_are_refused_before_any_work(tmp_path, monkeypatch,
                                                                           capsys, out):
    work = tmp_path / "work"
    work.mkdir()
    (work / "corpus.txt").write_text(" ".join(tiny_documents(3)))
    monkeypatch.chdir(work)
    assert main(["fit", "corpus.txt", "--out", out, "--tokenizer", "char", "--verbose", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error:" in error
    assert sorted(os.listdir(work)) == ["corpus.txt"]


def test_an_out_that_is_a_file_is_refused_before_the_fit(tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(" ".join(tiny_documents(3)))
    (tmp_path / "taken").write_text("a file")
    argv = ["fit", str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "taken"), "--tokenizer",
            "char", "--verbose", "0"]
    assert main(argv) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_symlink_is_followed_and_kept(tmp_path, model):
    target = tmp_path / "models" / "v1"
    target.parent.mkdir()
    link = tmp_path / "current"
    link.symlink_to(target, target_is_directory=True)
    model.save(link)
    model.save(link)
    assert link.is_symlink() and SaffuModel.load(link).config == model.config
    assert (target / "model.json").is_file()


def test_saved_files_follow_the_umask(tmp_path, model):
    previous = os.umask(0o022)
    try:
        path = model.save(tmp_path / "m")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert {stat.S_IMODE(os.stat(f).st_mode) for f in path.iterdir()} == {0o644}


def test_temporaries_of_dead_writers_are_removed_by_the_next_save(tmp_path, model):
    stale = tmp_path / ".m.999999999.abc.tmp"  # no such process
    stale.mkdir()
    (stale / "weights.safetensors").write_bytes(b"x" * 100)
    live = tmp_path / f".m.{os.getpid()}.def.tmp"  # a writer that is still running
    live.mkdir()
    model.save(tmp_path / "m")
    assert not stale.exists() and live.exists()


def test_a_replacement_cut_between_its_two_renames_is_reported(tmp_path, model, monkeypatch):
    """Where no atomic exchange exists, a crash between the renames leaves the old model in a
    hidden sibling; loading says where it is."""
    path = model.save(tmp_path / "m")
    monkeypatch.setattr(_io, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def crash_on_second(a, b):
        if os.path.isdir(a):  # the directory renames, not the files' atomic writes
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # the process dies here
        real_replace(a, b)

    monkeypatch.setattr(_io.os, "replace", crash_on_second)
    monkeypatch.setattr(_io, "_writer_alive", lambda pid: False)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    monkeypatch.setattr(_io, "_writer_alive", lambda pid: False)
    with pytest.raises(ModelFormatError, match="interrupted save left the previous model in"):
        SaffuModel.load(path)


def test_nan_weights_and_edited_manifests_do_not_load(tmp_path, model):
    from safetensors.numpy import load_file, save_file

    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "model.json").read_text())
    edited = {**manifest, "config": {**manifest["config"], "tau": 9.0}}
    (path / "model.json").write_text(json.dumps(edited))
    with pytest.raises(ModelFormatError, match="modified after it was saved"):
        SaffuModel.load(path)
    (path / "model.json").write_text(json.dumps({**manifest, "format_version": "1"}))
    with pytest.raises(ModelFormatError, match="invalid format_version '1'"):
        SaffuModel.load(path)

    path = model.save(tmp_path / "n")
    weights = load_file(str(path / "weights.safetensors"))
    weights["output_bias"][3] = np.nan
    save_file(weights, str(path / "weights.safetensors"))
    manifest = json.loads((path / "model.json").read_text())
    manifest["checksums"]["weights.safetensors"] = _io.sha256_file(path / "weights.safetensors")
    del manifest["manifest_sha256"]
    (path / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="output_bias holds NaN"):
        SaffuModel.load(path)


def test_a_file_given_as_a_model_directory_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ModelFormatError, match="is a file, not a saffu model directory"):
        SaffuModel.load(tmp_path / "f")


def test_a_sweep_refuses_a_folder_it_did_not_write(tmp_path):
    from saffu.sweep import run_sweep

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results.csv").write_text("my own results")
    docs = tiny_documents(6)
    with pytest.raises(InvalidParameterError, match="not a saffu sweep folder"):
        run_sweep(docs[:4], docs[4:], grid=None, out=tmp_path / "mine", verbose=0)
    assert (tmp_path / "mine" / "results.csv").read_text() == "my own results"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidParameterError, match="is not a directory"):
        run_sweep(docs[:4], docs[4:], grid=None, out=tmp_path / "file", verbose=0)


def test_racing_saves_leave_one_complete_model_and_no_temporaries(tmp_path, model):
    import subprocess
    import sys
    from pathlib import Path

    source = model.save(tmp_path / "source")
    code = ("import sys; from saffu.model import SaffuModel; m = SaffuModel.load(sys.argv[1])\n"
            "for _ in range(5): m.save(sys.argv[2])\n")
    tests = str(Path(__file__).parent)
    writers = [subprocess.Popen([sys.executable, "-c", code, str(source), str(tmp_path / "raced")],
                                cwd=tests) for _ in range(2)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert SaffuModel.load(tmp_path / "raced").config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raced", "source"]

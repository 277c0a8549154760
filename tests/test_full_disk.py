"""A full disk: every save gives a one-line error naming its path and the full disk, leaves no
temporary behind, and leaves what was there intact (docs/guarantees.md).

Two ways: a fault injected into the one low-level write of :mod:`saffu._io` (runs everywhere),
and a real, tiny tmpfs mounted in a private mount namespace (Linux, where the test may mount).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_documents
from saffu import _io
from saffu.cli import main
from saffu.errors import DiskFullError
from saffu.model import SaffuConfig, SaffuModel

TESTS = Path(__file__).parent
SMALL = ["--tokenizer", "char", "--bits", "none", "--hidden", "none", "--radial", "1"]
LARGER = ["--tokenizer", "char", "--bits", "none", "--hidden", "none", "--radial", "3"]
QUIET = ["--verbose", "0", "--jobs", "1"]
TRAIN = ["--batch-targets", "64", "--max-tokens", "256", "--eval-every", "2"]
NEEDS = {"train": "torch", "finetune": "torch", "sweep report": "matplotlib"}
GRID = '[fixed]\ntokenizer = "char"\nbits = "none"\nhidden = "none"\n[[grid]]\nradial = {radials}\n'


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, text in enumerate(tiny_documents(16)):
        (folder / f"{i:02d}.txt").write_text(text)
    return folder


def _fill_disk(monkeypatch, code: int = errno.ENOSPC, stage: str = "write", after: int = 0) -> None:
    """From the ``after+1``-th file on, every write of saffu._io fails with ``code``: half the
    bytes reach the disk, then the write (or, with ``stage="fsync"``, the fsync) fails."""
    real, calls = _io._write_all, []

    def full(fd: int, data: bytes) -> None:
        calls.append(fd)
        if len(calls) <= after:
            return real(fd, data)
        os.write(fd, data[:len(data) // 2] if stage == "write" else data)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_io, "_write_all", full)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones too) with the bytes of the files."""
    return {str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


def _one_line_disk_full(capsys, path: Path, what: str = "the disk is full") -> None:
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and what in error and str(path) in error, error


def _commands(corpus: Path, out: Path) -> dict[str, tuple[list[list[str]], list[str], int, Path]]:
    """name: (the commands that write the first outputs, a rerun on a full disk, successful
    writes before the disk is full, the path the error names)."""
    files = [str(corpus)]
    (out / "grid1.toml").write_text(GRID.format(radials=[1]))
    (out / "grid2.toml").write_text(GRID.format(radials=[1, 2]))
    sweep = ["sweep", *files, "--dev", *files, "--out", str(out / "sweep"), "--verbose", "0",
             "--test-top", "0"]
    model, lm, arpa = out / "model", out / "lm.safetensors", out / "lm.arpa"
    ngram = ["ngram", "fit", *files, "--out", str(lm), "--tokenizer", "char", "--arpa", str(arpa)]
    report = ["sweep-report", str(out / "sweep")]
    explicit = ["fit", *files, "--out", str(out / "explicit"), *SMALL, *QUIET]
    finetune = ["finetune", str(out / "explicit"), *files, "--out", str(out / "tuned"), *QUIET, *TRAIN]
    return {
        "fit": ([["fit", *files, "--out", str(model), *SMALL, *QUIET]],
                ["fit", *files, "--out", str(model), *LARGER, *QUIET], 0, model),
        "ngram fit": ([ngram], [*ngram, "--order", "2"], 0, lm),
        "ngram arpa": ([ngram], [*ngram, "--order", "2"], 1, arpa),
        "sweep record": ([[*sweep, "--grid", str(out / "grid1.toml")]],
                         [*sweep, "--grid", str(out / "grid2.toml")], 0,
                         out / "sweep" / "variants"),  # it stops at the record, not at the end
        "sweep report": ([[*sweep, "--grid", str(out / "grid1.toml")], report], report, 0,
                         out / "sweep" / "pareto.png"),
        "train": ([["train", "--cold", *files, "--out", str(model), *SMALL, *QUIET, *TRAIN]],
                  ["train", "--cold", *files, "--out", str(model), *LARGER, *QUIET, *TRAIN], 0, model),
        "finetune": ([explicit, finetune], [*finetune, "--seed", "1"], 0, out / "tuned"),
    }


@pytest.mark.parametrize("name", ["fit", "ngram fit", "ngram arpa", "sweep record", "sweep report",
                                  "train", "finetune"])
def test_a_command_on_a_full_disk_fails_in_one_line_and_changes_nothing(tmp_path, corpus, capsys,
                                                                         monkeypatch, name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    out = tmp_path / "out"
    out.mkdir()
    firsts, again, after, named = _commands(corpus, out)[name]
    assert all(main(argv) == 0 for argv in firsts)
    capsys.readouterr()
    before = _snapshot(out)
    _fill_disk(monkeypatch, after=after)
    assert main(again) == 2
    _one_line_disk_full(capsys, named)
    after_files = _snapshot(out)
    if name == "ngram arpa":  # the model was written before the disk filled up; the ARPA file not
        before.pop("lm.safetensors"), after_files.pop("lm.safetensors")
    assert after_files == before  # unchanged, and no temporary left


@pytest.mark.parametrize("code, stage, what", [
    (errno.ENOSPC, "write", "the disk is full"), (errno.ENOSPC, "fsync", "the disk is full"),
    (errno.EDQUOT, "write", "the quota is full")])
def test_save_raises_disk_full_naming_the_directory(tmp_path, monkeypatch, code, stage, what):
    config = SaffuConfig(tokenizer="char", bits=None, hidden=None, radial=1)
    model = SaffuModel(config).fit(tiny_documents(), verbose=0)
    path = model.save(tmp_path / "m")
    before = _snapshot(tmp_path)
    _fill_disk(monkeypatch, code, stage)
    with pytest.raises(DiskFullError, match=what) as caught:
        model.save(path)
    assert caught.value.filename == str(path) and caught.value.errno == code
    assert isinstance(caught.value, OSError) and str(caught.value).startswith(f"{path}: ")
    assert _snapshot(tmp_path) == before
    with pytest.raises(DiskFullError, match=what):
        model.tokenizer.save(tmp_path / "tokenizer.json")
    assert _snapshot(tmp_path) == before


def test_other_os_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(fd: int, data: bytes) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(_io, "_write_all", broken)
    with pytest.raises(OSError) as caught:
        _io.atomic_write_text(tmp_path / "f.txt", "x")
    assert not isinstance(caught.value, DiskFullError) and caught.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


_ON_TMPFS = """
import json, os, sys
from saffu.cli import main
from saffu.model import SaffuModel
disk, corpus, grids = sys.argv[1], sys.argv[2], sys.argv[3]
model, lm = os.path.join(disk, "m"), os.path.join(disk, "lm.safetensors")
small = ["--tokenizer", "char", "--bits", "none", "--hidden", "none", "--verbose", "0", "--jobs", "1"]
sweep = ["sweep", corpus, "--dev", corpus, "--out", os.path.join(disk, "sweep"), "--verbose", "0",
         "--test-top", "0"]
assert main(["fit", corpus, "--out", model, *small, "--radial", "1"]) == 0
assert main(["ngram", "fit", corpus, "--out", lm, "--tokenizer", "char", "--order", "2"]) == 0
assert main([*sweep, "--grid", os.path.join(grids, "grid1.toml")]) == 0
results = open(os.path.join(disk, "sweep", "results.json"), "rb").read()
old = open(os.path.join(model, "weights.safetensors"), "rb").read()
old_lm = open(lm, "rb").read()
def fill(name, leave):
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(os.path.join(disk, name), "wb") as handle:
        handle.write(bytes(max(free - leave, 0)))
fill("filler", leave=8192)  # 8 KiB left: the next saves are cut short
statuses = [main(["fit", corpus, "--out", model, *small, "--radial", "3"]),
            main(["ngram", "fit", corpus, "--out", lm, "--tokenizer", "char", "--order", "4"])]
fill("filler2", leave=0)  # (the failed saves freed their temporaries' space)
statuses.append(main([*sweep, "--grid", os.path.join(grids, "grid2.toml"), "--jobs", "2"]))
SaffuModel.load(model)  # the previous model loads, checksums verified
variants = os.path.join(disk, "sweep", "variants")
print(json.dumps({"statuses": statuses, "entries": sorted(os.listdir(disk)),
                  "model_intact": open(os.path.join(model, "weights.safetensors"), "rb").read() == old,
                  "lm_intact": open(lm, "rb").read() == old_lm,
                  "results_intact": open(os.path.join(disk, "sweep", "results.json"), "rb").read()
                  == results, "records": len(os.listdir(variants))}))
"""


def test_a_real_full_disk_on_a_tiny_tmpfs(tmp_path, corpus):
    """A 256 KiB tmpfs in a private mount namespace (it vanishes with the process): a model save
    and an n-gram save cut short, and a sweep whose worker process finds the disk full."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        pytest.skip("needs Linux's unshare to mount a private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    for radials in ([1], [1, 2]):
        (tmp_path / f"grid{len(radials)}.toml").write_text(GRID.format(radials=radials))
    script = ('mount -t tmpfs -o size=256k saffu-test "$1" || exit 77; '
              f'exec "{sys.executable}" -c "$2" "$1" "$3" "$4"')
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                          str(disk), _ON_TMPFS, str(corpus), str(tmp_path)],
                         cwd=TESTS, capture_output=True, text=True, timeout=120)
    if run.returncode == 77 or "unshare failed" in run.stderr or "unshare:" in run.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result == {"statuses": [2, 2, 2], "entries": ["filler", "filler2", "lm.safetensors", "m",
                                                      "sweep"],
                      "model_intact": True, "lm_intact": True, "results_intact": True, "records": 1}
    errors = run.stderr.splitlines()
    assert len(errors) == 3 and all("the disk is full" in line for line in errors), run.stderr
    assert str(disk / "m") in errors[0] and str(disk / "lm.safetensors") in errors[1]
    assert str(disk / "sweep" / "variants") in errors[2]  # from a worker process
    assert "Traceback" not in run.stderr


def test_disk_full_errors_cross_process_boundaries_intact():
    """A sweep worker's DiskFullError reaches the parent (pickled) as itself, path included."""
    import pickle

    error = pickle.loads(pickle.dumps(DiskFullError(errno.ENOSPC, "the disk is full", "/x/out")))
    assert type(error) is DiskFullError and error.filename == "/x/out" and error.errno == errno.ENOSPC

"""Interrupted ``saffu train`` / ``finetune`` and Dask fits: one Ctrl-C, two, or SIGTERM ends the
command promptly with status 130, leaves no orphaned process, leaves ``--out`` absent or
holding a complete model, and a rerun gives what an undisturbed run gives (docs/guarantees.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import tiny_documents
from saffu.cli import main
from saffu.model import SaffuModel

TESTS = Path(__file__).parent
SIGNALS = pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT],
                                              [signal.SIGTERM]], ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
PROMPT_SECONDS = 10  # an interrupted command must be gone by then (it takes about 1 s)
CONFIG = ["--tokenizer", "char", "--bits", "16", "--hidden", "16", "--radial", "2", "--jobs", "1",
          "--verbose", "0"]
BACKPROP = ["--batch-targets", "64", "--max-tokens", str(64 * 600), "--eval-every", "100",
            "--seed", "3"]  # 600 steps: about a second of training


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for i, text in enumerate(tiny_documents(40, seed=4)):
        (folder / f"{i:02d}.txt").write_text(text)
    return folder


def _interrupt(argv: list[str], ready, signals: list[int]) -> subprocess.CompletedProcess:
    """Run ``saffu ARGV`` in a subprocess, send ``signals`` once ``ready()`` is true, and check
    that it ends within ``PROMPT_SECONDS`` and leaves no child process behind."""
    process = subprocess.Popen([sys.executable, "-m", "saffu.cli", *argv], cwd=TESTS,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the command ended or hung before the interrupt: "
                                 f"{process.communicate()[1]}")
        time.sleep(0.01)
    children = psutil.Process(process.pid).children(recursive=True)
    for signum in signals:
        os.kill(process.pid, signum)
        time.sleep(0.05)
    try:
        out, err = process.communicate(timeout=PROMPT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the command hung after the interrupt") from None
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"orphaned processes: {[p.pid for p in alive]}"
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def _assert_same_model(path: Path, expected: Path) -> None:
    actual, reference = SaffuModel.load(path).state_arrays(), SaffuModel.load(expected).state_arrays()
    assert actual.keys() == reference.keys()
    for name in reference:
        np.testing.assert_array_equal(actual[name], reference[name], err_msg=name)


# --- saffu train / finetune ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explicit(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("explicit") / "model"
    assert main(["fit", str(corpus), "--out", str(out), *CONFIG]) == 0
    return out


def _train_argv(command: str, corpus: Path, explicit: Path, out: Path) -> list[str]:
    start = ["train", "--cold"] if command == "train" else ["finetune", str(explicit)]
    config = CONFIG if command == "train" else CONFIG[-4:]  # finetune: the model's own config
    return [*start, str(corpus), "--out", str(out), *config, *BACKPROP]


@pytest.fixture(scope="module")
def undisturbed(corpus, explicit, tmp_path_factory) -> dict[str, Path]:
    """The models of uninterrupted runs, in this process."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("undisturbed")
    for command in ("train", "finetune"):
        assert main(_train_argv(command, corpus, explicit, root / command)) == 0
    return {command: root / command for command in ("train", "finetune")}


@pytest.mark.slow
@pytest.mark.parametrize("command, signals", [
    ("train", [signal.SIGINT]), ("train", [signal.SIGINT, signal.SIGINT]), ("train", [signal.SIGTERM]),
    ("finetune", [signal.SIGINT])], ids=["train-ctrl-c", "train-ctrl-c-twice", "train-sigterm",
                                         "finetune-ctrl-c"])
def test_interrupted_training_stops_promptly_keeps_a_complete_model_and_reruns_the_same(
        tmp_path, corpus, explicit, undisturbed, command, signals):
    out = tmp_path / "model"
    argv = _train_argv(command, corpus, explicit, out)
    # The first checkpoint (step 0) is written before the first step: interrupt during training.
    run = _interrupt(argv, lambda: (out / "model.json").is_file(), signals)
    assert run.returncode == 130 and run.stderr.strip() == f"saffu {command}: interrupted", run.stderr
    checkpoint = SaffuModel.load(out)  # complete: every checksum verifies
    backprop = checkpoint.fit_info["backprop"]
    assert backprop["stopped"] is None and backprop["steps"] < 600  # an unfinished run's checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left
    assert main(argv) == 0  # the rerun starts afresh: the checkpoint is not read
    _assert_same_model(out, undisturbed[command])
    assert SaffuModel.load(out).fit_info["backprop"]["stopped"] == "max_tokens"


def test_finetune_refuses_to_overwrite_the_model_it_starts_from(explicit, corpus, capsys):
    before = (explicit / "weights.safetensors").read_bytes()
    assert main(["finetune", str(explicit), str(corpus), "--out", str(explicit), *BACKPROP]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "is the model to fine-tune" in error
    assert (explicit / "weights.safetensors").read_bytes() == before


# --- Dask --------------------------------------------------------------------------------------------

DASK_CONFIG = ["--tokenizer", "char", "--bits", "32", "--hidden", "32", "--radial", "3",
               "--output-tau", "1.5", "--verbose", "0", "--separator", "\\n\\n"]


@pytest.fixture(scope="module")
def cluster():
    """A user's cluster (workers in this process, reached over TCP like a remote one)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield cluster, client


@pytest.fixture(scope="module")
def dask_corpus(tmp_path_factory) -> Path:
    """About 600k tokens in 10 files: a Dask fit of a second or two."""
    folder = tmp_path_factory.mktemp("dask_corpus")
    documents = tiny_documents(6000, seed=2)
    for i in range(10):
        (folder / f"{i}.txt").write_text("\n\n".join(documents[i * 600:(i + 1) * 600]))
    return folder


def _fit_argv(corpus: Path, out: Path, address: str) -> list[str]:
    return ["fit", str(corpus), "--out", str(out), *DASK_CONFIG, "--dask-scheduler", address]


def _saffu_tasks(dask_scheduler) -> list[str]:
    return [str(key) for key in dask_scheduler.tasks if "saffu-" in str(key)]


@pytest.fixture(scope="module")
def dask_undisturbed(cluster, dask_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dask_undisturbed") / "model"
    assert main(_fit_argv(dask_corpus, out, cluster[0].scheduler_address)) == 0
    return out


@pytest.mark.slow
@SIGNALS
def test_an_interrupted_dask_fit_cancels_its_tasks_and_leaves_the_cluster_running(
        tmp_path, cluster, dask_corpus, dask_undisturbed, signals):
    cluster, client = cluster
    clients_before = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))
    out = tmp_path / "model"
    argv = _fit_argv(dask_corpus, out, cluster.scheduler_address)

    def passes_running() -> bool:
        return any("-accumulate-" in key for key in client.run_on_scheduler(_saffu_tasks))

    run = _interrupt(argv, passes_running, signals)
    assert run.returncode == 130 and run.stderr.strip() == "saffu fit: interrupted", run.stderr
    assert not out.exists()  # a fit saves only at its end
    deadline = time.monotonic() + 5
    while client.run_on_scheduler(_saffu_tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.run_on_scheduler(_saffu_tasks) == []  # this fit's tasks are gone
    assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients)) == clients_before
    assert len(client.scheduler_info()["workers"]) == 2  # the user's cluster keeps running
    assert main(argv) == 0
    _assert_same_model(out, dask_undisturbed)


def test_a_dask_pass_interrupted_in_python_cancels_its_tasks(cluster, monkeypatch):
    """In a Python session the traceback keeps the futures alive: the pass cancels them."""
    from dask.distributed import Future

    from saffu.distributed import DaskRunner
    from saffu.model import SaffuConfig

    cluster, client = cluster
    real_result = Future.result

    def interrupted(self, *args, **kwargs):
        if "saffu-" not in str(self.key):
            return real_result(self, *args, **kwargs)
        deadline = time.monotonic() + 30  # the user presses Ctrl-C once the pass runs
        while str(self.key) not in client.run_on_scheduler(_saffu_tasks) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setattr(Future, "result", interrupted)
    model = SaffuModel(SaffuConfig(tokenizer="char", bits=16, hidden=16, output_tau=1.5))
    with pytest.raises(KeyboardInterrupt) as caught:
        model.fit(tiny_documents(200), runner=DaskRunner(client), verbose=0)
    deadline = time.monotonic() + 5
    while client.run_on_scheduler(_saffu_tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.run_on_scheduler(_saffu_tasks) == [] and caught.traceback  # still referenced


def test_a_scheduler_address_dask_cannot_use_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    (tmp_path / "c.txt").write_text(" ".join(tiny_documents(3)))
    argv = ["fit", str(tmp_path / "c.txt"), "--out", str(tmp_path / "m"), "--tokenizer", "char",
            "--dask-scheduler", "inproc://192.0.2.1/1/1"]  # another process's in-process address
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot reach the Dask scheduler at inproc://" in error
    assert not (tmp_path / "m").exists()


MAPPED_AFTER_A_LARGE_ARRAY = """
import ctypes, sys
import numpy as np
from saffu._processes import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    sys.exit(3)
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "keep":
    keep_freed_memory()
array = np.ones(2**24)  # 128 MB
print(libc.mallinfo2().hblkhd)
"""


def untuned_environment() -> dict[str, str]:
    """This process's environment without glibc allocator settings (Dask's nanny, started by
    earlier tests, sets ``MALLOC_TRIM_THRESHOLD_`` here; a fit then leaves the allocator alone)."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_worker_that_keeps_freed_memory_maps_no_large_array_apart():
    mapped = {}
    for mode in ("default", "keep"):
        result = subprocess.run([sys.executable, "-c", MAPPED_AFTER_A_LARGE_ARRAY, mode],
                                capture_output=True, text=True, env=untuned_environment())
        if result.returncode == 3:
            pytest.skip("this C library has no mallinfo2 (glibc < 2.33 or not glibc)")
        assert result.returncode == 0, result.stderr
        mapped[mode] = int(result.stdout)
    # (what was mapped before the call stays mapped: under a MB of imports)
    assert mapped["default"] >= 2**27 > 2**26 > mapped["keep"]


REUSED_DURING_A_FIT = MAPPED_AFTER_A_LARGE_ARRAY.split("if sys.argv[1]")[0] + """
from saffu._processes import reusing_freed_memory
np._core.multiarray._set_madvise_hugepage(True)
if sys.argv[1] == "keep":
    keep_freed_memory()
with reusing_freed_memory():
    inside = np.ones(2**24); inside_mapped = libc.mallinfo2().hblkhd
    inside_huge = np._core.multiarray._set_madvise_hugepage(False)
    with reusing_freed_memory():  # nested: the outer one restores
        pass
    np._core.multiarray._set_madvise_hugepage(inside_huge)
    del inside
after = np.ones(2**24)
print(inside_mapped, libc.mallinfo2().hblkhd, inside_huge, np._core.multiarray._set_madvise_hugepage(True))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("mode", ["default", "keep"])
def test_a_fit_reuses_freed_memory_and_restores_the_allocator_after(mode):
    result = subprocess.run([sys.executable, "-c", REUSED_DURING_A_FIT, mode], capture_output=True,
                            text=True, env=untuned_environment())
    if result.returncode == 3:
        pytest.skip("this C library has no mallinfo2 (glibc < 2.33 or not glibc)")
    assert result.returncode == 0, result.stderr
    inside_mapped, after_mapped, inside_huge, after_huge = result.stdout.split()
    assert int(inside_mapped) < 2**26  # the 128 MB array came from the heap
    assert inside_huge == "False"  # no transparent huge pages during the fit
    if mode == "default":  # afterwards large arrays are mapped again, huge pages back on
        assert int(after_mapped) >= 2**27 and after_huge == "True"
    else:  # a worker that keeps freed memory keeps it, for good
        assert int(after_mapped) < 2**26 and after_huge == "False"


def test_a_fit_leaves_a_user_tuned_allocator_alone(monkeypatch):
    from saffu import _processes

    calls = []
    monkeypatch.setattr(_processes, "_glibc", lambda: calls.append("glibc"))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    with _processes.reusing_freed_memory():
        pass
    assert calls == []  # the C library was not even looked up


def test_a_failed_setting_leaves_nothing_switched(monkeypatch):
    from saffu import _processes

    class Libc:
        def __init__(self):
            self.calls = []

        def mallopt(self, parameter, value):
            self.calls.append((parameter, value))

        def malloc_trim(self, pad):
            self.calls.append(("trim", pad))

    libc = Libc()
    monkeypatch.setattr(_processes, "_glibc", lambda: libc)
    monkeypatch.setattr(_processes, "_allocator_tuned_by_user", lambda: False)
    monkeypatch.setattr(_processes, "_set_numpy_huge_pages", lambda enabled: 1 / 0)
    with pytest.raises(ZeroDivisionError), _processes.reusing_freed_memory():
        pass
    assert _processes._reusing == 0 and libc.calls == []
    monkeypatch.setattr(_processes, "_set_numpy_huge_pages", lambda enabled: True)
    libc.calls.clear()
    with _processes.reusing_freed_memory():
        assert _processes._reusing == 1
    assert _processes._reusing == 0 and libc.calls[-1] == ("trim", 0)

"""Sweeps on a Dask cluster (saffu.sweep.cluster): the records of a local run, one shared cache,
a worker's death, Ctrl-C, and the CLI's --dask-scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_documents

distributed = pytest.importorskip("dask.distributed")

import saffu.cli._options as cli_options  # noqa: E402
import saffu.sweep.cluster as sweep_cluster  # noqa: E402
import saffu.sweep.run as sweep_run  # noqa: E402
from saffu.cli import main  # noqa: E402
from saffu.sweep import parse_grid, run_sweep  # noqa: E402
from saffu.sweep.cluster import KEY_PREFIX  # noqa: E402
from test_sweep import FIXED  # noqa: E402

GRID = FIXED + """[[grid]]
bits = ["min", 24]
tau = [1, 2]
output_tau = [1, 2]
"""  # 8 variants in 4 tasks (output_tau pairs share their passes)
HALF = GRID.replace('bits = ["min", 24]', 'bits = ["min"]')  # 4 of the 8
MEASURED = ("seconds", "memory_mb")  # names of the fields that time or weigh a run


@pytest.fixture(scope="module")
def splits() -> dict[str, list[str]]:
    docs = tiny_documents(40, seed=3)
    return {"train": docs[:30], "dev": docs[30:35], "test": docs[35:]}


def _sweep(splits, out, grid=GRID, **options):
    return run_sweep(splits["train"], splits["dev"], splits["test"], grid=parse_grid(grid),
                     out=out, verbose=0, **options)


@pytest.fixture(scope="module")
def local(splits, tmp_path_factory) -> list[dict]:
    """The records of an undisturbed local sweep (``jobs=1``)."""
    return _sweep(splits, tmp_path_factory.mktemp("local"))


def _results(records: list[dict]) -> list[dict]:
    """The records without the fields that measure time or memory."""
    return [{name: value for name, value in record.items() if not name.endswith(MEASURED)}
            for record in records]


def _computed(out: Path) -> int:
    return json.loads((out / "results.json").read_text())["sweep"]["computed_this_run"]


def _stored(out: Path) -> list[Path]:
    return sorted((out / "variants").glob("*.json"))


def _sweep_tasks(client) -> list[str]:
    """The keys of sweep tasks (and data) the scheduler still holds."""
    return client.run_on_scheduler(lambda dask_scheduler: [
        str(key) for key in dask_scheduler.tasks if KEY_PREFIX in str(key)])


def test_cluster_sweep_gives_the_records_of_a_local_run(client, splits, local, tmp_path):
    records = _sweep(splits, tmp_path, client=client)
    assert len(records) == 8 == len(_stored(tmp_path)) == _computed(tmp_path)
    assert _results(records) == _results(local)  # scores equal bit for bit
    assert all(r["test_selected"] and r["test_perplexity"] > 1 for r in records)
    assert json.loads((tmp_path / "results.json").read_text())["variants"] == records
    assert _sweep_tasks(client) == []  # data and tasks released


def test_local_and_cluster_runs_resume_each_other(client, splits, local, tmp_path):
    _sweep(splits, tmp_path / "a", grid=HALF)
    assert _results(_sweep(splits, tmp_path / "a", client=client)) == _results(local)
    assert _computed(tmp_path / "a") == 4

    _sweep(splits, tmp_path / "b", grid=HALF, client=client)
    assert _results(_sweep(splits, tmp_path / "b")) == _results(local)
    assert _computed(tmp_path / "b") == 4


def test_a_complete_sweep_sends_nothing_to_the_cluster(client, splits, tmp_path, monkeypatch):
    _sweep(splits, tmp_path, grid=HALF)
    monkeypatch.setattr(sweep_cluster, "_submit_value", lambda *args: pytest.fail("data sent"))
    assert len(_sweep(splits, tmp_path, grid=HALF, client=client)) == 4
    assert _computed(tmp_path) == 0


class OnFirstFit(distributed.WorkerPlugin):
    """Calls :meth:`act` in its worker when a sweep's fit task starts executing, once per marker
    file (the first worker to create it)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and f"{KEY_PREFIX}-" in str(key) and "-fit" in str(key):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            self.act()

    def act(self) -> None:
        raise NotImplementedError


class KillFirstFit(OnFirstFit):
    """Kills its worker's process when the first fit task starts."""

    def act(self) -> None:
        os._exit(1)


def test_worker_killed_mid_sweep_changes_no_result(client, splits, local, tmp_path):
    marker = str(tmp_path / "killed")
    client.register_plugin(KillFirstFit(marker), name="kill-first-fit")
    try:
        records = _sweep(splits, tmp_path / "out", client=client)
    finally:
        client.unregister_worker_plugin("kill-first-fit")
    assert os.path.exists(marker)  # a worker did die running a fit
    assert _results(records) == _results(local)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_interrupt_cancels_the_tasks_and_keeps_what_is_stored(client, splits, local, tmp_path,
                                                              monkeypatch):
    real_finished = sweep_run._SweepRun.finished

    def interrupted(self, config, record):  # Ctrl-C while the client waits for the next result
        real_finished(self, config, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run._SweepRun, "finished", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _sweep(splits, tmp_path, client=client)
    stopped = time.monotonic()
    while _sweep_tasks(client):
        assert time.monotonic() - stopped < 10, "the sweep's tasks were not cancelled"
        time.sleep(0.05)
    time.sleep(0.5)  # a task that was running when cancelled finishes unheard
    assert len(_stored(tmp_path)) == 2  # the first task's two variants, no more

    monkeypatch.setattr(sweep_run._SweepRun, "finished", real_finished)
    assert _results(_sweep(splits, tmp_path, client=client)) == _results(local)
    assert _computed(tmp_path) == 6


def test_bad_client_arguments_are_named(client, splits, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        _sweep(splits, tmp_path, jobs=2, client=client)
    with pytest.raises(TypeError, match=r"client must be a dask\.distributed\.Client, got str"):
        _sweep(splits, tmp_path, client=client.scheduler.address)
    assert not (tmp_path / "variants").exists()


def _write_splits(splits, root: Path) -> list[str]:
    """The splits as files; the CLI arguments that name them and the grid."""
    for name, docs in splits.items():
        (root / name).mkdir()
        for i, doc in enumerate(docs):
            (root / name / f"{i:02d}.txt").write_text(doc)
    (root / "grid.toml").write_text(GRID)
    return [str(root / "train"), "--dev", str(root / "dev"), "--test", str(root / "test"),
            "--grid", str(root / "grid.toml")]


def test_cli_sweep_on_a_scheduler(client, splits, local, tmp_path, capsys):
    argv = ["sweep", *_write_splits(splits, tmp_path), "--out", str(tmp_path / "out"),
            "--dask-scheduler", client.scheduler.address, "--verbose", "0", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["variants"] == 8
    records = json.loads((tmp_path / "out" / "results.json").read_text())["variants"]
    assert _results(records) == _results(local)


class HoldFirstFit(OnFirstFit):
    """Holds its worker for ``seconds`` when the first fit task starts."""

    def __init__(self, marker: str, seconds: float) -> None:
        super().__init__(marker)
        self.seconds = seconds

    def act(self) -> None:
        time.sleep(self.seconds)


@pytest.mark.slow  # a subprocess, and a worker held for 6 s
def test_ctrl_c_of_the_command_cancels_its_tasks_and_exits_at_once(client, splits, tmp_path):
    out = tmp_path / "out"
    argv = ["sweep", *_write_splits(splits, tmp_path), "--out", str(out),
            "--dask-scheduler", client.scheduler.address, "--verbose", "0"]
    client.register_plugin(HoldFirstFit(str(tmp_path / "held"), 6.0), name="hold-first-fit")
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(sweep_run.__file__).parents[2])}
        process = subprocess.Popen([sys.executable, "-m", "saffu.cli", *argv], env=env,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "held").exists():  # a fit task has started and holds its worker
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        assert process.wait(timeout=30) == 130
        assert time.monotonic() - signalled < 5  # before the held task could have finished
        assert "saffu sweep: interrupted" in process.stderr.read()
        while _sweep_tasks(client):
            assert time.monotonic() - signalled < 10, "the sweep's tasks were not cancelled"
            time.sleep(0.05)
    finally:
        client.unregister_worker_plugin("hold-first-fit")
    assert _stored(out) == []


@pytest.mark.parametrize("options, message", [
    (["--dask-scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
    (["--dask-scheduler", "tcp://127.0.0.1:1", "--jobs", "2"], "do not give it with --dask-scheduler"),
])
def test_cli_scheduler_errors_are_one_line(options, message, splits, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_options, "DASK_CONNECT_SECONDS", 1)
    argv = ["sweep", *_write_splits(splits, tmp_path), "--out", str(tmp_path / "out"), *options]
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 5
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()

"""Sweeps of model variants (saffu.sweep): grid files, running, resuming, reports, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import saffu.sweep as sweep
import saffu.sweep.run as sweep_run
from conftest import tiny_documents
from saffu.cli import main
from saffu.corpus import TokenizedCorpus
from saffu.model import SaffuConfig, SaffuModel
from saffu.sweep import Grid, canonical, load_grid, pareto_front, parse_grid, run_sweep, write_report
from saffu.tokenize import Tokenizer

FIXED = """
[fixed]
vocab_size = 300
hidden = 16
radial = 1
document = false
aggregation = "sum"
extra_contexts = ""
"""
SMALL_GRID = FIXED + """
[[grid]]
bits = ["min", 24]
tau = [1, 2.0]
"""


@pytest.fixture(scope="module")
def splits() -> dict[str, list[str]]:
    docs = tiny_documents(40, seed=3)
    return {"train": docs[:30], "dev": docs[30:35], "test": docs[35:]}


def _sweep(splits, out, grid=SMALL_GRID, **options):
    grid = parse_grid(grid) if isinstance(grid, str) else grid
    return run_sweep(splits["train"], splits["dev"], splits["test"], grid=grid, out=out,
                     verbose=0, **options)


def _stored(out: Path) -> list[Path]:
    return sorted((out / "variants").glob("*.json"))


# --- grid files ------------------------------------------------------------------------------------


def test_grid_is_the_product_of_its_lists_with_values_normalized():
    grid = parse_grid(SMALL_GRID)
    variants = grid.variants()
    assert [(c.bits, c.tau) for c in variants] == [(None, 1.0), (None, 2.0), (24, 1.0), (24, 2.0)]
    assert all(c.vocab_size == 300 and c.hidden == 16 for c in variants)
    # tau = 2 and tau = 2.0 are one value, so the key does not depend on how it was written
    assert parse_grid(SMALL_GRID.replace("2.0", "2")).variants() == variants


def test_several_grids_share_variants_and_merge_equivalent_ones():
    grid = parse_grid(FIXED + """
[[grid]]
radial = [1, 3]
aggregation = ["sum", "cat"]
[[grid]]
radial = [3]
attention = ["explicit", "uniform"]
""")
    variants = grid.variants()
    # radial 1: sum and cat are one model (fitted as uniform/sum); radial 3 explicit/sum is shared
    assert [(c.radial, c.aggregation, c.attention) for c in variants] == [
        (1, "sum", "uniform"), (3, "sum", "explicit"), (3, "cat", "explicit"),
        (3, "sum", "uniform")]


def test_canonical_variant_scores_like_the_variant_it_replaces(splits):
    config = SaffuConfig(vocab_size=300, hidden=16, radial=1, document=True, aggregation="cat",
                         attention="explicit")
    cheap = canonical(config)
    assert (cheap.attention, cheap.aggregation) == ("uniform", "sum")
    assert canonical(config.replace(radial=2)) == config.replace(radial=2)
    model = SaffuModel(config).fit(splits["train"], verbose=0)
    other = SaffuModel(cheap, tokenizer=model.tokenizer).fit(splits["train"], verbose=0)
    assert other.score(splits["dev"])["perplexity"] == pytest.approx(
        model.score(splits["dev"])["perplexity"], rel=1e-5)


def test_sample_draws_distinct_variants_reproducibly_from_the_value_lists():
    text = FIXED + """
[[grid]]
bits = ["min", 24, 32]
tau = [1, 2, 3]
[sample]
n = 5
seed = 7
hidden = [8, 16, 32]
"""
    variants = parse_grid(text).variants()
    assert len(variants) == 9 + 5 == len(set(variants))
    sampled = variants[9:]
    # A sampled variant draws each field from the value lists or keeps the config default.
    bits_values = (None, 24, 32, SaffuConfig().bits)
    tau_values = (1, 2, 3, SaffuConfig().tau)
    assert all(c.bits in bits_values and c.tau in tau_values and c.hidden in (8, 16, 32)
               for c in sampled)
    assert any(c.hidden != 16 for c in sampled)
    assert parse_grid(text).variants() == variants
    assert parse_grid(text.replace("seed = 7", "seed = 8")).variants()[9:] != sampled


def test_values_are_checked_alone_and_combinations_per_variant():
    # radial 0 is valid with the document model on, whatever SaffuConfig's defaults are
    grid = parse_grid("[fixed]\nvocab_size = 300\n[[grid]]\nradial = [0, 1]\ndocument = [true]\n")
    assert [(c.radial, c.document) for c in grid.variants()] == [(0, True), (1, True)]
    sample = parse_grid("[fixed]\nvocab_size = 300\nradial = 1\ndocument = false\nextra_contexts = \"\"\n"
                        "[sample]\nn = 10\nradial = [0, 2]\ndocument = [false, true]\n")
    assert {(c.radial, c.document) for c in sample.variants()} == {(0, True), (2, False), (2, True)}


def test_sample_alone_is_a_grid_and_stops_when_the_space_is_exhausted():
    variants = parse_grid(FIXED + "[sample]\nn = 50\ntau = [1, 2, 3]\n").variants()
    assert sorted(c.tau for c in variants) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("text, message", [
    ("[fixed]\nbits = 24\n", "the grid is empty"),
    (FIXED + "[[grid]]\nbitz = [1, 2]\n", "unknown field 'bitz'"),
    (FIXED + "[[grid]]\nbits = [24, -3]\n", r"\[\[grid\]\] #1 bits = -3: .*bits must be"),
    (FIXED + "[[grid]]\ntau = []\n", "tau is an empty list"),
    (FIXED + "[[grid]]\naggregation = ['sum', 'mean']\n", "aggregation = 'mean'"),
    (FIXED + "[[grid]]\ndocument = [false]\nradial = [0]\n", "radial=0: .*at least one context"),
    (FIXED + "[[grid]]\nvocab_size = [300, 400]\n", "vocab_size cannot vary"),
    ("[fixed]\ntau = [1, 2]\n[[grid]]\nbits = [24]\n", r"\[fixed\] tau must be a single value"),
    (FIXED + "[grids]\nbits = [24]\n", r"unknown table \[grids\]"),
    (FIXED + "[sample]\nn = 0\n", "n must be a positive integer"),
    (FIXED + "[sample]\nn = 3\nbits = [-1]\n", r"\[sample\] bits = -1"),
    (FIXED + "[[grid]]\nbits = [24]\n[backprop]\nminutes = 3\n", "seconds must be a number"),
    (FIXED + "[[grid]]\nbits = [24]\n[backprop]\nseconds = 3\nlearning_rate = 1\n",
     "unknown option 'learning_rate'"),
    ("[fixed\n", "invalid TOML"),
    ("grid = 3\n", "grid must be a table"),
    ("[fixed]\nradial = 0\ndocument = false\nextra_contexts = \"\"\n[[grid]]\nbits = [24]\n",
     r"\[fixed\]: .*at least one context model"),
])
def test_bad_grids_are_rejected_naming_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(text, source="g.toml")


def test_missing_grid_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_grid(tmp_path / "nope.toml")


def test_shipped_roadmap_spans_the_requested_settings():
    grid = load_grid()
    variants = grid.variants()
    assert 200 <= len(variants) <= 300
    values = {name: {getattr(c, name) for c in variants} for name in sweep.CONFIG_FIELDS}
    assert {None, 64, 256, 512} <= values["bits"]
    assert {1.0, 2.0, 3.0, 4.0} <= values["tau"]
    assert {1.0, 3.0, 6.0} <= values["output_tau"]
    assert {64, 256, 1024} <= values["hidden"]
    assert {1, 2, 4, 8} <= values["radial"]
    assert values["block"] == {0, 16} and values["document"] == {False, True}
    assert values["aggregation"] == {"sum", "cat"}
    assert values["attention"] == {"explicit", "uniform"}
    assert {0.01, 0.1, 1.0} <= values["alpha"]
    assert grid.reference.vocab_size == 4096 and grid.backprop is None


# --- running, caching, resuming ----------------------------------------------------------------------


def test_sweep_records_match_direct_fits_and_results_files(splits, tmp_path):
    records = _sweep(splits, tmp_path)
    assert len(records) == 4 == len(_stored(tmp_path))
    tokenizer = Tokenizer.load(tmp_path / "tokenizer.json")
    record = records[3]
    config = SaffuConfig.from_dict({name: record[name] for name in sweep.CONFIG_FIELDS})
    train, dev, test = (TokenizedCorpus.from_documents(tokenizer, splits[name])
                        for name in ("train", "dev", "test"))
    model = SaffuModel(config, tokenizer=tokenizer).fit(train, verbose=0)
    assert record["dev_perplexity"] == pytest.approx(model.score(dev)["perplexity"], rel=1e-6)
    assert record["test_bits_per_char"] == pytest.approx(model.score(test)["bits_per_char"],
                                                         rel=1e-6)
    assert record["parameters"] == model.n_parameters
    assert record["train_tokens"] == train.n_tokens
    assert record["fit_seconds"] > 0 and record["fit_cpu_seconds"] > 0
    assert record["peak_memory_mb"] >= record["fit_peak_memory_mb"] > 0

    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [row["key"] for row in rows] == [r["key"] for r in records]
    assert float(rows[3]["dev_perplexity"]) == pytest.approx(record["dev_perplexity"])
    assert rows[0]["bits"] == "" and rows[3]["bits"] == "24"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["variants"] == records
    assert results["sweep"]["computed_this_run"] == 4 == results["sweep"]["completed"]
    assert results["sweep"]["splits"]["train"]["documents"] == 30


OUTPUT_TAU_GRID = FIXED + "[[grid]]\nbits = [24]\noutput_tau = [1, 2, 4]\n"


def _alone(record: dict, tokenizer: Tokenizer, train: TokenizedCorpus, fit=SaffuModel.fit) -> SaffuModel:
    """A record's variant fitted on its own."""
    config = SaffuConfig.from_dict({name: record[name] for name in sweep.CONFIG_FIELDS})
    return fit(SaffuModel(config, tokenizer=tokenizer), train, verbose=0)


@pytest.mark.parametrize("test_top", [None, 3])  # test scored with dev, or by a refit after it
def test_variants_differing_in_output_tau_share_their_passes_and_scoring(splits, tmp_path,
                                                                         monkeypatch, test_top):
    fits, scorings = [], []
    real_fit, real_score = SaffuModel.fit, SaffuModel.score_scaled
    monkeypatch.setattr(SaffuModel, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    monkeypatch.setattr(SaffuModel, "score_scaled", lambda self, corpus, scales:
                        scorings.append(len(scales)) or real_score(self, corpus, scales))
    records = _sweep(splits, tmp_path, grid=OUTPUT_TAU_GRID, test_top=test_top)
    assert len(fits) == (1 if test_top is None else 2)  # the refit for test: one for the three
    assert scorings == [3, 3]  # dev and test, each one pass for the three variants
    assert [r["fit_shared"] for r in records] == [False, True, True]
    assert all(r["eval_shared"] and r["test_selected"] for r in records)
    assert len({r["fit_cpu_seconds"] for r in records}) == 1 == len({r["eval_cpu_seconds"] for r in records})
    assert len({r["dev_perplexity"] for r in records}) == 3
    tokenizer = Tokenizer.load(tmp_path / "tokenizer.json")
    train, dev, test = (TokenizedCorpus.from_documents(tokenizer, splits[name])
                        for name in ("train", "dev", "test"))
    for record in records:
        model = _alone(record, tokenizer, train, real_fit)
        assert record["dev_perplexity"] == pytest.approx(model.score(dev)["perplexity"], rel=1e-6)
        assert record["test_bits_per_char"] == pytest.approx(model.score(test)["bits_per_char"], rel=1e-6)
        assert record["parameters"] == model.n_parameters


def test_a_variant_alone_is_not_marked_shared(splits, tmp_path):
    records = _sweep(splits, tmp_path)
    assert not any(r["fit_shared"] or r["eval_shared"] for r in records)


def test_fit_variants_takes_variants_that_differ_in_output_tau_only():
    with pytest.raises(ValueError, match="differ in output_tau only"):
        next(sweep.fit_variants([SaffuConfig(bits=24), SaffuConfig(bits=32)], None))
    with pytest.raises(ValueError, match=r"chooses output_tau .* alone"):
        next(sweep.fit_variants([SaffuConfig(output_tau=2.0), SaffuConfig(output_tau=None)], None))
    groups = sweep.output_tau_groups([SaffuConfig(output_tau=1.0), SaffuConfig(bits=24),
                                      SaffuConfig(output_tau=2.0)])
    assert [[c.output_tau for c in group] for group in groups] == [[1.0, 2.0], [SaffuConfig().output_tau]]


@pytest.mark.slow  # starts two worker processes
def test_worker_processes_give_the_records_of_one_process(splits, tmp_path, monkeypatch):
    """Both phases (dev, then the test refits of what dev selects) run in one pool of workers:
    nothing is fitted in this process, and the records equal those of a run in this process."""
    grid = OUTPUT_TAU_GRID + "[[grid]]\nradial = [2]\nbits = [24, 'min']\n"
    one = _sweep(splits, tmp_path / "one", grid=grid, test_top=1)
    pools = []

    class CountedPool(sweep_run.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(1)
            super().__init__(*args, **kwargs)

    def not_here(*args, **kwargs):
        raise AssertionError("a variant was fitted in the main process")

    monkeypatch.setattr(sweep_run, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(sweep_run, "fit_variants", not_here)
    two = _sweep(splits, tmp_path / "two", grid=grid, jobs=2, test_top=1)
    assert len(pools) == 1
    assert [r["key"] for r in two] == [r["key"] for r in one]
    assert 0 < sum(r["test_selected"] for r in one) < len(one)
    for a, b in zip(one, two, strict=True):
        for name in ("dev_perplexity", "test_perplexity", "test_bits_per_char"):
            assert b[name] == pytest.approx(a[name], rel=1e-6)
        assert (b["fit_shared"], b["eval_shared"], b["test_selected"]) == \
            (a["fit_shared"], a["eval_shared"], a["test_selected"])
    assert _sweep(splits, tmp_path / "two", grid=grid, jobs=2, test_top=1) == two
    assert len(pools) == 1  # a complete sweep starts no workers


def test_sweep_without_test_split_leaves_test_columns_empty(splits, tmp_path):
    records = run_sweep(splits["train"], splits["dev"], grid=parse_grid(SMALL_GRID), out=tmp_path,
                        verbose=0)
    assert all(r["test_perplexity"] is None and r["dev_perplexity"] > 1 for r in records)


def test_failed_variant_is_retried_and_only_it_on_rerun(splits, tmp_path, monkeypatch):
    real_fit = sweep.fit_variants
    calls = []

    def failing_second(configs, *args, **kwargs):
        if "dev" in kwargs["splits"]:  # the fits of the dev phase, not the refits for test
            calls.append(configs)
        if len(calls) == 2:
            raise MemoryError("simulated")
        return real_fit(configs, *args, **kwargs)

    monkeypatch.setattr(sweep_run, "fit_variants", failing_second)
    with pytest.raises(RuntimeError, match=r"1 of 4 variants failed .*MemoryError"):
        _sweep(splits, tmp_path)
    assert len(_stored(tmp_path)) == 3
    assert len(json.loads((tmp_path / "results.json").read_text())["variants"]) == 3

    calls.clear()
    records = _sweep(splits, tmp_path)
    assert len(calls) == 1 and len(records) == 4


def test_killed_sweep_resumes_where_it_stopped(splits, tmp_path, monkeypatch):
    """A sweep process killed by SIGKILL leaves only complete variant files; a rerun fits the rest."""
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    (tmp_path / "grid.toml").write_text(FIXED + "[[grid]]\nbits = ['min', 24]\ntau = [1, 2, 3, 4]\n")
    slow = (
        "import json, sys, time; sys.path.insert(0, sys.argv[2]); import saffu.sweep.run as s\n"
        "real = s.fit_variants\n"
        "s.fit_variants = lambda *a, **k: (time.sleep(0.4), real(*a, **k))[1]\n"
        "d = json.load(open(sys.argv[1] + '/splits.json'))\n"
        "s.run_sweep(d['train'], d['dev'], d['test'], grid=sys.argv[1] + '/grid.toml',\n"
        "            out=sys.argv[1] + '/out', verbose=0)\n")
    process = subprocess.Popen([sys.executable, "-c", slow, str(tmp_path),
                                str(Path(__file__).parent)])
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    while not (out / "variants").is_dir() or not _stored(out):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep did not start"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stored = len(_stored(out))
    assert 1 <= stored < 8
    assert all(json.loads(path.read_text())["key"] == path.stem for path in _stored(out))

    calls = []
    real_fit = sweep.fit_variants
    monkeypatch.setattr(sweep_run, "fit_variants",  # True: a fit scored on dev (not a test refit)
                        lambda *a, **k: calls.append("dev" in k["splits"]) or real_fit(*a, **k))
    records = run_sweep(splits["train"], splits["dev"], splits["test"], grid=tmp_path / "grid.toml",
                        out=out, verbose=0)
    assert len(records) == 8 and sum(calls) == 8 - stored


def test_output_folder_of_other_documents_is_refused(splits, tmp_path):
    _sweep(splits, tmp_path)
    with pytest.raises(ValueError, match="holds a sweep of other documents"):
        run_sweep(splits["dev"], splits["dev"], grid=parse_grid(SMALL_GRID), out=tmp_path, verbose=0)


def test_sweep_argument_errors(splits, tmp_path):
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        _sweep(splits, tmp_path, jobs=0)
    with pytest.raises(ValueError, match="the dev split has no documents"):
        run_sweep(splits["train"], [], grid=parse_grid(SMALL_GRID), out=tmp_path, verbose=0)


@pytest.mark.slow  # imports PyTorch (tens of seconds on a loaded machine)
def test_backprop_fine_tunes_each_variant(splits, tmp_path):
    pytest.importorskip("torch")
    grid = parse_grid(FIXED + "[[grid]]\nbits = [24]\n[backprop]\nseconds = 0.3\nlr = 0.003\n")
    (record,) = _sweep(splits, tmp_path, grid=grid)
    assert record["backprop_steps"] >= 1 and record["backprop_stopped"] == "max_seconds"
    # dev early stopping keeps the best weights, the explicit start included
    assert record["backprop_dev_perplexity"] <= record["dev_perplexity"] * (1 + 1e-4)
    assert math.isfinite(record["backprop_test_perplexity"])


# --- report ---------------------------------------------------------------------------------------


def test_pareto_front_keeps_only_unbeaten_variants():
    records = [{"parameters": p, "dev_perplexity": s, "name": n}
               for p, s, n in [(10, 50, "a"), (20, 60, "b"), (20, 40, "c"), (30, 40, "d"),
                               (40, 30, "e"), (5, 90, "f")]]
    assert [r["name"] for r in pareto_front(records)] == ["f", "a", "c", "e"]


# --- command line ------------------------------------------------------------------------------------


def _command(argv: list[str]) -> None:
    assert main(argv) == 0


def test_paired_effects_compare_variants_that_differ_in_one_field_only():
    def record(bits, tau, score):
        return {**SaffuConfig(bits=bits, tau=tau).to_dict(), "dev_perplexity": score}

    records = [record(24, 1.0, 100.0), record(24, 2.0, 80.0), record(32, 1.0, 50.0),
               record(24, 3.0, 120.0), record(64, 2.0, 10.0), record(32, 4.0, 1.0)]
    effects = {(e["field"], e["value"]): e for e in sweep.paired_effects(records)}
    # baselines: bits 24 and tau 1 (the most common values); (32, 4.0) pairs with (32, 1.0) only
    assert set(effects) == {("bits", 32), ("bits", 64), ("tau", 2.0), ("tau", 3.0), ("tau", 4.0)}
    assert effects["bits", 32]["baseline"] == 24 and effects["bits", 32]["median"] == 0.5
    assert effects["bits", 64]["median"] == pytest.approx(10 / 80)
    assert effects["tau", 4.0]["pairs"] == 1 and effects["tau", 4.0]["median"] == pytest.approx(1 / 50)
    assert effects["tau", 2.0]["better"] == 1 and effects["tau", 3.0]["better"] == 0
    assert effects["tau", 3.0]["low"] == effects["tau", 3.0]["high"] == pytest.approx(1.2)


@pytest.mark.slow
def test_cli_sweep_in_two_processes_then_report(splits, tmp_path, capsys):
    for name, docs in splits.items():
        (tmp_path / name).mkdir()
        for i, doc in enumerate(docs):
            (tmp_path / name / f"{i:02d}.txt").write_text(doc)
    (tmp_path / "grid.toml").write_text(SMALL_GRID + "[sample]\nn = 2\nradial = [1, 3]\n")
    out = tmp_path / "out"
    _command(["sweep", str(tmp_path / "train"), "--dev", str(tmp_path / "dev"), "--test",
              str(tmp_path / "test"), "--grid", str(tmp_path / "grid.toml"), "--out", str(out),
              "--jobs", "2", "--verbose", "0", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["variants"] == 6 == len(_stored(out))
    records = json.loads((out / "results.json").read_text())["variants"]
    assert summary["best"]["dev_perplexity"] == min(r["dev_perplexity"] for r in records)

    _command(["sweep-report", str(out), "--top", "3", "--json"])
    paths = json.loads(capsys.readouterr().out)
    for name in ("pareto", "effects"):
        assert Path(paths[name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = Path(paths["report"]).read_text()
    assert "## Top 3 by dev perplexity" in report
    assert "## Effect of each field, all else equal" in report and "## Cost" in report
    best = min(records, key=lambda r: r["dev_perplexity"])
    assert f"| 1 | bpe | 300 | {sweep.grid._format_value('bits', best['bits'])} |" in report


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--out", "x"], "give the train CORPUS"),
    (["sweep", "train.txt", "--out", "x"], "give --dev FILES"),
    (["sweep", "train.txt", "--shakespeare", "root", "--out", "x"], "--shakespeare takes"),
    (["sweep", "--shakespeare", "root", "--out", "x", "--grid", "nope.toml"], "nope.toml does not"),
    (["sweep-report", "missing-dir"], "run saffu sweep first"),
])
def test_cli_user_errors_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_report_of_an_empty_results_file_is_an_error(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"sweep": {}, "variants": []}))
    with pytest.raises(ValueError, match="no completed variants"):
        write_report(tmp_path)


def test_grid_object_is_accepted_as_is(splits, tmp_path):
    grid = Grid(fixed={"vocab_size": 300, "hidden": 16, "radial": 1, "document": False},
                grids=({"bits": (24,)},))
    (record,) = _sweep(splits, tmp_path, grid=grid)
    assert record["bits"] == 24


def test_a_variant_whose_fit_chooses_output_tau_is_a_group_of_its_own():
    configs = [SaffuConfig(output_tau=2.0), SaffuConfig(output_tau=None), SaffuConfig(output_tau=3.0)]
    assert sweep.output_tau_groups(configs) == [[configs[0], configs[2]], [configs[1]]]



def test_test_is_scored_only_for_what_dev_selects(splits, tmp_path):
    """Every variant gets dev; test only the Pareto front and the best k by dev, each scored by a
    refit equal to a fit of its own; the others' test scores are None and the report says so."""
    grid = FIXED + "[[grid]]\nbits = ['min', 24]\ntau = [1, 2, 3]\n"
    records = _sweep(splits, tmp_path, grid=grid, test_top=1)
    chosen = {r["key"] for r in sweep.selected_on_dev(records, 1)}
    best = min(records, key=lambda r: r["dev_perplexity"])
    assert best["key"] in chosen and len(chosen) < len(records)
    for record in records:
        assert record["test_selected"] == (record["key"] in chosen)
        assert (record["test_perplexity"] is not None) == (record["key"] in chosen)
    alone = sweep.fit_variant(SaffuConfig(**{k: best[k] for k in sweep.CONFIG_FIELDS}),
                              sweep.SweepData.load(tmp_path))
    assert best["test_perplexity"] == pytest.approx(alone["test_perplexity"], rel=1e-6)
    report = (write_report(tmp_path)["report"]).read_text()
    assert f"Test scores exist for {len(chosen)} variants only, chosen on dev" in report
    assert _sweep(splits, tmp_path, grid=grid, test_top=1) == records  # resumed: nothing refitted

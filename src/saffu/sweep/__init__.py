"""Roadmap sweeps (METHOD.md §7): fit many SAFFU variants explicitly and compare them.

A *grid file* (TOML) names the variants; ``roadmap.toml`` (shipped with the package) is the
default roadmap. Its tables::

    [fixed]          # SaffuConfig values shared by every variant (SaffuConfig defaults otherwise)
    bits = 256
    tau = 2.0

    [[grid]]         # a full grid: every combination of these value lists (fields not listed
    bits = ["min", 64, 256]    #  come from [fixed]); a file may hold several [[grid]] tables
    tau = [1, 2, 3]

    [sample]         # optional: n more distinct variants drawn at random, each field uniformly
    n = 50           # from the values it takes in [fixed] and the grids ("the same value lists");
    seed = 0         # a list here (e.g. hidden = [64, 256]) replaces a field's value list
    hidden = [64, 256]

    [backprop]       # optional: fine-tune each variant warm by backprop for this many seconds
    seconds = 60     # (needs PyTorch; other keys are options of saffu.torch.training.train, e.g. lr)

``None`` values are written ``"min"`` (bits), ``"bits"`` (hidden), ``"mean"`` (priming) or
``"none"``. With at most one context position (radial ≤ 1, block ≤ 1) attention weights are 1
whatever W is, and ``cat`` equals ``sum``; such variants are run as ``uniform``/``sum`` (the
same model, two passes fewer), so equivalent variants are fitted once.

:func:`run_sweep` tokenizes the corpus and fits one tokenizer for all variants, caches the
encoded splits in the output folder, fits and scores the variants in parallel processes, and
writes each variant's result to ``variants/<key>.json`` as soon as it is done (``key`` is a hash
of the config), so an interrupted sweep resumes where it stopped. Variants that differ in
``output_tau`` only share their passes and are scored together; the test split is scored
afterwards, by refits in the same pool (or cluster), for the variants dev selects. ``results.json`` and
``results.csv`` (every completed variant) are rewritten after each variant;
:func:`write_report` draws the figures and writes ``report.md``.

Modules: :mod:`~saffu.sweep.grid` (grid files), :mod:`~saffu.sweep.data` (the shared
tokenizer and encoded splits), :mod:`~saffu.sweep.variants` (fitting and scoring a variant),
:mod:`~saffu.sweep.run` (the process pool and resumption), :mod:`~saffu.sweep.cluster` (the
variants as tasks on a Dask cluster: ``run_sweep(..., client=client)``), :mod:`~saffu.sweep.report`
(figures and tables). The commands are in :mod:`saffu.cli.sweep`.
"""

from saffu.sweep.data import SweepData, prepare_data
from saffu.sweep.grid import (
    CONFIG_FIELDS,
    Backprop,
    Grid,
    Sample,
    canonical,
    load_grid,
    parse_grid,
    variant_key,
)
from saffu.sweep.report import paired_effects, varied_fields, write_report
from saffu.sweep.run import read_results, run_sweep, selected_on_dev
from saffu.sweep.variants import fit_variant, fit_variants, output_tau_groups, pareto_front

__all__ = [
    "CONFIG_FIELDS",
    "Backprop",
    "Grid",
    "Sample",
    "SweepData",
    "canonical",
    "fit_variant",
    "fit_variants",
    "load_grid",
    "output_tau_groups",
    "paired_effects",
    "pareto_front",
    "parse_grid",
    "prepare_data",
    "read_results",
    "run_sweep",
    "selected_on_dev",
    "variant_key",
    "varied_fields",
    "write_report",
]

"""A sweep's report: Pareto fronts, paired effects of each field, figures and ``report.md``."""


from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from saffu._io import atomic_write_bytes, atomic_write_text
from saffu.errors import InvalidParameterError, MissingDependencyError
from saffu.sweep.grid import CONFIG_FIELDS, _format_value
from saffu.sweep.run import read_results
from saffu.sweep.variants import pareto_front
from saffu.validation import is_int


def varied_fields(records: Sequence[dict[str, Any]]) -> list[str]:
    """Config fields that take more than one value among ``records``."""
    return [name for name in CONFIG_FIELDS if len({json.dumps(r[name]) for r in records}) > 1]


def paired_effects(records: Sequence[dict[str, Any]],
                   score: str = "dev_perplexity") -> list[dict[str, Any]]:
    """The effect of each varied field, all else equal: for every value of a field other than
    its most common one (the baseline), the ratios ``score(value) / score(baseline)`` over the
    pairs of records that differ in that field only (< 1: the value is better).

    Returns:
        one dict per (field, value) with pairs: ``field``, ``baseline``, ``value``, ``pairs``,
        ``median``, ``low``, ``high`` (ratios) and ``better`` (pairs with a ratio < 1).
    """
    effects = []
    for name in varied_fields(records):
        counts: dict[str, int] = {}
        for record in records:
            counts[json.dumps(record[name])] = counts.get(json.dumps(record[name]), 0) + 1
        baseline = json.loads(max(counts, key=counts.get))
        others = [field for field in CONFIG_FIELDS if field != name]
        by_rest = {json.dumps([r[f] for f in others]): r for r in records if r[name] == baseline}
        ratios: dict[str, list[float]] = {}
        for record in records:
            base = by_rest.get(json.dumps([record[f] for f in others]))
            if record[name] != baseline and base is not None:
                ratios.setdefault(json.dumps(record[name]), []).append(record[score] / base[score])
        for value, found in sorted(ratios.items()):
            effects.append({"field": name, "baseline": baseline, "value": json.loads(value),
                            "pairs": len(found), "median": float(np.median(found)),
                            "low": min(found), "high": max(found),
                            "better": sum(ratio < 1 for ratio in found)})
    return effects


def write_report(directory: str | os.PathLike, *, top: int = 10) -> dict[str, Path]:
    """Write ``pareto.png``, ``effects.png`` and ``report.md`` into a sweep folder.

    Returns:
        the written paths by name ("pareto", "effects", "report").
    """
    if not is_int(top) or top < 1:
        raise InvalidParameterError(f"top must be a positive integer, got {top!r}")
    directory = Path(directory)
    records = read_results(directory)
    paths = {"pareto": directory / "pareto.png", "effects": directory / "effects.png",
             "report": directory / "report.md"}
    _plot_pareto(records, paths["pareto"])
    _plot_effects(records, paths["effects"])
    atomic_write_text(paths["report"], _report_markdown(records, top))
    return paths


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise MissingDependencyError.extra("saffu sweep-report", "plot", error) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(plt: Any, fig: Any, path: Path, dpi: int) -> None:
    """Render ``fig`` as PNG in memory, write it atomically (saffu._io), and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _plot_pareto(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Dev perplexity against parameters and against fit CPU seconds, Pareto fronts marked."""
    plt = _pyplot()
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, cost, label in ((axes[0], "parameters", "parameters"),
                            (axes[1], "fit_cpu_seconds", "fit CPU seconds (one process)")):
        ax.scatter([r[cost] for r in records], [r["dev_perplexity"] for r in records], s=14,
                   alpha=0.5, color="tab:blue", label="variant")
        front = pareto_front(records, cost)
        ax.step([r[cost] for r in front], [r["dev_perplexity"] for r in front], where="post",
                color="tab:red", marker="o", markersize=4, label="Pareto front")
        ax.set(xscale="log", yscale="log", xlabel=label)
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.EngFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("dev perplexity")
    axes[0].legend()
    fig.suptitle(f"{len(records)} explicitly fitted SAFFU variants")
    fig.tight_layout()
    _save_figure(plt, fig, path, dpi=120)


def _plot_effects(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per varied field: dev perplexity of every variant, by the field's value."""
    plt = _pyplot()
    fields = varied_fields(records) or ["bits"]
    columns = min(4, len(fields))
    rows = math.ceil(len(fields) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), sharey=True,
                             squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, fields, strict=False):
        groups = _group_by(records, name)
        ax.boxplot([g for g in groups.values()], showfliers=False, widths=0.5)
        for i, values in enumerate(groups.values(), start=1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=6, alpha=0.4)
        ax.set_xticks(range(1, len(groups) + 1), list(groups))
        ax.set(title=name, yscale="log")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    for ax in axes.flat[len(fields):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("dev perplexity")
    fig.tight_layout()
    _save_figure(plt, fig, path, dpi=110)


def _group_by(records: Sequence[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """Dev perplexities by the formatted value of field ``name``, values in sorted order."""
    values = sorted({r[name] for r in records}, key=lambda v: (v is not None, v))
    return {_format_value(name, v): [r["dev_perplexity"] for r in records if r[name] == v]
            for v in values}


def _test_scope(records: Sequence[dict[str, Any]]) -> str:
    """What the test columns hold: every variant, or those selected on dev only."""
    scored = sum(r.get("test_perplexity") is not None for r in records)
    if scored == len(records):
        return "Every variant was scored on test."
    return (f"Test scores exist for {scored} variants only, chosen on dev (the Pareto front and "
            "the best by dev perplexity): the test split serves to report, never to choose.")


def _report_markdown(records: Sequence[dict[str, Any]], top: int) -> str:
    ranked = sorted(records, key=lambda r: r["dev_perplexity"])
    best = ranked[0]
    largest = max(records, key=lambda r: r["parameters"])
    larger = sum(r["parameters"] > best["parameters"] for r in records)
    lines = [
        "# Sweep report", "",
        f"{len(records)} variants. The best dev perplexity, {best['dev_perplexity']:.2f}, has "
        f"{best['parameters']:,} parameters; {larger} variants have more. The largest variant "
        f"({largest['parameters']:,} parameters) ranks {ranked.index(largest) + 1} by dev "
        "perplexity; the Spearman correlation of parameters and dev perplexity is "
        f"{_spearman([r['parameters'] for r in records], [r['dev_perplexity'] for r in records])}.",
        "", _test_scope(records), "",
        f"## Top {min(top, len(ranked))} by dev perplexity", "",
        *_markdown_table(ranked[:top], CONFIG_FIELDS), "",
        "## Pareto front (dev perplexity against parameters)", "",
        *_markdown_table(pareto_front(records), varied_fields(records) or CONFIG_FIELDS), "",
        "## Dev perplexity by value of each varied field (median, best, count)", "",
        "| field | value | median | best | variants |", "|---|---|---|---|---|"]
    for name in varied_fields(records):
        for value, scores in _group_by(records, name).items():
            lines.append(f"| {name} | {value} | {np.median(scores):.2f} | {min(scores):.2f} | "
                         f"{len(scores)} |")
    lines += ["", "## Effect of each field, all else equal", "",
              "Ratio of dev perplexities over pairs of variants that differ in one field only "
              "(value / baseline, the field's most common value; < 1: the value is better).", "",
              "| field | baseline → value | pairs | median ratio | range | better in |",
              "|---|---|---|---|---|---|"]
    for effect in paired_effects(records):
        name = effect["field"]
        lines.append(f"| {name} | {_format_value(name, effect['baseline'])} → "
                     f"{_format_value(name, effect['value'])} | {effect['pairs']} | "
                     f"{effect['median']:.3f} | {effect['low']:.3f}-{effect['high']:.3f} | "
                     f"{effect['better']} |")
    lines += ["", *_cost_lines(records), "", "![Pareto front](pareto.png)", "",
              "![Effects](effects.png)", ""]
    return "\n".join(lines)


def _cost_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """CPU time of the variants: fitting (passes shared by output_tau variants counted once)
    and scoring."""
    fit = [r["fit_cpu_seconds"] for r in records if not r.get("fit_shared")]
    scoring = [r["eval_cpu_seconds"] for r in records]
    per_variant = [r["eval_cpu_seconds"] + (0 if r.get("fit_shared") else r["fit_cpu_seconds"])
                   for r in records]
    return ["## Cost", "",
            f"{sum(fit) + sum(scoring):,.0f} CPU s in the worker processes: {sum(fit):,.0f} fitting "
            f"({len(fit)} fits; variants that differ in output_tau only share one and are scored "
            f"together) and {sum(scoring):,.0f} scoring. Per variant: median "
            f"{np.median(per_variant):.1f} CPU s, 90th percentile "
            f"{np.percentile(per_variant, 90):.1f}, maximum {max(per_variant):.1f}."]


def _spearman(x: Sequence[float], y: Sequence[float]) -> str:
    from scipy.stats import spearmanr

    value = spearmanr(x, y).statistic if len(x) > 2 else math.nan
    return "undefined" if math.isnan(value) else f"{value:.2f}"


def _markdown_table(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> list[str]:
    metrics = ["parameters", "fit_cpu_seconds", "dev_perplexity", "dev_bits_per_char",
               "test_perplexity", "test_bits_per_char"]
    lines = ["| " + " | ".join(["#", *fields, *metrics]) + " |",
             "|" + "---|" * (1 + len(fields) + len(metrics))]
    for rank, record in enumerate(records, start=1):
        cells = [str(rank), *[_format_value(name, record[name]) for name in fields],
                 f"{record['parameters']:,}", f"{record['fit_cpu_seconds']:.1f}",
                 *[_format_metric(record.get(m)) for m in metrics[2:]]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _format_metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}" if value < 10 else f"{value:.2f}"

"""ExplicitSoftmaxClassifier vs MultinomialNB and LogisticRegression, and LR warm-started from it.

Two tasks, each with a fixed, stratified 60/20/20 train/validation/test split (seed ``--seed``):

- ``digits``: scikit-learn's bundled 8×8 digits (1,797 images, 64 pixel intensities 0..16).
- ``speeches``: which of five tragedies a speech comes from (Shakespeare corpus in
  ../shared/data/shakespeare; a speech is the text under a speaker tag, stage directions
  removed; the tag itself is dropped), as word counts from ``CountVectorizer`` fitted on the
  training split.

Models: the explicit classifier (bias form, α = τ = 1; and α, τ, form tuned on the validation
log-loss), MultinomialNB (α = 1; α tuned) and LogisticRegression (lbfgs, C = 1; C tuned). All are
fitted on the training split; the test split is used only for the reported figures. Fit times are
the best of ``--repeat`` fits, with ``--threads`` BLAS and kernel threads (default 1: on a shared
2-core machine, two spinning OpenBLAS threads made one LogisticRegression fit 40× slower).

Warm start: LogisticRegression (the tuned C) from the tuned explicit weights versus its usual cold
start (zeros). The weights go in through the documented ``warm_start=True`` mechanism: ``fit``
starts from the ``coef_``/``intercept_`` it finds on the estimator, and we set them before the
first ``fit``. Softmax logits do not change when a per-feature constant is added to every class's
weight, so the explicit weights are first centred over the classes (the equivalent weights of
least L2 norm, which the penalty favours); the uncentred start is reported too.

    python -m bench.classify --json bench/out/classify.json    # from the repository root

(``-m``: run as ``python bench/classify.py``, the sibling bench/tokenize.py would shadow the
standard library's ``tokenize`` module.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import MultinomialNB
from threadpoolctl import threadpool_limits

from saffu._backend import config_info, threads
from saffu.classify import ExplicitSoftmaxClassifier

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
PLAYS = ("hamlet", "macbeth", "othello", "lear", "romeo_and_juliet")
SPEAKER_TAG = re.compile(r"^[A-Z][A-Za-z' .-]{0,30}\.$")  # "Ham.", "LADY MACBETH.", "P. King."
STAGE_DIRECTION = re.compile(r"\[[^\]]*\]")

EXPLICIT_GRID = {
    "alpha": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "tau": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
    "form": ("bias", "folded"),
}
NB_GRID = {"alpha": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)}
LR_GRID = {"C": (0.001, 0.01, 0.1, 1.0, 10.0)}
LR_MAX_ITER = 10_000
ITERATION_BUDGETS = (1, 2, 5, 10, 20, 50, 100)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Task:
    """A classification task with fixed train/validation/test splits (X: n × D, non-negative)."""

    name: str
    description: str
    X_train: Any
    y_train: np.ndarray
    X_val: Any
    y_val: np.ndarray
    X_test: Any
    y_test: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "features": self.X_train.shape[1],
            "classes": len(np.unique(self.y_train)),
            "train": len(self.y_train),
            "validation": len(self.y_val),
            "test": len(self.y_test),
        }


def split_60_20_20(n: int, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/validation/test row indices."""
    rows = np.arange(n)
    train, rest = train_test_split(rows, test_size=0.4, stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return train, val, test


def digits_task(seed: int) -> Task:
    X, y = load_digits(return_X_y=True)
    train, val, test = split_60_20_20(len(y), y, seed)
    return Task("digits", "sklearn digits, 8x8 pixel intensities 0..16",
                X[train], y[train], X[val], y[val], X[test], y[test])


def read_speeches(path: Path) -> list[str]:
    """The speeches of a play: paragraphs under a speaker tag, without the tag and stage directions."""
    speeches = []
    for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        lines = paragraph.strip().split("\n")
        if len(lines) < 2 or not SPEAKER_TAG.match(lines[0].strip()):
            continue
        body = STAGE_DIRECTION.sub(" ", "\n".join(lines[1:])).strip()
        if body:
            speeches.append(body)
    return speeches


def speeches_task(corpus: Path, plays: Iterable[str], seed: int) -> Task:
    texts, labels = [], []
    for play in plays:
        speeches = read_speeches(corpus / f"{play}_gut.txt")
        texts += speeches
        labels += [play] * len(speeches)
    y = np.array(labels)
    train, val, test = split_60_20_20(len(y), y, seed)
    vectorizer = CountVectorizer()
    X_train = vectorizer.fit_transform([texts[i] for i in train])

    def counts(rows: np.ndarray):
        return vectorizer.transform([texts[i] for i in rows])

    return Task("speeches", f"play of a speech ({', '.join(plays)}), word counts",
                X_train, y[train], counts(val), y[val], counts(test), y[test])


# --- fitting and scoring ------------------------------------------------------------------------


def best_fit_time(make: Callable[[], Any], X, y, repeat: int) -> tuple[float, Any]:
    """The best wall time of ``repeat`` fits of fresh models, and the last fitted model."""
    times = []
    for _ in range(repeat):
        model = make()
        start = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
    return min(times), model


def held_out_scores(model, task: Task) -> dict[str, float]:
    proba = model.predict_proba(task.X_test)
    return {
        "accuracy": float(np.mean(model.classes_[proba.argmax(axis=1)] == task.y_test)),
        "log_loss": float(log_loss(task.y_test, proba, labels=model.classes_)),
    }


def tune(make: Callable[..., Any], grid: dict[str, tuple], task: Task) -> tuple[dict, float]:
    """The grid point with the lowest validation log-loss (fitted on the training split)."""
    best_params, best_loss = {}, np.inf
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        model = make(**params).fit(task.X_train, task.y_train)
        loss = log_loss(task.y_val, model.predict_proba(task.X_val), labels=model.classes_)
        if loss < best_loss:
            best_params, best_loss = params, float(loss)
    return best_params, best_loss


def logistic(**params) -> LogisticRegression:
    return LogisticRegression(max_iter=LR_MAX_ITER, **params)


def compare_models(task: Task, repeat: int) -> tuple[list[dict], dict[str, dict]]:
    """One row per model (test accuracy, log-loss, fit time) and the tuned parameters."""
    families = {
        "explicit": (ExplicitSoftmaxClassifier, EXPLICIT_GRID, {}),
        "MultinomialNB": (MultinomialNB, NB_GRID, {"alpha": 1.0}),
        "LogisticRegression": (logistic, LR_GRID, {"C": 1.0}),
    }
    rows, tuned = [], {}
    for family, (make, grid, defaults) in families.items():
        tuned[family], val_loss = tune(make, grid, task)
        for label, params in (("default", defaults), ("tuned", tuned[family])):
            seconds, model = best_fit_time(partial(make, **params), task.X_train, task.y_train, repeat)
            rows.append({"model": f"{family} ({label})", "params": params, "fit_s": seconds,
                         "val_log_loss": val_loss if label == "tuned" else None,
                         **held_out_scores(model, task)})
    return rows, tuned


# --- warm start ---------------------------------------------------------------------------------


def explicit_start(explicit: ExplicitSoftmaxClassifier, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """LogisticRegression initial (coef_, intercept_) from the explicit weights."""
    coef, intercept = explicit.coef_.astype(np.float64), explicit.intercept_.astype(np.float64)
    if centred:
        coef, intercept = coef - coef.mean(axis=0), intercept - intercept.mean()
    return coef, intercept


def fit_logistic(task: Task, C: float, start: tuple[np.ndarray, np.ndarray] | None,
                 max_iter: int) -> tuple[float, LogisticRegression]:
    """Fit LogisticRegression from ``start`` (None: its cold start); returns (seconds, model)."""
    model = LogisticRegression(C=C, max_iter=max_iter, warm_start=start is not None)
    if start is not None:
        model.coef_, model.intercept_ = (a.copy() for a in start)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(task.X_train, task.y_train)
    return time.perf_counter() - began, model


def training_objective(model: LogisticRegression, task: Task, C: float) -> float:
    """sklearn's L2 primal objective ``C · Σ_m CE_m + ‖coef‖²/2`` on the training split."""
    n = len(task.y_train)
    cross_entropy = log_loss(task.y_train, model.predict_proba(task.X_train), labels=model.classes_)
    return float(C * n * cross_entropy + 0.5 * np.sum(model.coef_**2))


def compare_starts(task: Task, C: float, explicit_params: dict, repeat: int) -> tuple[list[dict], list[dict]]:
    """Cold vs explicit starts of LogisticRegression(C): to convergence, and per iteration budget."""
    explicit_s, explicit = best_fit_time(partial(ExplicitSoftmaxClassifier, **explicit_params),
                                         task.X_train, task.y_train, repeat)
    starts = {
        "cold (zeros)": (None, 0.0),
        "explicit, centred": (explicit_start(explicit, centred=True), explicit_s),
        "explicit, uncentred": (explicit_start(explicit, centred=False), explicit_s),
    }
    converged = []
    for name, (start, init_s) in starts.items():
        fits = [fit_logistic(task, C, start, LR_MAX_ITER) for _ in range(repeat)]
        seconds, model = min(fits, key=lambda fit: fit[0])
        converged.append({"start": name, "n_iter": int(model.n_iter_[0]), "lr_fit_s": seconds,
                          "total_s": seconds + init_s,
                          "train_objective": training_objective(model, task, C),
                          **held_out_scores(model, task)})
    budgets = []
    for max_iter in ITERATION_BUDGETS:
        row = {"max_iter": max_iter}
        for name, (start, _) in starts.items():
            row[name] = held_out_scores(fit_logistic(task, C, start, max_iter)[1], task)["log_loss"]
        budgets.append(row)
    return converged, budgets


# --- report -------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_params(params: dict) -> str:
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())


def report(result: dict) -> str:
    summary = result["data"]
    parts = [f"### {result['name']}: {summary['description']}",
             f"{summary['features']} features, {summary['classes']} classes; "
             f"train/validation/test = {summary['train']}/{summary['validation']}/{summary['test']}"]
    parts.append(markdown_table(
        ["model", "params", "val log-loss", "test accuracy", "test log-loss", "fit s"],
        [[r["model"], format_params(r["params"]),
          "" if r["val_log_loss"] is None else f"{r['val_log_loss']:.4f}",
          f"{r['accuracy']:.4f}", f"{r['log_loss']:.4f}", f"{r['fit_s']:.4f}"]
         for r in result["models"]]))
    parts.append(f"LogisticRegression(C={result['warm_start_C']:g}) by start "
                 f"(explicit weights: {format_params(result['explicit_params'])}):")
    parts.append(markdown_table(
        ["start", "n_iter_", "train objective", "test accuracy", "test log-loss", "LR fit s",
         "total s (+explicit fit)"],
        [[r["start"], str(r["n_iter"]), f"{r['train_objective']:.6g}", f"{r['accuracy']:.4f}",
          f"{r['log_loss']:.4f}", f"{r['lr_fit_s']:.3f}", f"{r['total_s']:.3f}"]
         for r in result["warm_start"]]))
    names = [r["start"] for r in result["warm_start"]]
    parts.append("Test log-loss after at most max_iter L-BFGS iterations:")
    parts.append(markdown_table(["max_iter", *names],
                                [[str(r["max_iter"]), *(f"{r[n]:.4f}" for n in names)]
                                 for r in result["budgets"]]))
    return "\n\n".join(parts)


def run_task(task: Task, repeat: int) -> dict:
    models, tuned = compare_models(task, repeat)
    C = tuned["LogisticRegression"]["C"]
    warm, budgets = compare_starts(task, C, tuned["explicit"], repeat)
    return {"name": task.name, "data": task.summary(), "models": models, "warm_start_C": C,
            "explicit_params": tuned["explicit"], "warm_start": warm, "budgets": budgets}


def machine() -> dict[str, Any]:
    info = config_info()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.M)
        info["cpu"] = f"{models[0]} x {len(models)}" if models else None
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    parser.add_argument("--plays", nargs="+", default=list(PLAYS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed fits; the best is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and saffu kernel threads (one: no oversubscription on a busy machine)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    with threadpool_limits(limits=args.threads), threads(args.threads):
        results = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "tasks": []}
        for task in (digits_task(args.seed), speeches_task(args.corpus, args.plays, args.seed)):
            result = run_task(task, args.repeat)
            results["tasks"].append(result)
            print(report(result), end="\n\n", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Scores from per-token log-probabilities, and the linear interpolation of two models."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from saffu.errors import InvalidParameterError

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
ROUNDING = 1e-5  # log-probabilities up to this far above 0 are rounding (float32 logits), not errors


def _log_proba(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise InvalidParameterError(f"{name} must be a non-empty 1-D array of log-probabilities, got shape "
                                    f"{array.shape}")
    if np.isnan(array).any() or np.any(array > ROUNDING):
        raise InvalidParameterError(f"{name} must hold natural log-probabilities (≤ 0, no NaN)")
    return array


def scores_from_log_proba(log_p: np.ndarray, *, n_characters: int | None = None,
                          n_documents: int | None = None) -> dict[str, Any]:
    """The keys of ``SaffuModel.score`` from (m,) natural log-probabilities of predicted tokens.

    Returns:
        ``perplexity`` (exp of the mean NLL per token), ``bits_per_char`` (total NLL /
        (ln 2 · characters); None when ``n_characters`` is not given), ``nll`` (total, nats),
        ``tokens``, ``characters`` and ``documents`` (None when not given).
    """
    log_p = _log_proba(log_p, "log_p")
    nll = float(-log_p.sum())
    if n_characters is not None and n_characters < 1:
        raise InvalidParameterError(f"n_characters must be positive, got {n_characters}")
    return {"perplexity": math.exp(nll / len(log_p)),
            "bits_per_char": None if n_characters is None else nll / (math.log(2) * n_characters),
            "nll": nll, "tokens": len(log_p), "characters": n_characters, "documents": n_documents}


def interpolate_log_proba(log_p_a: np.ndarray, log_p_b: np.ndarray, weight: float) -> np.ndarray:
    """log(λ p_a + (1 − λ) p_b) token by token, for (m,) natural log-probabilities, λ = ``weight``."""
    a, b = _log_proba(log_p_a, "log_p_a"), _log_proba(log_p_b, "log_p_b")
    if a.shape != b.shape:
        raise InvalidParameterError(f"log_p_a and log_p_b must score the same tokens, got shapes {a.shape} "
                                    f"and {b.shape}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)) \
            or not 0.0 <= weight <= 1.0:
        raise InvalidParameterError(f"weight must be a number in [0, 1], got {weight!r}")
    if weight == 0.0:
        return b.copy()
    if weight == 1.0:
        return a.copy()
    return np.logaddexp(math.log(weight) + a, math.log1p(-weight) + b)


def choose_interpolation_weight(dev_log_p_a: np.ndarray, dev_log_p_b: np.ndarray, *,
                                tolerance: float = 1e-4) -> tuple[float, float]:
    """The weight λ in [0, 1] of model a that minimizes the mean dev NLL of the mixture.

    The mixture's NLL is convex in λ, so a golden-section search finds the minimum to within
    ``tolerance``. Use dev log-probabilities only: the test split scores the chosen λ once.

    Returns:
        (λ, mean dev NLL per token in nats at λ).
    """
    if not 0.0 < tolerance < 0.5:
        raise InvalidParameterError(f"tolerance must be in (0, 0.5), got {tolerance}")

    def nll(weight: float) -> float:
        return float(-interpolate_log_proba(dev_log_p_a, dev_log_p_b, weight).mean())

    low, high = 0.0, 1.0
    inner_low, inner_high = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
    f_low, f_high = nll(inner_low), nll(inner_high)
    while high - low > tolerance:
        if f_low <= f_high:
            high, inner_high, f_high = inner_high, inner_low, f_low
            inner_low = high - GOLDEN * (high - low)
            f_low = nll(inner_low)
        else:
            low, inner_low, f_low = inner_low, inner_high, f_high
            inner_high = low + GOLDEN * (high - low)
            f_high = nll(inner_high)
    candidates = [(nll(w), w) for w in (0.0, (low + high) / 2, 1.0)]  # the ends are allowed too
    best_nll, best_weight = min(candidates)
    return best_weight, best_nll

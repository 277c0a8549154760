"""Validated SAFFU-pass kernels (contracts: docs/internals.md, section "SAFFU passes").

A corpus is ``ids`` (n,) int32 token ids of whole documents, each starting with ``<sod>``, and
``pos`` (n,) int32, the position of each token inside its document (``<sod>`` is 0). Every
token with ``pos[t] >= 1`` is a target whose context is its document prefix. Context models:
``kind`` 0 radial (``K`` = r), 1 block (``K`` = B), 2 document (``K`` = 1). Aggregation 0 sums
the attended window into ``Z = bits`` features, 1 concatenates it (``Z = K * bits``).
Statistics are float64 and updated in place; all other float arrays are float32.
"""

from __future__ import annotations

import operator

import numpy as np

from saffu._backend import backend_module, get_num_threads
from saffu.errors import InvalidParameterError
from saffu.kernels._validate import check_array as _check_array
from saffu.kinds import Aggregation, ContextKind

RADIAL, BLOCK, DOCUMENT = (kind.code for kind in ContextKind)
SUM, CAT = (aggregation.code for aggregation in Aggregation)
_KIND_NAMES = {kind.code: kind.value for kind in ContextKind}

_I32 = np.dtype(np.int32)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _check_finite(**arrays: np.ndarray) -> None:
    """Refuses an array holding NaN or infinity. Its sum is finite only if every entry is (NaN
    and infinities propagate through a sum): one pass without a temporary array, the entrywise
    test only where the sum is not finite (an overflow of finite entries, or a bad entry)."""
    for name, a in arrays.items():
        with np.errstate(over="ignore", invalid="ignore"):
            total = a.sum()
        if not np.isfinite(total) and not np.isfinite(a).all():
            raise InvalidParameterError(f"{name} must be finite (it holds NaN or infinity)")


def _check_int(name: str, value: object, minimum: int | None = None) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise InvalidParameterError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_context_model(kind: object, K: object, *, attention_only: bool = False) -> tuple[int, int]:
    """``kind`` in {0, 1, 2} (only 0, 1 for the per-position passes), ``K >= 1``, 1 for document."""
    kind = _check_int("kind", kind)
    allowed = tuple(k.code for k in ContextKind if k.attends or not attention_only)
    if kind not in allowed:
        names = ", ".join(f"{k} ({_KIND_NAMES[k]})" for k in allowed)
        raise InvalidParameterError(f"kind must be one of {names}, got {kind}")
    K = _check_int("K", K, minimum=1)
    if kind == DOCUMENT and K != 1:
        raise InvalidParameterError(f"the document model has no window: K must be 1, got {K}")
    return kind, K


def _check_aggregation(aggregation: object, K: int, bits: int) -> tuple[int, int]:
    """Returns the aggregation and the width Z of z."""
    aggregation = _check_int("aggregation", aggregation)
    if aggregation not in (SUM, CAT):
        names = " or ".join(f"{a.code} ({a.value})" for a in Aggregation)
        raise InvalidParameterError(f"aggregation must be {names}, got {aggregation}")
    return aggregation, K * bits if aggregation == CAT else bits


def _check_vectors(E: object) -> tuple[int, int]:
    """E (V, bits) float32 cipher vectors; returns (V, bits)."""
    _check_array("E", E, _F32, 2)
    if E.shape[0] < 1 or E.shape[1] < 1:
        raise InvalidParameterError(f"E must have at least one token and one bit, got shape {E.shape}")
    _check_finite(E=E)
    return E.shape


def _check_token_arrays(ids: object, pos: object) -> int:
    """ids and pos are (n,) int32; returns n."""
    _check_array("ids", ids, _I32, 1)
    _check_array("pos", pos, _I32, 1, ids.shape)
    return ids.size


def _check_documents(ids: np.ndarray, pos: np.ndarray, vocab_size: int, start: int, stop: int) -> None:
    """On the tokens read by the targets of [start, stop): ids lie in [0, V) and pos counts
    0, 1, 2, ... from each document start."""
    if start < stop:  # the first target's document may begin before start
        first = int(pos[start])
        if not 0 <= first <= start:
            raise InvalidParameterError(f"pos[{start}] = {first} must lie in [0, {start}]")
        start -= first
    _check_positions(pos[start:stop], start)
    used = ids[start:stop]
    if used.size and (used.min() < 0 or used.max() >= vocab_size):
        bad = start + int(np.flatnonzero((used < 0) | (used >= vocab_size))[0])
        raise InvalidParameterError(f"ids[{bad}] = {ids[bad]} is out of range [0, {vocab_size}) (V = len(E))")


def _check_corpus(ids: object, pos: object, vocab_size: int) -> None:
    """The whole corpus is read: check every token."""
    n = _check_token_arrays(ids, pos)
    _check_documents(ids, pos, vocab_size, 0, n)


def _check_positions(pos: np.ndarray, offset: int) -> None:
    """``pos`` holds the positions of tokens offset, offset + 1, ...: each is 0 (a document
    start) or one more than the previous one, and never more than its own index."""
    p = pos.astype(np.int64)
    index = np.arange(offset, offset + p.size)
    bad = (p < 0) | (p > index)
    bad[1:] |= (p[1:] != 0) & (p[1:] != p[:-1] + 1)
    if bad.any():
        t = offset + int(np.flatnonzero(bad)[0])
        raise InvalidParameterError(
            f"pos[{t}] = {pos[t - offset]} is inconsistent: positions must be 0 at each document "
            "start (<sod>) and increase by 1 inside a document"
        )


def _check_disjoint(name: str, out: np.ndarray, **inputs: np.ndarray) -> None:
    for other_name, other in inputs.items():
        if np.may_share_memory(out, other):
            raise InvalidParameterError(f"{name} must not share memory with {other_name}")


def saffu_expert_stats(
    ids: np.ndarray,
    pos: np.ndarray,
    kind: int,
    K: int,
    E: np.ndarray,
    FT: np.ndarray,
    T: np.ndarray,
) -> None:
    """Accumulate the per-position expert statistics of a radial or block model, in place.

    For each target t and valid window slot k holding token v:
    ``FT[k, y_t, :] += E[v]`` and ``T[k, y_t] += 1``.

    Args:
        ids: (n,) int32 token ids of whole documents (see the module docstring).
        pos: (n,) int32 position of each token inside its document.
        kind: 0 radial or 1 block.
        K: the window: r (radial) or B (block).
        E: (V, bits) float32 cipher vectors.
        FT: (K, V, bits) float64 statistics, target-major per position.
        T: (K, V) float64 target counts per position.
    """
    kind, K = _check_context_model(kind, K, attention_only=True)
    V, bits = _check_vectors(E)
    _check_corpus(ids, pos, V)
    _check_array("FT", FT, _F64, 3, (K, V, bits), writeable=True)
    _check_array("T", T, _F64, 2, (K, V), writeable=True)
    _check_disjoint("FT", FT, T=T)
    backend_module().saffu_expert_stats(ids, pos, kind, K, E, FT, T, get_num_threads())


def saffu_attention_stats(
    ids: np.ndarray,
    pos: np.ndarray,
    kind: int,
    K: int,
    E: np.ndarray,
    expert_UT: np.ndarray,
    expert_b: np.ndarray,
    expert_logz: np.ndarray,
    FT: np.ndarray,
) -> float:
    """Accumulate the attention statistics of a radial or block model, in place.

    Per target: ``l_k = E[v_k]·expert_UT[k, y_t] + expert_b[k, y_t] − expert_logz[k, v_k]``,
    ``w = softmax`` of l over valid slots, ``FT[k_out, k_in] += w[k_out]·s[k_in]``.

    Args:
        ids: as in :func:`saffu_expert_stats`.
        pos: as in :func:`saffu_expert_stats`.
        kind: as in :func:`saffu_expert_stats`.
        K: as in :func:`saffu_expert_stats`.
        E: as in :func:`saffu_expert_stats`.
        expert_UT: (K, V, bits) float32 expert weights (target-major).
        expert_b: (K, V) float32 expert biases.
        expert_logz: (K, V) float32, ``logsumexp_y(E[v]·expert_UT[k, y] + expert_b[k, y])``.
        FT: (K, K) float64 statistics (attention slot × comparison slot).

    Returns:
        The summed comparison mass ``Σ_t Σ_k s_k`` (for the priming number).
    """
    kind, K = _check_context_model(kind, K, attention_only=True)
    V, bits = _check_vectors(E)
    _check_corpus(ids, pos, V)
    _check_array("expert_UT", expert_UT, _F32, 3, (K, V, bits))
    _check_array("expert_b", expert_b, _F32, 2, (K, V))
    _check_array("expert_logz", expert_logz, _F32, 2, (K, V))
    _check_finite(expert_UT=expert_UT, expert_b=expert_b, expert_logz=expert_logz)
    _check_array("FT", FT, _F64, 2, (K, K), writeable=True)
    return float(
        backend_module().saffu_attention_stats(
            ids, pos, kind, K, E, expert_UT, expert_b, expert_logz, FT, get_num_threads()
        )
    )


def saffu_hidden_stats(
    ids: np.ndarray,
    pos: np.ndarray,
    kind: int,
    K: int,
    E: np.ndarray,
    W: np.ndarray,
    aggregation: int,
    codes: np.ndarray,
    FT: np.ndarray,
) -> float:
    """Accumulate the hidden-layer statistics ``FT[i, :] += codes[y_t, i]·z_t``, in place.

    Args:
        ids: (n,) int32 token ids of whole documents.
        pos: (n,) int32 position of each token inside its document.
        kind: 0 radial, 1 block or 2 document.
        K: the window: r (radial), B (block) or 1 (document).
        E: (V, bits) float32 cipher vectors.
        W: (K, K) float32 attention weights (ignored by the document model).
        aggregation: 0 sum (Z = bits) or 1 cat (Z = K·bits).
        codes: (V, D) float32 label codes of the targets.
        FT: (D, Z) float64 statistics.

    Returns:
        The summed mass ``Σ_t Σ_j z_j`` (for the priming number).
    """
    kind, K = _check_context_model(kind, K)
    V, bits = _check_vectors(E)
    aggregation, Z = _check_aggregation(aggregation, K, bits)
    _check_corpus(ids, pos, V)
    _check_array("W", W, _F32, 2, (K, K))
    _check_array("codes", codes, _F32, 2)
    if codes.shape[0] != V:
        raise InvalidParameterError(f"codes must have one row per token (V = {V}), got shape {codes.shape}")
    _check_finite(W=W, codes=codes)
    _check_array("FT", FT, _F64, 2, (codes.shape[1], Z), writeable=True)
    return float(
        backend_module().saffu_hidden_stats(
            ids, pos, kind, K, E, W, aggregation, codes, FT, get_num_threads()
        )
    )


def saffu_forward(
    ids: np.ndarray,
    pos: np.ndarray,
    kind: int,
    K: int,
    E: np.ndarray,
    W: np.ndarray,
    aggregation: int,
    UT: np.ndarray,
    start: int,
    stop: int,
    out: np.ndarray,
) -> int:
    """Write the hidden vector (or the aggregated context) of each target in [start, stop).

    Row r of ``out`` belongs to the r-th target of ``[start, stop)``; the context before
    ``start`` is read (a document may begin before ``start``).

    Args:
        ids: as in :func:`saffu_hidden_stats`.
        pos: as in :func:`saffu_hidden_stats`.
        kind: as in :func:`saffu_hidden_stats`.
        K: as in :func:`saffu_hidden_stats`.
        E: as in :func:`saffu_hidden_stats`.
        W: as in :func:`saffu_hidden_stats`.
        aggregation: as in :func:`saffu_hidden_stats`.
        UT: (D, Z) float32 hidden weights, ``h = softmax(UT z)``; shape (0, 0) writes z instead.
        start: first token index of the range, ``0 <= start <= stop``.
        stop: end (exclusive) of the range, ``stop <= n``.
        out: (m, D) float32 (or (m, Z) when UT is (0, 0)), m >= the number of targets.

    Returns:
        The number of rows written.
    """
    kind, K = _check_context_model(kind, K)
    V, bits = _check_vectors(E)
    aggregation, Z = _check_aggregation(aggregation, K, bits)
    _check_array("W", W, _F32, 2, (K, K))
    _check_array("UT", UT, _F32, 2)
    if UT.shape != (0, 0) and (UT.shape[0] < 1 or UT.shape[1] != Z):
        raise InvalidParameterError(f"UT must have shape (D, Z = {Z}) with D >= 1, or (0, 0); got {UT.shape}")
    _check_finite(W=W, UT=UT)
    n = _check_token_arrays(ids, pos)
    start = _check_int("start", start, minimum=0)
    stop = _check_int("stop", stop, minimum=start)
    if stop > n:
        raise InvalidParameterError(f"stop = {stop} exceeds the corpus length {n}")
    _check_documents(ids, pos, V, start, stop)
    rows = int(np.count_nonzero(pos[start:stop]))
    width = UT.shape[0] or Z
    _check_array("out", out, _F32, 2, writeable=True)
    if out.shape[1] != width or out.shape[0] < rows:
        raise InvalidParameterError(f"out must have shape (m >= {rows} targets, {width}), got {out.shape}")
    _check_disjoint("out", out, E=E, W=W, UT=UT)
    return int(
        backend_module().saffu_forward(
            ids, pos, kind, K, E, W, aggregation, UT, start, stop, out, get_num_threads()
        )
    )

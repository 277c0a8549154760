"""The explicit (closed-form) solution of one softmax layer with non-negative inputs (METHOD.md §1).

:class:`ExplicitStats` accumulates the sufficient statistics of ``p = softmax(x U + b)`` from
examples ``(x, y)`` with ``x ≥ 0`` (D inputs) and ``y ≥ 0`` (N targets: class labels or a
non-negative target matrix). The statistics are additive: accumulate them in chunks, merge them
across workers, save them, add more data later. :meth:`ExplicitStats.solve` turns them into an
:class:`ExplicitLayer` in the bias form (multinomial naive Bayes) or the folded form (no bias).

Example::

    stats = ExplicitStats(n_inputs=D, n_outputs=N)
    for X, y in chunks:
        stats.update(X, y)
    layer = stats.solve(alpha=1.0)
    log_p = layer.log_proba(X_test)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from saffu import kernels
from saffu._io import atomic_write_bytes, read_safetensors
from saffu.errors import InvalidParameterError, ModelFormatError
from saffu.kernels.cooc import cooc_dense_dense

FORMS = ("bias", "folded")
LOWER_ORDERS = ("marginal", "continuation")
FILE_FORMAT = "saffu.ExplicitStats"
CHUNK_ROWS = 8192
"""Rows of X per BLAS product in :meth:`ExplicitLayer.logits` (bounds temporary memory)."""

Matrix = np.ndarray | sp.csr_matrix


# --- input validation ---------------------------------------------------------------------------


def _first_bad_entry(ok: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(ok)), ok.shape))


def _check_nonnegative_finite(name: str, a: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first negative, NaN or infinite entry of ``a``."""
    ok = np.isfinite(a) & (a >= 0)
    if not ok.all():
        where = _first_bad_entry(ok)
        position = ", ".join(str(i) for i in where)
        raise InvalidParameterError(f"{name} must be finite and non-negative; {name}[{position}] = "
                                    f"{a[where]}")


def _check_nonnegative_scalar(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InvalidParameterError(f"{name} must be a finite non-negative number, got {value!r}")
    return value


def check_positive_scalar(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a positive finite number, got {value!r}")
    return value


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """float32 stays float32 (the kernels take it); every other real dtype becomes float64."""
    if dtype == np.float32:
        return np.dtype(np.float32)
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return np.dtype(np.float64)
    raise InvalidParameterError(f"{name} must hold real numbers, got dtype {dtype}")


def _as_matrix(X: object, n_columns: int, name: str = "X") -> Matrix:
    """``X`` as a C-contiguous float32/float64 array or a float32/float64 CSR matrix."""
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        X = X.astype(_float_dtype(X.dtype, name), copy=False)
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise InvalidParameterError(f"{name} must be 2-D (examples, inputs), got shape {X.shape}")
        X = np.ascontiguousarray(X, dtype=_float_dtype(X.dtype, name))
    if X.shape[1] != n_columns:
        raise InvalidParameterError(f"{name} has {X.shape[1]} columns, expected {n_columns} inputs")
    return X


def _check_input_values(X: Matrix) -> None:
    """Raise ``ValueError`` naming the first (row, column) of ``X`` that is negative or not finite."""
    if not sp.issparse(X):
        _check_nonnegative_finite("X", X)
        return
    ok = np.isfinite(X.data) & (X.data >= 0)
    if ok.all():
        return
    bad = np.flatnonzero(~ok)
    rows = np.searchsorted(X.indptr, bad, side="right") - 1
    first_row = rows.min()
    in_row = bad[rows == first_row]
    first = in_row[np.argmin(X.indices[in_row])]
    raise InvalidParameterError(
        f"X must be finite and non-negative; X[{first_row}, {X.indices[first]}] = {X.data[first]}"
    )


def _as_targets(y: object, n_examples: int, n_outputs: int) -> np.ndarray:
    """Labels as int64 (n,) in [0, N), or a target matrix as float32/float64 (n, N)."""
    y = np.asarray(y)
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            raise InvalidParameterError(f"labels y must be integers, got dtype {y.dtype}")
        outside = (y < 0) | (y >= n_outputs)
        if outside.any():
            first = int(np.argmax(outside))
            raise InvalidParameterError(f"labels must lie in [0, {n_outputs}); y[{first}] = {y[first]}")
        y = np.ascontiguousarray(y, dtype=np.int64)
    elif y.ndim == 2:
        if y.shape[1] != n_outputs:
            raise InvalidParameterError(f"target matrix y has {y.shape[1]} columns, expected {n_outputs}")
        y = np.ascontiguousarray(y, dtype=_float_dtype(y.dtype, "y"))
        _check_nonnegative_finite("y", y)
    else:
        raise InvalidParameterError(f"y must be labels (n,) or a target matrix (n, N), got shape {y.shape}")
    if y.shape[0] != n_examples:
        raise InvalidParameterError(f"y has {y.shape[0]} rows but X has {n_examples}")
    return y


def _cooc_sparse_dense(FT: np.ndarray, X: sp.csr_matrix, Y: np.ndarray) -> None:
    """``FT += Yᵀ X`` for sparse X, in float64."""
    FT += (X.T.astype(np.float64) @ Y.astype(np.float64, copy=False)).T


# --- statistics ---------------------------------------------------------------------------------


class ExplicitStats:
    """Sufficient statistics of one softmax layer with D non-negative inputs and N targets.

    Attributes:
        FT: (N, D) float64 target-major co-occurrences, ``FT[i, j] = Σ_m y_mi · x_mj`` (= Fᵀ).
        target_mass: (N,) float64 ``T_i = Σ_m y_mi``.
        n_examples: number of examples n.
        input_mass: ``Σ_m ‖x_m‖₁``.
    """

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        for name, value in (("n_inputs", n_inputs), ("n_outputs", n_outputs)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
        self.FT = np.zeros((int(n_outputs), int(n_inputs)))
        self.target_mass = np.zeros(int(n_outputs))
        self.n_examples = 0.0
        self.input_mass = 0.0

    def __repr__(self) -> str:
        return (f"ExplicitStats(n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
                f"n_examples={self.n_examples:g})")

    @property
    def n_inputs(self) -> int:
        """D, the number of inputs."""
        return self.FT.shape[1]

    @property
    def n_outputs(self) -> int:
        """N, the number of targets."""
        return self.FT.shape[0]

    @property
    def F(self) -> np.ndarray:
        """(D, N) co-occurrence matrix of METHOD.md §1 (a view of ``FT``)."""
        return self.FT.T

    @property
    def column_sums(self) -> np.ndarray:
        """(N,) ``C_i = Σ_j F_ji``."""
        return self.FT.sum(axis=1)

    @property
    def priming_number(self) -> float:
        """K̄, the mean input mass per example."""
        if self.n_examples == 0:
            raise InvalidParameterError("the priming number is undefined before any example was added")
        return self.input_mass / self.n_examples

    def update(self, X: object, y: object) -> ExplicitStats:
        """Accumulate a chunk of examples; returns ``self``.

        Args:
            X: (n, D) non-negative inputs, a dense array or any scipy.sparse matrix.
            y: (n,) integer labels in [0, N), or a dense (n, N) non-negative target matrix.
        """
        X = _as_matrix(X, self.n_inputs)
        if X.shape[0] == 0:
            raise InvalidParameterError("X holds no examples")
        _check_input_values(X)
        y = _as_targets(y, X.shape[0], self.n_outputs)
        sparse = sp.issparse(X)
        if y.ndim == 1:
            if sparse:
                indptr, indices = (a.astype(np.int64, copy=False) for a in (X.indptr, X.indices))
                kernels.cooc_sparse_onehot(self.FT, indptr, indices, X.data, y)
            else:
                kernels.cooc_dense_onehot(self.FT, X, y)
            self.target_mass += np.bincount(y, minlength=self.n_outputs)
        else:
            if sparse:
                _cooc_sparse_dense(self.FT, X, y)
            else:
                cooc_dense_dense(self.FT, X, y)
            self.target_mass += y.sum(axis=0, dtype=np.float64)
        self.n_examples += X.shape[0]
        self.input_mass += float((X.data if sparse else X).sum(dtype=np.float64))
        return self

    @classmethod
    def from_totals(cls, FT: np.ndarray, target_mass: np.ndarray, n_examples: float,
                    input_mass: float, *, check: bool = True) -> ExplicitStats:
        """Statistics computed elsewhere (e.g. by the fused SAFFU kernels), without a copy when
        ``FT`` and ``target_mass`` are C-contiguous float64 arrays.

        Args:
            FT: (N, D) non-negative co-occurrences, target-major.
            target_mass: (N,) non-negative target mass.
            n_examples: number of examples they were computed from.
            input_mass: their total input mass Σ‖x‖₁.
            check: scan ``FT`` and ``target_mass`` for negative or non-finite entries; only
                sums of the kernels, non-negative and finite by construction, may skip it.
        """
        FT = np.ascontiguousarray(FT, dtype=np.float64)
        target_mass = np.ascontiguousarray(target_mass, dtype=np.float64)
        if FT.ndim != 2 or min(FT.shape) < 1 or target_mass.shape != FT.shape[:1]:
            raise InvalidParameterError(f"expected FT (N, D) and target_mass (N,), got {FT.shape} and "
                                        f"{target_mass.shape}")
        if check:
            _check_nonnegative_finite("FT", FT)
            _check_nonnegative_finite("target_mass", target_mass)
        stats = cls.__new__(cls)
        stats.FT, stats.target_mass = FT, target_mass
        stats.n_examples = _check_nonnegative_scalar("n_examples", n_examples)
        stats.input_mass = _check_nonnegative_scalar("input_mass", input_mass)
        return stats

    def add(
        self, FT: np.ndarray, target_mass: np.ndarray, n_examples: float, input_mass: float
    ) -> ExplicitStats:
        """Add statistics computed elsewhere (see :meth:`from_totals`); returns ``self``."""
        if np.shape(FT) != self.FT.shape or np.shape(target_mass) != self.target_mass.shape:
            raise InvalidParameterError(f"expected FT {self.FT.shape} and target_mass "
                                        f"{self.target_mass.shape}, "
                                        f"got {np.shape(FT)} and {np.shape(target_mass)}")
        return self.merge(ExplicitStats.from_totals(FT, target_mass, n_examples, input_mass))

    def merge(self, other: ExplicitStats) -> ExplicitStats:
        """Add the statistics of ``other`` (e.g. another shard) into ``self``; returns ``self``."""
        if not isinstance(other, ExplicitStats):
            raise InvalidParameterError(f"can only merge ExplicitStats, got {type(other).__name__}")
        if other.FT.shape != self.FT.shape:
            raise InvalidParameterError(
                f"cannot merge statistics of shape (N, D) = {other.FT.shape} into {self.FT.shape}"
            )
        self.FT += other.FT
        self.target_mass += other.target_mass
        self.n_examples += other.n_examples
        self.input_mass += other.input_mass
        return self

    def __add__(self, other: object) -> ExplicitStats:
        if not isinstance(other, ExplicitStats):
            return NotImplemented
        return self.copy().merge(other)

    def copy(self) -> ExplicitStats:
        """An independent copy."""
        return ExplicitStats.from_arrays(self.to_arrays())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The statistics as named arrays (no copies; the counts are 0-d float64 arrays)."""
        return {
            "FT": self.FT,
            "target_mass": self.target_mass,
            "n_examples": np.array(self.n_examples),
            "input_mass": np.array(self.input_mass),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ExplicitStats:
        """Statistics from the arrays of :meth:`to_arrays` (validated and copied)."""
        missing = {"FT", "target_mass", "n_examples", "input_mass"} - arrays.keys()
        if missing:
            raise InvalidParameterError(f"missing statistics arrays: {', '.join(sorted(missing))}")
        FT = np.asarray(arrays["FT"])
        if FT.ndim != 2:
            raise InvalidParameterError(f"FT must be 2-D (N, D), got shape {FT.shape}")
        stats = cls(n_inputs=FT.shape[1], n_outputs=FT.shape[0])
        return stats.add(FT, arrays["target_mass"], arrays["n_examples"], arrays["input_mass"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics to a safetensors file (atomically: temporary file + rename)."""
        from safetensors.numpy import save

        atomic_write_bytes(path, save(self.to_arrays(), metadata={"format": FILE_FORMAT}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExplicitStats:
        """Read statistics written by :meth:`save` (:class:`~saffu.errors.ModelFormatError` if
        the file is not one)."""
        arrays, metadata = read_safetensors(path)
        file_format = metadata.get("format")
        if file_format != FILE_FORMAT:
            raise ModelFormatError(f"{path} holds no {FILE_FORMAT} (format {file_format!r})")
        return cls.from_arrays(arrays)

    def solve(
        self,
        alpha: float = 1.0,
        tau: float = 1.0,
        form: str = "bias",
        priming: float | None = None,
        dtype: type | np.dtype = np.float32,
        discount: float = 0.0,
        lower: str = "marginal",
    ) -> ExplicitLayer:
        """The explicit solution (METHOD.md §1), with additive smoothing ``alpha``.

        - ``"bias"``: ``U_ji = tau·log((F_ji + α)/(C_i + αD))``, ``b_i = log((T_i + α)/(n + αN))``.
        - ``"folded"``: ``U_ji = tau·log(F_ji + α) − ((tau·K − 1)/K)·log(C_i + αD)``, no bias;
          ``K = priming`` or, by default, the priming number K̄.

        Both are ``U_ji = tau·log P(j | i) + c_i`` with the add-α estimate
        ``P(j | i) = (F_ji + α)/(C_i + αD)``, ``c_i = 0`` (bias) or ``c_i = (1/K)·log(C_i + αD)``
        (folded: the prior of target i spread over the K units of input mass).

        With ``discount = d > 0`` the likelihood is the *absolutely discounted* estimate
        interpolated with a lower-order distribution ``q`` over the inputs (fractional counts
        allowed: each co-occurrence loses ``min(F_ji, d)``)::

            P_d(j | i) = (max(F_ji − d, 0) + λ_i·q_j) / C_i,   λ_i = Σ_j min(F_ji, d)
            P_d(j | i) = q_j                                      where C_i = 0

        - ``lower = "marginal"``: ``q_j = (M_j + α)/(Σ M + αD)``, ``M_j = Σ_i F_ji``;
        - ``lower = "continuation"`` (Kneser-Ney style): ``q_j = (R_j + α)/(Σ R + αD)`` with
          ``R_j = Σ_i min(F_ji, d)`` (= d · the number of targets seen with input j, for counts
          ≥ d);

        and then ``U_ji = tau·log P_d(j | i) + c_i`` with ``c_i`` as above (``b_i`` unchanged).
        ``Σ_j P_d(j | i) = 1`` for every target i. ``α`` now only smooths ``q``.

        Args:
            alpha: additive smoothing, > 0.
            tau: scale of the likelihood terms, > 0.
            form: "bias" or "folded".
            priming: K for the folded form (> 0); default K̄.
            dtype: float32 or float64, the dtype of the solved weights.
            discount: absolute discount d ≥ 0 of every co-occurrence (0: add-α).
            lower: the lower-order distribution of a discounted solve, "marginal" or
                "continuation".
        """
        if form not in FORMS:
            raise InvalidParameterError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if lower not in LOWER_ORDERS:
            raise InvalidParameterError(f"lower must be one of {', '.join(LOWER_ORDERS)}, got {lower!r}")
        alpha = check_positive_scalar("alpha", alpha)
        tau = check_positive_scalar("tau", tau)
        discount = _check_nonnegative_scalar("discount", discount)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise InvalidParameterError(f"dtype must be float32 or float64, got {dtype}")
        if self.n_examples == 0:
            raise InvalidParameterError("cannot solve: the statistics hold no examples")
        if form == "bias":
            if priming is not None:
                raise InvalidParameterError("priming applies to the folded form only")
            shrink = tau
            bias = np.log((self.target_mass + alpha) / (self.n_examples + alpha * self.n_outputs))
            bias = bias.astype(dtype)
        else:
            if priming is None:
                if self.input_mass == 0:
                    raise InvalidParameterError("cannot solve the folded form: every input was zero (K̄ = 0)")
                priming = self.priming_number
            K = check_positive_scalar("priming", priming)
            shrink = (tau * K - 1.0) / K
            bias = None
        if discount > 0:
            prior = 0.0 if form == "bias" else tau - shrink  # 1/K for the folded form
            weight_t = discounted_weights(self.FT, alpha, tau, prior, discount, lower)
            return ExplicitLayer(weight_t.astype(dtype), bias)
        weight_t = np.empty(self.FT.shape, dtype=dtype)
        kernels.explicit_solve(self.FT, weight_t, alpha, tau, shrink)
        return ExplicitLayer(weight_t, bias)


def discounted_weights(FT: np.ndarray, alpha: float, tau: float, prior: float, discount: float,
                       lower: str) -> np.ndarray:
    """``tau·log P_d(j | i) + prior·log(C_i + αD)`` (N, D) float64 (see :meth:`ExplicitStats.solve`).

    Args:
        FT: (N, D) non-negative co-occurrences, target-major.
        alpha: smoothing of the lower-order distribution q, > 0.
        tau: scale of the log-likelihood.
        prior: scale of the log prior ``log(C_i + αD)`` (0 bias form, 1/K folded form).
        discount: d > 0.
        lower: "marginal" or "continuation".
    """
    removed = np.minimum(FT, discount)  # (N, D) the mass each co-occurrence gives up
    base = FT.sum(axis=0) if lower == "marginal" else removed.sum(axis=0)  # (D,)
    q = (base + alpha) / (base.sum() + alpha * FT.shape[1])
    column_sums = FT.sum(axis=1)  # (N,) C_i
    lam = removed.sum(axis=1)  # (N,) λ_i
    seen = column_sums > 0
    scale = np.where(seen, 1.0 / np.where(seen, column_sums, 1.0), 0.0)  # 1/C_i, 0 when unseen
    weight = FT - removed  # max(F − d, 0)
    weight *= scale[:, None]
    weight += np.where(seen, lam * scale, 1.0)[:, None] * q  # P_d(j | i); q alone when C_i = 0
    np.log(weight, out=weight)
    weight *= tau
    weight += prior * np.log(column_sums + alpha * FT.shape[1])[:, None]
    return weight


# --- solved layer -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExplicitLayer:
    """A solved softmax layer: ``logits = x U + b`` with ``U = weight`` (D, N), ``b = bias``.

    Attributes:
        weight_t: (N, D) C-contiguous float32/float64 weights, target-major (``Uᵀ``).
        bias: (N,) bias of the bias form, or ``None`` (folded form).
    """

    weight_t: np.ndarray
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        w = self.weight_t
        if not isinstance(w, np.ndarray) or w.ndim != 2 or w.dtype not in (np.float32, np.float64):
            raise InvalidParameterError("weight_t must be a 2-D float32 or float64 numpy.ndarray")
        if not w.flags.c_contiguous:
            raise InvalidParameterError("weight_t must be C-contiguous")
        if self.bias is not None and (
            not isinstance(self.bias, np.ndarray) or self.bias.shape != (w.shape[0],)
        ):
            raise InvalidParameterError(f"bias must be None or an array of shape ({w.shape[0]},)")

    @property
    def weight(self) -> np.ndarray:
        """(D, N) weights U (a view of ``weight_t``)."""
        return self.weight_t.T

    @property
    def n_inputs(self) -> int:
        return self.weight_t.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.weight_t.shape[0]

    def logits(self, X: object, chunk: int = CHUNK_ROWS) -> np.ndarray:
        """(n, N) logits ``X U + b`` of (n, D) dense or sparse inputs, in the weights' dtype."""
        return self._map_chunks(X, chunk, lambda z: z)

    def log_proba(self, X: object, chunk: int = CHUNK_ROWS) -> np.ndarray:
        """(n, N) log-probabilities ``log softmax(X U + b)``."""
        return self._map_chunks(X, chunk, lambda z: z - logsumexp(z, axis=1, keepdims=True))

    def _map_chunks(self, X: object, chunk: int, transform) -> np.ndarray:
        if not isinstance(chunk, int) or chunk < 1:
            raise InvalidParameterError(f"chunk must be a positive integer, got {chunk!r}")
        X = _as_matrix(X, self.n_inputs)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.weight_t.dtype)
        for start in range(0, X.shape[0], chunk):
            rows = X[start : start + chunk]
            z = rows.astype(out.dtype, copy=False) @ self.weight_t.T
            if self.bias is not None:
                z += self.bias
            out[start : start + chunk] = transform(z)
        return out

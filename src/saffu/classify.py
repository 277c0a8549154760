"""A scikit-learn classifier for non-negative features, fitted in closed form (METHOD.md §1).

:class:`ExplicitSoftmaxClassifier` is the explicit softmax layer ``p(y | x) = softmax(x U + b)``
as a scikit-learn estimator: ``fit`` accumulates the co-occurrence statistics of the features and
the one-hot labels (:class:`saffu.explicit.ExplicitStats`, compiled kernels) and solves them; no
iterations, no learning rate. With ``form="bias"`` and ``tau=1`` it is multinomial naive Bayes
with a smoothed class prior.

Example::

    clf = ExplicitSoftmaxClassifier(alpha=0.5, tau=0.7).fit(X_counts, y)
    proba = clf.predict_proba(X_counts_test)
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from saffu.errors import InvalidParameterError
from saffu.explicit import FORMS, ExplicitStats

_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))

EXPECTED_FAILED_CHECKS = {
    "check_decision_proba_consistency": (
        "fits Gaussian blobs with negative features without shifting them by the positive_only "
        "tag; negative features are a ValueError by design (METHOD.md §1 needs x ≥ 0)"
    ),
}
"""scikit-learn estimator checks that :class:`ExplicitSoftmaxClassifier` fails, and why."""


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 < value < np.inf):
        raise InvalidParameterError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_dtype(dtype: object) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise InvalidParameterError(f"dtype must be float32 or float64, got {dtype!r}") from error
    if dtype not in _DTYPES:
        raise InvalidParameterError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _encode(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Labels ``y`` → int64 indices into the sorted ``classes``; unknown labels are a ``ValueError``."""
    index = np.searchsorted(classes, y)
    known = (index < len(classes)) & (classes[np.minimum(index, len(classes) - 1)] == y)
    if not known.all():
        raise InvalidParameterError(f"labels {np.unique(y[~known])!r} are not among the classes {classes!r}")
    return index.astype(np.int64)


class ExplicitSoftmaxClassifier(ClassifierMixin, BaseEstimator):
    """Softmax classifier for non-negative features with a closed-form ("explicit") fit.

    The model is ``p(y | x) = softmax(x Uᵀ + b)`` over the classes, with ``x ≥ 0`` (counts, TF-IDF,
    pixel intensities, probabilities, ...). Fitting sums, over the training examples, the
    co-occurrences ``F[i, j] = Σ_m [y_m = i] x_mj`` (N classes × D features), the class counts
    ``T_i`` and the input mass ``Σ_m ‖x_m‖₁``, then solves (METHOD.md §1, ``C_i = Σ_j F[i, j]``):

    - ``form="bias"``: ``U_ij = tau·log((F_ij + α)/(C_i + α·D))``, ``b_i = log((T_i + α)/(n + α·N))``.
      With ``tau=1`` these are the log-probabilities of multinomial naive Bayes;
      ``coef_`` equals ``MultinomialNB(alpha=α).feature_log_prob_``.
    - ``form="folded"``: ``U_ij = tau·log(F_ij + α) − ((tau·K − 1)/K)·log(C_i + α·D)``, no bias,
      with ``K`` the priming number (``"auto"``: the mean L1 norm of the training inputs).

    ``tau`` < 1 tempers the likelihood terms, which helps when the features are not independent
    given the class (the naive-Bayes product is then over-confident).

    The statistics are additive, so :meth:`partial_fit` over chunks gives exactly the model that
    :meth:`fit` gives on all of them, and changing ``alpha``/``tau``/``form``/``priming`` only needs a
    new solve (each ``partial_fit`` call re-solves, O(N·D)).

    scikit-learn estimator checks: the estimator declares the ``positive_only`` input tag (negative
    features are a ``ValueError``; the checks then shift their data to be non-negative), the
    ``sparse`` input tag, and ``poor_score`` (as ``MultinomialNB``: a count model of Gaussian
    blobs is weak). One check fails, listed in :data:`EXPECTED_FAILED_CHECKS`:
    ``check_decision_proba_consistency`` fits data with negative features regardless of the tag.
    Unlike ``MultinomialNB`` it takes no ``sample_weight``.

    Args:
        alpha: additive smoothing α of the counts, > 0.
        tau: scale of the likelihood terms, > 0 (1 = naive Bayes).
        form: ``"bias"`` (weights and a bias) or ``"folded"`` (weights only).
        priming: the priming number K of the folded form, > 0, or ``"auto"`` for the mean input
            mass K̄ of the training data. Ignored by the bias form.
        dtype: float dtype of the solved weights, ``np.float64`` or ``np.float32``.

    Attributes:
        classes_: (N,) the class labels, sorted.
        n_features_in_: D, the number of features seen in ``fit``.
        feature_names_in_: (D,) feature names, when ``X`` had string column names.
        stats_: the :class:`saffu.explicit.ExplicitStats` (``stats_.FT`` is Fᵀ, N × D): merge or
            save them to combine fits across workers.
        coef_: (N, D) the weights ``Uᵀ``: the logit of class i is ``x · coef_[i] + intercept_[i]``.
        intercept_: (N,) the bias ``b`` (zeros in the folded form).
        priming_: the priming number K used by the folded form (``None`` in the bias form).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        tau: float = 1.0,
        form: str = "bias",
        priming: float | str = "auto",
        dtype: type | np.dtype = np.float64,
    ) -> None:
        self.alpha = alpha
        self.tau = tau
        self.form = form
        self.priming = priming
        self.dtype = dtype

    def fit(self, X, y) -> ExplicitSoftmaxClassifier:
        """Fit on all of ``(X, y)``, discarding any previous fit.

        Args:
            X (array-like or scipy.sparse matrix): (n, D) non-negative features.
            y (array-like): (n,) class labels.
        """
        self._check_params()
        X, y = self._validate_training_data(X, y, reset=True)
        classes = np.unique(y)
        labels = _encode(classes, y)
        self._start(classes, X.shape[1])
        return self._learn(X, labels)

    def partial_fit(self, X, y, classes=None) -> ExplicitSoftmaxClassifier:
        """Add a chunk of examples to the statistics and re-solve.

        Args:
            X (array-like or scipy.sparse matrix): (n, D) non-negative features.
            y (array-like): (n,) class labels, each one of ``classes``.
            classes (array-like or None): (N,) every label that can occur; required on the first
                call, and if given later it must equal ``classes_``.
        """
        self._check_params()
        first_call = not hasattr(self, "classes_")
        if first_call and classes is None:
            raise InvalidParameterError("classes must be passed on the first call to partial_fit")
        X, y = self._validate_training_data(X, y, reset=first_call)
        if first_call:
            classes = np.unique(classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise InvalidParameterError(
                f"classes={classes!r} differs from the classes of the first call, {self.classes_!r}"
            )
        else:
            classes = self.classes_
        labels = _encode(classes, y)
        if first_call:
            self._start(classes, X.shape[1])
        return self._learn(X, labels)

    def decision_function(self, X) -> np.ndarray:
        """Logits ``X coef_ᵀ + intercept_``: (n, N), or (n,) ``logit_1 − logit_0`` for two classes."""
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict(self, X) -> np.ndarray:
        """(n,) the most probable class of each row of ``X``."""
        best = np.argmax(self._logits(X), axis=1)
        return self.classes_[best]

    def predict_log_proba(self, X) -> np.ndarray:
        """(n, N) log-probabilities of the classes, in the order of ``classes_``."""
        return log_softmax(self._logits(X), axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """(n, N) probabilities of the classes, in the order of ``classes_``; rows sum to 1."""
        return np.exp(self.predict_log_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        # A multinomial model of shifted Gaussian blobs (the checks' data) is weak, as for
        # MultinomialNB, which sets the same tag.
        tags.classifier_tags.poor_score = True
        return tags

    # --- internals ------------------------------------------------------------------------------

    def _check_params(self) -> None:
        _check_positive("alpha", self.alpha)
        _check_positive("tau", self.tau)
        if self.form not in FORMS:
            raise InvalidParameterError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if not (isinstance(self.priming, str) and self.priming == "auto"):
            _check_positive("priming", self.priming)
        _check_dtype(self.dtype)

    def _validate_training_data(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], reset=reset
        )
        check_non_negative(X, f"{type(self).__name__} (input X)")
        check_classification_targets(y)
        return X, y

    def _start(self, classes: np.ndarray, n_features: int) -> None:
        """Empty statistics for ``classes`` and ``n_features`` features."""
        self.classes_ = classes
        self.stats_ = ExplicitStats(n_inputs=n_features, n_outputs=len(classes))

    def _learn(self, X, labels: np.ndarray) -> ExplicitSoftmaxClassifier:
        """Accumulate ``X`` with its class indices ``labels`` into ``stats_``; re-solve the weights."""
        self.stats_.update(X, labels)
        self.priming_ = None
        if self.form == "folded":
            auto = isinstance(self.priming, str)
            self.priming_ = self.stats_.priming_number if auto else float(self.priming)
        layer = self.stats_.solve(
            alpha=self.alpha, tau=self.tau, form=self.form, priming=self.priming_, dtype=self.dtype
        )
        self.coef_ = layer.weight_t
        self.intercept_ = layer.bias if layer.bias is not None else np.zeros_like(layer.weight_t[:, 0])
        return self

    def _logits(self, X) -> np.ndarray:
        """(n, N) ``X coef_ᵀ + intercept_`` after validating ``X``."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        check_non_negative(X, f"{type(self).__name__} (input X)")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            logits = np.asarray(safe_sparse_dot(X, self.coef_.T)) + self.intercept_
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():  # float64 counts near 1e300 overflow the products
            row = int(np.argmin(finite))
            raise InvalidParameterError(
                f"X[{row}] holds counts so large that its logits overflow ({logits.dtype}); scale the "
                "features down (the explicit posterior depends on their ratios and total)")
        return logits

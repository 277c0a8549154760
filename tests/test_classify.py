"""ExplicitSoftmaxClassifier (scikit-learn estimator) and explicit_init_ (PyTorch layers)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.naive_bayes import MultinomialNB
from sklearn.utils.estimator_checks import parametrize_with_checks

from saffu.classify import EXPECTED_FAILED_CHECKS, ExplicitSoftmaxClassifier


def count_data(n: int = 240, n_features: int = 30, n_classes: int = 4, seed: int = 0):
    """Poisson counts whose rates depend on the class (many zeros, as in bag-of-words data)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.4, 2.0, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, size=n)
    X = rng.poisson(rates[y]).astype(np.float64)
    return X, y


def smoothed_prior(y: np.ndarray, alpha: float) -> np.ndarray:
    """The bias-form class prior ``(T_i + α)/(n + α·N)`` (MultinomialNB's is unsmoothed)."""
    counts = np.bincount(y)
    return (counts + alpha) / (counts.sum() + alpha * len(counts))


def folded_weights(X: np.ndarray, y: np.ndarray, alpha: float, tau: float, K: float) -> np.ndarray:
    """METHOD.md §1 folded form, written out in NumPy: (N, D) ``Uᵀ``."""
    FT = np.stack([X[y == i].sum(axis=0) for i in range(y.max() + 1)])
    C = FT.sum(axis=1, keepdims=True)
    return tau * np.log(FT + alpha) - (tau * K - 1) / K * np.log(C + alpha * X.shape[1])


# --- scikit-learn conventions -------------------------------------------------------------------


@parametrize_with_checks(
    [
        ExplicitSoftmaxClassifier(),
        ExplicitSoftmaxClassifier(form="folded", tau=0.5),
        ExplicitSoftmaxClassifier(alpha=0.1, priming=3.0, form="folded", dtype=np.float32),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --- the method ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.05, 1.0, 3.0])
@pytest.mark.parametrize("to_input", [np.asarray, sp.csr_matrix], ids=["dense", "sparse"])
def test_bias_form_is_multinomial_naive_bayes(alpha, to_input):
    X, y = count_data()
    X_test, _ = count_data(n=50, seed=1)
    clf = ExplicitSoftmaxClassifier(alpha=alpha).fit(to_input(X), y)
    nb = MultinomialNB(alpha=alpha, class_prior=smoothed_prior(y, alpha)).fit(X, y)

    np.testing.assert_allclose(clf.coef_, nb.feature_log_prob_, rtol=1e-12)
    np.testing.assert_allclose(clf.predict_proba(to_input(X_test)), nb.predict_proba(X_test), atol=1e-10)
    np.testing.assert_array_equal(clf.predict(to_input(X_test)), nb.predict(X_test))


def test_tau_scales_the_likelihood_terms_only():
    X, y = count_data()
    plain = ExplicitSoftmaxClassifier(alpha=0.5).fit(X, y)
    tempered = ExplicitSoftmaxClassifier(alpha=0.5, tau=0.3).fit(X, y)
    np.testing.assert_allclose(tempered.coef_, 0.3 * plain.coef_, rtol=1e-12)
    np.testing.assert_array_equal(tempered.intercept_, plain.intercept_)


def test_bias_form_ignores_the_priming_number():
    X, y = count_data()
    default = ExplicitSoftmaxClassifier().fit(X, y)
    primed = ExplicitSoftmaxClassifier(priming=2.5).fit(X, y)
    np.testing.assert_array_equal(primed.coef_, default.coef_)
    assert primed.priming_ is None


@pytest.mark.parametrize("priming", ["auto", 2.5])
def test_folded_form_matches_the_equation(priming):
    X, y = count_data()
    clf = ExplicitSoftmaxClassifier(alpha=0.7, tau=0.4, form="folded", priming=priming).fit(X, y)
    K = X.sum(axis=1).mean() if priming == "auto" else priming
    assert clf.priming_ == pytest.approx(K, rel=1e-12)
    np.testing.assert_allclose(clf.coef_, folded_weights(X, y, 0.7, 0.4, K), rtol=1e-12)
    np.testing.assert_array_equal(clf.intercept_, np.zeros(4))


@pytest.mark.parametrize("form", ["bias", "folded"])
def test_sparse_and_dense_inputs_agree(form):
    X, y = count_data()
    X_test, _ = count_data(n=40, seed=2)
    dense = ExplicitSoftmaxClassifier(form=form, tau=0.6).fit(X, y)
    sparse = ExplicitSoftmaxClassifier(form=form, tau=0.6).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-12)
    for model in (dense, sparse):
        np.testing.assert_allclose(
            model.predict_log_proba(sp.csc_matrix(X_test)), dense.predict_log_proba(X_test), rtol=1e-12
        )


@pytest.mark.parametrize("form", ["bias", "folded"])
def test_partial_fit_over_chunks_equals_fit(form):
    X, y = count_data()
    y[:80] = np.where(y[:80] == 3, 0, y[:80])  # the first chunk lacks class 3
    full = ExplicitSoftmaxClassifier(form=form, alpha=0.2, tau=0.8).fit(X, y)
    chunked = ExplicitSoftmaxClassifier(form=form, alpha=0.2, tau=0.8)
    for start in range(0, len(y), 80):
        chunked.partial_fit(sp.csr_matrix(X[start : start + 80]), y[start : start + 80], classes=[3, 2, 1, 0])
    np.testing.assert_array_equal(chunked.classes_, full.classes_)
    np.testing.assert_allclose(chunked.coef_, full.coef_, rtol=1e-12)
    np.testing.assert_allclose(chunked.intercept_, full.intercept_, rtol=1e-12)
    assert chunked.stats_.n_examples == len(y)


def test_string_labels_and_binary_decision_function():
    X, y = count_data(n_classes=2)
    labels = np.array(["ham", "spam"])[y]
    clf = ExplicitSoftmaxClassifier(tau=0.5).fit(X, labels)
    log_proba = clf.predict_log_proba(X)
    np.testing.assert_allclose(clf.decision_function(X), log_proba[:, 1] - log_proba[:, 0], atol=1e-10)
    np.testing.assert_array_equal(clf.predict(X), np.where(clf.decision_function(X) > 0, "spam", "ham"))
    assert clf.score(X, labels) > 0.9


def test_fit_discards_the_previous_fit():
    X, y = count_data()
    clf = ExplicitSoftmaxClassifier().fit(X[:100] * 3, y[:100])
    clf.fit(X, y)
    fresh = ExplicitSoftmaxClassifier().fit(X, y)
    np.testing.assert_array_equal(clf.coef_, fresh.coef_)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("to_input", [np.asarray, sp.csr_matrix], ids=["dense", "sparse"])
def test_negative_features_are_rejected(to_input):
    X, y = count_data()
    X[5, 3] = -1.0
    with pytest.raises(ValueError, match="Negative values"):
        ExplicitSoftmaxClassifier().fit(to_input(X), y)
    clf = ExplicitSoftmaxClassifier().fit(np.abs(X), y)
    with pytest.raises(ValueError, match="Negative values"):
        clf.predict(to_input(X))


@pytest.mark.parametrize("params, error, message", [
    ({"alpha": 0.0}, ValueError, "alpha"),
    ({"alpha": "1"}, ValueError, "alpha"),
    ({"tau": -1.0}, ValueError, "tau"),
    ({"tau": np.inf}, ValueError, "tau"),
    ({"form": "softmax"}, ValueError, "form"),
    ({"priming": 0}, ValueError, "priming"),
    ({"priming": "mean"}, ValueError, "priming"),
    ({"dtype": np.int32}, TypeError, "dtype"),
])
def test_bad_parameters_are_named(params, error, message):
    X, y = count_data()
    with pytest.raises(error, match=message):
        ExplicitSoftmaxClassifier(**params).fit(X, y)


def test_partial_fit_checks_its_classes():
    X, y = count_data()
    clf = ExplicitSoftmaxClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert not hasattr(clf, "classes_"), "a failed first call must leave the estimator unfitted"
    clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :-1], y)


def test_core_package_imports_without_torch():
    code = ("import sys, saffu, saffu.classify, saffu.explicit; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- PyTorch ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def test_explicit_init_matches_the_classifier(digits):
    torch = pytest.importorskip("torch")
    from saffu.torch.init import explicit_init_

    X, y = digits
    clf = ExplicitSoftmaxClassifier(alpha=0.5, tau=0.3).fit(X, y)
    linear = torch.nn.Linear(64, 10, dtype=torch.float64)
    assert explicit_init_(linear, torch.from_numpy(X), torch.from_numpy(y), alpha=0.5, tau=0.3) is linear
    np.testing.assert_allclose(linear.weight.detach().numpy(), clf.coef_, rtol=1e-12)
    np.testing.assert_allclose(linear.bias.detach().numpy(), clf.intercept_, rtol=1e-12)

    folded = ExplicitSoftmaxClassifier(alpha=0.5, tau=0.3, form="folded").fit(X, y)
    no_bias = torch.nn.Linear(64, 10, bias=False)
    explicit_init_(no_bias, sp.csr_matrix(X), y, alpha=0.5, tau=0.3)
    assert no_bias.weight.dtype == torch.float32
    np.testing.assert_allclose(no_bias.weight.detach().numpy(), folded.coef_, rtol=1e-6)


def test_explicit_init_chunks_give_the_same_weights(digits):
    torch = pytest.importorskip("torch")
    from saffu.torch.init import explicit_init_

    X, y = digits
    whole = explicit_init_(torch.nn.Linear(64, 10, dtype=torch.float64), X, y, tau=0.5)
    pieces = [(X[i : i + 500], y[i : i + 500]) for i in range(0, len(y), 500)]
    chunked = explicit_init_(
        torch.nn.Linear(64, 10, dtype=torch.float64), iter(pieces), tau=0.5, chunk_size=77
    )
    torch.testing.assert_close(chunked.weight, whole.weight, rtol=1e-12, atol=0)
    torch.testing.assert_close(chunked.bias, whole.bias, rtol=1e-12, atol=0)


def test_explicit_init_lowers_the_cross_entropy(digits):
    torch = pytest.importorskip("torch")
    from saffu.torch.init import explicit_init_

    X, y = digits
    inputs, targets = torch.from_numpy(X).float(), torch.from_numpy(y)
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 10)
    with torch.no_grad():
        default_loss = torch.nn.functional.cross_entropy(linear(inputs), targets).item()
        explicit_init_(linear, inputs, targets, tau=0.1)
        explicit_loss = torch.nn.functional.cross_entropy(linear(inputs), targets).item()
    assert explicit_loss < 0.5 < 2.0 < default_loss


def test_explicit_init_rejects_bad_input(digits):
    torch = pytest.importorskip("torch")
    from saffu.torch.init import explicit_init_

    X, y = digits
    with pytest.raises(ValueError, match="bias form needs a layer with a bias"):
        explicit_init_(torch.nn.Linear(64, 10, bias=False), X, y, form="bias")
    with pytest.raises(ValueError, match="columns"):
        explicit_init_(torch.nn.Linear(63, 10), X, y)
    with pytest.raises(ValueError, match="labels must lie in"):
        explicit_init_(torch.nn.Linear(64, 9), X, y)
    with pytest.raises(ValueError, match="non-negative"):
        explicit_init_(torch.nn.Linear(64, 10), -X, y)
    with pytest.raises(ValueError, match="y is required"):
        explicit_init_(torch.nn.Linear(64, 10), torch.from_numpy(X))
    with pytest.raises(ValueError, match="one row per row"):
        explicit_init_(torch.nn.Linear(64, 10), X, y[:-1])
    with pytest.raises(ValueError, match="tau"):
        explicit_init_(torch.nn.Linear(64, 10), X, y, tau=0)
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        explicit_init_(torch.nn.Conv1d(64, 10, 1), X, y)

"""saffu.explicit: statistics, the closed-form solve (vs. scikit-learn's naive Bayes), files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn.naive_bayes import MultinomialNB
from threadpoolctl import threadpool_limits

from saffu.explicit import ExplicitLayer, ExplicitStats


def count_data(seed: int, n: int = 300, D: int = 12, N: int = 5):
    """Random count inputs (with some all-zero rows) and labels covering every class."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.random((N, D)) * 3, (n // N, N, D)).reshape(n - n % N, D)
    X[rng.random(len(X)) < 0.1] = 0
    y = np.tile(np.arange(N), n // N)
    order = rng.permutation(len(X))
    return X[order].astype(np.float64), y[order]


def assert_equal_up_to_row_constant(a: np.ndarray, b: np.ndarray, rtol: float = 1e-10) -> None:
    difference = a - b
    spread = difference - difference[:, :1]
    assert np.abs(spread).max() <= rtol * np.abs(a).max(), np.abs(spread).max()


def cross_entropy(log_proba: np.ndarray, y: np.ndarray) -> float:
    return float(-log_proba[np.arange(len(y)), y].mean())


# --- the solve -------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 0.1, 3.0])
def test_bias_form_is_multinomial_naive_bayes(backend, alpha):
    """Balanced classes: sklearn's unsmoothed class prior and ours are both uniform, so the
    logits equal the joint log-likelihood up to a per-row constant."""
    X, y = count_data(0)
    layer = ExplicitStats(X.shape[1], 5).update(X, y).solve(alpha=alpha, dtype=np.float64)
    nb = MultinomialNB(alpha=alpha).fit(X, y)
    assert_equal_up_to_row_constant(layer.logits(X), nb.predict_joint_log_proba(X))


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_bias_form_likelihood_and_prior_with_unbalanced_classes(tau):
    """Unbalanced classes: the likelihood term is NB's scaled by tau (exactly), and the bias is
    the α-smoothed log prior (sklearn's prior is unsmoothed, so it is compared separately)."""
    X, y = count_data(1)
    keep = (y != 0) | (np.arange(len(y)) % 4 == 0)
    X, y = X[keep], y[keep]
    layer = ExplicitStats(X.shape[1], 5).update(X, y).solve(alpha=0.5, tau=tau, dtype=np.float64)
    nb = MultinomialNB(alpha=0.5).fit(X, y)
    likelihood = nb.predict_joint_log_proba(X) - nb.class_log_prior_
    np.testing.assert_allclose(layer.logits(X) - layer.bias, tau * likelihood, rtol=1e-10)
    counts = np.bincount(y, minlength=5)
    np.testing.assert_allclose(layer.bias, np.log((counts + 0.5) / (len(y) + 0.5 * 5)))


@pytest.mark.parametrize("tau", [1.0, 0.4])
def test_folded_form_equals_bias_form_when_input_mass_is_constant(tau):
    """Rows of constant mass K with D = K: the folded form's implicit prior (C_i + αD)/K equals
    the bias form's T_i + α, so the two forms differ by a per-row constant."""
    rng = np.random.default_rng(2)
    K = D = 6
    y = rng.integers(0, 4, 200)
    X = np.stack([rng.multinomial(K, rng.dirichlet(np.ones(D) * (c + 1))) for c in y])
    stats = ExplicitStats(D, 4).update(X, y)
    assert stats.priming_number == K
    bias = stats.solve(alpha=0.7, tau=tau, dtype=np.float64)
    folded = stats.solve(alpha=0.7, tau=tau, form="folded", priming=K, dtype=np.float64)
    assert folded.bias is None
    assert_equal_up_to_row_constant(folded.logits(X), bias.logits(X))
    # The default priming number is the mean input mass: K here.
    np.testing.assert_array_equal(stats.solve(form="folded").weight_t, stats.solve(
        form="folded", priming=K).weight_t)


def test_folded_form_formula(backend):
    FT = np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0]])
    stats = ExplicitStats(3, 2).add(FT, [1.0, 1.0], 4.0, 10.0)
    layer = stats.solve(alpha=0.5, tau=0.3, form="folded", dtype=np.float64)
    K = 2.5
    expected = 0.3 * np.log(FT + 0.5) - (0.3 * K - 1) / K * np.log(FT.sum(1, keepdims=True) + 1.5)
    np.testing.assert_allclose(layer.weight_t, expected, rtol=1e-14)
    assert layer.weight.shape == (3, 2) and np.shares_memory(layer.weight, layer.weight_t)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_explicit_start_is_near_the_optimum_of_gradient_descent():
    """Multi-hot inputs from a naive-Bayes-like source (N = 20, D = 60, K = 5, n = 2000): the
    explicit layer's cross-entropy is far below a zero-initialized layer's (log N = 3.00), and
    300 steps of full-batch gradient descent from it improve it only a little (measured:
    0.226 → 0.189 nats, while 300 steps from zero reach 0.471)."""
    rng = np.random.default_rng(0)
    N, D, K, n = 20, 60, 5, 2000
    conditionals = rng.dirichlet(np.full(D, 0.3), size=N)
    y = rng.choice(N, size=n, p=rng.dirichlet(np.full(N, 5.0)))
    X = np.zeros((n, D))
    for m in range(n):
        X[m, rng.choice(D, size=K, replace=False, p=conditionals[y[m]])] = 1.0
    layer = ExplicitStats(D, N).update(X, y).solve(alpha=1.0, dtype=np.float64)
    explicit = cross_entropy(layer.log_proba(X), y)

    def descend(W: np.ndarray, b: np.ndarray, steps: int = 300, rate: float = 1.0) -> float:
        onehot = np.eye(N)[y]
        for _ in range(steps):
            gradient = (np.exp(log_softmax(X @ W + b)) - onehot) / n
            W, b = W - rate * X.T @ gradient, b - rate * gradient.sum(axis=0)
        return cross_entropy(log_softmax(X @ W + b), y)

    with threadpool_limits(1):  # tiny products: BLAS threads only add overhead
        warm = descend(layer.weight.copy(), layer.bias.copy())
        cold = descend(np.zeros((D, N)), np.zeros(N))
    assert explicit < 0.1 * np.log(N)
    assert warm <= explicit
    assert explicit - warm < 0.05
    assert cold > explicit + 0.2


# --- statistics --------------------------------------------------------------------------------


def test_merged_shards_equal_one_pass():
    X, y = count_data(3, n=400)
    whole = ExplicitStats(12, 5).update(X, y)
    shards = [ExplicitStats(12, 5).update(X[i::3], y[i::3]) for i in range(3)]
    merged = shards[0] + shards[1] + shards[2]
    np.testing.assert_allclose(merged.FT, whole.FT)
    np.testing.assert_allclose(merged.target_mass, whole.target_mass)
    assert merged.n_examples == whole.n_examples == len(y)
    assert merged.input_mass == pytest.approx(whole.input_mass)
    assert shards[0].n_examples < len(y)  # + made a new object
    assert shards[0].merge(shards[1]) is shards[0]  # merge accumulates in place
    np.testing.assert_allclose(shards[0].merge(shards[2]).FT, whole.FT)


def test_merge_rejects_other_shapes_and_types():
    with pytest.raises(ValueError, match="cannot merge statistics of shape"):
        ExplicitStats(3, 4).merge(ExplicitStats(4, 3))
    with pytest.raises(TypeError, match="can only merge ExplicitStats"):
        ExplicitStats(3, 4).merge(np.zeros((4, 3)))
    with pytest.raises(TypeError):
        ExplicitStats(3, 4) + 1


def test_save_load_round_trip(tmp_path):
    X, y = count_data(4)
    stats = ExplicitStats(12, 5).update(X, y)
    path = tmp_path / "stats.safetensors"
    stats.save(path)
    loaded = ExplicitStats.load(path)
    for key, array in stats.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], array)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.safetensors"]  # no temporary left
    stats.update(X[:5], y[:5]).save(path)  # overwriting replaces the file
    assert ExplicitStats.load(path).n_examples == stats.n_examples


def test_load_rejects_other_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"FT": np.zeros((2, 2))}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=r"holds no saffu\.ExplicitStats"):
        ExplicitStats.load(tmp_path / "other.safetensors")
    (tmp_path / "junk").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ExplicitStats.load(tmp_path / "junk")
    with pytest.raises(ValueError, match="missing statistics arrays: input_mass, n_examples"):
        ExplicitStats.from_arrays({"FT": np.zeros((2, 2)), "target_mass": np.zeros(2)})


@pytest.mark.parametrize("to_sparse", [sp.csr_matrix, sp.csc_matrix, sp.coo_array])
def test_sparse_updates_equal_dense_updates(backend, to_sparse):
    X, y = count_data(5)
    X32 = X.astype(np.float32)
    targets = np.random.default_rng(5).random((len(y), 5))
    for labels_or_targets in (y, targets):
        dense = ExplicitStats(12, 5).update(X32, labels_or_targets)
        sparse = ExplicitStats(12, 5).update(to_sparse(X32), labels_or_targets)
        np.testing.assert_allclose(sparse.FT, dense.FT, rtol=1e-12)
        np.testing.assert_allclose(sparse.target_mass, dense.target_mass)
        assert sparse.input_mass == dense.input_mass == X.sum()
    layer = dense.solve()
    np.testing.assert_allclose(layer.logits(to_sparse(X)), layer.logits(X), rtol=1e-5)


def test_labels_equal_onehot_target_matrix(backend):
    X, y = count_data(6)
    labels = ExplicitStats(12, 5).update(X, y)
    onehot = ExplicitStats(12, 5).update(X, np.eye(5)[y])
    np.testing.assert_allclose(labels.FT, onehot.FT, rtol=1e-12)
    np.testing.assert_array_equal(labels.target_mass, onehot.target_mass)
    np.testing.assert_array_equal(labels.F, labels.FT.T)
    np.testing.assert_allclose(labels.column_sums, labels.F.sum(axis=0))
    assert labels.priming_number == pytest.approx(X.sum() / len(X))


def test_counts_stay_exact_for_very_large_inputs(backend):
    X = np.array([[1e12, 3.0], [1.0, 0.0]], dtype=np.float64)
    stats = ExplicitStats(2, 2).update(X, np.array([1, 1])).update(X, np.array([1, 0]))
    np.testing.assert_array_equal(stats.FT, [[1.0, 0.0], [2e12 + 1, 6.0]])


def test_log_proba_is_normalized_and_chunking_does_not_matter():
    X, y = count_data(7)
    layer = ExplicitStats(12, 5).update(X, y).solve(alpha=1.0)
    log_p = layer.log_proba(X, chunk=7)
    assert log_p.dtype == np.float32
    np.testing.assert_allclose(logsumexp(log_p, axis=1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(layer.logits(X, chunk=7), layer.logits(X))
    np.testing.assert_allclose(log_p, layer.log_proba(X), atol=1e-6)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("X, message", [
    (np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]), r"X\[1, 2\] = -1.0"),
    (np.array([[1.0, np.nan, 2.0], [0.0, 1.0, -1.0]]), r"X\[0, 1\] = nan"),
    (np.array([[1.0, 0.0, 2.0], [np.inf, 1.0, 1.0]]), r"X\[1, 0\] = inf"),
    (sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, -3.0, -1.0]])), r"X\[1, 1\] = -3.0"),
    (np.zeros((0, 3)), "X holds no examples"),
    (np.ones((2, 4)), "X has 4 columns, expected 3"),
    (np.ones(3), "X must be 2-D"),
])
def test_update_rejects_bad_inputs(X, message):
    stats = ExplicitStats(3, 2)
    with pytest.raises(ValueError, match=message):
        stats.update(X, np.zeros(X.shape[0] if X.ndim == 2 else 1, dtype=int))
    assert stats.n_examples == 0 and not stats.FT.any()  # nothing was added


@pytest.mark.parametrize("y, error, message", [
    (np.array([0, 2]), ValueError, r"labels must lie in \[0, 2\); y\[1\] = 2"),
    (np.array([-1, 0]), ValueError, r"y\[0\] = -1"),
    (np.array([0.0, 1.0]), TypeError, "labels y must be integers"),
    (np.array([0, 1, 1]), ValueError, "y has 3 rows but X has 2"),
    (np.array([[0.5, 0.5], [1.0, -0.1]]), ValueError, r"y\[1, 1\] = -0.1"),
    (np.ones((2, 3)), ValueError, "target matrix y has 3 columns, expected 2"),
    (np.array(["a", "b"]), TypeError, "labels y must be integers"),
])
def test_update_rejects_bad_targets(y, error, message):
    with pytest.raises(error, match=message):
        ExplicitStats(3, 2).update(np.ones((2, 3)), y)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"alpha": 0.0}, ValueError, "alpha must be a positive finite number"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"tau": 0.0}, ValueError, "tau must be a positive finite number"),
    ({"tau": float("inf")}, ValueError, "tau"),
    ({"form": "folded", "priming": 0.0}, ValueError, "priming must be a positive finite number"),
    ({"form": "bias", "priming": 2.0}, ValueError, "priming applies to the folded form only"),
    ({"form": "softmax"}, ValueError, "form must be one of bias, folded"),
    ({"dtype": np.int32}, TypeError, "dtype must be float32 or float64"),
])
def test_solve_rejects_bad_parameters(kwargs, error, message):
    stats = ExplicitStats(3, 2).update(np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(error, match=message):
        stats.solve(**kwargs)


def test_solve_needs_examples_and_input_mass():
    with pytest.raises(ValueError, match="the statistics hold no examples"):
        ExplicitStats(3, 2).solve()
    zeros = ExplicitStats(3, 2).update(np.zeros((2, 3)), np.array([0, 1]))
    zeros.solve()  # the bias form is defined: it is the smoothed prior
    with pytest.raises(ValueError, match="every input was zero"):
        zeros.solve(form="folded")
    with pytest.raises(ValueError, match="priming number is undefined"):
        _ = ExplicitStats(3, 2).priming_number


@pytest.mark.parametrize("args, message", [
    ((np.ones((3, 2)), np.zeros(2), 1.0, 1.0), r"expected FT \(2, 3\)"),
    ((-np.ones((2, 3)), np.zeros(2), 1.0, 1.0), r"FT\[0, 0\] = -1.0"),
    ((np.ones((2, 3)), np.array([1.0, np.nan]), 1.0, 1.0), r"target_mass\[1\] = nan"),
    ((np.ones((2, 3)), np.zeros(2), -1.0, 1.0), "n_examples must be a finite non-negative"),
    ((np.ones((2, 3)), np.zeros(2), 1.0, np.inf), "input_mass"),
])
def test_add_rejects_bad_statistics(args, message):
    with pytest.raises(ValueError, match=message):
        ExplicitStats(3, 2).add(*args)


@pytest.mark.parametrize("shape", [(0, 3), (3, -1), (2.5, 3)])
def test_constructor_rejects_bad_sizes(shape):
    with pytest.raises(ValueError, match="must be a positive integer"):
        ExplicitStats(*shape)


def test_layer_validates_its_arrays():
    with pytest.raises(ValueError, match=r"bias must be None or an array of shape \(2,\)"):
        ExplicitLayer(np.zeros((2, 3), np.float32), np.zeros(3))
    with pytest.raises(TypeError, match="weight_t must be a 2-D float32 or float64"):
        ExplicitLayer(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="has 2 columns, expected 3"):
        ExplicitLayer(np.zeros((2, 3))).logits(np.ones((4, 2)))


# --- discounted solves ---------------------------------------------------------------------------


def direct_discounted(F: np.ndarray, alpha: float, d: float, lower: str) -> np.ndarray:
    """P_d(j | i) of ExplicitStats.solve's docstring, written out loop by loop. F is (D, N)."""
    D, N = F.shape
    removed = np.array([[min(F[j, i], d) for i in range(N)] for j in range(D)])
    base = F.sum(axis=1) if lower == "marginal" else removed.sum(axis=1)
    q = (base + alpha) / (base.sum() + alpha * D)
    P = np.empty((D, N))
    for i in range(N):
        C = F[:, i].sum()
        for j in range(D):
            P[j, i] = q[j] if C == 0 else (max(F[j, i] - d, 0) + removed[:, i].sum() * q[j]) / C
    return P


@pytest.mark.parametrize("lower", ["marginal", "continuation"])
@pytest.mark.parametrize("d", [0.3, 1.0, 5.0])
def test_discounted_solve_equals_the_formula(lower, d):
    rng = np.random.default_rng(7)
    X = rng.random((200, 9)) * (rng.random((200, 9)) < 0.4)  # fractional, sparse inputs
    y = rng.integers(0, 6, 200)
    y[y == 4] = 5  # target 4 is never seen: P_d(· | 4) = q
    stats = ExplicitStats(9, 6).update(X, y)
    alpha, tau, K = 0.2, 1.7, 2.5
    P = direct_discounted(stats.F, alpha, d, lower)
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-12)
    bias = stats.solve(alpha=alpha, tau=tau, discount=d, lower=lower, dtype=np.float64)
    np.testing.assert_allclose(bias.weight, tau * np.log(P), rtol=1e-12)
    np.testing.assert_allclose(bias.bias, stats.solve(alpha=alpha, dtype=np.float64).bias)
    folded = stats.solve(alpha=alpha, tau=tau, form="folded", priming=K, discount=d, lower=lower,
                         dtype=np.float64)
    prior = np.log(stats.column_sums + alpha * 9) / K
    np.testing.assert_allclose(folded.weight, tau * np.log(P) + prior, rtol=1e-12)
    assert folded.bias is None


def test_folded_form_is_likelihood_plus_spread_prior():
    """The add-α folded form is tau·log P(j|i) + (1/K)·log(C_i + αD), the form the discount uses."""
    X, y = count_data(3)
    stats = ExplicitStats(X.shape[1], 5).update(X, y)
    layer = stats.solve(alpha=0.5, tau=2.0, form="folded", priming=3.0, dtype=np.float64)
    likelihood = np.log((stats.F + 0.5) / (stats.column_sums + 0.5 * X.shape[1]))
    np.testing.assert_allclose(
        layer.weight, 2.0 * likelihood + np.log(stats.column_sums + 0.5 * X.shape[1]) / 3.0,
        rtol=1e-12)


def test_discount_rejects_bad_options():
    stats = ExplicitStats(3, 2).update(np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="discount must be a finite non-negative number"):
        stats.solve(discount=-0.5)
    with pytest.raises(ValueError, match="lower must be one of marginal, continuation"):
        stats.solve(discount=0.5, lower="uniform")


"""Embedding drift tests (domain classifier, MMD): plain oracles, seeded verdicts and a false-alarm check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from detectors.classifier import DomainClassifierTest
from detectors.mmd import MMDTest

DIM = 384
TESTS = [DomainClassifierTest, MMDTest]


@pytest.fixture(autouse=True)
def one_blas_thread():
    """On a busy machine BLAS threads wait for one another: the tests ran 6 times slower with two."""
    with threadpool_limits(limits=1):
        yield


def embeddings(n: int, seed: int, *, dim: int = DIM, shift: float = 0.0, correlation: float = 0.0) -> np.ndarray:
    """Standard normal rows; ``shift`` moves the mean of the first 5 dimensions, ``correlation`` ties the first 50."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim))
    rows[:, :5] += shift
    common = rng.normal(size=(n, 1))
    rows[:, :50] = np.sqrt(1.0 - correlation) * rows[:, :50] + np.sqrt(correlation) * common
    return rows


def cut(rows: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """The documented draw: at most ``max_samples`` rows without replacement, kept in order."""
    if len(rows) <= max_samples:
        return rows
    return rows[np.sort(rng.choice(len(rows), size=max_samples, replace=False))]


# Oracles


def plain_mmd(kernel: np.ndarray, in_reference: np.ndarray) -> float:
    """The unbiased squared MMD, pair by pair."""
    x = [i for i in range(len(kernel)) if in_reference[i]]
    y = [j for j in range(len(kernel)) if not in_reference[j]]
    m, n = len(x), len(y)
    within_x = sum(kernel[i, j] for i in x for j in x if i != j)
    within_y = sum(kernel[i, j] for i in y for j in y if i != j)
    across = sum(kernel[i, j] for i in x for j in y)
    return within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2 * across / (m * n)


def plain_mmd_test(reference, window, max_samples, n_permutations, seed):
    """Statistic and permutation p-value as the docstring defines them, with cdist and loops."""
    reference = cut(reference, max_samples, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    window = cut(window, max_samples, rng)
    pooled = np.vstack((reference, window))
    distances = cdist(pooled, pooled, "sqeuclidean")
    pairs = [distances[i, j] for i in range(len(pooled)) for j in range(i + 1, len(pooled))]
    bandwidth = np.median([d for d in pairs if d > 0])
    kernel = np.exp(-distances / (2 * bandwidth))
    m = len(reference)
    observed = plain_mmd(kernel, np.arange(len(pooled)) < m)
    permuted = []
    for _ in range(n_permutations):
        in_reference = np.zeros(len(pooled), dtype=bool)
        in_reference[rng.permutation(len(pooled))[:m]] = True
        permuted.append(plain_mmd(kernel, in_reference))
    return observed, (1 + sum(value >= observed for value in permuted)) / (1 + n_permutations), kernel


def plain_classifier_auc(reference, window, max_samples, n_folds, seed):
    """Mean AUC of logistic regressions over stratified folds, each fold written out."""
    reference = cut(reference, max_samples, np.random.default_rng(seed))
    window = cut(window, max_samples, np.random.default_rng(seed))
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    rows = (np.vstack((reference, window)) - mean) / np.where(std > 0, std, 1.0)
    labels = np.array([0] * len(reference) + [1] * len(window))
    aucs = []
    for train, test in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(rows, labels):
        model = LogisticRegression().fit(rows[train], labels[train])
        aucs.append(roc_auc_score(labels[test], model.predict_proba(rows[test])[:, 1]))
    return np.mean(aucs)


@pytest.mark.parametrize(("max_samples", "seed"), [(1000, 0), (25, 7)])  # whole samples; both sides cut
def test_mmd_equals_the_plain_implementation(max_samples, seed):
    reference = embeddings(40, seed=1, dim=8)
    window = embeddings(30, seed=2, dim=8, shift=0.4)
    test = MMDTest(max_samples=max_samples, n_permutations=50, random_state=seed).fit(reference)

    result = test.score(window)

    statistic, p_value, _ = plain_mmd_test(reference, window, max_samples, 50, seed)
    assert result.statistic == pytest.approx(statistic, rel=1e-9, abs=1e-12)
    assert result.p_value == p_value


def test_mmd_statistic_equals_evidentlys_estimator_on_the_same_kernel():
    methods = pytest.importorskip("evidently.legacy.metrics.data_drift.embedding_drift_methods")
    reference, window = embeddings(60, seed=3, dim=16), embeddings(45, seed=4, dim=16, shift=0.3)

    statistic, _, kernel = plain_mmd_test(reference, window, 1000, 0, 0)

    assert MMDTest().fit(reference).score(window).statistic == pytest.approx(methods.MMD2u(kernel, 60, 45), rel=1e-9)
    assert statistic == pytest.approx(methods.MMD2u(kernel, 60, 45), rel=1e-12)


@pytest.mark.parametrize(("max_samples", "seed"), [(1000, 0), (150, 5)])
def test_classifier_equals_the_fold_by_fold_computation(max_samples, seed):
    reference, window = embeddings(400, seed=1, dim=32), embeddings(300, seed=2, dim=32, shift=0.3)
    test = DomainClassifierTest(max_samples=max_samples, random_state=seed).fit(reference)

    assert test.score(window).statistic == pytest.approx(
        plain_classifier_auc(reference, window, max_samples, 3, seed), abs=1e-12
    )


def test_classifier_agrees_with_evidentlys_model_method():
    methods = pytest.importorskip("evidently.legacy.metrics.data_drift.embedding_drift_methods")
    pd = pytest.importorskip("pandas")
    reference = embeddings(1000, seed=1)
    test = DomainClassifierTest().fit(reference)
    for window, drifted in ((embeddings(1000, seed=2), False), (embeddings(1000, seed=3, shift=0.5), True)):
        evidently_auc, evidently_drifted, _ = methods.model()(pd.DataFrame(window), pd.DataFrame(reference))

        result = test.score(window)

        assert result.drifted == evidently_drifted == drifted
        assert abs(result.statistic - evidently_auc) < 0.05


# Verdicts on seeded data


@pytest.mark.parametrize("test_class", TESTS)
def test_no_drift_between_samples_of_one_distribution(test_class):
    test = test_class().fit(embeddings(1000, seed=1))

    assert not test.score(embeddings(500, seed=2)).drifted


@pytest.mark.parametrize("test_class", TESTS)
def test_drift_when_a_few_dimensions_shift(test_class):
    test = test_class().fit(embeddings(1000, seed=1))

    assert test.score(embeddings(500, seed=2, shift=0.5)).drifted


def test_mmd_sees_a_change_of_covariance_that_a_linear_classifier_cannot():
    reference, window = embeddings(1000, seed=1), embeddings(500, seed=2, correlation=0.5)

    assert MMDTest().fit(reference).score(window).drifted
    assert not DomainClassifierTest().fit(reference).score(window).drifted


@pytest.mark.parametrize("test_class", TESTS)
def test_results_depend_on_the_inputs_and_config_alone(test_class):
    reference, window = embeddings(600, seed=1), embeddings(500, seed=2, shift=0.2)  # both cut to 300 rows
    test = test_class(max_samples=300).fit(reference)

    first = test.score(window)

    assert test.score(embeddings(200, seed=3)) != first  # scoring another window first changes nothing
    assert test.score(window) == first
    assert test_class(max_samples=300).fit(reference).score(window) == first
    assert test_class(max_samples=300, random_state=1).fit(reference).score(window).statistic != first.statistic
    reference32, window32 = reference.astype(np.float32), window.astype(np.float32)  # as the daemon keeps them
    assert test.fit(reference32).score(window32) == test.fit(reference32.astype(float)).score(window32.astype(float))


@pytest.mark.parametrize("test_class", TESTS)
def test_inputs_that_are_not_rows_of_the_fitted_dimension_are_refused(test_class):
    with pytest.raises(ValueError, match="2-D"):
        test_class().fit(np.zeros(10))
    test = test_class().fit(embeddings(50, seed=1, dim=8))
    with pytest.raises(ValueError, match="8"):
        test.score(embeddings(50, seed=2, dim=9))
    with pytest.raises(ValueError, match="at least"):
        test.score(embeddings(1, seed=2, dim=8))
    with pytest.raises(RuntimeError, match="fit"):
        test_class().score(embeddings(50, seed=2, dim=8))


def test_configs_that_cannot_compute_are_refused():
    with pytest.raises(ValueError, match="max_samples"):
        MMDTest(max_samples=1)
    with pytest.raises(ValueError, match="max_samples"):
        DomainClassifierTest(max_samples=4, n_folds=5)
    with pytest.raises(ValueError, match="n_permutations"):
        MMDTest(n_permutations=0)


# False alarms


@pytest.mark.statistical
def test_mmd_p_values_are_uniform_without_drift():
    p_values = np.array(
        [MMDTest().fit(embeddings(200, seed=2 * k)).score(embeddings(200, seed=2 * k + 1)).p_value for k in range(200)]
    )

    assert np.mean(p_values < 0.05) <= 0.09  # binomial(200, 0.05): mean 10, 3 sd above is 19
    assert 0.4 < p_values.mean() < 0.6


@pytest.mark.statistical
def test_classifier_rarely_flags_a_window_without_drift():
    reference = embeddings(1000, seed=1)
    test = DomainClassifierTest().fit(reference)

    aucs = np.array([test.score(embeddings(200, seed=k)).statistic for k in range(2, 42)])

    assert np.mean(aucs >= test.threshold) <= 0.1
    assert abs(np.mean(aucs) - 0.5) < 0.02

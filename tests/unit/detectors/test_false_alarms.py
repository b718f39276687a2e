"""False-alarm rate and power of a model's corrected drift verdict, against binomial bounds on seeded streams.

A model of 20 numeric features (``ks``) and 5 categorical ones (``chisquare``) is fitted once on a reference of
5,000 rows, then scored on 400 independent windows of 250 rows. On a null stream (every window drawn from the
reference's distribution), the share of windows in which any feature is flagged after ``correct(..., "bh" or
"bonferroni", alpha)`` must be at most alpha, up to a one-sided binomial tolerance; with ``"none"`` it is the
``1 - (1 - alpha) ** 25`` of 25 independent tests, which is why correction is the default. On a stream where 3
features shift, Benjamini-Hochberg must flag them in most windows while its false discovery proportion stays
within tolerance of alpha. Tolerances are binomial quantiles at an error probability of 1e-4, so with fixed seeds
the checks are not flaky, yet a model-level false-alarm rate of 2.5 alpha fails the bound at alpha = 0.05 for 96% of
seeds (400 windows resolve less at 0.01), and the per-test check, pooling 8,000 ks p-values, fails a per-feature
rate outside 0.041 to 0.060 at alpha = 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.correction import correct
from detectors.registry import make_test
from detectors.results import DriftResult

pytestmark = pytest.mark.statistical  # every test here scores 400 windows of 25 features

N_REFERENCE, N_WINDOW, N_WINDOWS = 5_000, 250, 400
N_NUMERIC = 20
#: Category weights of the 5 categorical features (3 to 8 categories, int32 codes as the daemon encodes them).
WEIGHTS = [np.array(w) / np.sum(w) for w in ([4, 3, 2, 1], [1, 1, 1], [5, 3, 1, 1, 1, 1], [2, 2, 1, 1, 1], [1] * 8)]
N_FEATURES = N_NUMERIC + len(WEIGHTS)
#: The features that shift in the power check: a normal's mean by 0.4 sd, an exponential's scale by 1.6, and the
#: first categorical feature's weights reversed.
SHIFTED = [0, 1, N_NUMERIC]
#: The error probability of every binomial tolerance.
ERROR = 1e-4


def _features(rng: np.random.Generator, n: int, shifted: bool = False) -> list[np.ndarray]:
    """One sample of every feature: numbers of four shapes in turn, then the categorical codes."""
    draws = (
        lambda: rng.normal(size=n),
        lambda: rng.exponential(size=n),
        lambda: rng.lognormal(0.0, 0.5, size=n),
        lambda: rng.uniform(size=n),
    )
    numeric = [draws[index % len(draws)]() for index in range(N_NUMERIC)]
    categorical = [rng.choice(len(weights), size=n, p=weights).astype(np.int32) for weights in WEIGHTS]
    if shifted:
        numeric[0] += 0.4
        numeric[1] *= 1.6
        categorical[0] = rng.choice(len(WEIGHTS[0]), size=n, p=WEIGHTS[0][::-1]).astype(np.int32)
    return numeric + categorical


def _stream(seed: int, shifted: bool) -> list[list[DriftResult]]:
    """The model fitted on a seeded reference, scored on N_WINDOWS fresh windows: one result per feature per window."""
    rng = np.random.default_rng(seed)
    reference = _features(rng, N_REFERENCE)
    tests = [make_test("ks", "numeric", values) for values in reference[:N_NUMERIC]]
    tests += [make_test("chisquare", "categorical", values) for values in reference[N_NUMERIC:]]
    return [
        [test.score(values) for test, values in zip(tests, _features(rng, N_WINDOW, shifted))] for _ in range(N_WINDOWS)
    ]


def _flags(stream: list[list[DriftResult]], correction: str, alpha: float) -> np.ndarray:
    """Windows x features: whether each feature drifted after correcting each window's results together."""
    return np.array([[result.drifted for result in correct(window, correction, alpha)] for window in stream])


def _at_most(rate: float) -> float:
    """The largest share of N_WINDOWS that a true rate of ``rate`` exceeds with probability below ERROR."""
    return stats.binom.ppf(1 - ERROR, N_WINDOWS, rate) / N_WINDOWS


@pytest.fixture(scope="module")
def null_stream() -> list[list[DriftResult]]:
    return _stream(seed=20, shifted=False)


@pytest.fixture(scope="module")
def shifted_stream() -> list[list[DriftResult]]:
    return _stream(seed=21, shifted=True)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_each_test_alone_flags_about_alpha_of_null_windows(null_stream, alpha):
    # The premise of the model-level checks: ks and chisquare p-values are calibrated at this window size.
    p_values = np.array([[result.p_value for result in window] for window in null_stream])

    for method, pooled in (("ks", p_values[:, :N_NUMERIC]), ("chisquare", p_values[:, N_NUMERIC:])):
        low, high = stats.binom.interval(1 - ERROR, pooled.size, alpha)
        assert low <= np.sum(pooled < alpha) <= high, method


@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize("correction", ["bh", "bonferroni"])
def test_corrected_model_false_alarm_rate_is_at_most_alpha(null_stream, correction, alpha):
    # Bonferroni bounds the chance of any false flag by alpha; so does Benjamini-Hochberg when no feature drifts
    # (its false discovery rate is then that chance) and the features are independent, as here.
    flags = _flags(null_stream, correction, alpha)

    assert flags.shape == (N_WINDOWS, N_FEATURES)
    assert flags.any(axis=1).mean() <= _at_most(alpha)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_uncorrected_model_false_alarm_rate_is_that_of_25_independent_tests(null_stream, alpha):
    # 72% of windows at alpha = 0.05, 22% at 0.01: the reason correct() is the default.
    expected = 1 - (1 - alpha) ** N_FEATURES
    low, high = stats.binom.interval(1 - ERROR, N_WINDOWS, expected)

    assert low / N_WINDOWS <= _flags(null_stream, "none", alpha).any(axis=1).mean() <= high / N_WINDOWS


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_bh_flags_the_shifted_features_and_few_others(shifted_stream, alpha):
    flags = _flags(shifted_stream, "bh", alpha)
    true_flags = flags[:, SHIFTED].sum(axis=1)
    false_flags = np.delete(flags, SHIFTED, axis=1).sum(axis=1)
    false_discovery_proportion = false_flags / np.maximum(true_flags + false_flags, 1)

    # Most windows: the design's power per shifted feature is about 99% at 0.05 and 97% at 0.01 (over seeds).
    assert (flags[:, SHIFTED].mean(axis=0) >= 0.9).all()
    # Benjamini-Hochberg keeps the expected proportion at most alpha * 22 / 25. Each window's proportion lies in
    # [0, 1], so their sum obeys the tail bounds of a binomial count of the same mean (Hoeffding, 1963): its quantile
    # serves as the tolerance.
    assert false_discovery_proportion.mean() <= _at_most(alpha)

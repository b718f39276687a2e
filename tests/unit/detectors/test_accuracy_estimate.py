"""The label-free accuracy estimate: calibration equal to scikit-learn's, a band covering the realised accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import binom
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression

from detectors.accuracy_estimate import AccuracyEstimator

METHODS = {"isotonic": "isotonic", "platt": "sigmoid"}  # ours -> CalibratedClassifierCV's


def _p_correct(scores: np.ndarray) -> np.ndarray:
    """The true chance that a prediction with this confidence is right: far below the score at the low end."""
    return expit(10.0 * (scores - 0.7))


def _stream(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Confidence scores and whether each prediction was right (drawn from the known true probability)."""
    scores = np.clip(rng.uniform(0.5, 1.0, size=n) - shift, 0.0, 1.0)
    return scores, rng.random(n) < _p_correct(scores)


class _ScoreAsProbability(ClassifierMixin, BaseEstimator):
    """A "classifier" whose probability of being correct is its input column: the score scikit-learn calibrates."""

    def fit(self, X, y):
        self.classes_ = np.array([False, True])
        return self

    def predict_proba(self, X):
        return np.column_stack([1.0 - X[:, 0], X[:, 0]])

    def predict(self, X):
        return X[:, 0] >= 0.5


@pytest.mark.parametrize("method", METHODS)
def test_calibration_equals_calibrated_classifier_cv(method):
    rng = np.random.default_rng(0)
    scores, correct = _stream(rng, 5_000)
    window = rng.uniform(0.2, 1.1, size=2_000)  # beyond the reference's range on both sides

    ours = AccuracyEstimator(method).fit(scores, correct).calibrate(window)
    frozen = FrozenEstimator(_ScoreAsProbability().fit(scores[:, None], correct))
    calibrated = CalibratedClassifierCV(frozen, method=METHODS[method]).fit(scores[:, None], correct)

    np.testing.assert_allclose(ours, calibrated.predict_proba(window[:, None])[:, 1], rtol=0, atol=1e-12)


def test_isotonic_calibration_equals_isotonic_regression():
    rng = np.random.default_rng(1)
    scores, correct = _stream(rng, 3_000)
    scores = np.round(scores, 2)  # ties
    window = rng.uniform(0.0, 1.0, size=1_000)

    ours = AccuracyEstimator("isotonic").fit(scores, correct).calibrate(window)

    expected = IsotonicRegression(out_of_bounds="clip").fit(scores, correct).predict(window)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_one_window_estimate_is_the_mean_calibrated_probability_with_a_bernoulli_band(method):
    rng = np.random.default_rng(2)
    estimator = AccuracyEstimator(method, confidence=0.9).fit(*_stream(rng, 20_000))
    window, correct = _stream(rng, 800)
    window[::10] = np.nan  # rows without a score

    estimate = estimator.estimate(window)
    p = estimator.calibrate(window[~np.isnan(window)])
    half_width = 1.6448536269514722 * math.sqrt(np.sum(p * (1 - p))) / p.size

    assert estimate.n == 720 and estimate.estimated == pytest.approx(p.mean(), abs=1e-12)
    assert (estimate.lower, estimate.upper) == pytest.approx((p.mean() - half_width, p.mean() + half_width))
    assert estimate.lower <= np.mean(correct[~np.isnan(window)]) <= estimate.upper


@pytest.mark.statistical
@pytest.mark.parametrize("method", METHODS)
def test_the_band_covers_the_realised_accuracy_in_the_stated_share_of_windows(method):
    rng = np.random.default_rng(3)
    estimator = AccuracyEstimator(method, confidence=0.95).fit(*_stream(rng, 20_000))
    n_windows = 400

    covered = 0
    for _ in range(n_windows):
        window, correct = _stream(rng, 500)  # labels known here, withheld from the estimator
        estimate = estimator.estimate(window)
        covered += estimate.lower <= correct.mean() <= estimate.upper

    # coverage 0.95 up to the binomial noise of 400 windows, one-in-a-thousand on each side
    assert binom.ppf(0.001, n_windows, 0.95) <= covered <= binom.isf(0.001, n_windows, 0.95)


@pytest.mark.parametrize("method", METHODS)
def test_a_quality_drop_moves_the_estimate_down_before_any_label(method):
    rng = np.random.default_rng(4)
    estimator = AccuracyEstimator(method).fit(*_stream(rng, 10_000))
    usual, _ = _stream(rng, 500)
    shifted, correct = _stream(rng, 500, shift=0.15)  # less confident predictions, wrong more often

    before, after = estimator.estimate(usual), estimator.estimate(shifted)

    assert after.upper < before.lower
    assert after.lower <= correct.mean() <= after.upper


def test_an_empty_or_unscored_window_has_no_estimate():
    estimator = AccuracyEstimator().fit(*_stream(np.random.default_rng(5), 1_000))

    for window in (np.array([]), np.full(10, np.nan)):
        estimate = estimator.estimate(window)
        assert estimate.n == 0 and all(math.isnan(x) for x in (estimate.estimated, estimate.lower, estimate.upper))


def test_reference_rows_without_a_score_or_label_are_left_out():
    rng = np.random.default_rng(6)
    scores, correct = _stream(rng, 2_000)
    labels = correct.astype(float)
    labels[::7] = np.nan
    scores[::11] = np.nan
    usable = ~np.isnan(labels) & ~np.isnan(scores)
    window = rng.uniform(0.5, 1.0, size=100)

    with_gaps = AccuracyEstimator("platt").fit(scores, labels).calibrate(window)

    assert np.array_equal(with_gaps, AccuracyEstimator("platt").fit(scores[usable], correct[usable]).calibrate(window))


def test_a_reference_always_right_or_always_wrong_still_calibrates():
    scores = np.linspace(0.5, 1.0, 200)

    for correct in (np.ones(200), np.zeros(200)):
        for method in METHODS:
            p = AccuracyEstimator(method).fit(scores, correct).calibrate(scores)
            assert np.all((0 <= p) & (p <= 1)) and abs(p.mean() - correct[0]) < 0.02


def test_misuse_and_bad_config_raise():
    with pytest.raises(ValueError, match="valid: isotonic, platt"):
        AccuracyEstimator("beta")
    with pytest.raises(ValueError, match="confidence"):
        AccuracyEstimator(confidence=1.5)
    with pytest.raises(RuntimeError, match="fit"):
        AccuracyEstimator().estimate(np.array([0.9]))
    with pytest.raises(ValueError, match="no row"):
        AccuracyEstimator().fit(np.array([np.nan, 0.8]), np.array([1.0, np.nan]))

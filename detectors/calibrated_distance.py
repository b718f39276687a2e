"""A distance test's threshold calibrated on its own reference, so that it has a false-alarm rate like a p-value.

A fixed distance threshold (Evidently's 0.1) means a different false-alarm
rate for every feature and window size. :class:`CalibratedDistance` learns the
distance's distribution between samples that do not drift, by bootstrap of the
reference against itself, and turns a false-alarm rate ``alpha`` into the
threshold for the window at hand.
"""

from __future__ import annotations

import math

import numpy as np

from detectors._two_sample import TwoSampleTest
from detectors.results import DriftResult

__all__ = ["CalibratedDistance"]

#: The share of bootstrap statistics, the largest, whose excesses over the rest fit the exponential tail.
TAIL_SHARE = 0.5


class CalibratedDistance:
    """A distance test whose threshold is the ``1 - alpha`` quantile of the distance between samples of the reference.

    ``fit`` fits the test on the reference, then draws ``n_resamples`` pairs of
    bootstrap samples of the reference's size (at most ``max_samples``) from it,
    fits a copy of the test on the first and scores the second
    (:meth:`~detectors._two_sample.TwoSampleTest.null_statistics`). Without drift
    a distance shrinks with the sample sizes as ``(1/n + 1/m) ** exponent``
    (the test's ``null_exponent``: 1/2 for a distance such as Wasserstein's or
    Jensen-Shannon's, 1 for a divergence such as PSI), so the statistics are
    divided by that scale, and the threshold for a window of ``n`` values is
    their quantile times its scale.

    The quantile comes from the bootstrap sample up to ``1 - TAIL_SHARE``;
    beyond it, where a few hundred resamples say little, from an exponential
    tail fitted to the excesses over that quantile (its mean excess). The
    distances' own tails are lighter than exponential (Gaussian-like), so the
    threshold errs on the side of fewer false alarms the smaller ``alpha`` is.
    The random numbers are seeded by ``random_state``: refitting on the same
    reference gives the same thresholds.

    Parameters
    ----------
    test
        An unfitted distance test (``has_p_value`` False, ``null_exponent`` set).
    n_resamples
        Bootstrap pairs drawn at ``fit``.
    max_samples
        Largest pseudo-reference and pseudo-window, which bounds ``fit``'s cost.
    random_state
        Seed of the bootstrap.

    Examples
    --------
    >>> from detectors.wasserstein import WassersteinTest
    >>> rng = np.random.default_rng(0)
    >>> calibrated = CalibratedDistance(WassersteinTest()).fit(rng.normal(size=5_000))
    >>> round(calibrated.threshold(alpha=0.01, n_window=1_000), 4), round(calibrated.threshold(0.01, 10_000), 4)
    (0.0964, 0.0482)
    >>> result = calibrated.score(rng.normal(loc=0.1, size=10_000), alpha=0.01)
    >>> round(result.statistic, 4), result.drifted
    (0.1196, True)
    """

    def __init__(self, test: TwoSampleTest, n_resamples: int = 200, max_samples: int = 2_000, random_state: int = 0):
        if test.has_p_value or test.null_exponent is None:
            raise ValueError(f"{test.name}: only a distance test with a null_exponent can be calibrated")
        if n_resamples < 20:
            raise ValueError("n_resamples must be at least 20, to fit a tail")
        self.test = test
        self.n_resamples = n_resamples
        self.max_samples = max_samples
        self.random_state = random_state
        self._statistics: np.ndarray | None = None  # the bootstrap distances divided by their scale, sorted
        self._tail_start = math.nan
        self._tail_mean_excess = math.nan

    @property
    def name(self) -> str:
        return self.test.name

    @property
    def fitted(self) -> bool:
        return self._statistics is not None

    def fit(self, reference: np.ndarray) -> CalibratedDistance:
        """Fit the test on the reference and bootstrap its distribution without drift; returns self."""
        reference = np.asarray(reference)
        self.test.fit(reference)
        rng = np.random.default_rng(self.random_state)
        size = min(len(reference), self.max_samples)
        statistics = np.sort(self.test.null_statistics(reference, size, self.n_resamples, rng))
        statistics /= self._scale(size, size)
        self._statistics = statistics
        self._tail_start = float(np.quantile(statistics, 1.0 - TAIL_SHARE))
        excess = statistics[statistics > self._tail_start] - self._tail_start
        self._tail_mean_excess = float(excess.mean()) if excess.size else 0.0
        return self

    def threshold(self, alpha: float, n_window: int) -> float:
        """The distance a window of ``n_window`` values reaches with probability ``alpha`` without drift."""
        if self._statistics is None:
            raise RuntimeError(f"{self.name}: fit() a reference before threshold()")
        if alpha >= TAIL_SHARE:
            quantile = float(np.quantile(self._statistics, 1.0 - alpha))
        else:
            quantile = self._tail_start + self._tail_mean_excess * math.log(TAIL_SHARE / alpha)
        return quantile * self._scale(self.test.n_reference, n_window)

    def score(self, window: np.ndarray, alpha: float) -> DriftResult:
        """The test's result on the window, against the threshold of false-alarm rate ``alpha`` at its size."""
        result = self.test.score(window)
        threshold = self.threshold(alpha, len(window))
        drifted = result.statistic >= threshold and result.statistic > 0.0
        return DriftResult(result.method, result.statistic, None, threshold, drifted, result.unseen_share)

    def _scale(self, n_reference: int, n_window: int) -> float:
        exponent = self.test.null_exponent
        assert exponent is not None  # checked in __init__
        return (1.0 / n_reference + 1.0 / n_window) ** exponent

"""A distance test's threshold calibrated on its own reference, so that it has a false-alarm rate like a p-value.

A fixed distance threshold (Evidently's 0.1) means a different false-alarm
rate for every feature and window size. :class:`CalibratedDistance` learns the
distance's distribution between samples that do not drift, by bootstrap of the
reference against itself, and turns a false-alarm rate ``alpha`` into the
threshold for the window at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors._two_sample import TwoSampleTest
from detectors.results import DriftResult

__all__ = ["CalibratedDistance"]

#: The share of null statistics, the largest, whose excesses over the rest fit the exponential tail.
TAIL_SHARE = 0.5
#: Window sizes are rounded down to a grid of this ratio before a null is drawn for them, which bounds the nulls.
SIZE_STEP = 2**0.25


@dataclass(frozen=True)
class _Null:
    """The distances of ``n_resamples`` splits into ``n_reference`` and ``n_window`` values, and their tail fit."""

    n_reference: int
    n_window: int
    statistics: np.ndarray  # sorted
    tail_start: float
    tail_mean_excess: float

    @classmethod
    def of(cls, statistics: np.ndarray, n_reference: int, n_window: int) -> _Null:
        statistics = np.sort(statistics)
        tail_start = float(np.quantile(statistics, 1.0 - TAIL_SHARE))
        excess = statistics[statistics > tail_start] - tail_start
        return cls(n_reference, n_window, statistics, tail_start, float(excess.mean()) if excess.size else 0.0)

    def quantile(self, alpha: float) -> float:
        """The ``1 - alpha`` quantile: the sample's above ``TAIL_SHARE``, the exponential tail's below it."""
        if alpha >= TAIL_SHARE:
            return float(np.quantile(self.statistics, 1.0 - alpha))
        return self.tail_start + self.tail_mean_excess * math.log(TAIL_SHARE / alpha)


class CalibratedDistance:
    """A distance test whose threshold is the ``1 - alpha`` quantile of the distance between parts of the reference.

    ``fit`` fits the test on the reference and keeps a random sample of it
    (at most ``max_samples`` values). For a window of ``n`` values the null is
    drawn from that sample, once per window size and kept: ``n_resamples``
    random splits into a pseudo-window of ``n`` values (at most half the
    sample) and a disjoint pseudo-reference of the rest, a copy of the test
    fitted on one and scoring the other
    (:meth:`~detectors._two_sample.TwoSampleTest.null_statistics`). The parts
    are exchangeable with a reference and a window from one distribution, so
    a category or a value beyond what the pseudo-reference holds turns up in
    the pseudo-window as often as in a real window: a long tail's novelty is
    in the null. The pseudo-reference is smaller than the reference, so
    novelty and noise are if anything larger than the window will see: the
    threshold errs towards fewer false alarms.

    Scaling, conservatively: a window larger than the pseudo-window (more
    than half the sample, or between two steps of the size grid, ``SIZE_STEP``)
    gets the quantile scaled by the window's side of the law a distance
    shrinks by without drift, ``(1/a + 1/n) ** e / (1/a + 1/b) ** e`` for a
    pseudo-reference of ``a`` and a pseudo-window of ``b`` values (``e`` the
    test's ``null_exponent``: 1/2 for a distance such as Wasserstein's or
    Jensen-Shannon's, 1 for a divergence such as PSI). The reference counts
    as its ``a`` values, never its full size, since novelty does not shrink as
    noise does.

    The quantile comes from the null sample up to ``1 - TAIL_SHARE``;
    beyond it, where a few hundred resamples say little, from an exponential
    tail fitted to the excesses over that quantile (its mean excess). The
    distances' own tails are lighter than exponential (Gaussian-like), so the
    threshold errs on the side of fewer false alarms the smaller ``alpha`` is.
    Not so for values with a tail as heavy as a lognormal's of spread 2: at
    ``alpha`` 0.01 a new reference and window drew about 0.03 false alarms,
    each from a window's largest value beyond the reference's, which splits
    of one reference, all sharing its few largest values, do not reproduce
    (the exact quantile of 2,000 splits did no better).
    The random numbers are seeded by ``random_state`` and the pseudo-window's
    size: refitting on the same reference gives the same thresholds, whatever
    the order of the windows.

    Parameters
    ----------
    test
        An unfitted distance test (``has_p_value`` False, ``null_exponent`` set).
    n_resamples
        Splits drawn per window size.
    max_samples
        Largest sample of the reference the splits are drawn from, which bounds their cost.
    random_state
        Seed of the sample and the splits.

    Examples
    --------
    >>> from detectors.wasserstein import WassersteinTest
    >>> rng = np.random.default_rng(0)
    >>> calibrated = CalibratedDistance(WassersteinTest()).fit(rng.normal(size=5_000))
    >>> round(calibrated.threshold(alpha=0.01, n_window=1_000), 4), round(calibrated.threshold(0.01, 10_000), 4)
    (0.129, 0.0921)
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
        self._sample: np.ndarray | None = None  # what the splits are drawn from
        self._nulls: dict[int, _Null] = {}  # by pseudo-window size

    @property
    def name(self) -> str:
        return self.test.name

    @property
    def fitted(self) -> bool:
        return self._sample is not None

    def fit(self, reference: np.ndarray) -> CalibratedDistance:
        """Fit the test on the reference and keep the sample its nulls are drawn from; returns self."""
        reference = np.asarray(reference)
        self.test.fit(reference)
        rng = np.random.default_rng(self.random_state)
        sampled = len(reference) > self.max_samples
        self._sample = reference[rng.choice(len(reference), self.max_samples, replace=False)] if sampled else reference
        self._nulls = {}
        return self

    def threshold(self, alpha: float, n_window: int) -> float:
        """The distance a window of ``n_window`` values reaches with probability ``alpha`` without drift."""
        null = self._null(n_window)
        exponent = self.test.null_exponent
        assert exponent is not None  # checked in __init__
        scale = (1.0 / null.n_reference + 1.0 / n_window) / (1.0 / null.n_reference + 1.0 / null.n_window)
        return null.quantile(alpha) * scale**exponent

    def score(self, window: np.ndarray, alpha: float) -> DriftResult:
        """The test's result on the window, against the threshold of false-alarm rate ``alpha`` at its size."""
        result = self.test.score(window)
        threshold = self.threshold(alpha, len(window))
        drifted = result.statistic >= threshold and result.statistic > 0.0
        return DriftResult(result.method, result.statistic, None, threshold, drifted, result.unseen_share)

    def _null(self, n_window: int) -> _Null:
        """The null of the pseudo-window for ``n_window`` values: their size rounded down the grid, at most half."""
        if self._sample is None:
            raise RuntimeError(f"{self.name}: fit() a reference before threshold()")
        on_grid = int(SIZE_STEP ** math.floor(math.log(max(n_window, 1), SIZE_STEP) + 1e-9))
        size = max(1, min(on_grid, n_window, len(self._sample) // 2))
        if size not in self._nulls:
            rng = np.random.default_rng([self.random_state, size])
            n_reference = len(self._sample) - size
            if n_reference:
                statistics = self.test.null_statistics(self._sample, n_reference, size, self.n_resamples, rng)
            else:  # one value cannot be split: any other value is drift
                statistics, n_reference = np.zeros(self.n_resamples), 1
            self._nulls[size] = _Null.of(statistics, n_reference, size)
        return self._nulls[size]

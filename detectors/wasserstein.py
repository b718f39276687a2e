"""Wasserstein distance normalised by the reference's standard deviation, as Evidently defines it."""

from __future__ import annotations

import numpy as np

from detectors._merge import SortedSampleTest

__all__ = ["WassersteinTest"]

#: The smallest standard deviation divided by, so a constant reference does not divide by zero (Evidently's).
MIN_STD = 0.001


class WassersteinTest(SortedSampleTest):
    """``wasserstein_distance(reference, window) / max(std(reference), 0.001)``; drift when at or above ``threshold``.

    As Evidently's ``wasserstein`` test (``evidently/legacy/calculations/stattests/
    wasserstein_distance_norm.py``): the population standard deviation
    (``ddof=0``) of the reference, floored at ``MIN_STD``. The distance equals
    ``scipy.stats.wasserstein_distance``: the area between the two empirical
    CDFs, here integrated over the merge of the sorted reference (sorted once by
    ``fit``) with the sorted window.

    Parameters
    ----------
    threshold
        Drift when the normalised distance is at or above it; None takes 0.1.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = WassersteinTest().fit(rng.normal(scale=2.0, size=5_000))
    >>> round(test.score(rng.normal(scale=2.0, size=5_000)).statistic, 4)
    0.0374
    >>> result = test.score(rng.normal(loc=0.5, scale=2.0, size=5_000))
    >>> round(result.statistic, 3), result.drifted
    (0.266, True)
    """

    name = "wasserstein"
    has_p_value = False
    default_threshold = 0.1
    null_exponent = 0.5

    def _reset(self) -> None:
        super()._reset()
        self._reference: np.ndarray | None = None
        self._norm = 1.0

    def _fit(self, reference: np.ndarray) -> None:
        super()._fit(reference)
        self._norm = max(float(np.std(self._fitted(self._reference))), MIN_STD)

    def _statistic(self, window: np.ndarray) -> tuple[float, None, float]:
        merged, n_window_upto = self._merge(window)
        n_window = n_window_upto[:-1]
        n_reference = np.arange(1, merged.size) - n_window
        gap = np.abs(n_reference / self._fitted(self._reference).size - n_window / window.size)
        return float(np.dot(gap, np.diff(merged))) / self._norm, None, 0.0

"""Wasserstein distance normalised by the reference's standard deviation, as Evidently defines it."""

from __future__ import annotations

import numpy as np

from detectors._merge import SortedSampleTest

__all__ = ["WassersteinTest", "quantile_area"]

#: The smallest standard deviation divided by, so a constant reference does not divide by zero (Evidently's).
MIN_STD = 0.001


class WassersteinTest(SortedSampleTest):
    """``wasserstein_distance(reference, window) / max(std(reference), 0.001)``; drift when at or above ``threshold``.

    As Evidently's ``wasserstein`` test (``evidently/legacy/calculations/stattests/
    wasserstein_distance_norm.py``): the population standard deviation
    (``ddof=0``) of the reference, floored at ``MIN_STD``. The distance equals
    ``scipy.stats.wasserstein_distance``, the area between the two empirical
    CDFs, which is also the area between their quantile functions: here
    :func:`quantile_area` of the sorted reference (sorted once by ``fit``) and
    the sorted window, which needs no merge of the two.

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
        distance = quantile_area(self._fitted(self._reference), np.sort(np.asarray(window, dtype=float)))
        return distance / self._norm, None, 0.0


def quantile_area(a: np.ndarray, b: np.ndarray) -> float:
    """The area between the quantile functions of two sorted samples: their 1-Wasserstein distance.

    The quantile function of ``n`` sorted values is a step function of ``u`` in
    [0, 1] with steps of width ``1/n``. With ``n >= m`` (the larger sample
    ``fine``, the smaller ``coarse``) each fine step lies within one coarse
    step, except the at most ``m - 1`` that straddle a coarse boundary
    ``j/m``: the coarse values are repeated to the fine steps they cover
    (``np.repeat``), and the straddling steps are corrected for the part of
    them past the boundary. All in integer units of ``1/(m n)``, so the only
    rounding is the floats' own; it equals ``scipy.stats.wasserstein_distance``
    to a relative 1e-12 or so, at the cost of a few passes over the larger
    sample (no ``searchsorted``, no merge).

    Examples
    --------
    >>> quantile_area(np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0]))  # scipy: 0.8333333333333333
    0.8333333333333334
    """
    fine, coarse = (a, b) if a.size >= b.size else (b, a)
    n, m = fine.size, coarse.size
    boundaries = np.arange(m + 1) * n
    first_fine = -(-boundaries // m)  # the first fine step whose start k/n is at or past j/m
    area = float(np.abs(np.repeat(coarse, np.diff(first_fine)) - fine).sum()) * m
    inner = boundaries[1:-1]
    straddling = inner % m != 0
    j, k = np.flatnonzero(straddling) + 1, inner[straddling] // m  # boundary j/m inside fine step k
    past = (k + 1) * m - j * n  # the part of step k past the boundary, which belongs to coarse[j], not coarse[j - 1]
    area += float(np.dot(np.abs(coarse[j] - fine[k]) - np.abs(coarse[j - 1] - fine[k]), past))
    return area / (m * n)

"""Two-sided tabular CUSUM on standardised values, calibrated on a warm-up."""

from __future__ import annotations

import math

from detectors._change_detector import ChangeDetector

__all__ = ["CUSUM"]


class CUSUM(ChangeDetector):
    """Two-sided tabular CUSUM (Page, 1954; Montgomery, *Statistical Quality Control*, 9.1).

    The first ``min_instances`` values are a warm-up that estimates the
    stream's mean and standard deviation (Welford's online algorithm, sample
    standard deviation). Each later value is standardised,
    ``z = (x - target) / std``, and accumulated in two sums::

        S_hi = max(0, S_hi + z - k)
        S_lo = max(0, S_lo - z - k)

    A change is either sum above ``h``. With the textbook ``k=0.5, h=5`` and
    the true mean and deviation, the average run length is about 465 values
    without a shift and 4 after a shift of two standard deviations. Estimates
    from a short warm-up shorten the first: after 30 values half the runs
    without a shift end in a false alarm within 130 to 140 values, so lengthen
    ``min_instances`` where false alarms cost. A warm-up with no spread at all
    makes any departure from the target a change.

    Parameters
    ----------
    target
        The in-control mean; None takes the mean of the warm-up.
    k
        Allowance (slack), in standard deviations: half the shift to detect.
    h
        Decision interval, in standard deviations.
    min_instances
        Length of the warm-up (at least 2).
    min_std
        The least standard deviation taken: a floor for a stream whose spread
        is known not to be less (an error ratio's binomial one), so that a
        warm-up of equal values does not make any departure a change.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 100), rng.normal(2.0, 1.0, 50)])
    >>> cusum = CUSUM(min_instances=100)
    >>> for i, x in enumerate(stream):
    ...     cusum.update(x)
    ...     if cusum.drift_detected:
    ...         print(i)
    101
    """

    _state = ("n", "mean", "m2", "s_hi", "s_lo")

    def __init__(self, target=None, k=0.5, h=5.0, min_instances=30, min_std=0.0):
        if min_instances < 2:
            raise ValueError("min_instances must be at least 2 to estimate a standard deviation")
        self.target = target
        self.k = k
        self.h = h
        self.min_instances = min_instances
        self.min_std = min_std
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0  # warm-up values seen
        self._mean = 0.0  # their mean
        self._m2 = 0.0  # their sum of squared deviations from it
        self._s_hi = 0.0
        self._s_lo = 0.0

    def _step(self, x: float) -> bool:
        if self._n < self.min_instances:
            self._n += 1
            deviation = x - self._mean
            self._mean += deviation / self._n
            self._m2 += deviation * (x - self._mean)
            return False
        std = max(math.sqrt(self._m2 / (self._n - 1)), self.min_std)
        z = _standardise(x - (self._mean if self.target is None else self.target), std)
        self._s_hi = max(0.0, self._s_hi + z - self.k)
        self._s_lo = max(0.0, self._s_lo - z - self.k)
        return self._s_hi > self.h or self._s_lo > self.h


def _standardise(deviation: float, std: float) -> float:
    """``deviation / std``, and with no spread: 0 on target, infinitely far off it."""
    if std > 0.0:
        return deviation / std
    return math.copysign(math.inf, deviation) if deviation else 0.0

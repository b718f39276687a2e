"""ADWIN: an adaptive window that drops its oldest part when its two ends disagree."""

from __future__ import annotations

import math
from collections.abc import Callable

from detectors._change_detector import ChangeDetector

__all__ = ["ADWIN"]

_c_cut_found: Callable[[list[list[float]], int, float, float, float, int], bool] | None
try:  # the cut test in C (setup.py); where it was built without a C compiler, its twin runs
    from detectors._adwin_cut import cut_found as _c_cut_found
except ImportError:
    _c_cut_found = None


class ADWIN(ChangeDetector):
    """Adaptive windowing (Bifet and Gavaldà, 2007), with the same detections as ``river.drift.ADWIN``.

    The window is kept as an exponential histogram: row ``i`` holds up to
    ``max_buckets`` buckets of ``2**i`` values each, as (sum, sum of squared
    deviations) pairs, oldest first. Every ``clock`` updates, once the window is
    longer than ``grace_period``, each split of the window into an older part
    ``W0`` and a newer part ``W1`` (both at least ``min_window_length`` long) is
    tested; when the means differ by more than the bound the oldest bucket is
    dropped, the test repeats, and a change is reported. The arithmetic follows
    river's implementation step by step, so the floating-point results agree.

    Parameters
    ----------
    delta
        Significance of the cut test.
    clock
        Test for a cut every ``clock`` updates.
    max_buckets
        Buckets of each size kept before the two oldest are merged.
    min_window_length
        Shortest sub-window a cut may leave on either side.
    grace_period
        No test until the window is longer than this.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1_000), rng.normal(1.0, 1.0, 500)])
    >>> adwin = ADWIN()
    >>> for i, x in enumerate(stream):
    ...     adwin.update(x)
    ...     if adwin.drift_detected:
    ...         print(i)
    1055
    """

    _state = ("totals", "variances", "width", "total", "variance", "tick")

    def __init__(self, delta=0.002, clock=32, max_buckets=5, min_window_length=5, grace_period=10):
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._totals: list[list[float]] = [[]]  # row i: sums of buckets of 2**i values, oldest first
        self._variances: list[list[float]] = [[]]  # their sums of squared deviations from the bucket mean
        self._width = 0
        self._total = 0.0
        self._variance = 0.0  # sum of squared deviations from the window mean
        self._tick = 0

    @property
    def width(self) -> int:
        """Number of values in the window."""
        return self._width

    @property
    def estimation(self) -> float:
        """Mean of the window (0 when it is empty)."""
        return self._total / self._width if self._width else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the window (0 when it is empty).

        river's ``variance`` is the sum of squared deviations, not divided by the width.
        """
        return self._variance / self._width if self._width else 0.0

    def _step(self, x: float) -> bool:
        self._insert(x)
        self._tick += 1
        detected = False
        if self._tick % self.clock == 0 and self._width > self.grace_period:
            while self._cut_found():
                detected = True
                self._drop_oldest_bucket()
        return detected

    def _insert(self, x: float) -> None:
        self._totals[0].append(x)
        self._variances[0].append(0.0)
        self._width += 1
        if self._width > 1:
            deviation = x - self._total / (self._width - 1)
            self._variance += (self._width - 1) * deviation * deviation / self._width
        self._total += x
        row = 0
        while len(self._totals[row]) > self.max_buckets:  # merge the two oldest buckets into one of the next row
            if row + 1 == len(self._totals):
                self._totals.append([])
                self._variances.append([])
            size = 2**row
            mean_gap = self._totals[row][0] / size - self._totals[row][1] / size
            self._totals[row + 1].append(self._totals[row][0] + self._totals[row][1])
            self._variances[row + 1].append(
                self._variances[row][0] + self._variances[row][1] + size * 0.5 * mean_gap * mean_gap
            )
            del self._totals[row][:2], self._variances[row][:2]
            row += 1

    def _cut_found(self) -> bool:
        """Whether some split into an older ``W0`` and a newer ``W1`` has means too far apart: in C
        (``detectors/_adwin_cut.c``, 20 times faster), else :meth:`_cut_found_twin`."""
        if _c_cut_found is None:
            return self._cut_found_twin()
        return _c_cut_found(self._totals, self._width, self._total, self._variance, self.delta, self.min_window_length)

    def _cut_found_twin(self) -> bool:
        """:meth:`_cut_found` in Python. The bound's parts that do not depend on the split are computed once per
        test, with river's expressions (the floating-point results are the same); the loop runs once per bucket,
        dozens of times an update."""
        n0, n1 = 0, self._width
        u0, u1 = 0.0, self._total
        least = self.min_window_length
        delta_prime = math.log(2.0 * math.log(self._width) / self.delta)
        mean_variance = self._variance / self._width
        two_thirds_delta_prime = 2.0 / 3.0 * delta_prime
        for row in range(len(self._totals) - 1, -1, -1):
            size = 2**row
            for bucket_total in self._totals[row]:
                n0 += size
                n1 -= size
                u0 += bucket_total
                u1 -= bucket_total
                if n1 == 0:
                    return False  # the newest bucket: W1 would be empty
                if n0 < least or n1 < least:
                    continue
                m_recip = 1.0 / (n0 - least + 1.0) + 1.0 / (n1 - least + 1.0)
                spread = 2.0 * m_recip * mean_variance * delta_prime
                # below 0: rounding left the variance just below 0; river's square root is NaN, and no cut
                if spread >= 0.0 and abs(u0 / n0 - u1 / n1) > math.sqrt(spread) + two_thirds_delta_prime * m_recip:
                    return True
        return False

    def _drop_oldest_bucket(self) -> None:
        last = len(self._totals) - 1
        size = 2**last
        bucket_total = self._totals[last].pop(0)
        bucket_variance = self._variances[last].pop(0)
        while not self._totals[-1]:  # with max_buckets=1 merging can empty rows below the last one too
            del self._totals[-1], self._variances[-1]
        self._width -= size
        self._total -= bucket_total
        gap = bucket_total / size - self._total / self._width
        self._variance -= bucket_variance + size * self._width * gap * gap / (size + self._width)

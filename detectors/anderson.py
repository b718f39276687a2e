"""Anderson-Darling k-sample test (midrank, for two samples) with scipy's tabulated p-value."""

from __future__ import annotations

import functools
import math

import numpy as np

from detectors._merge import SortedSampleTest

__all__ = ["AndersonTest"]

#: The p-values tabulated by Scholz and Stephens (1987), and their critical values for two samples
#: (``b0 + b1 / sqrt(k - 1) + b2 / (k - 1)`` with k = 2): the p-value is interpolated between them.
SIGNIFICANCE = np.array([0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
CRITICAL = (
    np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
    + np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
    + np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])
)
_LOG_P_FIT = np.polyfit(CRITICAL, np.log(SIGNIFICANCE), 2)


class AndersonTest(SortedSampleTest):
    """Anderson-Darling two-sample test; drift when ``p_value < threshold`` (0.1, Evidently's default).

    Equals ``scipy.stats.anderson_ksamp([reference, window], variant="midrank")``
    (scipy's default variant, the one Evidently calls), ties included: the
    standardised statistic, and the p-value interpolated from Scholz and
    Stephens' table. ``fit`` sorts the reference once; a window costs one sort
    and one merge.

    Parameters
    ----------
    threshold
        Significance level; None takes 0.1.

    Notes
    -----
    The p-value is capped at 0.25 and floored at 0.001, the ends of the table,
    as scipy does (scipy warns when it caps; this class, which reimplements the
    computation, has no warning to silence). So a threshold above 0.25 flags
    every window and one at or below 0.001 none.

    When reference and window hold one and the same value, scipy raises; here
    the unstandardised statistic is 0 (the two empirical CDFs are equal), so the
    p-value is the cap.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = AndersonTest().fit(rng.normal(size=2_000))
    >>> result = test.score(rng.normal(loc=0.12, size=500))
    >>> round(result.statistic, 3), round(result.p_value, 4), result.drifted
    (1.716, 0.0637, True)
    """

    name = "anderson"
    has_p_value = True
    default_threshold = 0.1

    def _statistic(self, window: np.ndarray) -> tuple[float, float, float]:
        merged, n_window_upto = self._merge(window)
        m, n = self._fitted(self._reference).size, window.size
        run_starts = np.flatnonzero(np.append(True, merged[1:] != merged[:-1]))
        a2akn = _midrank_a2akn(run_starts, n_window_upto, m, n) if run_starts.size > 1 else 0.0
        statistic = (a2akn - 1) / _sigma(m, n)  # k - 1 = 1 is the statistic's mean under no drift
        if statistic < CRITICAL.min():
            return statistic, float(SIGNIFICANCE.max()), 0.0
        if statistic > CRITICAL.max():
            return statistic, float(SIGNIFICANCE.min()), 0.0
        return statistic, math.exp(np.polyval(_LOG_P_FIT, statistic)), 0.0


def _midrank_a2akn(run_starts: np.ndarray, n_window_upto: np.ndarray, m: int, n: int) -> float:
    """Scholz and Stephens' A2akN (their equation 7) from the runs of equal values in the merged samples."""
    total = n_window_upto.size
    run_lengths = np.diff(np.append(run_starts, total))
    n_window_right = n_window_upto[run_starts + run_lengths - 1]  # window values <= each distinct value
    n_window_ties = np.diff(n_window_right, prepend=0)  # window values == each distinct value
    n_reference_right = run_starts + run_lengths - n_window_right
    n_reference_ties = run_lengths - n_window_ties
    midrank = run_starts + run_lengths / 2.0
    a2akn = 0.0
    for n_right, n_ties, size in ((n_reference_right, n_reference_ties, m), (n_window_right, n_window_ties, n)):
        below = n_right - n_ties / 2.0
        inner = (
            run_lengths / float(total) * (total * below - midrank * size) ** 2
            / (midrank * (total - midrank) - total * run_lengths / 4.0)
        )  # fmt: skip
        a2akn += inner.sum() / size
    return a2akn * (total - 1.0) / total


@functools.lru_cache(maxsize=16)
def _sigma(m: int, n: int) -> float:
    """Standard deviation of A2akN under no drift for two samples of m and n values (depends on the sizes only)."""
    k, total = 2, m + n
    harmonic = (1.0 / np.array([m, n])).sum()
    tail_sums = (1.0 / np.arange(total - 1, 1, -1)).cumsum()
    h = tail_sums[-1] + 1
    g = (tail_sums / np.arange(2, total)).sum()
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * harmonic
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * harmonic - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * harmonic + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    variance = (a * total**3 + b * total**2 + c * total + d) / ((total - 1.0) * (total - 2.0) * (total - 3.0))
    return math.sqrt(variance)

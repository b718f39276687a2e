"""Two-sided two-sample Kolmogorov-Smirnov test with the asymptotic p-value."""

from __future__ import annotations

import numpy as np
from scipy.stats import kstwo

from detectors._merge import SortedSampleTest

__all__ = ["KSTest"]


class KSTest(SortedSampleTest):
    """Largest gap between the empirical CDFs, and its p-value; drift when ``p_value < threshold``.

    Equals ``scipy.stats.ks_2samp(reference, window, method="asymp")``, ties
    included: the statistic is evaluated at the end of each run of equal
    values, and the p-value is ``scipy.stats.kstwo.sf(d, round(m * n / (m + n)))``.
    ``fit`` sorts the reference once; a window costs one sort and one merge.

    Parameters
    ----------
    threshold
        Significance level; None takes 0.05.

    Notes
    -----
    The daemon always uses the asymptotic distribution. scipy's default
    ``method="auto"`` (which Evidently calls) switches to an exact O(m * n)
    computation when both samples have at most 10,000 values, so small samples'
    p-values differ from Evidently's somewhat; the statistic is the same.
    Evidently flags drift at ``p_value <= threshold``, the base class at ``<``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = KSTest().fit(rng.normal(size=2_000))
    >>> result = test.score(rng.normal(loc=0.2, size=500))
    >>> round(result.statistic, 4), round(result.p_value, 6), result.drifted
    (0.0785, 0.013663, True)
    """

    name = "ks"
    has_p_value = True
    default_threshold = 0.05

    def _statistic(self, window: np.ndarray) -> tuple[float, float, float]:
        merged, n_window_upto = self._merge(window)
        m, n = self._fitted(self._reference).size, window.size
        run_ends = np.append(merged[1:] != merged[:-1], True)  # where both CDFs are exact
        n_window = n_window_upto[run_ends]
        differences = (np.flatnonzero(run_ends) + 1 - n_window) / m - n_window / n
        d = max(float(differences.max()), float(np.clip(-differences.min(), 0.0, 1.0)))
        larger, smaller = max(m, n), min(m, n)
        p_value = float(np.clip(kstwo.sf(d, np.round(larger * smaller / (larger + smaller))), 0.0, 1.0))
        return d, p_value, 0.0

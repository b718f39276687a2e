"""Chi-square test of homogeneity between the reference's and a window's category counts."""

from __future__ import annotations

import numpy as np
from scipy.special import chdtrc

from detectors._binning import Categories
from detectors._two_sample import TwoSampleTest

__all__ = ["ChiSquareTest"]


class ChiSquareTest(TwoSampleTest):
    """Pearson's chi-square on the 2 x K table of reference and window counts; drift when ``p_value < threshold``.

    The columns are the reference's categories plus one "unseen" column that
    pools the window's labels the reference never saw (their share is the
    result's ``unseen_share``); a column empty in both rows is dropped. Equals
    ``scipy.stats.chi2_contingency(table, correction=False)`` on that table:
    statistic ``sum((observed - expected) ** 2 / expected)`` with
    ``expected = row total * column total / grand total``, K - 1 degrees of
    freedom (a single column: statistic 0, p-value 1).

    Parameters
    ----------
    threshold
        Significance level; None takes 0.05.

    Notes
    -----
    Evidently runs a goodness-of-fit test, ``chisquare(f_obs=window counts,
    f_exp=reference counts * n / m)``, over the union of both samples' labels: a
    label unseen in the reference has an expected count of 0 and the statistic
    divides by zero. The test of homogeneity treats both samples as samples
    (the reference is finite too), so every expected count is positive. With no
    unseen label and a reference much larger than the window the two agree: the
    expected window counts tend to ``reference counts * n / m`` and the reference
    row's terms vanish.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = ChiSquareTest().fit(rng.choice(["a", "b", "c"], size=1_000))
    >>> result = test.score(rng.choice(["a", "b", "c"], size=300))
    >>> round(result.statistic, 3), round(result.p_value, 3), result.drifted
    (2.124, 0.346, False)
    >>> result = test.score(rng.choice(["a", "b", "c", "d"], size=300, p=[0.3, 0.3, 0.3, 0.1]))
    >>> round(result.statistic, 1), f"{result.p_value:.1e}", round(result.unseen_share, 3), result.drifted
    (85.1, '2.4e-18', 0.083, True)
    """

    name = "chisquare"
    kinds = ("categorical",)
    has_p_value = True
    default_threshold = 0.05

    def _reset(self) -> None:
        super()._reset()
        self._categories: Categories | None = None
        self._reference_counts: np.ndarray | None = None

    def _fit(self, reference: np.ndarray) -> None:
        self._categories = Categories(reference)
        self._reference_counts = self._categories.count(reference)  # the unseen column is 0

    def _statistic(self, window: np.ndarray) -> tuple[float, float, float]:
        window_counts = self._fitted(self._categories).count(window)
        unseen_share = window_counts[-1] / window.size
        observed = np.array([self._fitted(self._reference_counts), window_counts], dtype=float)
        if window_counts[-1] == 0:
            observed = observed[:, :-1]  # no unseen label: the column is empty in both rows
        dof = observed.shape[1] - 1
        if dof == 0:
            return 0.0, 1.0, float(unseen_share)
        rows = observed.sum(axis=1, keepdims=True)
        expected = rows * observed.sum(axis=0, keepdims=True) / observed.sum()
        statistic = float(((observed - expected) ** 2 / expected).sum())
        return statistic, float(chdtrc(dof, statistic)), float(unseen_share)

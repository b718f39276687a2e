"""Population Stability Index between the reference's and a window's bucket proportions."""

from __future__ import annotations

import numpy as np

from detectors._binning import BinnedTest

__all__ = ["PSITest"]

#: Stands in for an empty bucket's proportion, so that its log stays finite (Evidently's value).
EPSILON = 1e-4


class PSITest(BinnedTest):
    """Population Stability Index: ``sum((p_ref - p_win) * ln(p_ref / p_win))`` over buckets.

    Buckets are fitted on the reference: for numbers ``n_bins`` bins between its
    quantiles (open outer edges, equal edges collapsed), for labels its categories
    plus one bucket for unseen labels. An empty bucket's proportion, on either
    side, counts as ``EPSILON`` (1e-4), so a window with unseen labels scores
    high instead of infinite. Drift when the index is at or above ``threshold``
    (0.1 by default; 0.25 is the customary "major shift").

    Parameters
    ----------
    threshold
        Drift when the index is at or above it; None takes 0.1.
    kind
        ``"numeric"`` or ``"categorical"``.
    n_bins
        Number of quantile bins for numbers.

    Notes
    -----
    Evidently bins numbers on equal-width "sturges" edges over reference and
    window together, which needs the window at fit time; reference quantiles let
    ``fit`` fix the bins once. Evidently replaces an empty bucket's 0 with
    ``min / 1e6`` when the smallest non-empty proportion is below 1e-4; here it is
    always 1e-4.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = PSITest().fit(rng.normal(size=5_000))
    >>> round(test.score(rng.normal(size=5_000)).statistic, 4)
    0.0055
    >>> result = test.score(rng.normal(loc=0.5, size=5_000))
    >>> round(result.statistic, 3), result.drifted
    (0.254, True)
    """

    name = "psi"
    default_threshold = 0.1
    null_exponent = 1.0  # a divergence: a sum of squared differences of shares, like chi-square

    def _distance(self, reference_share: np.ndarray, window_share: np.ndarray) -> float:
        reference_share = np.where(reference_share == 0.0, EPSILON, reference_share)
        window_share = np.where(window_share == 0.0, EPSILON, window_share)
        return float(np.sum((reference_share - window_share) * np.log(reference_share / window_share)))

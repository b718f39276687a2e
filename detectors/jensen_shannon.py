"""Jensen-Shannon distance between the reference's and a window's bucket proportions."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon

from detectors._binning import BinnedTest

__all__ = ["JensenShannonTest"]


class JensenShannonTest(BinnedTest):
    """``scipy.spatial.distance.jensenshannon`` (natural log, so in [0, sqrt(ln 2)]) of bucket proportions.

    Buckets are fitted on the reference: for numbers ``n_bins`` bins between its
    quantiles (open outer edges, equal edges collapsed), for labels its categories
    plus one bucket for unseen labels. Empty buckets need no smoothing. Drift when
    the distance is at or above ``threshold`` (0.1 by default, as in Evidently).

    Parameters
    ----------
    threshold
        Drift when the distance is at or above it; None takes 0.1.
    kind
        ``"numeric"`` or ``"categorical"``.
    n_bins
        Number of quantile bins for numbers.

    Notes
    -----
    For labels this equals Evidently's ``jensenshannon`` whenever the window has
    at most one unseen label (Evidently keeps each unseen label apart; one
    bucket for all of them lets ``fit`` fix the buckets). For numbers Evidently
    bins on equal-width "sturges" edges over reference and window together;
    reference quantiles let ``fit`` fix the bins once.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = JensenShannonTest(kind="categorical").fit(rng.choice(["a", "b", "c"], size=5_000))
    >>> round(test.score(rng.choice(["a", "b", "c"], size=5_000)).statistic, 4)
    0.0045
    >>> result = test.score(rng.choice(["a", "b", "c", "d"], size=5_000, p=[0.2, 0.2, 0.2, 0.4]))
    >>> round(result.statistic, 3), result.unseen_share, result.drifted
    (0.405, 0.4002, True)
    """

    name = "jensenshannon"
    default_threshold = 0.1
    null_exponent = 0.5

    def _distance(self, reference_share: np.ndarray, window_share: np.ndarray) -> float:
        return float(jensenshannon(reference_share, window_share))

"""How heavy a sample's tails are: Hill's estimate of the tail index, on the heavier of its two tails.

A tail index ``a`` says the tail falls off as ``x ** -a``: a Pareto law of
index ``a`` has a variance only when ``a > 2``, and a normal law's tails
are lighter than any power (its estimate is large). The estimate here is
taken over distances from the median, so that it does not change when the
values are shifted or scaled; it reads a pure power tail low (a Pareto law
of index 1.5 as 1.3, of index 3 as 1.9, on 200,000 values), and the cut
:data:`HEAVY_TAIL_INDEX` is measured on it as it is.

Calibrated distance thresholds need a light tail: a split of the reference
stands for a fresh window only if a window's new extremes are not much
farther out than the reference's own (see
:class:`~detectors.calibrated_distance.CalibratedDistance`), so ``auto``
tests a numeric feature whose reference is :func:`heavy_tailed` with ``ks``,
whose p-value holds whatever the tails (:func:`~detectors.registry.auto_method`).

>>> rng = np.random.default_rng(0)
>>> round(tail_index(rng.pareto(1.5, 5_000)), 1), round(tail_index(rng.normal(size=5_000)), 1)
(1.3, 4.1)
>>> heavy_tailed(rng.lognormal(0.0, 2.0, 2_000)), heavy_tailed(rng.exponential(size=2_000))
(True, False)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["HEAVY_TAIL_INDEX", "TAIL_SHARE", "heavy_tailed", "tail_index"]

#: The share of a sample, at each end, whose distances from the median the index is estimated on.
TAIL_SHARE = 0.05
#: Below this estimated index a reference's tail is too heavy for a calibrated Wasserstein threshold. Measured on
#: references of 2,000 values and windows of 200 to 2,000 (1,200 pairs each): lognormals of spread 1.5 and 2 (median
#: estimates 1.5 and 1.2) and a Pareto law of index 1.5 (1.3) drew 1.8 to 4.3 times alpha 0.01 in false alarms; the
#: references of a lognormal of spread 1 (2.1) and of a Pareto law of index 3 (1.9) estimated at 2 or more drew 0.004
#: and 0.007. A cut at 1.75 left the lighter-looking references of the spread 1.5, whose windows then drew 0.057: the
#: estimate is noisy, so the cut errs towards ``ks``.
HEAVY_TAIL_INDEX = 2.0
_MIN_TAIL = 10  # values in a tail, at the least, for an estimate


def tail_index(values: np.ndarray) -> float:
    """Hill's estimate of the tail index of the heavier tail: over the ``k`` largest distances from the median on
    each side (``k`` = ``TAIL_SHARE`` of the values, at least 10), ``1 / mean(log(d_i / d_(k+1)))``; infinite when a
    side has too few values beyond the median to tell (a sample of few distinct values has no tail to speak of).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.inf
    median = float(np.median(values))
    k = max(_MIN_TAIL, int(TAIL_SHARE * values.size))
    indices = [math.inf]
    for distances in (values - median, median - values):
        beyond = distances[distances > 0]
        if beyond.size <= k:
            continue
        top = np.sort(np.partition(beyond, beyond.size - k - 1)[beyond.size - k - 1 :])  # the k + 1 largest
        mean_log = float(np.mean(np.log(top[1:] / top[0])))
        if mean_log > 0:
            indices.append(1.0 / mean_log)
    return min(indices)


def heavy_tailed(values: np.ndarray) -> bool:
    """Whether the sample's heavier tail has an estimated index below ``HEAVY_TAIL_INDEX``."""
    return tail_index(values) < HEAVY_TAIL_INDEX

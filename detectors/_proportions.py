"""Shares and their intervals, NaN where undefined: the arithmetic the quality, fairness and accuracy figures share.

Nothing here warns on an empty window or a zero denominator (the suite turns
``RuntimeWarning`` into an error): an undefined figure is simply NaN.
"""

from __future__ import annotations

from functools import cache
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

__all__ = ["nan_mean", "ratio", "wilson_interval"]


@overload
def ratio(numerator: float, denominator: float) -> float: ...
@overload
def ratio(numerator: NDArray[Any], denominator: NDArray[Any] | float) -> NDArray[np.float64]: ...
@overload
def ratio(numerator: float, denominator: NDArray[Any]) -> NDArray[np.float64]: ...
def ratio(numerator: NDArray[Any] | float, denominator: NDArray[Any] | float) -> NDArray[np.float64] | float:
    """``numerator / denominator`` elementwise, NaN where the denominator is 0; a float for scalar inputs.

    >>> ratio(np.array([1, 0, 3]), np.array([4, 0, 6])).tolist(), ratio(0, 0)
    ([0.25, nan, 0.5], nan)
    """
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    quotient = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=quotient, where=denominator != 0)
    return quotient if quotient.ndim else float(quotient)


def nan_mean(values: np.ndarray) -> float:
    """Mean of the values that are not NaN; NaN when there are none.

    >>> nan_mean(np.array([1.0, np.nan, 0.0, 1.0])), nan_mean(np.array([np.nan]))
    (0.6666666666666666, nan)
    """
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    return ratio(present.sum(), present.size)


def wilson_interval(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion ``successes / n``, elementwise; NaN where ``n`` is 0.

    The same arithmetic as statsmodels' ``proportion_confint(successes, n,
    alpha=1 - confidence, method="wilson")``, which clips the bounds to [0, 1];
    these are clipped to [0, p] and [p, 1] instead, so that rounding at p = 0
    or 1 cannot leave the proportion outside its own interval.
    Unlike the normal approximation it stays inside [0, 1] and keeps its
    coverage for small ``n`` and proportions near 0 or 1.

    >>> lower, upper = wilson_interval(np.array([0, 45]), np.array([20, 50]), 0.95)
    >>> np.round(lower, 4).tolist(), np.round(upper, 4).tolist()
    ([0.0, 0.7864], [0.1611, 0.9565])
    """
    z = _quantile(confidence)
    p = ratio(successes, n)
    inverse_n = ratio(1.0, n)
    z2_over_n = z * z * inverse_n
    denominator = 1.0 + z2_over_n
    center = (p + z2_over_n / 2.0) / denominator
    half_width = z * np.sqrt(p * (1.0 - p) * inverse_n + z2_over_n * inverse_n / 4.0) / denominator
    return np.clip(center - half_width, 0.0, p), np.clip(center + half_width, p, 1.0)


@cache
def _quantile(confidence: float) -> float:
    """The normal quantile a two-sided ``confidence`` interval spans, once per level (scipy's call costs 0.2 ms)."""
    return float(norm.isf((1.0 - confidence) / 2.0))

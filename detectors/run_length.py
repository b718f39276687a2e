"""Average run lengths of the CUSUM-type change detectors: from a decision interval, and back.

A two-sided CUSUM (or Page-Hinkley without forgetting) on standardised values,
with allowance ``k`` and decision interval ``h`` in standard deviations,
raises a false change on average every ``arl`` values of a stream that does
not change. Siegmund's approximation (Siegmund, *Sequential Analysis*, 1985;
Montgomery, *Statistical Quality Control*, 9.1.5) gives it for one side,
``(exp(2 k b) - 2 k b - 1) / (2 k**2)`` with ``b = h + 1.166``; the two sides
together alarm twice as often. :func:`decision_interval` inverts it, so a
detector is configured by the false-alarm rate it should have.

>>> round(two_sided_arl(h=5.0, k=0.5))  # Montgomery's table 9.3 gives 465 by simulation
469
>>> round(decision_interval(arl=10_000, k=0.5), 3)
8.045
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

__all__ = ["decision_interval", "two_sided_arl"]


def two_sided_arl(h: float, k: float) -> float:
    """Values between false changes of a two-sided CUSUM with allowance ``k`` and decision interval ``h``."""
    if k <= 0.0:
        raise ValueError(f"the allowance k must be > 0 (got {k!r})")
    b = 2.0 * k * (h + 1.166)
    return (math.exp(b) - b - 1.0) / (2.0 * k * k) / 2.0


def decision_interval(arl: float, k: float) -> float:
    """The decision interval ``h`` (in standard deviations) whose two-sided ARL without change is ``arl``."""
    if not arl > two_sided_arl(0.0, k):
        raise ValueError(f"an average run length of {arl!r} is shorter than the shortest possible at k={k}")
    return float(brentq(lambda h: two_sided_arl(h, k) - arl, 0.0, 1.0 + math.log(4.0 * k * k * arl + 2.0) / k))

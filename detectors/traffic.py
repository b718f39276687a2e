"""Traffic statistics of a window: latency quantiles, the error ratio and cost per call quantiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.results import TrafficResult

__all__ = ["TrafficStats"]


class TrafficStats:
    """Latency quantiles (numpy's default linear interpolation), share of failed calls, and cost quantiles.

    Parameters
    ----------
    quantiles
        The quantiles to report, each in [0, 1].

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> latency_ms = rng.lognormal(mean=6.0, sigma=0.5, size=1_000)
    >>> latency_ms[::100] = np.nan  # calls that reported no latency
    >>> failed = rng.random(1_000) < 0.02
    >>> result = TrafficStats(quantiles=(0.5, 0.99)).compute(latency_ms, failed)
    >>> result.n_latencies, [round(value) for _, value in result.latency_quantiles_ms]
    (990, [390, 1160])
    >>> result.error_ratio
    0.02
    """

    def __init__(self, quantiles: Sequence[float] = (0.5, 0.9, 0.95, 0.99)):
        self.quantiles = tuple(quantiles)
        if not all(0.0 <= q <= 1.0 for q in self.quantiles):
            raise ValueError("quantiles must lie in [0, 1]")

    def compute(self, latency_ms: np.ndarray, failed: np.ndarray, cost: np.ndarray | None = None) -> TrafficResult:
        """Statistics of one window (``cost``: each call's, if known); NaN latencies and costs (not reported) are
        left out of the quantiles."""
        latencies = latency_ms[~np.isnan(latency_ms)]
        return TrafficResult(
            n_events=len(failed),
            n_latencies=int(latencies.size),
            latency_quantiles_ms=self.quantiles_of(latencies),
            error_ratio=float(np.mean(failed)) if len(failed) else float("nan"),
            cost_quantiles=() if cost is None else self.quantiles_of(cost[~np.isnan(cost)]),
        )

    def quantiles_of(self, values: np.ndarray) -> tuple[tuple[float, float], ...]:
        """Each quantile paired with its value; none of no values."""
        return tuple(zip(self.quantiles, np.quantile(values, self.quantiles).tolist())) if values.size else ()

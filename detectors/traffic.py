"""Traffic statistics of a window: latency quantiles and the error ratio."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.results import TrafficResult

__all__ = ["TrafficStats"]


class TrafficStats:
    """Latency quantiles (numpy's default linear interpolation) and share of failed calls.

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

    def compute(self, latency_ms: np.ndarray, failed: np.ndarray) -> TrafficResult:
        """Statistics of one window; NaN latencies (not reported) are left out of the quantiles."""
        latencies = latency_ms[~np.isnan(latency_ms)]
        values = np.quantile(latencies, self.quantiles).tolist() if latencies.size else []
        return TrafficResult(
            n_events=len(failed),
            n_latencies=int(latencies.size),
            latency_quantiles_ms=tuple(zip(self.quantiles, values)),
            error_ratio=float(np.mean(failed)) if len(failed) else float("nan"),
        )

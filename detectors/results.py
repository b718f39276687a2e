"""The results detectors return: frozen dataclasses that ``monitor`` exports and ``alerts`` reads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrafficResult"]


@dataclass(frozen=True)
class TrafficResult:
    """Latency quantiles and error ratio of one window.

    ``latency_quantiles_ms`` pairs each quantile with its value, and is empty
    when no event of the window carried a latency.
    """

    n_events: int
    n_latencies: int
    latency_quantiles_ms: tuple[tuple[float, float], ...]
    error_ratio: float

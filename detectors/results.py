"""The results detectors return: frozen dataclasses that ``monitor`` exports and ``alerts`` reads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DriftResult", "ModelDrift", "TrafficResult"]


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


@dataclass(frozen=True)
class DriftResult:
    """One feature's two-sample test of a window against the reference.

    For a test with a p-value, ``threshold`` is the significance level and the
    feature drifted when ``p_value < threshold``; for a distance (``p_value`` is
    None) it drifted when ``statistic >= threshold``. ``unseen_share`` is the
    share of window values in categories the reference never saw (0 for numbers).
    """

    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    unseen_share: float = 0.0


@dataclass(frozen=True)
class ModelDrift:
    """One model's window against its reference: each tested feature's result, corrected together.

    ``features`` maps a feature's label (a text feature's descriptors are
    ``prompt.length_chars`` and so on) to its result; features with too few
    values on either side are not tested and not listed.
    """

    features: dict[str, DriftResult]
    n_window: int
    n_reference: int
    reference_age_ms: float

    @property
    def drifted(self) -> list[str]:
        """Labels of the features that drifted."""
        return [label for label, result in self.features.items() if result.drifted]

    @property
    def drift_share(self) -> float:
        """Share of the tested features that drifted (0 when none could be tested)."""
        return len(self.drifted) / len(self.features) if self.features else 0.0

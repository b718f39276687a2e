"""An alert as the rule engine hands it to sinks and to the retraining queue."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Alert"]


@dataclass(frozen=True)
class Alert:
    """One firing (or just resolved) alert of one rule on one series.

    ``labels`` hold ``alertname``, ``severity``, the series' own labels
    (``model``, ``feature`` ...) and the rule's extra labels; ``fingerprint``
    is stable for the rule and series, so sinks and the retraining queue can
    deliver each transition once. Times are event time in milliseconds
    (``ends_at_ms`` is None while firing). ``actions`` are the rule's action
    names (``alertmanager``, ``webhook``, ``log``, ``retrain``, ``rollback``).
    """

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # "firing" or "resolved"
    value: float
    starts_at_ms: float
    ends_at_ms: float | None
    actions: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.labels["alertname"]

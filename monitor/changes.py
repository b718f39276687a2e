"""Online change detection on each model's tick-level summaries: latency p50 and p95, error ratio.

Every evaluation feeds the window's summaries to one change detector per
signal (ADWIN, Page-Hinkley or CUSUM, river's ``update`` protocol), and a
detection is counted in ``driftwarden_changes_total``: alert on its
``increase()``. Consecutive windows overlap, so successive values are not
independent; read a detection as "the window's level moved", not as a
calibrated test. Latencies are fed in milliseconds, which matters for
Page-Hinkley's absolute ``threshold`` (CUSUM and ADWIN scale themselves).

>>> import numpy as np
>>> from detectors.results import TrafficResult
>>> rng = np.random.default_rng(7)
>>> watch = ChangeWatch("adwin")
>>> for tick in range(300):  # p95 latency moves from about 800 ms to about 1000 ms at tick 200
...     p95_ms = rng.normal(800 if tick < 200 else 1000, 30)
...     changed = watch.update(TrafficResult(1000, 1000, ((0.5, p95_ms / 2), (0.95, p95_ms)), 0.01))
...     if changed:
...         print(tick, changed)
223 ['latency_p50', 'latency_p95']

ADWIN's bound assumes values in [0, 1] for its small-sample term, so on an
error ratio it needs a large move (0.01 to 0.2 over some dozens of ticks)
before it is sure; that is the price of its few false alarms.
"""

from __future__ import annotations

import math

from detectors.registry import CHANGE_DETECTORS
from detectors.results import TrafficResult

__all__ = ["SIGNALS", "ChangeWatch"]

#: The summaries watched, by the ``metric`` label they are counted under.
SIGNALS = ("latency_p50", "latency_p95", "error_ratio")


class ChangeWatch:
    """One model's change detectors (none when ``method`` is None) and the changes each has found."""

    def __init__(self, method: str | None):
        self.method = method
        self._detectors = {signal: CHANGE_DETECTORS[method]() for signal in SIGNALS} if method else {}
        self.n_changes = dict.fromkeys(self._detectors, 0)

    def update(self, traffic: TrafficResult) -> list[str]:
        """Feed one evaluation's summaries; return the signals whose change completed with it."""
        quantiles = dict(traffic.latency_quantiles_ms)
        values = {
            "latency_p50": quantiles.get(0.5, math.nan),
            "latency_p95": quantiles.get(0.95, math.nan),
            "error_ratio": traffic.error_ratio,
        }
        changed = []
        for signal, detector in self._detectors.items():
            if math.isfinite(values[signal]):
                detector.update(values[signal])
                if detector.drift_detected:
                    self.n_changes[signal] += 1
                    changed.append(signal)
        return changed

    def snapshot(self) -> dict:
        return {
            "n_changes": self.n_changes,
            "detectors": {signal: detector.snapshot() for signal, detector in self._detectors.items()},
        }

    def restore(self, snapshot: dict) -> None:
        self.n_changes = dict(snapshot["n_changes"])
        for signal, saved in snapshot["detectors"].items():
            self._detectors[signal].restore(saved)

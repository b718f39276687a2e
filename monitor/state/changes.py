"""Online change detection on each model's latency p50 and p95 and error ratio, block by block.

A model's inference events are cut into consecutive blocks of ``block_size``
events (``windows.min_samples``) as they arrive; each complete block's
summaries feed one change detector per signal (ADWIN, Page-Hinkley or CUSUM,
river's ``update`` protocol), and each detection is counted in
``driftwarden_changes_total``: alert on its ``increase()``. Blocks do not
overlap, so the detectors see independent values, and they depend on the
events alone, not on when batches or ticks fall, so a replay counts the same
changes as the live daemon. This runs with each batch (a few small quantiles
per ``block_size`` events), and the partial block is part of the checkpoint.
Latencies are fed in milliseconds, which matters for Page-Hinkley's absolute
``threshold`` (CUSUM and ADWIN scale themselves).

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> watch = ChangeWatch("adwin", block_size=100)
>>> for block in range(300):  # latency moves from about 800 ms to about 1000 ms at block 200
...     latency_ms = rng.normal(800 if block < 200 else 1000, 60, size=100)
...     changed = watch.observe(latency_ms, np.zeros(100, dtype=bool))
...     if changed:
...         print(block, changed)
223 ['latency_p50', 'latency_p95']
"""

from __future__ import annotations

import math

import numpy as np

from detectors.registry import CHANGE_DETECTORS
from detectors.traffic import TrafficStats

__all__ = ["SIGNALS", "ChangeWatch"]

#: The summaries watched, by the ``metric`` label they are counted under.
SIGNALS = ("latency_p50", "latency_p95", "error_ratio")


class ChangeWatch:
    """One model's change detectors (none when ``method`` is None) and the changes each has found."""

    def __init__(self, method: str | None, block_size: int):
        self.method = method
        self.block_size = block_size
        self._detectors = {signal: CHANGE_DETECTORS[method]() for signal in SIGNALS} if method else {}
        self._stats = TrafficStats(quantiles=(0.5, 0.95))
        self._pending = {"latency_ms": np.empty(0), "failed": np.empty(0, dtype=np.bool_)}
        self.n_changes = dict.fromkeys(self._detectors, 0)

    def observe(self, latency_ms: np.ndarray, failed: np.ndarray) -> list[str]:
        """Take a batch's events; feed every block it completes; return the signals whose change completed."""
        if not self._detectors:
            return []
        latency_ms = np.concatenate((self._pending["latency_ms"], latency_ms))
        failed = np.concatenate((self._pending["failed"], failed))
        complete = len(latency_ms) // self.block_size * self.block_size
        self._pending = {"latency_ms": latency_ms[complete:], "failed": failed[complete:]}
        changed = []
        for values in self._summaries(latency_ms[:complete], failed[:complete]):
            for signal, detector in self._detectors.items():
                if math.isfinite(values[signal]):
                    detector.update(values[signal])
                    if detector.drift_detected:
                        self.n_changes[signal] += 1
                        changed.append(signal)
        return changed

    def _summaries(self, latency_ms: np.ndarray, failed: np.ndarray) -> list[dict[str, float]]:
        """Each complete block's signals, in order; one vectorised pass when no latency is missing."""
        n_blocks = len(latency_ms) // self.block_size
        if n_blocks == 0:
            return []
        if np.isnan(latency_ms).any():  # rare: a block without latencies has no quantiles
            blocks = [self._stats.compute(latency_ms[i : i + self.block_size], failed[i : i + self.block_size])
                      for i in range(0, len(latency_ms), self.block_size)]  # fmt: skip
            rows = [(dict(block.latency_quantiles_ms), block.error_ratio) for block in blocks]
            p50 = [quantiles.get(0.5, math.nan) for quantiles, _ in rows]
            p95 = [quantiles.get(0.95, math.nan) for quantiles, _ in rows]
            error_ratio = [ratio for _, ratio in rows]
        else:
            ordered = np.sort(latency_ms.reshape(n_blocks, -1), axis=1)
            p50, p95 = _quantile(ordered, 0.5).tolist(), _quantile(ordered, 0.95).tolist()
            error_ratio = failed.reshape(n_blocks, -1).mean(axis=1).tolist()
        return [{"latency_p50": a, "latency_p95": b, "error_ratio": c} for a, b, c in zip(p50, p95, error_ratio)]

    def snapshot(self) -> dict:
        return {
            "pending": self._pending,
            "n_changes": self.n_changes,
            "detectors": {signal: detector.snapshot() for signal, detector in self._detectors.items()},
        }

    def restore(self, snapshot: dict) -> None:
        self._pending = {
            "latency_ms": np.asarray(snapshot["pending"]["latency_ms"], dtype=np.float64),
            "failed": np.asarray(snapshot["pending"]["failed"], dtype=np.bool_),
        }
        self.n_changes = dict(snapshot["n_changes"])
        for signal, saved in snapshot["detectors"].items():
            self._detectors[signal].restore(saved)


def _quantile(rows: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each sorted row, as ``np.quantile`` computes it (linear, bit for bit) without its
    fixed cost (40 us a call, more than the rest of a batch's change watch, measured).

    >>> rows = np.sort(np.random.default_rng(3).lognormal(6, 1, size=(4, 200)), axis=1)
    >>> all(np.array_equal(_quantile(rows, q), np.quantile(rows, q, axis=1)) for q in (0.0, 0.5, 0.95, 0.99, 1.0))
    True
    """
    position = (rows.shape[1] - 1) * q
    below = math.floor(position)
    if below >= rows.shape[1] - 1:
        return rows[:, -1]
    gamma = position - below
    low, high = rows[:, below], rows[:, below + 1]
    step = high - low
    return high - step * (1 - gamma) if gamma >= 0.5 else low + step * gamma

"""A Prometheus-style cumulative histogram kept in numpy and filled a batch at a time.

prometheus-client's ``Histogram.observe`` takes a lock and walks the buckets
for every value, which costs more than decoding the event did. Here a whole
batch is bucketed with one ``searchsorted`` and one ``bincount``; the
exporter yields the counts at scrape time, and they are plain arrays that a
checkpoint can save and restore.

The sum is kept exactly, as an integer count of thousandths of the observed
unit (microseconds, for milliseconds), so it does not depend on how the
observations were split into batches: a replay and a Kafka run of the same
events export the same ``_sum``. For that sum only, an observation counts at
most :data:`MAX_SUMMED` (the ``+Inf`` bucket still counts it as it is).

Counters cannot outgrow a checkpoint (msgpack integers end at 2**64): a count
that adds amounts taken from events, like this sum or a model's tokens, stops
at :data:`MAX_COUNT` (saturates) rather than passing it. Below that it stays
an exact integer, which float64 counters would stop being at 2**53; it is not
reached by real traffic (2**63 microseconds of latency is 292,000 years). Counts
that grow by one per event, like the buckets, cannot reach it at all.

>>> histogram = Histogram(bounds=[100.0, 500.0])
>>> histogram.observe(np.array([50.0, 100.0, 250.0, 900.0, np.nan]))
>>> histogram.cumulative_counts().tolist(), histogram.total
([2, 3, 4], 1300.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_COUNT", "MAX_SUMMED", "Histogram"]

#: The largest value the sum adds (1e9 ms is 11.6 days): int64 thousandths of
#: it cannot overflow for batches of fewer than nine million observations.
MAX_SUMMED = 1e9
#: Where a count of amounts saturates: int64's largest, which numpy, msgpack and a float64 exposition all hold.
MAX_COUNT = 2**63 - 1


class Histogram:
    """Counts of observations ``<=`` each upper bound (Prometheus ``le``), plus ``+Inf``."""

    def __init__(self, bounds: Sequence[float]):
        self.bounds = np.asarray(bounds, dtype=np.float64)
        if self.bounds.ndim != 1 or not np.all(np.isfinite(self.bounds)) or np.any(np.diff(self.bounds) <= 0):
            raise ValueError("bounds must be finite and strictly increasing")
        self._reset()

    def _reset(self) -> None:
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self._total_thousandths = 0

    def observe(self, values: np.ndarray) -> None:
        """Add every non-NaN value of ``values``."""
        values = values[~np.isnan(values)]
        if values.size:
            buckets = np.searchsorted(self.bounds, values, side="left")
            self.counts += np.bincount(buckets, minlength=len(self.counts))
            thousandths = np.rint(np.minimum(values, MAX_SUMMED) * 1000.0).astype(np.int64)
            self._total_thousandths = min(self._total_thousandths + int(thousandths.sum()), MAX_COUNT)

    def snapshot(self) -> dict:
        return {"counts": self.counts, "total_thousandths": self._total_thousandths}

    def restore(self, snapshot: dict) -> None:
        if snapshot["counts"].shape != self.counts.shape:
            raise ValueError(f"the saved histogram has {len(snapshot['counts'])} buckets, not {len(self.counts)}")
        self.counts = snapshot["counts"].astype(np.int64)
        self._total_thousandths = snapshot["total_thousandths"]

    @property
    def total(self) -> float:
        """The sum of all observations, to a thousandth of their unit."""
        return self._total_thousandths / 1000.0

    @property
    def n_observed(self) -> int:
        return int(self.counts.sum())

    def cumulative_counts(self) -> np.ndarray:
        """Counts per ``le`` bound, cumulative, the last one being ``+Inf``."""
        return np.cumsum(self.counts)

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
        #: Each bucket's latest exemplar (by index, ``+Inf`` last): trace id, value, timestamp in ms.
        self.exemplars: dict[int, tuple[str, float, float]] = {}

    def observe(self, values: np.ndarray) -> None:
        """Add every non-NaN value of ``values``."""
        values = values[~np.isnan(values)]
        if values.size:
            buckets = np.searchsorted(self.bounds, values, side="left")
            self.counts += np.bincount(buckets, minlength=len(self.counts))
            thousandths = np.rint(np.minimum(values, MAX_SUMMED) * 1000.0).astype(np.int64)
            self._total_thousandths = min(self._total_thousandths + int(thousandths.sum()), MAX_COUNT)

    def exemplify(self, values: np.ndarray, trace_ids: list, timestamps_ms: np.ndarray) -> None:
        """Keep, for each bucket, the last of ``values`` that came with a trace id (a string of ``trace_ids``), as
        its exemplar: a link from the bucket to one call's trace. Exemplars are not saved by :meth:`snapshot`.

        >>> histogram = Histogram(bounds=[100.0])
        >>> histogram.exemplify(np.array([50.0, 70.0, 900.0]), ["a" * 32, "b" * 32, None], np.array([1.0, 2.0, 3.0]))
        >>> histogram.exemplars
        {0: ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 70.0, 2.0)}
        """
        traced = np.fromiter((type(trace_id) is str for trace_id in trace_ids), bool, len(trace_ids))
        positions = np.flatnonzero(traced & ~np.isnan(values))
        buckets = np.searchsorted(self.bounds, values[positions], side="left")
        _, last_from_end = np.unique(buckets[::-1], return_index=True)
        last = len(positions) - 1 - last_from_end
        for bucket, position in zip(buckets[last].tolist(), positions[last].tolist(), strict=True):
            self.exemplars[bucket] = (trace_ids[position], float(values[position]), float(timestamps_ms[position]))

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

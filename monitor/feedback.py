"""Feedback (labels, ratings, judge scores) joined to the inference event it names, in either order.

A model's join indexes the request and response ids of the inference events
its window holds, and drops an id when the ring overwrites its row. Feedback
whose id is indexed is written into that row at once (only the values it
carries, so a rating does not erase an earlier label); otherwise it waits in
a bounded pending table until its inference event arrives, until
``label_ttl`` of event time has passed (expired), or until the table is full
(the oldest is dropped). Feedback for a call that already left the window
waits and expires: the window no longer describes that call. The same ids of
the model's first ``warmup`` events (its warm-up reference) are kept too, so
that the reference gets its labels and the accuracy estimate can be
calibrated on it. The label delay (feedback time minus call time; 0 when
the feedback came first) is observed at each join. Everything is in the
checkpoint.

>>> import numpy as np
>>> from monitor.windows import Column, Window
>>> window = Window(3, {"timestamp_ms": Column(np.float64), **FEEDBACK_COLUMNS})
>>> join = FeedbackJoin(ttl_ms=60_000, max_pending=10, reference_size=0)
>>> join.add_feedback([("r2", 1_500.0, {"label": 1.0})], window)  # before its call: it waits
>>> window.append({"timestamp_ms": np.array([1_000.0, 1_200.0]), "label": np.full(2, np.nan),
...                "rating": np.full(2, np.nan), "judge_score": np.full(2, np.nan)})
>>> join.add_inference([("r1", None), ("r2", None)], first_row=0, window=window)
>>> join.add_feedback([("r1", 4_000.0, {"rating": 1.0})], window)
>>> window.view()["label"].tolist(), window.view()["rating"].tolist(), join.n_pending, join.n_joined
([nan, 1.0], [1.0, nan], 0, 2)
"""

from __future__ import annotations

import math

import numpy as np

from monitor.histogram import Histogram
from monitor.windows import Column, Window

__all__ = ["FEEDBACK_COLUMNS", "LABEL_DELAY_BUCKETS_MS", "FeedbackJoin"]

#: The window columns feedback fills (NaN until it arrives); labels are numbers or category codes.
FEEDBACK_COLUMNS = {"label": Column(np.float64), "rating": Column(np.float64), "judge_score": Column(np.float64)}
#: Upper bounds of the label delay histogram: from a second to a month.
LABEL_DELAY_BUCKETS_MS = tuple(
    seconds * 1_000 for seconds in (1, 10, 60, 600, 3_600, 6 * 3_600, 86_400, 3 * 86_400, 7 * 86_400, 30 * 86_400)
)

#: A feedback event as the join takes it: the id it names, its event time, the values it carries.
Feedback = tuple[str, float, dict[str, float]]


class FeedbackJoin:
    """One model's join of feedback to its window rows (and warm-up reference rows)."""

    def __init__(self, ttl_ms: float, max_pending: int, reference_size: int):
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        self.reference_size = reference_size
        self.delay = Histogram(LABEL_DELAY_BUCKETS_MS)
        self._rows: dict[str, int] = {}  # id -> window row (counted from the first ever)
        self._row_ids: dict[int, tuple[str | None, str | None]] = {}  # window row -> its ids, for eviction
        self._oldest_row = 0  # rows below it are no longer indexed
        self._reference_rows: dict[str, int] = {}  # id -> warm-up reference row
        self._pending: dict[str, tuple[float, dict[str, float]]] = {}  # id -> (event time, values), oldest first
        self.n_joined = 0
        self.n_expired = 0
        self.n_dropped = 0

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def add_inference(
        self,
        ids: list[tuple[str | None, str | None]],
        first_row: int,
        window: Window,
        reference: Window | None = None,
    ) -> None:
        """Index a batch of inference events just appended at ``first_row``; join the feedback waiting for them."""
        rows, row_ids = self._rows, self._row_ids
        oldest = window.n_appended - len(window)
        for row in range(self._oldest_row, oldest):  # rows the ring has overwritten
            for key in row_ids.pop(row, ()):
                if key is not None and rows.get(key) == row:
                    del rows[key]
        self._oldest_row = max(self._oldest_row, oldest)
        pending = self._pending
        for row, keys in enumerate(ids, start=first_row):
            if row < oldest:
                continue  # appended and overwritten within this batch
            row_ids[row] = keys
            for key in keys:
                if key is None:
                    continue
                rows[key] = row
                if row < self.reference_size:
                    self._reference_rows[key] = row
                waiting = pending.pop(key, None)
                if waiting is not None:
                    self._join(key, waiting[0], waiting[1], window, reference)

    def add_feedback(self, feedback: list[Feedback], window: Window, reference: Window | None = None) -> None:
        """Join each feedback event to its row, or keep it waiting."""
        for key, timestamp_ms, values in feedback:
            if key in self._rows or key in self._reference_rows:
                self._join(key, timestamp_ms, values, window, reference)
                continue
            pending = self._pending
            earlier = pending.pop(key, None)  # several feedback events for one call merge, latest wins
            pending[key] = (timestamp_ms, {**earlier[1], **values} if earlier else values)
            if len(pending) > self.max_pending:
                del pending[next(iter(pending))]
                self.n_dropped += 1

    def expire(self, now_ms: float) -> None:
        """Drop the waiting feedback older than the TTL (event time)."""
        pending, cutoff = self._pending, now_ms - self.ttl_ms
        while pending:
            key = next(iter(pending))
            if pending[key][0] >= cutoff:
                break
            del pending[key]
            self.n_expired += 1

    def _join(self, key: str, timestamp_ms: float, values: dict, window: Window, reference: Window | None) -> None:
        joined = False
        row = self._rows.get(key)
        if row is not None and window.holds(row):
            window.write(row, values)
            self.delay.observe(np.array([max(0.0, timestamp_ms - window.read(row, "timestamp_ms"))]))
            joined = True
        row = self._reference_rows.get(key)
        if row is not None and reference is not None and reference.holds(row):
            reference.write(row, values)
            joined = True
        if joined:
            self.n_joined += 1
        else:
            self._pending[key] = (timestamp_ms, values)

    def snapshot(self) -> dict:
        return {
            "row_ids": [[row, *keys] for row, keys in self._row_ids.items()],
            "reference_rows": list(self._reference_rows.items()),
            "pending": [[key, timestamp_ms, values] for key, (timestamp_ms, values) in self._pending.items()],
            "delay": self.delay.snapshot(),
            "counts": [self.n_joined, self.n_expired, self.n_dropped, self._oldest_row],
        }

    def restore(self, snapshot: dict) -> None:
        self._row_ids = {row: (request_id, response_id) for row, request_id, response_id in snapshot["row_ids"]}
        self._rows = {key: row for row, keys in sorted(self._row_ids.items()) for key in keys if key is not None}
        self._reference_rows = dict(snapshot["reference_rows"])
        self._pending = {key: (timestamp_ms, dict(values)) for key, timestamp_ms, values in snapshot["pending"]}
        self.delay.restore(snapshot["delay"])
        self.n_joined, self.n_expired, self.n_dropped, self._oldest_row = snapshot["counts"]


def feedback_values(event: dict, encode_label) -> dict[str, float]:
    """The values a feedback event carries, as window numbers (labels through ``encode_label``)."""
    values = {}
    if event.get("label") is not None:
        values["label"] = encode_label(event["label"])
    for name in ("rating", "judge_score"):
        value = event.get(name)
        if value is not None and math.isfinite(value):
            values[name] = float(value)
    return values

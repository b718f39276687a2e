"""Feedback (labels, ratings, judge scores) joined to the inference event it names, in either order.

A model's join indexes the request and response ids of the inference events
its window holds, and drops an id when the ring overwrites its row. The index
is brought up to date only when feedback needs it (a model that is never sent
any pays nothing for it: about a tenth of the hot path, bench/hot_path.py). Feedback
whose id is indexed is written into that row at once (only the values it
carries, so a rating does not erase an earlier label); otherwise it waits in
a bounded pending table until its inference event arrives, until
``label_ttl`` of event time has passed (expired), or until the table is full
(the oldest is dropped). A label whose call is still in the model's label
store (:class:`~monitor.state.labels.LabelStore`: its calls of the last
``label_ttl``, whether or not still in the window) is written there too; a
call neither holds any more is waited for, and its feedback expires. The same ids of
the model's first ``warmup`` events (its warm-up reference) are kept too, so
that the reference gets its labels and the accuracy estimate can be
calibrated on it. The label delay (feedback time minus call time; 0 when
the feedback came first) is observed at each join. Everything is in the
checkpoint.

A class label waits as its class name and takes its code (shared with the
predictions, first come and capped) only when it joins its call, so feedback
that never joins, however many distinct labels it carries, uses no code.

Calls and feedback are known by :func:`join_key` of their ids: the id itself
when it is short ASCII (as request ids usually are), else a 32-character
digest of it, so that an id costs the window, the index and the pending table
at most 64 bytes of text whatever a producer sends. An id with a NUL
character is digested too: the label store hashes keys as fixed-width bytes,
which cannot tell ``"r1\\0"`` from ``"r1"``.

>>> import numpy as np
>>> from monitor.state.columns import FEEDBACK_COLUMNS, ID_COLUMNS, TIMESTAMP_MS, Column
>>> from monitor.state.windows import Window
>>> columns = {TIMESTAMP_MS: Column(np.float64), **FEEDBACK_COLUMNS}
>>> window = Window(3, {**columns, **{name: Column(object, missing=None) for name in ID_COLUMNS}})
>>> join = FeedbackJoin(ttl_ms=60_000, max_pending=10, reference_size=0)
>>> join.add_feedback([("r2", 1_500.0, {"label": 1.0})], window)  # before its call: it waits
>>> batch = {"timestamp_ms": np.array([1_000.0, 1_200.0]), "label": np.full(2, np.nan), "rating": np.full(2, np.nan),
...          "judge_score": np.full(2, np.nan), "request_id": np.array(["r1", "r2"], dtype=object),
...          "response_id": np.array([None, None], dtype=object)}
>>> window.append(batch)
>>> join.add_inference(batch, first_row=0, window=window, reference=window)
>>> join.add_feedback([("r1", 4_000.0, {"rating": 1.0})], window)
>>> window.view()["label"].tolist(), window.view()["rating"].tolist(), join.n_pending, join.n_joined
([nan, 1.0], [1.0, nan], 0, 2)
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from collections.abc import Callable
from itertools import compress
from operator import eq
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from msgspec import UNSET

from monitor.ingest.events import Event
from monitor.state.columns import ID_COLUMNS, JUDGE_SCORE, LABEL, RATING, REQUEST_ID, RESPONSE_ID, TIMESTAMP_MS
from monitor.state.histogram import Histogram
from monitor.state.windows import Window

if TYPE_CHECKING:
    from monitor.state.labels import LabelStore

__all__ = [
    "LABEL_DELAY_BUCKETS_MS",
    "MAX_KEY_CHARS",
    "FeedbackJoin",
    "feedback_values",
    "join_key",
    "join_keys",
]

#: The longest id a join key keeps as it is (ASCII only); a longer one is kept as a digest.
MAX_KEY_CHARS = 64
#: Upper bounds of the label delay histogram: from a second to a month.
LABEL_DELAY_BUCKETS_MS = tuple(
    seconds * 1_000 for seconds in (1, 10, 60, 600, 3_600, 6 * 3_600, 86_400, 3 * 86_400, 7 * 86_400, 30 * 86_400)
)

#: The values a feedback event carries: numbers, but a class label is its class name until it joins.
Values = dict[str, float | str]
#: A feedback event as the join takes it: the id it names, its event time, the values it carries.
Feedback = tuple[str, float, Values]


class FeedbackJoin:
    """One model's join of feedback to its window rows (and warm-up reference rows).

    Waiting feedback is kept by id with a heap on event time beside it, so
    that the oldest by event time is the one that expires or is dropped first
    whatever the arrival order, each in O(log n). Several feedback events for
    one waiting call merge (latest values win) and count as that many.
    ``encode_class`` turns a class label into its window number as it joins
    (by default every class is unknown: the labels are numbers). ``labels``,
    the model's label store, takes the labels of the calls it holds (filled
    by its owner before :meth:`add_inference`).
    """

    def __init__(
        self,
        ttl_ms: float,
        max_pending: int,
        reference_size: int,
        encode_class: Callable[[str], float] = lambda category: math.nan,
        labels: LabelStore | None = None,
    ):
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        self.reference_size = reference_size
        self.encode_class = encode_class
        self.labels = labels
        self.delay = Histogram(LABEL_DELAY_BUCKETS_MS)
        self._rows: dict[str, int] = {}  # id -> window row (counted from the first ever), of the rows indexed
        self._indexed_to = 0  # the window's rows before this one are indexed (those it still holds)
        self._reference_rows: dict[str, int] = {}  # id -> warm-up reference row
        self._pending: dict[str, _Waiting] = {}
        self._by_time: list[tuple[float, int, str]] = []  # (event time, sequence, id); stale entries skipped
        self._sequence = 0
        self._delays: list[float] = []  # observed once per batch
        self._labelled: list[tuple[int, float]] = []  # (label store row, label), written once per batch
        self.n_joined = 0
        self.n_expired = 0
        self.n_dropped = 0

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def forget(self, window: Window, n_rows: int) -> None:
        """Unindex the calls whose rows appending ``n_rows`` more will overwrite (call before the append)."""
        n_overwritten = min(len(window) + n_rows - window.capacity, len(window))
        if n_overwritten <= 0:
            return
        first_row = window.n_appended - len(window)
        n_indexed = min(n_overwritten, self._indexed_to - first_row)
        self._indexed_to = max(self._indexed_to, first_row + n_overwritten)  # the others need no index any more
        if n_indexed <= 0:
            return
        oldest = window.oldest(n_indexed, ID_COLUMNS)
        rows = self._rows
        for column in ID_COLUMNS:
            keys = oldest[column].tolist()
            if keys.count(None) == len(keys):  # response ids are often not sent
                continue
            # the keys whose row is still this one (not since reused by a newer call), dropped in C
            current = map(rows.get, keys)
            stale = compress(keys, map(eq, current, range(first_row, first_row + len(keys))))
            deque(map(rows.pop, stale), maxlen=0)

    def add_inference(self, batch: dict[str, np.ndarray], first_row: int, window: Window, reference: Window) -> None:
        """Note a batch of inference events just appended at ``first_row``; join the feedback waiting for them."""
        if first_row >= self.reference_size and not self._pending:
            return  # the usual batch: indexed when feedback comes
        request_ids, response_ids = batch[REQUEST_ID].tolist(), batch[RESPONSE_ID].tolist()
        if first_row < self.reference_size:
            for row in range(first_row, min(first_row + len(request_ids), self.reference_size)):
                for key in (request_ids[row - first_row], response_ids[row - first_row]):
                    if key is not None:
                        self._reference_rows[key] = row
        if self._pending:
            self._index(window)
            pending = self._pending  # joined in the order they came: the latest wins on a call that two ids name
            arrived = {(pending[key].sequence, key) for key in request_ids + response_ids if key in pending}
            for _, key in sorted(arrived):
                waiting = pending.pop(key)
                self._join(key, waiting, window, reference, self._stored_in_batch(key, batch, first_row, window))
            self._observe_delays()

    def add_feedback(self, feedback: list[Feedback], window: Window, reference: Window | None = None) -> None:
        """Join each feedback event to its row, or keep it waiting."""
        self._index(window)
        pending, reference_rows = self._pending, self._reference_rows
        stored = self._stored(feedback)
        late = []  # calls only the label store holds
        for (key, timestamp_ms, values), row in zip(feedback, stored):
            if row >= 0 and key not in reference_rows:
                late.append((row, timestamp_ms, values))
                continue
            if key in self._rows or key in reference_rows or row >= 0:
                self._join(key, _Waiting(timestamp_ms, values, 1, -1), window, reference, row)
                continue
            earlier = pending.get(key)
            if earlier is not None:  # several feedback events for one call merge, latest values win
                values = {**earlier.values, **values}
                timestamp_ms = max(timestamp_ms, earlier.timestamp_ms)
            self._wait(key, _Waiting(timestamp_ms, values, 1 + (earlier.n_events if earlier else 0), -1))
            if len(pending) > self.max_pending:
                self.n_dropped += self._pop_oldest().n_events
        if late:
            self._join_stored(late)
        self._observe_delays()

    def expire(self, now_ms: float) -> None:
        """Drop the waiting feedback older than the TTL (event time)."""
        cutoff = now_ms - self.ttl_ms
        while self._pending and self._oldest_time() < cutoff:
            self.n_expired += self._pop_oldest().n_events

    def _index(self, window: Window) -> None:
        """Index the ids of the rows appended since the last time (a key that several rows name: the latest's)."""
        ids = window.since(self._indexed_to, ID_COLUMNS)
        request_ids, response_ids = ids[REQUEST_ID].tolist(), ids[RESPONSE_ID].tolist()
        first_row = window.n_appended - len(request_ids)
        self._indexed_to = window.n_appended
        if response_ids.count(None) == len(response_ids):  # response ids are often not sent: one update in C
            self._rows.update(zip(request_ids, range(first_row, window.n_appended)))
            return
        self._rows.update(
            (key, row)
            for row, keys in enumerate(zip(request_ids, response_ids), start=first_row)
            for key in keys
            if key is not None
        )

    def _wait(self, key: str, waiting: _Waiting) -> None:
        self._sequence += 1
        self._pending[key] = waiting._replace(sequence=self._sequence)
        heapq.heappush(self._by_time, (waiting.timestamp_ms, self._sequence, key))
        if len(self._by_time) > 2 * len(self._pending) + 1_000:  # merged entries left stale ones behind
            self._by_time = [(w.timestamp_ms, w.sequence, k) for k, w in self._pending.items()]
            heapq.heapify(self._by_time)

    def _oldest_time(self) -> float:
        by_time, pending = self._by_time, self._pending
        while True:
            timestamp_ms, sequence, key = by_time[0]
            waiting = pending.get(key)
            if waiting is not None and waiting.sequence == sequence:
                return timestamp_ms
            heapq.heappop(by_time)

    def _pop_oldest(self) -> _Waiting:
        self._oldest_time()  # drops stale heap entries from the top
        _, _, key = heapq.heappop(self._by_time)
        return self._pending.pop(key)

    def _stored(self, feedback: list[Feedback]) -> list[int]:
        """The label store's row of the call of each feedback event whose call has left the window (-1 where it
        holds none, and for the others: :meth:`_join` finds theirs from their window row)."""
        rows = self._rows  # unindexed as the window overwrites them
        late = [i for i, (key, _, _) in enumerate(feedback) if key not in rows]
        stored = [-1] * len(feedback)
        if self.labels is not None and late:
            feedback_ms = np.array([feedback[i][1] for i in late], dtype=np.float64)
            for i, row in zip(late, self.labels.find([feedback[i][0] for i in late], feedback_ms).tolist()):
                stored[i] = row
        return stored

    def _stored_in_batch(self, key: str, batch: dict[str, np.ndarray], first_row: int, window: Window) -> int:
        """The label store's row of the latest call of ``batch`` (appended at ``first_row``) that names ``key`` when
        the batch was longer than the window (only its tail is held), else -1 (:meth:`_join` reads the window's)."""
        if self.labels is None or window.holds(first_row):
            return -1
        named = (batch[REQUEST_ID] == key) | (batch[RESPONSE_ID] == key)
        return self.labels.row_of(first_row + int(np.flatnonzero(named)[-1]), window)

    def _join(self, key: str, waiting: _Waiting, window: Window, reference: Window | None, stored: int = -1) -> None:
        """Write the feedback into its call's rows (``stored``: its row in the label store, or -1); one that came
        more than the TTL before its call expired."""
        called_ms = None
        targets = []
        row = self._rows.get(key)
        if row is not None and window.holds(row):
            called_ms = window.read(row, TIMESTAMP_MS)
            if waiting.timestamp_ms < called_ms - self.ttl_ms:
                self.n_expired += waiting.n_events
                return
            targets.append((window, row))
            if self.labels is not None:  # appended with the window, batch by batch: its rows follow the window's
                stored = self.labels.row_of(row, window)
        row = self._reference_rows.get(key)
        if row is not None and reference is not None and reference.holds(row):
            targets.append((reference, row))
            called_ms = reference.read(row, TIMESTAMP_MS) if called_ms is None else called_ms
        if stored >= 0 and self.labels is not None:
            called_ms = self.labels.read_time(stored) if called_ms is None else called_ms
        if called_ms is None:
            self._wait(key, waiting)  # its call left the window and the label store: it waits, and expires
            return
        if waiting.timestamp_ms < called_ms - self.ttl_ms:  # (a call only the label store or reference holds)
            self.n_expired += waiting.n_events
            return
        encode = self.encode_class  # a class label takes its code now that it has joined a call
        values = {name: encode(value) if isinstance(value, str) else value for name, value in waiting.values.items()}
        for ring, row in targets:
            ring.write(row, values)
        if stored >= 0 and LABEL in values:
            self._labelled.append((stored, values[LABEL]))
        self.n_joined += waiting.n_events
        self._delays.append(max(0.0, waiting.timestamp_ms - called_ms))

    def _join_stored(self, late: list[tuple[int, float, Values]]) -> None:
        """Join feedback whose call only the label store holds (its rows there, times, values), all at once: its
        label is written there (the store keeps no other value)."""
        assert self.labels is not None, "only a label store finds calls that have left the window"
        encode = self.encode_class
        for row, _, values in late:
            label = values.get(LABEL)
            if label is not None:
                self._labelled.append((row, encode(label) if isinstance(label, str) else label))
        called_ms = self.labels.read_times(np.array([row for row, _, _ in late]))
        self._delays.extend(np.maximum(0.0, np.array([at for _, at, _ in late]) - called_ms).tolist())
        self.n_joined += len(late)

    def _observe_delays(self) -> None:
        """Observe the batch's label delays, and write its labels into the label store, at once."""
        if self._delays:
            self.delay.observe(np.array(self._delays))
            self._delays = []
        if self._labelled and self.labels is not None:
            self.labels.write_labels(*zip(*self._labelled))
            self._labelled = []

    def snapshot(self) -> dict:
        return {
            "reference_rows": list(self._reference_rows.items()),
            "pending": [[key, *waiting] for key, waiting in self._pending.items()],
            "delay": self.delay.snapshot(),
            "counts": [self.n_joined, self.n_expired, self.n_dropped, self._sequence],
        }

    def restore(self, snapshot: dict, window: Window) -> None:
        """Take back a :meth:`snapshot`; the id index is rebuilt from the restored window's id columns when
        feedback needs it."""
        self._rows = {}
        self._indexed_to = window.n_appended - len(window)
        self.restore_reference_rows(snapshot)
        self._pending = {
            key: _Waiting(timestamp_ms, dict(values), n_events, sequence)
            for key, timestamp_ms, values, n_events, sequence in snapshot["pending"]
        }
        self._by_time = [(waiting.timestamp_ms, waiting.sequence, key) for key, waiting in self._pending.items()]
        heapq.heapify(self._by_time)
        self.delay.restore(snapshot["delay"])
        self.n_joined, self.n_expired, self.n_dropped, self._sequence = snapshot["counts"]

    def forget_reference(self) -> None:
        """The reference was replaced (promoted from a version's calls): no window row is one of its rows, and
        its old rows' ids are forgotten (:meth:`index_reference` gives the new ones)."""
        self.reference_size = 0
        self._reference_rows = {}

    def index_reference(self, request_ids: list[str | None], response_ids: list[str | None], first_row: int) -> None:
        """Know the ids of calls a promoted reference took, from its row ``first_row`` on, so labels join them."""
        for row, keys in enumerate(zip(request_ids, response_ids), start=first_row):
            for key in keys:
                if key is not None:
                    self._reference_rows[key] = row

    def restore_reference_rows(self, snapshot: dict) -> None:
        """Take back only the ids of the warm-up reference's rows of a :meth:`snapshot` (a reference kept while
        its window starts afresh), so that labels still join them."""
        self._reference_rows = dict(snapshot["reference_rows"])


class _Waiting(NamedTuple):
    """Feedback waiting for its call: its event time, values, how many events merged into it, heap sequence."""

    timestamp_ms: float
    values: Values
    n_events: int
    sequence: int


def join_key(id_: str) -> str:
    """The key by which the join knows an id: the id itself if it is ASCII without NUL and at most
    :data:`MAX_KEY_CHARS` long, else a 32-character digest of it (BLAKE2b, 128 bits: a collision is as unlikely
    as guessing it).

    >>> join_key("chatcmpl-8x2"), join_key("x" * 300), join_key("r1\\0") != join_key("r1")
    ('chatcmpl-8x2', 'c2f093e41879e412280bfcc0ed6533e4', True)
    """
    if len(id_) <= MAX_KEY_CHARS and id_.isascii() and "\0" not in id_:
        return id_
    return hashlib.blake2b(id_.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def join_keys(ids: list[str | None]) -> list[str | None]:
    """:func:`join_key` of each id of a batch (None stays None); checked in C alone when every id is short ASCII."""
    try:
        if _short_ascii(ids):  # type: ignore[arg-type]  # the usual batch: no None, checked without a pass for it
            return ids
    except TypeError:  # some ids are None (response ids often are); filter drops "" too, which is short ASCII
        if _short_ascii(list(filter(None, ids))):
            return ids
    return [None if key is None else join_key(key) for key in ids]


def _short_ascii(keys: list[str]) -> bool:
    joined = "".join(keys)
    return max(map(len, keys), default=0) <= MAX_KEY_CHARS and joined.isascii() and "\0" not in joined


def feedback_values(event: Event, read_label: Callable[[Any], float | str]) -> Values:
    """The values a feedback event carries: numbers, and its label as ``read_label`` reads it, unless it reads
    none (NaN: no class or number can be made of it), which would erase the label its call has."""
    values: Values = {}
    if event.label is not None and event.label is not UNSET:
        label = read_label(event.label)
        if isinstance(label, str) or not math.isnan(label):
            values[LABEL] = label
    for column, value in ((RATING, event.rating), (JUDGE_SCORE, event.judge_score)):
        if value is not None and value is not UNSET and math.isfinite(value):
            values[column] = float(value)
    return values

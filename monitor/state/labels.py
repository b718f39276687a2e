"""What a late label needs of each call, kept after the call has left the window: the label store.

Labels come hours or days after their call (a chargeback, a human review),
long after a count window has moved on. A model's :class:`LabelStore` keeps,
for each of its last ``capacity`` calls, only what a label needs: the hashes
of its join keys (request and response id), its event time, prediction
(a class code or a number), score, outcome and the group codes of its bias
and slice attributes, and the label once it joins. The columns are a :class:`~monitor.state.windows.Window`
(preallocated numpy rings); beside them an open-addressing hash table maps a
key's hash to its call's ring position (int32, linear probing, 4 slots per
call; probed key by key in C, ``monitor/state/_probe.c``). A slot is never
emptied as its call is overwritten: a look-up checks the keys at the
position it finds, and the table is rebuilt from the ring
(keys sorted by home slot, placed in one pass) before it is more than three
quarters full: after ``capacity`` calls with one id each, ``capacity / 2``
with two.

Memory, per model: ``capacity x (61 + 4 x attributes)`` bytes
(:data:`BYTES_PER_CALL`, :data:`BYTES_PER_GROUP`): two key hashes (16), event
time, prediction and label (8 each), score (4), outcome (1), index (16), and
a group code (4) per bias or slice attribute (``Columns.grouped``). A
checkpoint from before the store kept an attribute restores it with no
group for the calls it held. A call with a key hash equal to another
live call's is a false join: with 64-bit hashes, about ``n**2 / 2**65`` for
``n`` calls held (3e-8 at a million).

>>> store = LabelStore(4, ttl_ms=10_000, group_columns=())
>>> batch = {"timestamp_ms": np.array([1_000.0, 2_000.0]), "request_id": np.array(["a", "b"], dtype=object),
...          "response_id": np.array([None, None], dtype=object), "prediction": np.array([1.0, 2.0]),
...          "score": np.array([0.9, 0.6])}
>>> store.append(batch)
>>> rows = store.find(["b", "zz"], np.array([5_000.0, 5_000.0]))
>>> rows.tolist()
[1, -1]
>>> store.write_labels(rows[:1], [2.0])
>>> cohort = store.cohort(now_ms=5_000.0, span_ms=10_000.0)
>>> cohort["prediction"].tolist(), cohort["label"].tolist(), store.nbytes == 4 * BYTES_PER_CALL
([2.0], [2.0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from monitor.config import ModelConfig
from monitor.state.columns import (
    LABEL,
    OUTCOME,
    PREDICTION,
    REQUEST_ID,
    RESPONSE_ID,
    SCORE,
    TIMESTAMP_MS,
    Column,
    Columns,
)
from monitor.state.feedback import MAX_KEY_CHARS
from monitor.state.vocabulary import MISSING
from monitor.state.windows import Window

__all__ = [
    "BYTES_PER_CALL",
    "BYTES_PER_GROUP",
    "COHORT_BYTES_PER_CALL",
    "INDEX_BYTES_PER_CALL",
    "LabelStore",
    "key_hashes",
    "store_policy",
]

#: Bytes the store keeps per call without bias or slice attributes (the columns and 4 int32 index slots).
BYTES_PER_CALL = 61
#: Bytes more per call per bias or slice attribute (its group code).
BYTES_PER_GROUP = 4
#: Index slots per call: at most 2 keys live, and the table rebuilt before it is more than 3/4 full.
SLOTS_PER_CALL = 4
#: Bytes of :data:`BYTES_PER_CALL` that are the index (int32 slots), which a checkpoint does not save.
INDEX_BYTES_PER_CALL = 4 * SLOTS_PER_CALL
#: What :meth:`LabelStore.cohort` allocates per call held at most, besides a group code per attribute: five
#: boolean masks, and the copies of a labelled call's columns (score and outcome twice, as stored and as float64).
COHORT_BYTES_PER_CALL = 5 + 8 + 8 + (4 + 8) + 8 + (1 + 8)
_EMPTY = -1
_KEYS = ("key.request", "key.response")
_SEED, _PRIME = np.uint64(0x9E3779B97F4A7C15), np.uint64(0x100000001B3)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


class LabelStore:
    """A model's last ``capacity`` calls as a late label needs them, indexed by the hashes of their ids.

    ``group_columns`` are the window's group columns (``group.<attribute>``) of the bias and slice attributes,
    kept as they are (optional: a checkpoint without one restores it as missing). A
    look-up (:meth:`find`) only finds a call made at most ``ttl_ms`` of event time before its label.
    """

    def __init__(self, capacity: int, ttl_ms: float, group_columns: tuple[str, ...]):
        if capacity < 1:
            raise ValueError("a label store holds at least one call")
        self.capacity = capacity
        self.ttl_ms = ttl_ms
        self.group_columns = group_columns
        self.columns = {
            TIMESTAMP_MS: Column(np.float64),
            **{name: Column(np.uint64, missing=0) for name in _KEYS},
            PREDICTION: Column(np.float64),
            SCORE: Column(np.float32),
            LABEL: Column(np.float64),
            OUTCOME: Column(np.int8, missing=-1),
            **{name: Column(np.int32, missing=MISSING, optional=True) for name in group_columns},
        }
        self._ring = Window(capacity, self.columns)
        self._table = np.full(SLOTS_PER_CALL * capacity, _EMPTY, dtype=np.int32)
        self._n_occupied = 0  # slots not empty (live keys and stale ones)

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def nbytes(self) -> int:
        """What the columns and the index take."""
        return self._table.nbytes + sum(data.nbytes for data in self._ring.snapshot()["columns"].values())

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Keep a batch of calls as the window has them (their ids as join keys, their labels if any); the oldest
        are overwritten."""
        n = len(batch[TIMESTAMP_MS])
        outcome, label = batch.get(OUTCOME), batch.get(LABEL)
        columns = {
            TIMESTAMP_MS: batch[TIMESTAMP_MS],
            _KEYS[0]: key_hashes(batch[REQUEST_ID].tolist()),
            _KEYS[1]: key_hashes(batch[RESPONSE_ID].tolist()),
            PREDICTION: batch[PREDICTION],
            SCORE: batch[SCORE],
            LABEL: np.full(n, np.nan) if label is None else label,
            OUTCOME: np.full(n, -1, np.int8) if outcome is None else np.where(np.isnan(outcome), -1, outcome),
            **{name: batch[name] for name in self.group_columns},
        }
        first_row = self._ring.n_appended
        self._ring.append(columns)
        kept = min(n, self.capacity)  # of a batch longer than the ring, only its tail is kept
        positions = (first_row + n - kept + np.arange(kept)) % self.capacity
        if 4 * (self._n_occupied + 2 * kept) > 3 * len(self._table):
            self._rebuild()
        else:
            for name in _KEYS:
                self._insert(columns[name][n - kept :], positions)

    def find(self, keys: list[str], feedback_ms: np.ndarray) -> np.ndarray:
        """The row (counted from the first call ever) of each key's call, -1 where the store holds none made at
        most ``ttl_ms`` before its feedback's event time ``feedback_ms``; of several calls sent with one id (a
        retry), the newest, as the window's join takes it, whatever order the index holds them in."""
        hashes = key_hashes(keys)
        rows = np.full(len(keys), -1, dtype=np.int64)
        n_held = len(self._ring)
        if n_held == 0:
            return rows
        data = self._ring.snapshot()["columns"]
        newest = self._ring.n_appended - 1
        _find(self._table, hashes, data[_KEYS[0]], data[_KEYS[1]], n_held, newest, self.capacity, rows)
        found = rows >= 0
        too_old = np.zeros(len(keys), dtype=bool)
        too_old[found] = data[TIMESTAMP_MS][rows[found] % self.capacity] < feedback_ms[found] - self.ttl_ms
        rows[too_old] = -1
        return rows

    @property
    def n_appended(self) -> int:
        """Calls ever appended (rows are counted from the first)."""
        return self._ring.n_appended

    def row_of(self, row: int, window: Window) -> int:
        """The row of the call at ``row`` of ``window``, the ring appended with the same batches (-1 if the store
        does not hold it): the two counts differ by what the store missed (its calls from before a restore)."""
        stored = row - (window.n_appended - self._ring.n_appended)
        return stored if self._ring.holds(stored) else -1

    def read_time(self, row: int) -> float:
        """The event time of a call the store holds (a row :meth:`find` gave)."""
        return float(self._ring.read(row, TIMESTAMP_MS))

    def read_times(self, rows: np.ndarray) -> np.ndarray:
        """The event times of calls the store holds."""
        return self._ring.snapshot()["columns"][TIMESTAMP_MS][rows % self.capacity]

    def write_labels(self, rows: Sequence[int], labels: Sequence[float]) -> None:
        """Set the labels of calls the store holds (rows :meth:`find` or :meth:`row_of` gave)."""
        self._ring.write_rows(np.asarray(rows), LABEL, labels)

    def cohort(self, now_ms: float, span_ms: float) -> dict[str, np.ndarray]:
        """The calls of the last ``span_ms`` of event time up to ``now_ms`` whose labels have arrived (in ring
        order): event time, prediction, score, label, outcome (NaN where unknown) and group codes."""
        data = self._ring.snapshot()["columns"]  # rows never written have no label: left out with the rest
        timestamp_ms = data[TIMESTAMP_MS]
        labelled = np.flatnonzero(~np.isnan(data[LABEL]) & (timestamp_ms > now_ms - span_ms) & (timestamp_ms <= now_ms))
        names = (TIMESTAMP_MS, PREDICTION, SCORE, LABEL, OUTCOME, *self.group_columns)
        cohort = {name: data[name].take(labelled) for name in names}  # one scan for the rows, then gathers
        cohort[SCORE] = cohort[SCORE].astype(np.float64)
        cohort[OUTCOME] = np.where(cohort[OUTCOME] < 0, np.nan, cohort[OUTCOME])
        return cohort

    def snapshot(self) -> dict:
        return self._ring.snapshot()

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Take back a :meth:`snapshot`, of a store of any capacity (the newest calls that fit are kept)."""
        saved = snapshot["columns"]
        capacity = len(saved[TIMESTAMP_MS])
        if capacity == self.capacity:
            self._ring.restore(snapshot)
        else:
            ring = Window(capacity, self.columns)
            ring.restore(snapshot)
            self._ring = Window(self.capacity, self.columns)
            self._ring.append(ring.view())
        self._rebuild()

    def _rebuild(self) -> None:
        """The index afresh from the keys the ring holds: sorted by home slot, each key takes the first free slot
        from its home on, ``max(home, previous slot + 1)``, all at once; the few that run past the end wrap."""
        table, size = self._table, len(self._table)
        table.fill(_EMPTY)
        data, n_held = self._ring.snapshot()["columns"], len(self._ring)
        hashes = np.concatenate([data[name][:n_held] for name in _KEYS])
        positions = np.tile(np.arange(n_held, dtype=np.int32), len(_KEYS))
        given = hashes != 0
        hashes, positions = hashes[given], positions[given]
        homes = (hashes % np.uint64(size)).astype(np.int64)
        order = np.argsort(homes)
        ranks = np.arange(len(order))
        slots = np.maximum.accumulate(homes[order] - ranks) + ranks
        fits = slots < size
        table[slots[fits]] = positions[order[fits]]
        self._n_occupied = int(np.count_nonzero(fits))
        wrapped = order[~fits]
        self._insert(hashes[wrapped], positions[wrapped])

    def _insert(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        """Index positions by key hash (0: no key): each at the first free slot of its probe path."""
        given = hashes != 0
        hashes, positions = hashes[given], positions[given].astype(np.int32)
        self._n_occupied += len(hashes)
        _insert(self._table, hashes, positions)


def _insert_twin(table: np.ndarray, hashes: np.ndarray, positions: np.ndarray) -> None:
    """:func:`monitor.state._probe.insert` where it was not built, all keys at once: each round, the keys whose
    slot is free write their positions there, the one whose position stays takes it, and the others probe the next
    slot. The positions of one call are distinct: a key whose position is in its slot after the round is placed (or
    met a stale slot of the call its position held before: on its probe path, so found there all the same)."""
    size = len(table)
    slots = (hashes % np.uint64(size)).astype(np.int64)
    while slots.size:
        free = table[slots] == _EMPTY
        table[slots[free]] = positions[free]
        waiting = table[slots] != positions
        slots, positions = (slots[waiting] + 1) % size, positions[waiting]


def _find_twin(
    table: np.ndarray,
    hashes: np.ndarray,
    keys_0: np.ndarray,
    keys_1: np.ndarray,
    n_held: int,
    newest: int,
    capacity: int,
    rows: np.ndarray,
) -> None:
    """:func:`monitor.state._probe.find` where it was not built, all keys at once: each round, every key still probing
    reads its slot; a held call with the key raises the key's row to its own if newer (of several calls sent with one
    id, a retry, the newest wins, as in the window), and the keys whose slot was not empty probe the next one."""
    size = len(table)
    slots = (hashes % np.uint64(size)).astype(np.int64)
    todo = np.flatnonzero(hashes)
    while todo.size:
        positions = table[slots[todo]].astype(np.int64)
        empty = positions == _EMPTY
        seen = np.where(empty, 0, positions)
        wanted = hashes[todo]
        match = ~empty & (seen < n_held) & ((keys_0[seen] == wanted) | (keys_1[seen] == wanted))
        found = todo[match]
        rows[found] = np.maximum(rows[found], newest - (newest - positions[match]) % capacity)
        todo = todo[~empty]  # to the end of the probe path, where any other call with the key would be
        slots[todo] = (slots[todo] + 1) % size


def _no_hashes(keys: list, seed: int, prime: int, mix_1: int, mix_2: int) -> bytes | None:
    """Where :mod:`monitor.state._probe` was not built: no key is hashed in C (:func:`_key_hashes_twin` hashes)."""
    return None


try:  # key by key in C (setup.py): a batch's keys in microseconds where the rounds took a millisecond
    from monitor.state._probe import find as _find
    from monitor.state._probe import hashes as _hashes
    from monitor.state._probe import insert as _insert
except ImportError:  # built without a C compiler
    _find, _insert, _hashes = _find_twin, _insert_twin, _no_hashes


def store_policy(model: ModelConfig) -> str:
    """What ``check-config`` says of a model's label store: the calls it keeps, their memory by the formula,
    and the labelled cohort.

    >>> from monitor.config import parse_config
    >>> print(store_policy(parse_config({"models": [{"name": "m", "quality": {"cohort": "6h"}}]}).models[0]))
    the last 20000 calls kept for labels up to 604800000 ms late (20000 x 61 bytes = 1.2 MiB); realized performance \
on those of the last 21600000 ms whose labels arrived
    """
    quality = model.quality
    n = quality.max_labelled_calls
    if n == 0:
        return "no label store: labels join only calls still in the window"
    per_call = BYTES_PER_CALL + BYTES_PER_GROUP * len(Columns.grouped(model))
    return (
        f"the last {n} calls kept for labels up to {quality.label_ttl_ms} ms late ({n} x {per_call} bytes = "
        f"{n * per_call / 2**20:.1f} MiB); realized performance on those of the last {quality.cohort_ms} ms whose "
        "labels arrived"
    )


def key_hashes(keys: Sequence[str | None]) -> np.ndarray:
    """A 64-bit hash of each join key (at most :data:`~monitor.state.feedback.MAX_KEY_CHARS` ASCII characters),
    0 for None or an empty key; computed on the keys' bytes, the same in every process: in C
    (:func:`monitor.state._probe.hashes`), else by :func:`_key_hashes_twin`.

    >>> key_hashes(["r1", None, "r1"]).tolist() == [key_hashes(["r1"])[0], 0, key_hashes(["r1"])[0]]
    True
    """
    if isinstance(keys, list):
        hashed = _hashes(keys, int(_SEED), int(_PRIME), int(_MIX[0]), int(_MIX[1]))
        if hashed is not None:
            return np.frombuffer(hashed, dtype=np.uint64).copy()  # writable, as the twin's
    return _key_hashes_twin(keys)


def _key_hashes_twin(keys: Sequence[str | None]) -> np.ndarray:
    """:func:`key_hashes` in numpy: the keys' bytes as 8 words each, folded column by column."""
    if not keys:
        return np.zeros(0, dtype=np.uint64)
    if None in keys:
        keys = [key or "" for key in keys]
    raw = np.array(keys, dtype=f"S{MAX_KEY_CHARS}")
    words = raw.view(np.uint64).reshape(len(keys), MAX_KEY_CHARS // 8)
    hashes = np.full(len(keys), _SEED)
    for column in words.T:
        hashes ^= column
        hashes *= _PRIME
    hashes ^= hashes >> np.uint64(30)
    hashes *= _MIX[0]
    hashes ^= hashes >> np.uint64(27)
    hashes *= _MIX[1]
    hashes ^= hashes >> np.uint64(31)
    hashes[hashes == 0] = 1
    hashes[raw == b""] = 0
    return hashes

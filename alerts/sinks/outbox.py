"""A bounded, persistent queue of deliveries in SQLite, so alerts survive a restart and a receiver outage."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alerts.backoff import Backoff

__all__ = ["BACKOFF", "Delivery", "Outbox"]

log = logging.getLogger(__name__)

#: Retries of a delivery: 1 s doubling to 5 min, for as long as the entry is in the (bounded) outbox.
BACKOFF = Backoff(first_ms=1_000, max_ms=300_000)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    UNIQUE (sink, key)
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (sink, id);
"""
_COLUMNS = "id, sink, key, payload, attempts, next_attempt_ms, created_ms"


@dataclass(frozen=True)
class Delivery:
    """One queued entry: ``payload`` for ``sink``, idempotent by ``key``; ``attempts`` failed tries so far."""

    id: int
    sink: str
    key: str
    payload: bytes
    attempts: int
    next_attempt_ms: int
    created_ms: int


class Outbox:
    """Deliveries waiting for their sink, in one SQLite file (WAL), shared by all sinks of a daemon.

    ``put`` is idempotent by ``(sink, key)``: putting a key again replaces the
    queued entry's payload (a firing alert re-sent on every tick keeps one
    entry, carrying the latest copy) and moves it to the back of the queue,
    keeping its retry state. Each sink's entries form a queue in insertion
    order; ``due`` hands out its head, up to the first entry still waiting for
    its retry time, so a receiver sees entries in order and a failed batch
    holds back the entries behind it. ``done`` removes an entry, ``retry``
    counts a failed attempt and schedules the next after ``backoff``, ``defer``
    holds an entry back without counting an attempt.
    Past ``max_size`` entries the oldest are dropped and counted in
    ``dropped``. Every write is one committed transaction (``synchronous=FULL``),
    so what ``put`` accepted survives a crash; ``batch()`` groups several into
    one. A write that fails (a full disk) raises and leaves nothing behind: the
    transaction is rolled back and the next write starts afresh, so the outbox
    works again once space returns. Safe to share between threads.

    Parameters
    ----------
    path : str or Path
        The SQLite file (its directory is created), or ``":memory:"``.
    max_size : int
        Most entries kept, over all sinks.
    backoff : Backoff
        When a failed delivery is tried again; an entry that reaches its
        ``max_attempts`` (none by default) is dropped and counted in ``dropped``.

    Examples
    --------
    >>> outbox = Outbox(":memory:")
    >>> outbox.put("webhook", "fp1/firing", b'{"v": 1}', now_ms=0)
    >>> outbox.put("webhook", "fp1/firing", b'{"v": 2}', now_ms=0)
    >>> [entry.payload for entry in outbox.due("webhook", now_ms=0, limit=10)]
    [b'{"v": 2}']
    >>> entry = outbox.due("webhook", now_ms=0, limit=10)[0]
    >>> outbox.retry(entry.id, now_ms=0), outbox.due("webhook", now_ms=999, limit=10)
    (1000, [])
    >>> outbox.done(entry.id); len(outbox)
    0
    """

    def __init__(self, path: str | Path, max_size: int = 10_000, backoff: Backoff = BACKOFF):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        self.path = path
        self.max_size = max_size
        self.backoff = backoff
        self.dropped = 0
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self.batch() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def batch(self) -> Iterator[sqlite3.Connection]:
        """One transaction (and one fsync) for the calls inside; nested uses join the outer one."""
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
                if self._depth == 1:
                    self._db.execute("COMMIT")
            except BaseException:
                if self._depth == 1 and self._db.in_transaction:  # SQLite may have rolled back by itself
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1

    def put(self, sink: str, key: str, payload: bytes, now_ms: float | None = None) -> None:
        """Queue ``payload`` for ``sink``, replacing a queued entry with the same ``key``."""
        now_ms = time.time() * 1000 if now_ms is None else now_ms
        with self.batch() as db:
            old = db.execute(
                "SELECT attempts, next_attempt_ms, created_ms FROM outbox WHERE sink = ? AND key = ?", (sink, key)
            ).fetchone()
            if old is not None:
                db.execute("DELETE FROM outbox WHERE sink = ? AND key = ?", (sink, key))
            attempts, next_attempt_ms, created_ms = old or (0, 0, int(now_ms))
            db.execute(
                "INSERT INTO outbox (sink, key, payload, attempts, next_attempt_ms, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (sink, key, bytes(payload), attempts, next_attempt_ms, created_ms),
            )
            excess = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_size
            if excess > 0:
                db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
                self.dropped += excess
                log.warning("outbox full (%d entries): dropped the oldest %d", self.max_size, excess)

    def due(self, sink: str, now_ms: float, limit: int) -> list[Delivery]:
        """The head of ``sink``'s queue, oldest first, up to ``limit`` entries and the first one not yet due."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE sink = ? ORDER BY id LIMIT ?", (sink, limit)
            ).fetchall()
        entries = []
        for row in rows:
            if row[5] > now_ms:
                break
            entries.append(Delivery(*row))
        return entries

    def done(self, id: int) -> None:
        """Remove a delivered (or given up) entry; a no-op if it is gone or was replaced since."""
        with self.batch() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (id,))

    def retry(self, id: int, now_ms: float) -> int | None:
        """Count a failed attempt; returns when the entry is due again (None if it is gone, or given up)."""
        with self.batch() as db:
            row = db.execute("SELECT attempts FROM outbox WHERE id = ?", (id,)).fetchone()
            if row is None:
                return None
            attempts = row[0] + 1
            next_attempt_ms = self.backoff.next_attempt_ms(attempts, now_ms)
            if next_attempt_ms is None:
                db.execute("DELETE FROM outbox WHERE id = ?", (id,))
                self.dropped += 1
                log.error("outbox: gave up an entry after %d failed attempts", attempts)
                return None
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_ms = ? WHERE id = ?", (attempts, next_attempt_ms, id)
            )
            return next_attempt_ms

    def defer(self, id: int, until_ms: float) -> None:
        """Hold an entry back until ``until_ms`` without counting a failed attempt."""
        with self.batch() as db:
            db.execute("UPDATE outbox SET next_attempt_ms = ? WHERE id = ?", (int(until_ms), id))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def count(self, sink: str) -> int:
        """The entries waiting for ``sink``."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

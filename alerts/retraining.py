"""Retraining jobs and rollback requests: asked for by firing alerts, kept in a SQLite ledger, published and triggered.

A rule whose ``actions`` include ``retrain`` asks :class:`RetrainingQueue` for a
job when it fires; one whose ``actions`` include ``rollback`` asks a second
queue, of ``kind="rollback"``, for a request to roll a model's version back.
The one class is the ledger of both actions: a job of either kind is a
:class:`Job`, and they differ in scope only. A retraining job is per model
(its ``version`` records the model's baseline version when it was queued); a
rollback request is per (model, version), the candidate to roll back, and
carries the ``evidence`` against it. The queue creates at most one job per
scope per ``cooldown_ms`` of event time and records it in a SQLite ledger (WAL,
``synchronous=FULL``) before :meth:`RetrainingQueue.request` returns, so the
ledger is both the queue's memory (a restarted daemon inside the cooldown
creates no new job) and its outbox: :meth:`RetrainingQueue.deliver` takes due
jobs from it, hands each to the injected ``publish(key=model, value=bytes)``
callable (the daemon's Kafka producer; it returns once the broker acknowledged
and raises on failure), then, when ``trigger_url`` is set, POSTs the same JSON
there. Failed steps are retried with the same :class:`~alerts.backoff.Backoff`
schedule and the same :class:`~alerts.http.HttpClient` (timeouts, no
redirects) as alert notifications, with their own figures (:data:`BACKOFF`).

Job ids are idempotency keys: a digest of the scope (the model; for a rollback
request, the model and version), the cooldown bucket the
request falls in and the earliest alert's fingerprint and start. Replaying the
same evaluation ticks after a crash asks for the same id, which the ledger
already holds, and nothing is queued twice (and the cooldown, which also
counts jobs created *after* the replayed tick, refuses it as well).

Status of a job (the ``status`` label of ``driftwarden_retraining_jobs_total`` and
``driftwarden_rollback_requests_total``):

``queued``
    In the ledger, not yet published. With neither ``publish`` nor
    ``trigger_url`` configured a job stays ``queued`` for good: the ledger
    (:meth:`~RetrainingQueue.jobs`) is then the only record, for an operator
    or another process to read.
``published``
    The broker acknowledged it. Final unless ``trigger_url`` is set.
``acknowledged``
    The trigger URL answered 2xx (straight from ``queued`` when there is no
    ``publish``).
``failed``
    A step failed ``BACKOFF.max_attempts`` times in a row (20: about two hours
    of retries, less than the default six-hour cooldown), or the trigger
    rejected the job as invalid (400, 422: the same bytes cannot succeed).
``handed_over``
    Not yet delivered when its model moved to another replica
    (:meth:`RetrainingQueue.hand_over`): the new owner's ledger holds it (see
    below) and delivers it; this ledger keeps the row as history and never
    delivers it. Not a status of the counter: the new owner counts the job.

A model's entries move with it (several replicas in one consumer group):
:meth:`RetrainingQueue.entries` gives, as plain data, the jobs of some models
that still matter (those inside the cooldown of the model's newest job, so the
new owner keeps the cooldown, and those not yet delivered, so that it delivers
them), :meth:`RetrainingQueue.merge` takes them into another ledger (a job it
holds already is left alone, unless it had handed it over: the model came
back), and :meth:`RetrainingQueue.hand_over` stops this ledger delivering the
jobs it gave away. Ids depend on the request only, never on the replica, so
the new owner asks for the same ids that one replica would have. (A model's
entries are those of all its versions: versions move with their model.)

>>> import tempfile, os
>>> from alerts.alert import Alert
>>> sent = []
>>> queue = RetrainingQueue(os.path.join(tempfile.mkdtemp(), "ledger.sqlite"), cooldown_ms=6 * 3600_000,
...                         publish=lambda key, value: sent.append(key))
>>> alert = Alert("f1", {"alertname": "DataDrift", "model": "bot"}, {"summary": "drift share 0.42 > 0.3"},
...               "firing", 0.42, 1_000, None, ("retrain",))
>>> job = queue.request("bot", [alert], {"n_events": 1000}, {"n_events": 5000}, now_ms=60_000)
>>> job.status, job.reason
('queued', 'DataDrift: drift share 0.42 > 0.3')
>>> queue.request("bot", [alert], {}, {}, now_ms=120_000) is None  # inside the cooldown
True
>>> [(job.status, job.attempts) for job in queue.deliver(now_ms=60_000)], sent
([('published', 0)], ['bot'])
>>> queue.counts()[("bot", "published")]
1
>>> queue.close()

A rollback queue keeps one request per (model, version):

>>> rollback = RetrainingQueue(os.path.join(tempfile.mkdtemp(), "rollback.sqlite"), 24 * 3600_000, kind="rollback")
>>> canary = Alert("f2", {"alertname": "CanaryWorse", "model": "bot", "version": "v2"}, {}, "firing", -1.0,
...                1_000, None, ("rollback",))
>>> request = rollback.request("bot", [canary], {}, {}, now_ms=60_000, version="v2", evidence={"verdict": -1})
>>> request.version, request.evidence
('v2', {'verdict': -1})
>>> rollback.request("bot", [canary], {}, {}, now_ms=90_000, version="v2") is None  # the same (model, version)
True
>>> rollback.request("bot", [canary], {}, {}, now_ms=90_000, version="v3").version  # another version of it
'v3'
>>> rollback.close()
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alerts.alert import Alert
from alerts.backoff import Backoff
from alerts.http import HttpClient

__all__ = [
    "ACKNOWLEDGED",
    "BACKOFF",
    "FAILED",
    "HANDED_OVER",
    "KINDS",
    "PUBLISHED",
    "QUEUED",
    "STATUSES",
    "Job",
    "RetrainingQueue",
]

log = logging.getLogger(__name__)

QUEUED = "queued"
PUBLISHED = "published"
ACKNOWLEDGED = "acknowledged"
FAILED = "failed"
HANDED_OVER = "handed_over"
STATUSES = (QUEUED, PUBLISHED, ACKNOWLEDGED, FAILED, HANDED_OVER)
#: The ledger's kinds: retraining jobs, one per model per cooldown; rollback requests, one per (model, version).
KINDS = ("retraining", "rollback")

#: Retries of one step (publish, then trigger): 2 s doubling to 10 min; after 20 failed attempts in a row the
#: job is ``failed`` (2 s + 4 s + ... + 512 s then 10 min each: the last comes about 1 h 57 min after the first).
BACKOFF = Backoff(first_ms=2_000, max_ms=600_000, max_attempts=20)

#: Version of the job document (``Job.to_json``) that consumers of the topic and the trigger receive:
#: 2 added ``version`` (a retraining job's: the model's baseline version when it was queued, null for a model
#: without versions; a rollback request's: the version to roll back) and ``evidence`` (a rollback request's:
#: the comparison against the baseline, :func:`monitor.evaluate.versions.evidence`; null for a retraining job).
SCHEMA_VERSION = 2
#: Version of the ledger's schema (SQLite's ``user_version``): 2 added ``handed_over``, 3 the ``version``
#: column (:func:`_migrate`).
_LEDGER_VERSION = 3
_MAX_ERROR_CHARS = 500

PublishFn = Callable[..., object]


@dataclass(frozen=True)
class Job:
    """One retraining job (or rollback request) as the ledger holds it.

    ``alerts`` hold each alert's name, fingerprint, state, labels,
    annotations, value and start; ``window`` and ``reference`` are the
    summaries the caller passed (sizes, drift share, drifted features...),
    as plain JSON values. ``created_ms`` is the event time of the request.
    ``version`` is the model version the job concerns (see the module's
    docstring), ``evidence`` what a rollback request rests on (plain JSON data).
    The delivery fields (``status``, ``attempts`` of the current step,
    ``last_error``, ``next_attempt_ms``, ``updated_ms``) change as the job is
    delivered; :meth:`to_json` leaves them out, so every attempt sends the same
    bytes.
    """

    id: str
    model: str
    reason: str
    alerts: tuple[dict[str, Any], ...]
    window: dict[str, Any]
    reference: dict[str, Any]
    created_ms: int
    version: str | None = None
    evidence: dict[str, Any] | None = None
    status: str = QUEUED
    attempts: int = 0
    last_error: str | None = None
    next_attempt_ms: int | None = 0
    updated_ms: int | None = None

    def to_json(self) -> str:
        """The job document published to the topic and POSTed to the trigger (compact, keys sorted).

        Consumers deduplicate on ``id``: delivery is at least once.
        """
        document = {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "reason": self.reason,
            "alerts": list(self.alerts),
            "window": self.window,
            "reference": self.reference,
            "created_ms": self.created_ms,
            "evidence": self.evidence,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


_TABLE = f"""
CREATE TABLE IF NOT EXISTS {{table}} (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(status) for status in STATUSES)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (model, created_ms);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, next_attempt_ms);
"""
_COLUMNS = "id, model, version, created_ms, status, attempts, last_error, next_attempt_ms, updated_ms, payload"
_NAMES = tuple(_COLUMNS.split(", "))


class RetrainingQueue:
    """Jobs for firing alerts: one per scope per cooldown, kept in a ledger, delivered with retries.

    The ledger of both actions: retraining jobs (``kind="retraining"``, one per model) and rollback requests
    (``kind="rollback"``, one per model and version).

    Parameters
    ----------
    ledger_path : str or Path
        The SQLite file (created with its directory if missing), normally
        ``<state.dir>/jobs.sqlite`` (retraining) or ``<state.dir>/rollback.sqlite``. One queue per file.
    cooldown_ms : float
        No job is created for a model (a rollback request: a model's version)
        while another job of the same was
        created less than ``cooldown_ms`` of event time before (or after) the
        request; 0 disables the cooldown (the ids still deduplicate replays).
    publish : callable, optional
        ``publish(key=model, value=json_bytes)``: returns once the broker
        acknowledged the message, raises on failure. Injected by the daemon so
        that ``alerts`` never imports Kafka.
    trigger_url : str, optional
        An ``http(s)://`` URL that receives each job as a JSON POST (with an
        ``Idempotency-Key`` header holding the job id) after it is published;
        a 2xx answer acknowledges the job. Redirects are not followed.
    timeout_s : float
        Timeout of one trigger request.
    backoff : Backoff
        When a failed step is tried again, and after how many failures in a
        row the job is ``failed``.
    kind : {"retraining", "rollback"}
        What the ledger holds: the scope of its cooldown and ids (the model,
        or the model and version), and the name its log lines use.

    Notes
    -----
    Thread-safe: requests, reads and one delivery at a time may run from
    different threads; the ledger lock is not held while publishing or
    POSTing. ``request`` takes event time, ``deliver`` the clock the backoff
    should follow (wall time in the daemon); a new job is due at once.
    """

    def __init__(
        self,
        ledger_path: str | Path,
        cooldown_ms: float,
        publish: PublishFn | None = None,
        trigger_url: str | None = None,
        timeout_s: float = 5.0,
        backoff: Backoff = BACKOFF,
        kind: str = "retraining",
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if cooldown_ms < 0:
            raise ValueError(f"cooldown_ms must be >= 0, got {cooldown_ms!r}")
        if backoff.max_attempts is None:
            raise ValueError("a retraining backoff needs max_attempts: a job must end failed, not wait for ever")
        if trigger_url is not None and not trigger_url.startswith(("http://", "https://")):
            raise ValueError("trigger_url must be an http:// or https:// URL")  # the URL itself may hold a token
        self.ledger_path = Path(ledger_path)
        self.cooldown_ms = cooldown_ms
        self.publish = publish
        self.trigger_url = trigger_url
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.kind = kind
        self._what = "rollback request" if kind == "rollback" else "retraining job"
        #: The jobs that share a cooldown: an SQL condition on the ``model`` (and ``version``) of those given.
        self._scope = "model = {model}" + (" AND version IS {version}" if kind == "rollback" else "")
        self._lock = threading.RLock()  # the connection and its transactions
        self._deliver_lock = threading.Lock()  # one delivery round at a time, so no job is sent twice at once
        self._client = HttpClient(timeout_s)
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.ledger_path, isolation_level=None, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a job is on disk before the checkpoint that follows it
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _LEDGER_VERSION:
                self._db.close()
                raise RuntimeError(
                    f"{self.ledger_path}: job ledger version {version} is newer than this driftwarden"
                    f" ({_LEDGER_VERSION})"
                )
            if 0 < version < _LEDGER_VERSION:
                _migrate(self._db, self.ledger_path, version)
            self._db.executescript(_TABLE.format(table="jobs") + _INDEXES)
            self._db.execute(f"PRAGMA user_version={_LEDGER_VERSION}")

    # -- requests -------------------------------------------------------------------------------------------

    def request(
        self,
        model: str,
        alerts: Iterable[Alert],
        window: Mapping[str, Any],
        reference: Mapping[str, Any],
        now_ms: float,
        version: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> Job | None:
        """Create and record a job for ``model`` unless the cooldown or an identical earlier request forbids it.

        Returns the new job (``queued``), or None when no job was created: a
        job of this model (a rollback request: of this model and ``version``)
        was created less than ``cooldown_ms`` from
        ``now_ms``, or this very job (same id) is already in the ledger. The
        job is committed to the ledger before this returns; a ledger error
        raises, so that the caller does not checkpoint past it.
        """
        alerts = sorted(alerts, key=lambda alert: (alert.starts_at_ms, alert.fingerprint))
        if not alerts:
            raise ValueError(f"a {self._what} for {model!r} needs at least one alert")
        if self.kind == "rollback" and version is None:
            raise ValueError(f"a rollback request for {model!r} needs the version to roll back")
        scope: list[str | None] = [model, version] if self.kind == "rollback" else [model]
        created_ms = int(now_ms)
        job = Job(
            id=_job_id(scope, alerts[0], created_ms, self.cooldown_ms),
            model=model,
            reason="; ".join(f"{alert.name}: {_summary(alert)}" for alert in alerts),
            alerts=tuple(_plain(_alert_document(alert)) for alert in alerts),
            window=_plain(dict(window)),
            reference=_plain(dict(reference)),
            created_ms=created_ms,
            version=version,
            evidence=None if evidence is None else _plain(dict(evidence)),
            updated_ms=created_ms,
        )
        payload = job.to_json()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                    self._db.execute("ROLLBACK")
                    return None
                recent = self._db.execute(
                    f"SELECT 1 FROM jobs WHERE {self._scope.format(model='?', version='?')}"
                    " AND created_ms > ? AND created_ms < ? LIMIT 1",
                    (*scope, created_ms - self.cooldown_ms, created_ms + self.cooldown_ms),
                ).fetchone()
                if recent:
                    self._db.execute("ROLLBACK")
                    return None
                self._db.execute(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})",
                    (job.id, model, version, created_ms, QUEUED, 0, None, 0, created_ms, payload),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        log.info("%s %s queued for model %s: %s", self._what, job.id, model, job.reason, extra=_named(job))
        return job

    # -- delivery -------------------------------------------------------------------------------------------

    def deliver(self, now_ms: float) -> list[Job]:
        """Deliver the jobs due at ``now_ms``; return them as they stand afterwards.

        A ``queued`` job is published (``published``) and then, when
        ``trigger_url`` is set, POSTed (``acknowledged`` on 2xx). A failure
        leaves the job where it was, counts an attempt, records the error and
        schedules the next attempt after ``backoff``; after its
        ``max_attempts`` failures of one step, or a trigger that rejects the
        job as invalid (400, 422), the job is ``failed``. Success of
        a step resets ``attempts`` for the next one. Never raises for a
        delivery failure; with neither ``publish`` nor ``trigger_url`` it does
        nothing.
        """
        if self.publish is None and self.trigger_url is None:
            return []
        with self._deliver_lock:
            statuses = self._undelivered()
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE status IN ({', '.join('?' * len(statuses))})"
                    " AND next_attempt_ms <= ? ORDER BY next_attempt_ms, created_ms, id",
                    (*statuses, now_ms),
                ).fetchall()
            return [self._deliver_one(_job_from_row(row), now_ms) for row in rows]

    def _undelivered(self) -> tuple[str, ...]:
        """The statuses of jobs with a step still to deliver (a published job waits for the trigger, if any)."""
        return (QUEUED, PUBLISHED) if self.trigger_url is not None else (QUEUED,)

    def _deliver_one(self, job: Job, now_ms: float) -> Job:
        body = job.to_json().encode()
        if job.status == QUEUED and self.publish is not None:
            try:
                self.publish(key=job.model, value=body)
            except Exception as error:
                return self._failed(job, now_ms, f"publish: {_describe(error)}")
            job = self._update(job, now_ms, status=PUBLISHED, attempts=0, last_error=None, next_attempt_ms=0)
            log.info("%s %s for model %s published", self._what, job.id, job.model, extra=_named(job))
        if self.trigger_url is None:
            return job
        headers = {"Content-Type": "application/json", "Idempotency-Key": job.id, "User-Agent": "driftwarden"}
        answer = self._client.post(self.trigger_url, body, headers)
        if not answer.ok:
            return self._failed(job, now_ms, f"trigger: {answer.error}"[:_MAX_ERROR_CHARS], give_up=answer.rejected)
        log.info("%s %s for model %s acknowledged by the trigger", self._what, job.id, job.model, extra=_named(job))
        return self._update(job, now_ms, status=ACKNOWLEDGED, attempts=0, last_error=None, next_attempt_ms=None)

    def _failed(self, job: Job, now_ms: float, error: str, give_up: bool = False) -> Job:
        attempts = job.attempts + 1
        next_attempt_ms = None if give_up else self.backoff.next_attempt_ms(attempts, now_ms)
        if next_attempt_ms is None:
            message = "%s %s for model %s failed after %d attempts: %s"
            log.error(message, self._what, job.id, job.model, attempts, error, extra=_named(job))
            return self._update(job, now_ms, status=FAILED, attempts=attempts, last_error=error, next_attempt_ms=None)
        log.warning(
            "%s %s for model %s, attempt %d of %d: %s; next in %d ms",
            self._what,
            job.id,
            job.model,
            attempts,
            self.backoff.max_attempts,
            error,
            next_attempt_ms - int(now_ms),
            extra=_named(job),
        )
        return self._update(job, now_ms, attempts=attempts, last_error=error, next_attempt_ms=next_attempt_ms)

    def _update(self, job: Job, now_ms: float, **changes: Any) -> Job:
        job = replace(job, updated_ms=int(now_ms), **changes)
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, attempts = ?, last_error = ?, next_attempt_ms = ?, updated_ms = ?"
                " WHERE id = ?",
                (job.status, job.attempts, job.last_error, job.next_attempt_ms, job.updated_ms, job.id),
            )
        return job

    # -- models moving between replicas ---------------------------------------------------------------------

    def entries(self, models: Iterable[str]) -> list[dict[str, Any]]:
        """The jobs of ``models`` another ledger needs to take them over, as plain data (one mapping per row).

        That is every job created at most ``cooldown_ms`` before the newest
        job of its model (a rollback request: of its model and version), the
        newest included (the new owner keeps the cooldown, and
        the ids of the latest requests with it), and every job with a
        step still to deliver (the new owner delivers it). Older, delivered
        jobs stay here as history.
        """
        models = sorted(set(models))
        if not models:
            return []
        statuses = self._undelivered()
        marks = ", ".join("?" * len(models))
        same_scope = self._scope.format(model="job.model", version="job.version")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs AS job WHERE model IN ({marks})"
                f" AND (status IN ({', '.join('?' * len(statuses))}) OR created_ms >="
                f" (SELECT MAX(created_ms) FROM jobs WHERE {same_scope}) - ?)"
                " ORDER BY model, created_ms, id",
                (*models, *statuses, self.cooldown_ms),
            ).fetchall()
        return [dict(zip(_NAMES, row, strict=True)) for row in rows]

    def merge(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Take in :meth:`entries` of another ledger; returns how many rows were added or taken back.

        A job this ledger holds already is left as it stands (merging twice
        is harmless), unless this ledger had handed it over: its model has
        come back, and the entry is the job as it stands now. A job still to
        deliver is due at once here (what failed may have been the other
        replica's way to the broker); its attempts so far still count. An
        entry of a ledger from before versions (no ``version``) has none.
        """
        undelivered = self._undelivered()
        rows = [
            tuple(0 if name == "next_attempt_ms" and entry["status"] in undelivered else entry[name] for name in _NAMES)
            for entry in ({"version": None, **entry} for entry in entries)
        ]
        if not rows:
            return 0
        updates = ", ".join(f"{name} = excluded.{name}" for name in _NAMES[_NAMES.index("status") :])
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_NAMES))})"
                    f" ON CONFLICT (id) DO UPDATE SET {updates} WHERE jobs.status = '{HANDED_OVER}'",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def hand_over(self, models: Iterable[str], now_ms: float) -> int:
        """Stop delivering the jobs of ``models`` (now another ledger's to deliver); returns how many there were.

        They stay in this ledger as ``handed_over``. Waits for a delivery
        round in progress, so no job is half delivered here and whole there.
        """
        models = sorted(set(models))
        if not models:
            return 0
        statuses = self._undelivered()
        with self._deliver_lock, self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET status = ?, next_attempt_ms = NULL, updated_ms = ?"
                f" WHERE model IN ({', '.join('?' * len(models))}) AND status IN ({', '.join('?' * len(statuses))})",
                (HANDED_OVER, int(now_ms), *models, *statuses),
            )
            return cursor.rowcount

    # -- reads ----------------------------------------------------------------------------------------------

    def jobs(self, model: str | None = None, limit: int = 100) -> list[Job]:
        """The newest ``limit`` jobs (of ``model``, or of every model), newest first."""
        where, parameters = ("WHERE model = ?", (model,)) if model is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created_ms DESC, id DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
        return [_job_from_row(row) for row in rows]

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of jobs per (model, current status), every status listed (0 included) for each model seen.

        Feeds ``driftwarden_retraining_jobs_total{model,status}``: it counts
        jobs by their *current* status, so a job moves from ``queued`` to
        ``published`` and the ``queued`` count goes down again; only the sum
        over statuses (every job ever created for the model) only grows.
        """
        with self._lock:
            rows = self._db.execute("SELECT model, status, COUNT(*) FROM jobs GROUP BY model, status").fetchall()
        counts = {(model, status): 0 for model in sorted({row[0] for row in rows}) for status in STATUSES}
        counts.update(((model, status), n) for model, status, n in rows)
        return counts

    # -- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RetrainingQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _migrate(db: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring a ledger of an older ``version`` to :data:`_LEDGER_VERSION`, in one transaction, keeping every job.

    Version 2 admits ``handed_over`` in the ``status`` check, version 3 adds the
    ``version`` column (NULL: the jobs queued before versions concern none).
    SQLite cannot alter a check, so the table is copied into one of the
    current schema; either older version takes the same copy.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != version:  # another process migrated it meanwhile
            db.execute("COMMIT")
            return
        db.execute(_TABLE.format(table="jobs_new"))
        kept = ", ".join(name for name in _NAMES if name != "version")
        db.execute(f"INSERT INTO jobs_new ({kept}) SELECT {kept} FROM jobs")
        db.execute("DROP TABLE jobs")  # its indexes with it
        db.execute("ALTER TABLE jobs_new RENAME TO jobs")
        db.execute(f"PRAGMA user_version={_LEDGER_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    log.info("%s: job ledger migrated from version %d to %d", path, version, _LEDGER_VERSION)


def _job_id(scope: list[str | None], first: Alert, now_ms: float, cooldown_ms: float) -> str:
    """Scope (model, or model and version), cooldown bucket and the earliest alert's fingerprint and start: the
    same ticks give the same id.

    Two jobs of one scope are at least ``cooldown_ms`` apart, so they fall in
    different buckets and never share an id.
    """
    bucket = int(now_ms // cooldown_ms) if cooldown_ms > 0 else int(now_ms)
    key = json.dumps([*scope, bucket, first.fingerprint, first.starts_at_ms], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _summary(alert: Alert) -> str:
    annotations = alert.annotations
    return annotations.get("summary") or annotations.get("description") or f"value {alert.value:g}"


def _alert_document(alert: Alert) -> dict[str, Any]:
    return {
        "name": alert.name,
        "fingerprint": alert.fingerprint,
        "state": alert.state,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": alert.value,
        "starts_at_ms": alert.starts_at_ms,
    }


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays unwrapped, sets sorted, NaN and infinities as None."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return [_plain(item) for item in sorted(value, key=str)]
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return _plain(value.tolist())
    raise TypeError(f"job summaries must be JSON data, got {type(value).__name__}: {value!r}")


def _named(job: Job) -> dict[str, str | None]:
    """What a log line about ``job`` names, as its fields (``extra=``)."""
    return {"job": job.id, "model": job.model, "version": job.version}


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]


def _job_from_row(row: tuple) -> Job:
    job_id, model, version, created_ms, status, attempts, last_error, next_attempt_ms, updated_ms, payload = row
    document = json.loads(payload)
    return Job(
        id=job_id,
        model=model,
        version=version,
        evidence=document.get("evidence"),  # absent from the documents of schema 1
        reason=document["reason"],
        alerts=tuple(document["alerts"]),
        window=document["window"],
        reference=document["reference"],
        created_ms=created_ms,
        status=status,
        attempts=attempts,
        last_error=last_error,
        next_attempt_ms=next_attempt_ms,
        updated_ms=updated_ms,
    )

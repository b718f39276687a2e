"""The retraining queue: cooldown, idempotent ids, a ledger that survives restarts, delivery with retries.

The Kafka side is a plain function standing in for the daemon's publisher
(the real broker is exercised by the integration tests); the HTTP trigger is a
real ``http.server`` on loopback.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import numpy as np
import pytest

from alerts.alert import Alert
from alerts.retraining import (
    ACKNOWLEDGED,
    BACKOFF,
    FAILED,
    HANDED_OVER,
    PUBLISHED,
    QUEUED,
    STATUSES,
    RetrainingQueue,
)

HOUR_MS = 3_600_000
COOLDOWN_MS = 6 * HOUR_MS
T0 = 1_772_366_460_000  # event time of the first request


def _alert(name="DataDrift", model="support-bot", fingerprint="fp-drift", starts_at_ms=T0 - 300_000, **extra):
    annotations = extra.pop("annotations", {"summary": f"{name} on {model}"})
    return Alert(
        fingerprint=fingerprint,
        labels={"alertname": name, "model": model, "severity": "warning", **extra},
        annotations=annotations,
        state="firing",
        value=0.42,
        starts_at_ms=starts_at_ms,
        ends_at_ms=None,
        actions=("alertmanager", "retrain"),
    )


WINDOW = {"n_events": 10_000, "drift_share": 0.42, "drifted_features": ["input_tokens", "locale"]}
REFERENCE = {"n_events": 5_000, "source": "warmup"}


def _request(queue, model="support-bot", now_ms=T0, alerts=None, **versioned):
    return queue.request(model, alerts or [_alert(model=model)], WINDOW, REFERENCE, now_ms, **versioned)


class Publisher:
    """The daemon's publish callable, faked: records each call, fails while ``failures`` is positive."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, *, key: str, value: bytes) -> None:
        self.calls.append((key, value))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")


@pytest.fixture
def ledger(tmp_path):
    return tmp_path / "state" / "retraining.sqlite"


@pytest.fixture
def trigger():
    """A loopback HTTP server answering POSTs with the codes in ``server.codes`` (then 204), recording them."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.received.append((self.path, dict(self.headers), body))
            code = server.codes.pop(0) if server.codes else 204
            self.send_response(code)
            if 300 <= code < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.codes = []
    server.received = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/retrain"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


# -- cooldown and ids --------------------------------------------------------------------------------------------


def test_one_job_per_model_per_cooldown_and_a_new_one_after_it(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        first = _request(queue, now_ms=T0)
        assert first is not None and first.status == QUEUED and first.created_ms == T0
        assert _request(queue, now_ms=T0 + 1) is None
        assert _request(queue, now_ms=T0 + COOLDOWN_MS - 1) is None
        other = _request(queue, model="loan-approver", now_ms=T0 + 1)  # models keep their own cooldown
        assert other is not None and other.model == "loan-approver"
        second = _request(queue, now_ms=T0 + COOLDOWN_MS)
        assert second is not None and second.id != first.id
        assert [job.id for job in queue.jobs("support-bot")] == [second.id, first.id]
        assert len(queue.jobs()) == 3


def test_an_earlier_tick_replayed_inside_the_cooldown_of_a_later_job_creates_none(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        assert _request(queue, now_ms=T0) is not None
        assert _request(queue, now_ms=T0 - 60_000, alerts=[_alert(fingerprint="other")]) is None
        assert _request(queue, now_ms=T0 - COOLDOWN_MS, alerts=[_alert(fingerprint="other")]) is not None


def test_the_same_request_twice_makes_one_job_even_without_cooldown(ledger, tmp_path):
    alerts = [_alert(), _alert("LatencyHigh", fingerprint="fp-latency", starts_at_ms=T0 - 60_000)]
    with RetrainingQueue(ledger, cooldown_ms=0) as queue:
        job = _request(queue, alerts=alerts)
        assert job is not None
        assert _request(queue, alerts=list(reversed(alerts))) is None  # same tick replayed, alerts in any order
        assert len(queue.jobs()) == 1
        assert _request(queue, now_ms=T0 + 30_000, alerts=alerts) is not None  # no cooldown: a later tick is new
    # The id is derived from the request alone: another ledger gives the same one.
    with RetrainingQueue(tmp_path / "other.sqlite", cooldown_ms=0) as queue:
        assert _request(queue, alerts=alerts).id == job.id


def test_ids_depend_on_model_alert_and_time_bucket(tmp_path):
    def job_id(name, model="support-bot", now_ms=T0, alert=None):
        with RetrainingQueue(tmp_path / f"{name}.sqlite", cooldown_ms=COOLDOWN_MS) as queue:
            return queue.request(model, [alert or _alert(model=model)], WINDOW, REFERENCE, now_ms).id

    base = job_id("base")
    assert job_id("same-bucket", now_ms=T0 + 1_000) == base
    assert job_id("model", model="loan-approver") != base
    assert job_id("bucket", now_ms=T0 + COOLDOWN_MS) != base
    assert job_id("fingerprint", alert=_alert(fingerprint="fp-other")) != base
    assert job_id("start", alert=_alert(starts_at_ms=T0 - 1)) != base


def test_a_request_needs_an_alert(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue, pytest.raises(ValueError, match="at least one"):
        queue.request("support-bot", [], WINDOW, REFERENCE, T0)


# -- the ledger across restarts ----------------------------------------------------------------------------------


def test_a_restart_inside_the_cooldown_creates_no_job_and_keeps_statuses(ledger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as queue:
        published = _request(queue)
        queue.deliver(T0)
        queued = _request(queue, model="loan-approver")  # never delivered: no publisher after the restart
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        assert _request(queue, now_ms=T0 + HOUR_MS, alerts=[_alert(fingerprint="after-restart")]) is None
        assert _request(queue) is None  # the replayed tick itself
        assert queue.get(published.id).status == PUBLISHED
        assert queue.get(queued.id) == queued
        assert queue.counts()[("support-bot", PUBLISHED)] == 1
        assert _request(queue, now_ms=T0 + COOLDOWN_MS) is not None


def test_the_ledger_is_sqlite_in_wal_mode_with_the_delivery_columns(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        job = _request(queue)
    db = sqlite3.connect(ledger)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute(
            "SELECT model, status, attempts, last_error, next_attempt_ms, updated_ms, payload FROM jobs WHERE id = ?",
            (job.id,),
        ).fetchone()
    finally:
        db.close()
    assert row[:6] == ("support-bot", QUEUED, 0, None, 0, T0)
    assert json.loads(row[6]) == json.loads(job.to_json())


def test_concurrent_requests_for_one_model_make_one_job(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        barrier = threading.Barrier(8)
        results = []

        def ask(i):
            barrier.wait()
            results.append(_request(queue, now_ms=T0 + i, alerts=[_alert(fingerprint=f"fp-{i}")]))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 8
        assert sum(job is not None for job in results) == 1
        assert len(queue.jobs()) == 1


# -- a model's jobs moving to another replica's ledger ------------------------------------------------------------


def test_entries_are_the_jobs_inside_the_cooldown_of_the_newest_and_the_undelivered_ones(ledger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as queue:
        old = _request(queue, now_ms=T0)  # delivered, and a cooldown before the newest: history only
        queue.deliver(T0)
        publisher.failures = 1
        undelivered = _request(queue, now_ms=T0 + COOLDOWN_MS)  # a cooldown before the newest, not delivered
        queue.deliver(T0 + COOLDOWN_MS)  # fails: tried again 2 s later
        newest = _request(queue, now_ms=T0 + 2 * COOLDOWN_MS)
        queue.deliver(T0 + COOLDOWN_MS + 1_000)  # the newest is delivered
        other = _request(queue, model="loan-approver")

        entries = queue.entries(["support-bot"])

        assert [entry["id"] for entry in entries] == [undelivered.id, newest.id]
        assert [entry["status"] for entry in entries] == [QUEUED, PUBLISHED] and entries[0]["attempts"] == 1
        assert queue.get(old.id).status == PUBLISHED
        assert [entry["id"] for entry in queue.entries(["support-bot", "loan-approver", "nobody"])] == [
            other.id,
            undelivered.id,
            newest.id,
        ]
        assert queue.entries([]) == [] and queue.entries(["nobody"]) == []
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(entries)) == entries  # plain data


def test_without_a_cooldown_the_entries_still_hold_the_newest_job(ledger):
    with RetrainingQueue(ledger, cooldown_ms=0, publish=Publisher()) as queue:
        _request(queue, now_ms=T0)
        newest = _request(queue, now_ms=T0 + 1_000)
        queue.deliver(T0)
        assert [entry["id"] for entry in queue.entries(["support-bot"])] == [newest.id]


def test_merged_entries_keep_the_cooldown_and_ids_of_one_ledger_and_merging_twice_is_harmless(ledger, tmp_path):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as first:
        job = _request(first)
        entries = first.entries(["support-bot"])
    with RetrainingQueue(tmp_path / "other.sqlite", cooldown_ms=COOLDOWN_MS) as other:
        assert other.merge(entries) == 1
        assert other.merge(entries) == 0
        assert other.jobs() == [job]
        assert _request(other, now_ms=T0 + HOUR_MS, alerts=[_alert(fingerprint="on-the-new-owner")]) is None
        assert _request(other) is None  # the same tick replayed there: the same id
        assert _request(other, now_ms=T0 + COOLDOWN_MS) is not None


def test_handed_over_jobs_are_not_delivered_here_and_are_taken_back_when_the_model_returns(ledger, tmp_path):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as first:
        delivered = _request(first)
        first.deliver(T0)
        publisher.failures = 1
        late = _request(first, now_ms=T0 + COOLDOWN_MS)
        first.deliver(T0 + COOLDOWN_MS)  # the broker is down: queued, to be tried again
        assert first.get(late.id).status == QUEUED
        entries = first.entries(["support-bot"])

        assert first.hand_over(["support-bot"], now_ms=T0 + COOLDOWN_MS + 1) == 1
        assert first.hand_over(["support-bot"], now_ms=T0 + COOLDOWN_MS + 1) == 0
        assert (first.get(late.id).status, first.get(late.id).next_attempt_ms) == (HANDED_OVER, None)
        assert first.get(delivered.id).status == PUBLISHED  # delivered before: history as it was
        assert first.deliver(T0 + 2 * COOLDOWN_MS) == [] and len(publisher.calls) == 2
        assert first.counts()[("support-bot", HANDED_OVER)] == 1

        with RetrainingQueue(tmp_path / "other.sqlite", cooldown_ms=COOLDOWN_MS, publish=publisher) as other:
            other.merge(entries)
            assert other.get(late.id).status == QUEUED
            [published] = other.deliver(T0 + 2 * COOLDOWN_MS)  # the new owner delivers it, once
            assert (published.id, published.status) == (late.id, PUBLISHED)
            back = other.entries(["support-bot"])
        # The model comes back: this ledger takes the job as it stands now, and does not deliver it again.
        assert first.merge(back) == 1 and first.merge(back) == 0
        assert first.get(late.id).status == PUBLISHED
        assert first.deliver(T0 + 3 * COOLDOWN_MS) == [] and len(publisher.calls) == 3


def test_a_job_handed_over_undelivered_and_back_undelivered_is_delivered_by_its_first_ledger(ledger, tmp_path):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as first:  # no publisher yet: stays queued
        job = _request(first)
        entries = first.entries(["support-bot"])
        first.hand_over(["support-bot"], T0)
    with RetrainingQueue(tmp_path / "other.sqlite", cooldown_ms=COOLDOWN_MS) as other:
        other.merge(entries)
        back = other.entries(["support-bot"])
        other.hand_over(["support-bot"], T0)
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as first:
        first.merge(back)
        assert [delivered.id for delivered in first.deliver(T0)] == [job.id]
        assert publisher.calls == [("support-bot", job.to_json().encode())]


# -- rollback requests: one per (model, version) ----------------------------------------------------------------

ROLLBACK_COOLDOWN_MS = 24 * HOUR_MS
EVIDENCE = {
    "verdict": -1,
    "baseline": "v1",
    "start_ms": T0 - 600_000.0,
    "evaluated_at_ms": T0,
    "metrics": {"error_ratio": {"effect": 0.2, "n_baseline": 900, "n_candidate": 100, "p_value": 1e-4}},
}


def _rollback(queue, version="v2", model="support-bot", now_ms=T0, alerts=None, evidence=EVIDENCE):
    alerts = alerts or [_alert("CanaryWorse", model=model, fingerprint=f"fp-{model}-{version}", version=version)]
    return queue.request(model, alerts, {}, {}, now_ms, version=version, evidence=evidence)


def test_rollback_requests_are_one_per_model_and_version_per_cooldown(ledger):
    with RetrainingQueue(ledger, cooldown_ms=ROLLBACK_COOLDOWN_MS, kind="rollback") as queue:
        first = _rollback(queue)
        assert (first.model, first.version, first.evidence) == ("support-bot", "v2", EVIDENCE)
        assert _rollback(queue, now_ms=T0 + HOUR_MS) is None  # the same version inside its cooldown
        assert _rollback(queue, now_ms=T0 + 1, alerts=[_alert("Other", version="v2")]) is None  # whatever fired
        other_version = _rollback(queue, version="v3", now_ms=T0 + 1)  # versions keep their own cooldown
        other_model = _rollback(queue, model="loan-approver", now_ms=T0 + 1)  # and so do models
        assert other_version.id not in (first.id, other_model.id) and other_model.version == "v2"
        later = _rollback(queue, now_ms=T0 + ROLLBACK_COOLDOWN_MS)
        assert later is not None and later.id != first.id
        assert [job.version for job in queue.jobs("support-bot")] == ["v2", "v3", "v2"]
        with pytest.raises(ValueError, match="needs the version"):
            _rollback(queue, version=None)


def test_a_retraining_ledger_keeps_one_cooldown_per_model_whatever_the_version(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        job = _request(queue, version="v1")
        assert job.version == "v1" and json.loads(job.to_json())["version"] == "v1"
        assert _request(queue, now_ms=T0 + 1, version="v2") is None


def test_a_restarted_rollback_ledger_asks_for_the_same_ids_and_delivers_nothing_twice(ledger, tmp_path):
    publisher = Publisher()
    with RetrainingQueue(ledger, ROLLBACK_COOLDOWN_MS, publish=publisher, kind="rollback") as queue:
        first = _rollback(queue)
        queue.deliver(T0)
    with RetrainingQueue(ledger, ROLLBACK_COOLDOWN_MS, publish=publisher, kind="rollback") as queue:
        assert _rollback(queue) is None  # the same tick replayed after a restart
        assert _rollback(queue, now_ms=T0 + HOUR_MS) is None  # a later one, inside the cooldown
        assert queue.deliver(T0 + HOUR_MS) == [] and len(queue.jobs()) == 1
    assert publisher.calls == [("support-bot", first.to_json().encode())]
    with RetrainingQueue(tmp_path / "other.sqlite", ROLLBACK_COOLDOWN_MS, kind="rollback") as other:
        assert _rollback(other).id == first.id  # ids depend on the request alone
        assert _rollback(other, version="v3").id != first.id


def test_rollback_entries_keep_each_versions_cooldown_on_the_new_owner(ledger, tmp_path):
    publisher = Publisher()
    with RetrainingQueue(ledger, ROLLBACK_COOLDOWN_MS, publish=publisher, kind="rollback") as first:
        old = _rollback(first, version="v3", now_ms=T0 - 2 * ROLLBACK_COOLDOWN_MS)  # delivered long ago: history
        v2 = _rollback(first)
        first.deliver(T0)
        publisher.failures = 1
        v4 = _rollback(first, version="v4", now_ms=T0 + 1)  # not delivered before the move
        first.deliver(T0 + 1)
        entries = first.entries(["support-bot"])
        # Each version's newest request moves (its cooldown and ids with it), v4 also to be delivered.
        assert [(entry["id"], entry["version"]) for entry in entries] == [(old.id, "v3"), (v2.id, "v2"), (v4.id, "v4")]
        assert first.hand_over(["support-bot"], T0 + 2) == 1
        assert first.get(old.id).status == PUBLISHED
    with RetrainingQueue(tmp_path / "other.sqlite", ROLLBACK_COOLDOWN_MS, publish=publisher, kind="rollback") as new:
        assert new.merge(entries) == 3 and new.merge(entries) == 0
        assert _rollback(new, now_ms=T0 + HOUR_MS) is None and _rollback(new, version="v4") is None
        v3 = _rollback(new, version="v3", now_ms=T0 + HOUR_MS)  # v3's cooldown ended long ago
        assert [job.id for job in new.deliver(T0 + 2 * HOUR_MS)] == [v4.id, v3.id]
        assert new.get(v4.id) == dataclasses.replace(v4, status=PUBLISHED, attempts=0, next_attempt_ms=0,
                                                     updated_ms=T0 + 2 * HOUR_MS)  # fmt: skip
    published = [json.loads(value)["id"] for _, value in publisher.calls]
    assert published == [old.id, v2.id, v4.id, v4.id, v3.id]  # v4 failed on the first owner, then once


def test_an_entry_of_a_ledger_from_before_versions_is_merged_without_one(ledger, tmp_path):
    with RetrainingQueue(tmp_path / "old.sqlite", cooldown_ms=COOLDOWN_MS) as old:
        job = _request(old)
        [entry] = old.entries(["support-bot"])
    del entry["version"]
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        assert queue.merge([entry]) == 1 and queue.get(job.id).version is None


# -- the ledger's schema -----------------------------------------------------------------------------------------

#: The ledger as driftwarden wrote it before ``handed_over`` (user_version 1).
_LEDGER_V1 = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'published', 'acknowledged', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX jobs_by_model ON jobs (model, created_ms);
CREATE INDEX jobs_due ON jobs (status, next_attempt_ms);
PRAGMA user_version=1;
"""
#: The ledger as driftwarden wrote it before versions (user_version 2): ``handed_over`` admitted, no ``version``.
_LEDGER_V2 = _LEDGER_V1.replace("'failed')", "'failed', 'handed_over')").replace("user_version=1", "user_version=2")


@pytest.mark.parametrize("schema", [_LEDGER_V1, _LEDGER_V2], ids=["version-1", "version-2"])
def test_an_older_ledger_is_migrated_keeping_every_job(ledger, tmp_path, schema):
    with RetrainingQueue(tmp_path / "source.sqlite", cooldown_ms=COOLDOWN_MS) as source:
        jobs = [_request(source, model=f"model-{status}") for status in STATUSES if status != HANDED_OVER]
    ledger.parent.mkdir(parents=True)
    db = sqlite3.connect(ledger)
    db.executescript(schema)
    for job, status in zip(jobs, (QUEUED, PUBLISHED, ACKNOWLEDGED, FAILED), strict=True):
        document = json.loads(job.to_json())  # as schema 1 wrote it: neither version nor evidence
        document.update(schema_version=1)
        del document["version"], document["evidence"]
        db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, 3, 'boom', NULL, ?, ?)",
            (job.id, job.model, job.created_ms, status, T0 + 1, json.dumps(document)),
        )
    db.commit()
    db.close()

    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        kept = {job.id: job for job in queue.jobs()}
        assert {job_id: (job.status, job.attempts, job.last_error) for job_id, job in kept.items()} == {
            job.id: (status, 3, "boom") for job, status in zip(jobs, (QUEUED, PUBLISHED, ACKNOWLEDGED, FAILED))
        }
        assert all((kept[job.id].version, kept[job.id].evidence) == (None, None) for job in jobs)
        assert all(kept[job.id].to_json() == job.to_json() for job in jobs)
        assert queue.hand_over(["model-queued"], T0) == 1  # handed_over is admitted
        assert _request(queue, model="model-queued", now_ms=T0 + 1) is None  # and the cooldown still holds
        assert _request(queue, model="model-queued", now_ms=T0 + COOLDOWN_MS, version="v2").version == "v2"
    db = sqlite3.connect(ledger)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_by_model", "jobs_due"} <= indexes
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["jobs"]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:  # opened again: nothing more to migrate
        assert len(queue.jobs()) == 5


def test_a_ledger_of_a_newer_driftwarden_is_refused_untouched(ledger):
    ledger.parent.mkdir(parents=True)
    db = sqlite3.connect(ledger)
    db.executescript(_LEDGER_V1.replace("user_version=1", "user_version=4"))
    db.close()
    with pytest.raises(RuntimeError, match="job ledger version 4 is newer than this driftwarden"):
        RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS)
    db = sqlite3.connect(ledger)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    finally:
        db.close()


# -- publishing --------------------------------------------------------------------------------------------------


def test_deliver_publishes_keyed_by_model_once(ledger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as queue:
        job = _request(queue)
        delivered = queue.deliver(T0 + 5)
        assert [(j.id, j.status, j.attempts, j.last_error) for j in delivered] == [(job.id, PUBLISHED, 0, None)]
        assert publisher.calls == [("support-bot", job.to_json().encode())]
        assert queue.get(job.id).status == PUBLISHED
        assert queue.get(job.id).updated_ms == T0 + 5
        assert queue.deliver(T0 + HOUR_MS) == []  # published is final without a trigger
        assert len(publisher.calls) == 1


def test_without_publish_or_trigger_a_job_stays_queued(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        job = _request(queue)
        assert queue.deliver(T0 + HOUR_MS) == []
        assert queue.get(job.id).status == QUEUED


def test_a_failed_publish_is_retried_with_exponential_backoff(ledger):
    publisher = Publisher(failures=2)
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as queue:
        job = _request(queue)
        now = T0 + 10
        (after,) = queue.deliver(now)
        assert (after.status, after.attempts, after.next_attempt_ms) == (QUEUED, 1, now + 2_000)
        assert after.last_error == "publish: ConnectionError: broker unavailable"
        assert queue.get(job.id) == after
        assert queue.deliver(now + 1_999) == [] and len(publisher.calls) == 1  # not due yet
        (after,) = queue.deliver(now + 2_000)
        assert (after.status, after.attempts, after.next_attempt_ms) == (QUEUED, 2, now + 2_000 + 4_000)
        (after,) = queue.deliver(now + 6_000)
        assert (after.status, after.attempts, after.last_error) == (PUBLISHED, 0, None)
        assert len(publisher.calls) == 3 and len({value for _, value in publisher.calls}) == 1  # same bytes each time


def test_backoff_doubles_from_two_seconds_up_to_ten_minutes():
    assert [BACKOFF.delay_ms(n) for n in range(1, 12)] == [
        2_000,
        4_000,
        8_000,
        16_000,
        32_000,
        64_000,
        128_000,
        256_000,
        512_000,
        600_000,
        600_000,
    ]
    assert BACKOFF.delay_ms(1_000) == BACKOFF.max_ms


@pytest.mark.parametrize("max_attempts", [3, BACKOFF.max_attempts])
def test_a_job_fails_after_max_attempts(ledger, max_attempts):
    publisher = Publisher(failures=10**6)
    backoff = dataclasses.replace(BACKOFF, max_attempts=max_attempts)
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher, backoff=backoff) as queue:
        job = _request(queue)
        now, delays = T0, []
        while True:
            (after,) = queue.deliver(now)
            if after.status == FAILED:
                break
            delays.append(after.next_attempt_ms - now)
            now = after.next_attempt_ms
        assert len(publisher.calls) == max_attempts
        assert delays == [BACKOFF.delay_ms(n) for n in range(1, max_attempts)]
        assert (after.attempts, after.next_attempt_ms) == (max_attempts, None)
        assert after.last_error.startswith("publish: ConnectionError")
        assert queue.deliver(now + 10 * BACKOFF.max_ms) == []
        assert queue.get(job.id).status == FAILED
    if max_attempts == 20:  # the documented budget: about two hours, less than the default cooldown
        assert 1.5 * HOUR_MS < sum(delays) < COOLDOWN_MS


# -- the HTTP trigger --------------------------------------------------------------------------------------------


def test_a_2xx_from_the_trigger_acknowledges_the_published_job(ledger, trigger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher, trigger_url=trigger.url) as queue:
        job = _request(queue)
        trigger.codes = [202]
        (after,) = queue.deliver(T0)
        assert (after.status, after.attempts, after.next_attempt_ms) == (ACKNOWLEDGED, 0, None)
        assert queue.get(job.id).status == ACKNOWLEDGED
        ((path, headers, body),) = trigger.received
        assert path == "/retrain"
        assert headers["Content-Type"] == "application/json"
        assert headers["Idempotency-Key"] == job.id
        assert body == publisher.calls[0][1] == job.to_json().encode()
        assert queue.deliver(T0 + HOUR_MS) == [] and len(trigger.received) == 1


def test_a_500_from_the_trigger_is_retried_and_the_job_is_not_published_twice(ledger, trigger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher, trigger_url=trigger.url) as queue:
        job = _request(queue)
        trigger.codes = [500, 503]
        (after,) = queue.deliver(T0)
        assert (after.status, after.attempts, after.next_attempt_ms) == (PUBLISHED, 1, T0 + 2_000)
        assert after.last_error == "trigger: HTTP 500 Internal Server Error"
        assert queue.deliver(T0 + 1_000) == []
        (after,) = queue.deliver(T0 + 2_000)
        assert (after.status, after.attempts) == (PUBLISHED, 2)
        assert after.last_error == "trigger: HTTP 503 Service Unavailable"
        (after,) = queue.deliver(after.next_attempt_ms)
        assert (after.status, after.last_error) == (ACKNOWLEDGED, None)
        assert len(trigger.received) == 3
        assert len(publisher.calls) == 1
        assert queue.get(job.id).status == ACKNOWLEDGED


def test_a_trigger_without_publish_acknowledges_a_queued_job(ledger, trigger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, trigger_url=trigger.url) as queue:
        job = _request(queue)
        (after,) = queue.deliver(T0)
        assert after.status == ACKNOWLEDGED
        assert json.loads(trigger.received[0][2])["id"] == job.id


def test_a_redirect_is_not_an_acknowledgement(ledger, trigger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, trigger_url=trigger.url) as queue:
        _request(queue)
        trigger.codes = [302]
        (after,) = queue.deliver(T0)
        assert (after.status, after.attempts) == (QUEUED, 1)
        assert after.last_error.startswith("trigger: HTTP 302")
        assert [path for path, _, _ in trigger.received] == ["/retrain"]


def test_an_unreachable_trigger_is_retried(ledger, trigger):
    url = trigger.url
    trigger.shutdown()
    trigger.server_close()  # nothing listens on the port any more
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, trigger_url=url, timeout_s=2.0) as queue:
        _request(queue)
        (after,) = queue.deliver(T0)
    assert (after.status, after.attempts, after.next_attempt_ms) == (QUEUED, 1, T0 + 2_000)
    assert after.last_error.startswith("trigger: ConnectionRefusedError")


# -- payload, reads and counts -----------------------------------------------------------------------------------


def test_the_payload_names_the_alerts_and_carries_the_summaries(ledger):
    alerts = [
        _alert("LatencyHigh", fingerprint="fp-latency", starts_at_ms=T0 - 60_000, annotations={}),
        _alert(feature="locale", annotations={"summary": "drift share 0.42 > 0.3", "runbook_url": "http://r/1"}),
    ]
    window = {
        "n_events": np.int64(10_000),
        "drift_share": np.float64(0.42),
        "p_values": np.array([0.01, 0.5]),
        "drifted_features": {"locale", "input_tokens"},
        "psi": float("nan"),
    }
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        job = queue.request("support-bot", alerts, window, REFERENCE, T0)
        assert job.reason == "DataDrift: drift share 0.42 > 0.3; LatencyHigh: value 0.42"  # earliest alert first
        document = json.loads(job.to_json())
        assert document == {
            "schema_version": 2,
            "id": job.id,
            "model": "support-bot",
            "reason": job.reason,
            "alerts": [
                {
                    "name": "DataDrift",
                    "fingerprint": "fp-drift",
                    "state": "firing",
                    "labels": {
                        "alertname": "DataDrift",
                        "model": "support-bot",
                        "severity": "warning",
                        "feature": "locale",
                    },
                    "annotations": {"summary": "drift share 0.42 > 0.3", "runbook_url": "http://r/1"},
                    "value": 0.42,
                    "starts_at_ms": T0 - 300_000,
                },
                {
                    "name": "LatencyHigh",
                    "fingerprint": "fp-latency",
                    "state": "firing",
                    "labels": {"alertname": "LatencyHigh", "model": "support-bot", "severity": "warning"},
                    "annotations": {},
                    "value": 0.42,
                    "starts_at_ms": T0 - 60_000,
                },
            ],
            "window": {
                "n_events": 10_000,
                "drift_share": 0.42,
                "p_values": [0.01, 0.5],
                "drifted_features": ["input_tokens", "locale"],
                "psi": None,
            },
            "reference": REFERENCE,
            "created_ms": T0,
            "version": None,
            "evidence": None,
        }
        assert "status" not in document  # the delivery state is the ledger's, not the message's
        assert queue.get(job.id) == job
        assert queue.get("no-such-job") is None


def test_a_summary_that_is_not_json_data_is_refused(ledger):
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS) as queue:
        with pytest.raises(TypeError, match="JSON data"):
            queue.request("support-bot", [_alert()], {"when": object()}, REFERENCE, T0)
        assert queue.jobs() == []


def test_jobs_newest_first_filtered_and_limited(ledger):
    with RetrainingQueue(ledger, cooldown_ms=0) as queue:
        made = [_request(queue, now_ms=T0 + i * 1_000) for i in range(5)]
        other = _request(queue, model="loan-approver", now_ms=T0 + 10_000)
        assert [job.id for job in queue.jobs()] == [other.id, *(job.id for job in reversed(made))]
        assert [job.id for job in queue.jobs("support-bot", limit=2)] == [made[4].id, made[3].id]
        assert queue.jobs("nobody") == []


def test_counts_are_jobs_by_current_status_for_every_status(ledger):
    publisher = Publisher()
    with RetrainingQueue(ledger, cooldown_ms=COOLDOWN_MS, publish=publisher) as queue:
        assert queue.counts() == {}
        _request(queue)
        _request(queue, model="loan-approver")
        before = queue.counts()
        assert before == {
            **{("loan-approver", status): 0 for status in STATUSES},
            **{("support-bot", status): 0 for status in STATUSES},
            ("loan-approver", QUEUED): 1,
            ("support-bot", QUEUED): 1,
        }
        publisher.failures = 1  # the first job delivered fails once, the other is published
        queue.deliver(T0)
        after = queue.counts()
        assert sum(after.values()) == 2
        assert sorted(status for (_, status), n in after.items() for _ in range(n)) == [PUBLISHED, QUEUED]


def test_alerts_retraining_imports_neither_monitor_nor_kafka():
    code = (
        "import sys, alerts.retraining; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('monitor', 'kafka')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

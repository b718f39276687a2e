"""Rollback requests through the daemon's own producer to a real Kafka-protocol broker (Tansu), read back.

The daemon (:class:`monitor.run.daemon.Daemon`, not run: its pipeline fed directly) queues a request for each
clearly worse canary and its delivery job publishes them; a raw consumer reads the topic from the start. A second
daemon on the same state directory, replaying the same events, publishes nothing more.
"""

from __future__ import annotations

import json

from monitor.config import parse_config
from monitor.run.daemon import Daemon
from tests.integration.test_producer import read_topic
from tests.unit.alerts.test_rollback import ROLLBACK, calls, settings
from tests.unit.monitor.test_feedback import _apply


def _daemon(kafka_broker, state_dir, topic: str) -> Daemon:
    raw = {**settings(state_dir, rules=[ROLLBACK]), "rollback": {"topic": topic}}
    raw["kafka"] = {"bootstrap_servers": kafka_broker.bootstrap_servers}
    raw["server"] = {"host": "127.0.0.1", "port": 0}
    return Daemon(parse_config(raw, environ={}))


def _run(daemon: Daemon, events: list[dict], snapshot: dict | None = None) -> dict:
    """Restore ``snapshot`` (the alert state of a checkpoint), apply ``events`` (the rules run on the way, as the
    model's event time crosses each evaluation), deliver; return the alert state to checkpoint."""
    try:
        if snapshot is not None:
            daemon.alerting.restore(snapshot)
        _apply(daemon.pipeline, events, batch=250)
        daemon.alerting.deliver()
        return daemon.alerting.snapshot()
    finally:
        for sink in daemon._jobs.values():
            sink.close()
        daemon.server.stop()


def test_one_rollback_request_per_worse_version_lands_on_the_topic_keyed_by_model_and_none_after_a_restart(
    kafka_broker, new_topic, tmp_path
):
    topic = new_topic()
    events = calls()
    first = _daemon(kafka_broker, tmp_path / "state", topic)
    snapshot = _run(first, events)
    requests = {job.id: job for job in first.alerting.rollback.jobs()}
    assert sorted(job.version for job in requests.values()) == ["v2", "v3"]
    assert {job.status for job in requests.values()} == {"published"}

    again = _daemon(kafka_broker, tmp_path / "state", topic)  # restarted from the checkpoint before these events
    _run(again, events, snapshot)

    messages = read_topic(kafka_broker.bootstrap_servers, topic, expected=2, settle_ms=1_000)
    assert [message.key for message in messages] == [b"m", b"m"]
    documents = [json.loads(message.value) for message in messages]
    assert {document["id"]: document for document in documents} == {
        job_id: json.loads(job.to_json()) for job_id, job in requests.items()
    }
    for document in documents:
        assert document["evidence"]["verdict"] == -1 and document["evidence"]["baseline"] == "v1"
        assert document["evidence"]["metrics"]["error_ratio"]["n_candidate"] > 0
    assert [job.id for job in again.alerting.rollback.jobs()] == list(requests)

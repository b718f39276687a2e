"""Kafka down is a boring failure: the daemon serves /healthz, says not ready, retries, and stops on SIGTERM."""

from __future__ import annotations

import signal
import time

import pytest

from monitor.demo.broker import EmbeddedBroker, free_port
from monitor.ingest.kafka import create_topics
from tests.components import DaemonProcess, daemon_config, http_get, wait_for
from tests.conftest import DEFAULT_CLIENT_FIRST


@pytest.fixture
def daemon_without_kafka(tmp_path, kafka_client):
    """A daemon pointed at a free port where no broker listens (yet), with each Kafka client."""
    port = free_port()
    config = daemon_config(f"127.0.0.1:{port}", tmp_path / "state", "late", kafka={"client": kafka_client})
    daemon = DaemonProcess(config, tmp_path).launch()
    daemon.kafka_port = port
    yield daemon
    daemon.close()


@pytest.mark.parametrize("kafka_client", DEFAULT_CLIENT_FIRST, indirect=True)
def test_unready_while_kafka_is_away_then_consuming_once_it_comes(daemon_without_kafka):
    daemon = daemon_without_kafka
    wait_for(lambda: http_get(f"{daemon.url}/healthz")[0] == 200, 20, "/healthz")
    assert http_get(f"{daemon.url}/readyz")[0] == 503
    wait_for(lambda: "retrying" in daemon.log(), 30, "a log line saying it retries")
    with EmbeddedBroker(port=daemon.kafka_port) as broker:
        create_topics({"bootstrap_servers": broker.bootstrap_servers}, {"late": 1, "late-dlq": 1})
        wait_for(lambda: http_get(f"{daemon.url}/readyz")[0] == 200, 60, "/readyz once Kafka is up")
        assert daemon.stop(signal.SIGTERM) == 0


def test_sigterm_while_kafka_is_unreachable_exits_promptly(daemon_without_kafka):
    daemon = daemon_without_kafka
    wait_for(lambda: http_get(f"{daemon.url}/healthz")[0] == 200, 20, "/healthz")
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout_s=30) == 0
    # Well inside the chart's 60 s grace period: seconds on a quiet machine, 18 s seen on a loaded one
    # (the consumer child finishes its bootstrap attempt of at most 5 s first).
    assert time.monotonic() - started < 30


def test_secrets_from_the_environment_never_reach_the_log(kafka_broker, tmp_path):
    """A SASL login that cannot succeed (the broker speaks no SASL) logs errors, never the password."""
    password = "hunter2-do-not-log-me"
    config = daemon_config(
        kafka_broker.bootstrap_servers,
        tmp_path / "state",
        "secret",
        kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "driftwarden"},
    )
    daemon = DaemonProcess(config, tmp_path).launch({"DRIFTWARDEN_KAFKA_SASL_PASSWORD": password})
    try:
        wait_for(lambda: "retrying" in daemon.log(), 60, "a failed SASL connection to be logged")
        assert http_get(f"{daemon.url}/readyz")[0] == 503
        assert daemon.stop(signal.SIGTERM, timeout_s=30) == 0
    finally:
        daemon.close()
    log = daemon.log()
    assert "Unable to bootstrap" in log and password not in log

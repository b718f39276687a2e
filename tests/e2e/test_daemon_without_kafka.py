"""Kafka down is a boring failure: the daemon serves /healthz, says not ready, retries, and stops on SIGTERM."""

from __future__ import annotations

import signal
import time

import pytest

from monitor.sources.embedded_broker import EmbeddedBroker, free_port
from monitor.sources.kafka import create_topics
from tests.components import DaemonProcess, daemon_config, http_get, wait_for


@pytest.fixture
def daemon_without_kafka(tmp_path):
    """A daemon pointed at a free port where no broker listens (yet)."""
    port = free_port()
    daemon = DaemonProcess(daemon_config(f"127.0.0.1:{port}", tmp_path / "state", "late"), tmp_path).launch()
    daemon.kafka_port = port
    yield daemon
    daemon.close()


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
    assert time.monotonic() - started < 15

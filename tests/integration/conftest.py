"""Fixtures for tests against the real broker."""

from __future__ import annotations

import pytest

from monitor.ingest.confluent import ConfluentSource
from monitor.ingest.kafka import KafkaSource
from tests.integration.kafka_helpers import kafka_config


@pytest.fixture
def open_source():
    """``open_source(config, **kwargs)``: the source of ``config.client`` (a KafkaSource or a ConfluentSource),
    closed (leaving its group) at the end of the test."""
    sources = []

    def start(config, **kwargs: object) -> KafkaSource | ConfluentSource:
        source_class = ConfluentSource if config.client == "confluent" else KafkaSource
        sources.append(source_class(config, **kwargs))
        return sources[-1]

    yield start
    for source in sources:
        source.close()


@pytest.fixture
def source_config(kafka_broker, kafka_client):
    """``source_config(topic, group, **kafka)``: :func:`kafka_config` for the client the test runs with (the test
    runs once per client of ``kafka.client``)."""

    def config(topic: str, group: str, **kafka: object):
        return kafka_config(kafka_broker, topic, group, client=kafka_client, **kafka)

    return config

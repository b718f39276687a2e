"""Fixtures for tests against the real broker."""

from __future__ import annotations

import pytest

from monitor.ingest.kafka import KafkaSource


@pytest.fixture
def open_source():
    """``open_source(config, **kwargs)``: a KafkaSource closed (leaving its group) at the end of the test."""
    sources = []

    def start(config, **kwargs: object) -> KafkaSource:
        sources.append(KafkaSource(config, **kwargs))
        return sources[-1]

    yield start
    for source in sources:
        source.close()

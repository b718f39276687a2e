"""Producers often compress: the source reads batches in every codec Kafka has (the codecs are dependencies)."""

from __future__ import annotations

import pytest

from monitor.config import parse_config
from monitor.ingest.kafka import KafkaSink, KafkaSource
from tests.components import wait_for


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_the_source_reads_compressed_batches(kafka_broker, new_topic, codec):
    topic = new_topic()
    sink = KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, topic, compression_type=codec)
    sent = [b'{"n": %d, "padding": "%s"}' % (n, b"x" * n) for n in range(200)]
    for value in sent:
        sink.send(value)
    sink.flush()
    sink.close()
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_broker.bootstrap_servers,
                "topics": [topic],
                "group_id": f"{topic}-reader",
                "max_poll_interval": "10s",
                "session_timeout": "6s",
            }
        }
    )
    source = KafkaSource(config.kafka)
    read = []
    try:
        wait_for(lambda: read.extend(source.poll(200)) or len(read) >= len(sent), 30, f"{codec} batches")
    finally:
        source.close()
    assert [record.value for record in read] == sent

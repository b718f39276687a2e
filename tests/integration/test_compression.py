"""Producers often compress: the source reads batches in every codec Kafka has (the codecs are dependencies).

One topic holds batches in all four codecs, so that each client joins a group once.
"""

from __future__ import annotations

from monitor.ingest.kafka import KafkaSink
from tests.components import wait_for
from tests.integration.kafka_helpers import poll_records

CODECS = ["gzip", "snappy", "lz4", "zstd"]


def test_the_source_reads_compressed_batches(kafka_broker, new_topic, source_config, open_source):
    topic = new_topic()
    sent = []
    for codec in CODECS:
        sink = KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, topic, compression_type=codec)
        values = [b'{"codec": "%s", "n": %d, "padding": "%s"}' % (codec.encode(), n, b"x" * n) for n in range(200)]
        for value in values:
            sink.send(value)
        sink.flush()
        sink.close()
        sent += values
    source = open_source(source_config(topic, f"{topic}-reader"))
    read: list = []
    wait_for(
        lambda: read.extend(poll_records(source, 200)) or len(read) >= len(sent),
        30,
        "the batches of every codec",
        every_s=0,
    )
    assert [record.value for record in read] == sent

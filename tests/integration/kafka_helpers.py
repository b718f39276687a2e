"""Helpers for tests against the real broker: configs, producing, reading, and the group's committed offsets.

A test that waits on a kafka-python member polls it back to back (``wait_for(..., every_s=0)``), as the
daemon's consumer does: kafka-python 3.0.12 drops a group join whose JoinGroup and SyncGroup completed
between two polls (no poll was awaiting its task) and sends a new JoinGroup, so pauses between polls can
keep a member rejoining for as long as they last (a minute, seen on a loaded machine).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from monitor.config import KafkaConfig, parse_config
from monitor.ingest import PartitionBatch
from monitor.ingest import records as records_of
from tests.components import wait_for

JOIN_S = 60.0  # a group join plus the first fetch, with room for a slow, shared machine (a bound, not a wait)


def kafka_config(broker, topic: str, group: str, **kafka: object) -> KafkaConfig:
    """The ``kafka`` section for ``topic`` and ``group``, with timeouts that let a group join in seconds."""
    section = {
        "bootstrap_servers": broker.bootstrap_servers,
        "topics": [topic],
        "group_id": group,
        "dead_letter_topic": f"{topic}-dlq",
        "max_poll_interval": "10s",
        "session_timeout": "6s",
        **kafka,
    }
    return parse_config({"kafka": section}).kafka


def produce(broker, topic: str, messages: list[tuple[int, bytes | None]], key: bytes | None = b"k") -> None:
    """Send ``(partition, value)`` pairs in order (``None`` is a tombstone) and wait for every ack."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", max_request_size=10_000_000)
    try:
        for partition, value in messages:
            producer.send(topic, value=value, key=key, partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def committed(broker, group: str, topic: str, partition: int) -> int | None:
    """The group's committed offset, read without joining the group."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close(autocommit=False)


def read_n(source, n: int, timeout_s: float = JOIN_S) -> list:
    """Poll until ``n`` records have come (joining the group on the way); fail if the last poll brought more.

    Each poll must bring one :class:`PartitionBatch` per partition it read, its offsets a ``range`` where
    they follow each other (as in a topic neither compacted nor transactional)."""
    batches: list[PartitionBatch] = []

    def enough() -> bool:
        polled = source.poll(200)
        assert len({(batch.topic, batch.partition) for batch in polled}) == len(polled), polled
        batches.extend(polled)
        return sum(len(batch.values) for batch in batches) >= n

    wait_for(enough, timeout_s, f"{n} records", every_s=0)
    assert all(type(batch) is PartitionBatch and type(batch.offsets) is range for batch in batches), batches
    records = records_of(batches)
    assert len(records) == n, f"expected {n} records, got {records}"
    return records


def poll_records(source, timeout_ms: int) -> list:
    """One poll's messages as records."""
    return records_of(source.poll(timeout_ms))


def by_position(records: list) -> list[tuple[int, int, bytes | None]]:
    return sorted((record.partition, record.offset, record.value) for record in records)


@contextlib.contextmanager
def polling_in_background(source, into: list | None = None) -> Iterator[list[BaseException]]:
    """Keep ``source`` polling in a thread while the block runs (a member takes part in a rebalance only
    from inside poll); records go to ``into``, and what poll raised to the list this yields."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_polling() -> None:
        try:
            while not stop.is_set():
                batches = source.poll(100)
                if into is not None:
                    into.extend(records_of(batches))
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            failures.append(error)

    thread = threading.Thread(target=keep_polling, daemon=True)
    thread.start()
    try:
        yield failures
    finally:
        stop.set()
        thread.join(timeout=15)

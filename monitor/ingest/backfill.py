"""A topic's messages in a time range, for ``driftwarden replay --from-kafka``: a backfill that leaves no trace.

Time is the Kafka message timestamp (milliseconds; the producer's ``CreateTime``
or the broker's ``LogAppendTime``, whichever the topic keeps), not the event's
own ``timestamp`` field: it is what the broker indexes. Per partition, the range
starts at the first message timestamped at or after ``since_ms`` and ends before
the first one at or after ``until_ms``, as Kafka's own time lookup
(``offsets_for_times``) defines them, and never goes past the partition's end
as the backfill started: messages written meanwhile are not read. A message
between the two that a producer dated out of order is read, as in any offset
range.

Every partition of the topic is assigned by hand: no consumer group is joined
and nothing is committed, so the daemon's group neither rebalances nor moves.

Brokers are not all exact, so the broker's answers are bounds that the
messages read then confirm: Tansu 0.6 answers every time lookup with the first
offset of the partition, and a request for the end with the last batch's
first offset plus one. So messages dated before ``since_ms`` at the start of a
partition are skipped, a partition stops at its first message dated at or
after ``until_ms``, and its end is the larger of the broker's answer and the
high watermark of the first fetch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from operator import attrgetter

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from monitor.config import KafkaConfig
from monitor.ingest import PartitionBatch, offsets_of
from monitor.ingest.kafka import client_settings

__all__ = ["BackfillError", "TopicRange"]

_OFFSET = attrgetter("offset")
#: A backfill that reads nothing new for this long, before each partition reached its end, gives up.
STALL_S = 30.0


class BackfillError(Exception):
    """The range cannot be read: no such topic, no broker, or a partition that stopped short of its end."""


class TopicRange:
    """The messages of ``topic`` timestamped in ``[since_ms, until_ms)``, every partition, without a group.

    :meth:`polls` yields what each poll read as :class:`~monitor.ingest.PartitionBatch` lists, in offset order
    per partition, as the daemon's source does.
    """

    def __init__(
        self,
        config: KafkaConfig,
        topic: str,
        since_ms: int,
        until_ms: int,
        batch_size: int = 2_000,
        stall_s: float = STALL_S,
    ):
        if since_ms >= until_ms:
            raise ValueError(f"the range is empty: it starts at {since_ms} ms, not before its end at {until_ms} ms")
        self.topic = topic
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.stall_s = stall_s
        self._settings = {
            **client_settings(config),
            "group_id": None,  # no group: nothing to join, nothing to commit
            "enable_auto_commit": False,
            "allow_auto_create_topics": False,
            "auto_offset_reset": "earliest",  # a start that retention deleted meanwhile: what is left of the range
            "max_poll_records": batch_size,
        }

    def polls(self) -> Iterator[list[PartitionBatch]]:
        try:
            consumer = KafkaConsumer(**self._settings)
        except KafkaError as error:
            raise BackfillError(f"Kafka at {self._settings['bootstrap_servers']}: {error}") from error
        try:
            yield from self._read(consumer)
        except KafkaError as error:
            raise BackfillError(f"reading {self.topic}: {error}") from error
        finally:
            consumer.close(autocommit=False)

    def _read(self, consumer: KafkaConsumer) -> Iterator[list[PartitionBatch]]:
        numbers = consumer.partitions_for_topic(self.topic)
        if not numbers:
            raise BackfillError(f"no topic {self.topic!r} on the brokers")
        partitions = [TopicPartition(self.topic, number) for number in sorted(numbers)]
        first = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        since_ms = max(self.since_ms, 0)  # Kafka's time lookup refuses times before the epoch; none is stamped so
        found = consumer.offsets_for_times({partition: since_ms for partition in partitions})
        starts = {p: at.offset for p, at in found.items() if at is not None and ends[p] > first[p]}
        reading = set(starts)
        confirmed: set[TopicPartition] = set()  # partitions whose end a fetch's high watermark has checked
        begun: set[TopicPartition] = set()  # partitions where a message of the range has been read
        consumer.assign(list(starts))
        for partition, offset in starts.items():
            consumer.seek(partition, offset)
        progress_at = time.monotonic()
        while reading:
            read = consumer.poll(timeout_ms=500)
            for partition in reading - confirmed:
                highwater = consumer.highwater(partition)
                if highwater is not None:
                    ends[partition] = max(ends[partition], highwater)
                    confirmed.add(partition)
            batches = []
            for partition, messages in sorted(read.items()):
                if partition not in reading:
                    continue
                kept = []
                for message in messages:
                    if message.offset >= ends[partition] or message.timestamp >= self.until_ms:
                        reading.discard(partition)
                        break
                    if partition in begun or message.timestamp >= self.since_ms:
                        begun.add(partition)
                        kept.append(message)
                if kept:
                    offsets = offsets_of(kept, _OFFSET)
                    batches.append(PartitionBatch(self.topic, partition.partition, [m.value for m in kept], offsets))
            for partition in reading & confirmed:
                position = consumer.position(partition)
                if position is not None and position >= ends[partition]:
                    reading.discard(partition)
            consumer.pause(*(set(starts) - reading))
            if read:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at > self.stall_s:
                stuck = ", ".join(f"{p.partition} at {consumer.position(p)} of {ends[p]}" for p in sorted(reading))
                raise BackfillError(f"reading {self.topic} stalled for {self.stall_s:g} s: partitions {stuck}")
            if batches:
                yield batches

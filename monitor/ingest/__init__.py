"""Where raw events come from (Kafka, JSONL files), how each is judged (`events`), and where rejected ones go.

A Kafka source's poll yields, for each partition it read, a :class:`PartitionBatch`:
the raw bytes of its messages and their offsets, whatever the client. A file
yields :class:`Record` (one message and its position); a rejected message
becomes one too, which its dead letter carries back to whoever must fix it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

__all__ = [
    "Offsets",
    "Partition",
    "PartitionBatch",
    "Record",
    "SourceProgress",
    "offsets_of",
    "partition_batches",
    "records",
]

M = TypeVar("M")  # a client's message

#: A partition of a topic, ``(topic, partition)``: the unit the consumer group assigns, and that state moves with.
Partition = tuple[str, int]
#: Positions in Kafka: the next offset to read, per partition.
Offsets = dict[Partition, int]


class Record(NamedTuple):
    """One raw message and where it came from (a file's ``topic`` is its path, ``offset`` its line)."""

    value: bytes
    topic: str
    partition: int
    offset: int


class PartitionBatch(NamedTuple):
    """What one poll read from one partition, in offset order: the messages' values and their offsets.

    A Kafka source hands these to the pipeline as they come: the values go to the decoder as one list, and a
    message becomes a :class:`Record` only when it is rejected (:meth:`record`). ``offsets`` is a ``range``
    when they follow each other, as they do unless the topic is compacted or transactional.

    >>> batch = PartitionBatch("t", 0, [b"{}", b"[]"], range(7, 9))
    >>> batch.record(1)
    Record(value=b'[]', topic='t', partition=0, offset=8)
    """

    topic: str
    partition: int
    values: list[bytes | None]  # None: a tombstone
    offsets: Sequence[int]

    def record(self, index: int) -> Record:
        """The ``index``-th message as a :class:`Record`."""
        # a tombstone's value stays None: only Kafka dead letters meet one, and they send it on as it came
        return Record(self.values[index], self.topic, self.partition, self.offsets[index])  # type: ignore[arg-type]


def offsets_of(messages: Sequence[M], offset: Callable[[M], int]) -> Sequence[int]:
    """The offsets of one partition's ``messages``, in order, read by ``offset``: a range when they follow each
    other (distinct increasing offsets span exactly their number only then), else each one's.

    >>> offsets_of([7, 8, 9], int), offsets_of([7, 10, 12], int)
    (range(7, 10), [7, 10, 12])
    """
    first, last = offset(messages[0]), offset(messages[-1])
    return range(first, last + 1) if last - first + 1 == len(messages) else list(map(offset, messages))


def partition_batches(records: Iterable[Record]) -> list[PartitionBatch]:
    """``records`` (a file's lines, a test's records) grouped by partition, each in order.

    >>> partition_batches([Record(b"a", "t", 1, 5), Record(b"b", "t", 0, 2), Record(b"c", "t", 1, 6)])
    [PartitionBatch(topic='t', partition=1, values=[b'a', b'c'], offsets=[5, 6]), \
PartitionBatch(topic='t', partition=0, values=[b'b'], offsets=[2])]
    """
    grouped: dict[Partition, PartitionBatch] = {}
    for value, topic, partition, offset in records:
        batch = grouped.get((topic, partition))
        if batch is None:
            batch = grouped[topic, partition] = PartitionBatch(topic, partition, [], [])
        batch.values.append(value)
        batch.offsets.append(offset)  # type: ignore[attr-defined]  # a list, made here
    return list(grouped.values())


def records(batches: Iterable[PartitionBatch]) -> list[Record]:
    """Every message of ``batches`` as a :class:`Record`, batch after batch.

    >>> records([PartitionBatch("t", 0, [b"{}"], range(7, 8))])
    [Record(value=b'{}', topic='t', partition=0, offset=7)]
    """
    return [batch.record(index) for batch in batches for index in range(len(batch.values))]


class SourceProgress:
    """Where a Kafka source is, whichever client reads: the part both sources (kafka-python's, confluent's)
    share. A source calls :meth:`_polled` after each poll and implements :meth:`_update_lag`."""

    #: The consumer lag is asked for at most this often (it is a gauge, read at scrape time).
    LAG_EVERY_S = 1.0

    def __init__(self) -> None:
        #: Next offset to read for every partition this member has read or been given; a checkpoint saves these.
        self.positions: Offsets = {}
        #: Messages not yet read, per partition, as of the last poll (for ``driftwarden_consumer_lag``).
        self.lag: Offsets = {}
        self.last_poll: float | None = None  # time.monotonic() of the last poll that returned
        self._lag_at = 0.0
        self._closing = False

    def _polled(self) -> float:
        """Note a poll that returned and refresh the lag when it is due; the time, monotonic."""
        self.last_poll = now = time.monotonic()
        if now - self._lag_at >= self.LAG_EVERY_S:
            self._lag_at = now
            self._update_lag()
        return now

    def _update_lag(self) -> None:
        raise NotImplementedError

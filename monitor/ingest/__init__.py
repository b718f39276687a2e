"""Where raw events come from (Kafka, JSONL files), how each is judged (`events`), and where rejected ones go.

Every source yields batches of records: the raw bytes of one message and its
position, which a dead letter carries back to whoever must fix it. Files and
the consumer process yield :class:`Record`; ``KafkaSource`` yields
kafka-python's own ``ConsumerRecord``, which has the same four attributes
(``value`` is None for a tombstone).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple, cast

__all__ = ["Offsets", "Partition", "Record", "SourceProgress", "records"]

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


def records(
    values: Iterable[bytes | None], topics: Iterable[str], partitions: Iterable[int], offsets: Iterable[int]
) -> list[Record]:
    """:class:`Record` of each message of a batch given as four columns, made in C (the named tuple's own
    constructor is a Python function: twice the cost, 0.2 us a message).

    >>> records([b"{}"], ["t"], [0], [7])
    [Record(value=b'{}', topic='t', partition=0, offset=7)]
    """
    return cast(list[Record], list(map(tuple.__new__, repeat(Record), zip(values, topics, partitions, offsets))))


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

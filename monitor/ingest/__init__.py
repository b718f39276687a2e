"""Where raw events come from (Kafka, JSONL files), how each is judged (`events`), and where rejected ones go.

Every source yields batches of records: the raw bytes of one message and its
position, which a dead letter carries back to whoever must fix it. Files and
the consumer process yield :class:`Record`; ``KafkaSource`` yields
kafka-python's own ``ConsumerRecord``, which has the same four attributes
(``value`` is None for a tombstone).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Record"]


class Record(NamedTuple):
    """One raw message and where it came from (a file's ``topic`` is its path, ``offset`` its line)."""

    value: bytes
    topic: str
    partition: int
    offset: int

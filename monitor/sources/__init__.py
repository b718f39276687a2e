"""Where raw events come from (Kafka, JSONL files) and where rejected ones go.

Every source yields batches of records: the raw bytes of one message and its
position, which a dead letter carries back to whoever must fix it. Files yield
:class:`Record`; the Kafka source passes kafka-python's own ``ConsumerRecord``
through as it is (same four attributes, and ``value`` None for a tombstone),
so that the hot path builds no object of its own per message.
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

"""Where raw events come from (Kafka, JSONL files) and where rejected ones go.

Every source yields batches of :class:`Record`: the raw bytes of one message
and its position, which a dead letter carries back to whoever must fix it.
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

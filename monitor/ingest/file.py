"""JSONL files: events to replay, and dead letters written beside them.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> _ = path.write_bytes(b'{"a": 1}\\n\\nnot json\\n')
>>> [record.value for batch in JsonlSource(path).batches() for record in batch]
[b'{"a": 1}', b'not json']
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from monitor.ingest import Record

__all__ = ["JsonlDeadLetters", "JsonlSource", "write_jsonl"]


class JsonlSource:
    """Lines of a JSONL file in batches; ``offset`` is the 1-based line number, blank lines skipped."""

    def __init__(self, path: str | os.PathLike[str], batch_size: int = 2_000):
        self.path = Path(path)
        self.batch_size = batch_size

    def batches(self) -> Iterator[list[Record]]:
        topic = str(self.path)
        batch: list[Record] = []
        with self.path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                batch.append(Record(line, topic, 0, number))
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch


class JsonlDeadLetters:
    """Rejected records appended to a JSONL file with their reason and origin.

    The original bytes are kept as text when they are UTF-8, else base64.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file = self.path.open("ab")

    def write(self, record: Record, reason: str, detail: str) -> None:
        raw = record.value or b""  # a tombstone (from Kafka) is None
        try:
            value, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        letter = {
            "reason": reason,
            "detail": detail,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "encoding": encoding,
            "value": value,
        }
        self._file.write(msgspec.json.encode(letter) + b"\n")

    def close(self) -> None:
        self._file.close()


def write_jsonl(path: str | os.PathLike[str], records: list[Record]) -> None:
    """Write the records' values one per line, atomically (temp file, fsync, rename)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.writelines(record.value + b"\n" for record in records)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)

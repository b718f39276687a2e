"""Files: events to replay (JSONL, or OTLP requests as the Collector's file exporter writes them), and dead letters
written beside them.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> _ = path.write_bytes(b'{"a": 1}\\n\\nnot json\\n')
>>> [record.value for batch in JsonlSource(path).batches() for record in batch]
[b'{"a": 1}', b'not json']
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from monitor.ingest import Record

__all__ = ["JsonlDeadLetters", "JsonlSource", "LengthPrefixedSource", "write_jsonl"]


class _FileSource:
    """A file's messages in batches of ``batch_size``, each a record of topic the file's path, partition 0."""

    def __init__(self, path: str | os.PathLike[str], batch_size: int = 2_000):
        self.path = Path(path)
        self.batch_size = batch_size

    def batches(self) -> Iterator[list[Record]]:
        return _in_batches(self._records(), self.batch_size)

    def _records(self) -> Iterator[Record]:
        raise NotImplementedError


class JsonlSource(_FileSource):
    """Lines of a JSONL file in batches; ``offset`` is the 1-based line number, blank lines skipped.

    Also OTLP/JSON requests one a line, as the Collector's file exporter writes them (``format: json``).
    """

    def _records(self) -> Iterator[Record]:
        topic = str(self.path)
        with self.path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield Record(line, topic, 0, number)


class LengthPrefixedSource(_FileSource):
    """Messages of a file each preceded by its length (4 bytes, big-endian), in batches; ``offset`` is the 1-based
    message number.

    The framing of the Collector's file exporter with ``format: proto`` (uncompressed): one
    ``ExportTraceServiceRequest`` a message, which protobuf's bytes cannot be a line. A file cut short ends
    with a message shorter than its length, given as it is (it will not decode).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "traces.binpb"
    >>> _ = path.write_bytes(b"\\0\\0\\0\\2\\n\\0" + b"\\0\\0\\0\\0" + b"\\0\\0\\0\\x09cut")
    >>> [(record.value, record.offset) for batch in LengthPrefixedSource(path).batches() for record in batch]
    [(b'\\n\\x00', 1), (b'', 2), (b'cut', 3)]
    """

    def _records(self) -> Iterator[Record]:
        topic = str(self.path)
        with self.path.open("rb") as file:
            number = 0
            while length := file.read(4):
                number += 1
                value = file.read(int.from_bytes(length, "big")) if len(length) == 4 else length
                yield Record(value, topic, 0, number)


def _in_batches(records: Iterable[Record], batch_size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == batch_size:
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

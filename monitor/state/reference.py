"""A model's reference: the fixed sample of events its windows are tested against.

The reference has the same columns as the model's window and is filled once:
with ``warmup`` it takes the model's first N inference events and then stays
as it is (it is part of the checkpoint, so a restart keeps it); with ``file``
it is the model's events in a JSONL file, read when the model's state is
created (and again after a restore, so that editing the file and restarting
takes the new reference). Drift is evaluated only against a complete reference.

>>> import numpy as np
>>> from monitor.state.windows import Column
>>> reference = Reference(2, {"timestamp_ms": Column(np.float64), "feature.x": Column(np.float64)})
>>> reference.offer({"timestamp_ms": np.array([1.0, 2.0, 3.0]), "feature.x": np.array([0.5, 0.7, 0.9])})
>>> reference.complete, len(reference), reference.newest_ms
(True, 2, 2.0)
>>> reference.columns()["feature.x"]
array([0.5, 0.7])
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable

import numpy as np

from monitor.ingest import Record
from monitor.ingest.events import Event, Invalid, decode
from monitor.ingest.file import JsonlSource
from monitor.state.columns import TIMESTAMP_MS, Column
from monitor.state.windows import Window

__all__ = ["Reference", "ReferenceFileError", "read_reference_file", "reference_records"]


class ReferenceFileError(ValueError):
    """A reference file that cannot be used; the message names the file, the line and why."""


def read_reference_file(path: str | os.PathLike[str], max_event_bytes: int) -> dict[str, list[Event]]:
    """The inference events of a JSONL reference file, by model; any bad line is an error.

    A reference is what every window is judged against, so unlike the event
    stream it is not read past a malformed line.
    """
    by_model: dict[str, list[Event]] = {}
    try:
        for batch in JsonlSource(path).batches():
            for record in batch:
                event = decode(record.value, max_event_bytes)
                if isinstance(event, Invalid):
                    detail = f" ({event.detail})" if event.detail else ""
                    raise ReferenceFileError(f"{path}, line {record.offset}: {event.reason}{detail}")
                if event.type == "inference":
                    by_model.setdefault(event.model, []).append(event)  # type: ignore[arg-type]  # it has one
    except OSError as error:
        raise ReferenceFileError(f"{path}: cannot read: {error.strerror or error}") from None
    return by_model


class Reference:
    """Up to ``capacity`` rows, kept from the first ones offered; complete once full."""

    def __init__(self, capacity: int, columns: dict[str, Column]):
        self.capacity = capacity
        self._rows = Window(max(capacity, 1), columns)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def complete(self) -> bool:
        return self.capacity > 0 and len(self._rows) == self.capacity

    @property
    def newest_ms(self) -> float:
        """Event time of the reference's newest event (NaN while empty): its age is measured from here."""
        timestamps = self._rows.view()[TIMESTAMP_MS]
        return float(timestamps.max()) if timestamps.size else float("nan")

    def offer(self, batch: dict[str, np.ndarray]) -> None:
        """Keep the head of ``batch`` that still fits; a complete reference takes nothing."""
        room = self.capacity - len(self._rows)
        if room > 0:
            self._rows.append({name: values[:room] for name, values in batch.items()})

    @property
    def rows(self) -> Window:
        """The reference's rows; row ``i`` is the ``i``-th event offered (feedback writes its labels there)."""
        return self._rows

    def columns(self) -> dict[str, np.ndarray]:
        """Copies of the reference's columns, in arrival order."""
        return self._rows.view()

    def snapshot(self) -> dict:
        return self._rows.snapshot()

    def restore(self, snapshot: dict) -> None:
        self._rows.restore(snapshot)


def reference_records(
    batches: Iterable[list[Record]],
    max_event_bytes: int,
    size: int,
    models: set[str] | None = None,
    last: bool = False,
) -> list[Record]:
    """Each model's first (or ``last``) ``size`` valid inference events, as the records they came in.

    What ``driftwarden reference`` writes: a reference file is made of the
    events' own bytes, so it decodes exactly as they did. Records keep their
    order in the stream.

    >>> from monitor.ingest import Record
    >>> lines = [b'{"request_id": "%d", "timestamp": %d, "model": "bot"}' % (i, 1_700_000_000 + i) for i in range(5)]
    >>> records = [Record(line, "t", 0, i) for i, line in enumerate(lines)] + [Record(b"junk", "t", 0, 5)]
    >>> [record.offset for record in reference_records([records], 10_000, size=2, last=True)]
    [3, 4]
    """
    kept: dict[str, deque[Record]] = {}
    for batch in batches:
        for record in batch:
            event = decode(record.value, max_event_bytes)
            if isinstance(event, Invalid) or event.type != "inference":
                continue
            model: str = event.model  # type: ignore[assignment]  # an inference event has one
            if models is not None and model not in models:
                continue
            chosen = kept.setdefault(model, deque(maxlen=size if last else None))
            if last or len(chosen) < size:
                chosen.append(record)
    return sorted((record for chosen in kept.values() for record in chosen), key=lambda r: (r.partition, r.offset))

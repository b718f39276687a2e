"""A model's reference: the fixed sample of events its windows are tested against.

The reference has the same columns as the model's window and is filled once:
with ``warmup`` it takes the model's first N inference events and then stays
as it is (it is part of the checkpoint, so a restart keeps it); with ``file``
it is the model's events in a JSONL file, read when the model's state is
created (and again after a restore, so that editing the file and restarting
takes the new reference). Drift is evaluated only against a complete reference.

A complete reference has an :attr:`~Reference.id`, a digest of its events
(:func:`reference_id`), and a :attr:`~Reference.source` (one of
:data:`SOURCES`): both are exported, so a dashboard shows which reference a
verdict was reached against, and that a restart or a config change kept it.

>>> import numpy as np
>>> from monitor.state.windows import Column
>>> reference = Reference(2, {"timestamp_ms": Column(np.float64), "feature.x": Column(np.float64)}, "warmup")
>>> reference.offer({"timestamp_ms": np.array([1.0, 2.0, 3.0]), "feature.x": np.array([0.5, 0.7, 0.9])})
>>> reference.complete, len(reference), reference.newest_ms, reference.id
(True, 2, 2.0, 'd8f59da085c972fb')
>>> reference.columns()["feature.x"]
array([0.5, 0.7])
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec
import numpy as np

from monitor.ingest import Record
from monitor.ingest.events import Event, Invalid, decode
from monitor.ingest.file import JsonlSource
from monitor.state.columns import FEEDBACK_COLUMNS, TIMESTAMP_MS, Column
from monitor.state.vocabulary import Vocabulary
from monitor.state.windows import Window

__all__ = [
    "SOURCES",
    "Reference",
    "ReferenceFileError",
    "Source",
    "read_reference_file",
    "reference_id",
    "reference_records",
]

#: Where a reference comes from: a model's first events (``warmup``), ``reference.file``, or the calls of a new
#: baseline version after it took over (``promoted``: ``versions.promote_reference``).
Source = Literal["warmup", "file", "promoted"]
SOURCES: tuple[Source, ...] = ("warmup", "file", "promoted")


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


def reference_id(columns: Mapping[str, np.ndarray], vocabularies: Mapping[str, Vocabulary] | None = None) -> str:
    """A digest of a reference's events: sha256 over each column's name, dtype, shape and bytes, in column order,
    as 16 hex digits.

    The columns feedback fills (labels, ratings, judge scores, written as they join long after the reference is
    complete) are left out, so the id names the events and stays the same however many labels have joined.
    A column of codes (named in ``vocabularies``) is digested as the values the codes stand for, and an object
    column by its values, so the id does not depend on the order in which a vocabulary handed out its codes.

    >>> vocabulary = Vocabulary(5)
    >>> codes = vocabulary.encode(["en", "de", None])
    >>> other = Vocabulary(5)
    >>> _ = other.encode(["fr", "de", "en"])  # the same values under other codes
    >>> (reference_id({"feature.locale": codes}, {"feature.locale": vocabulary})
    ...  == reference_id({"feature.locale": other.encode(["en", "de", None])}, {"feature.locale": other}))
    True
    """
    digest = hashlib.sha256()
    for name, data in columns.items():
        if name in FEEDBACK_COLUMNS:
            continue
        vocabulary = None if vocabularies is None else vocabularies.get(name)
        if vocabulary is not None:
            data = _decoded(data, vocabulary)
        digest.update(msgspec.msgpack.encode([name, data.dtype.str, data.shape]))
        if data.dtype == object:
            digest.update(msgspec.msgpack.encode(data.tolist()))
        else:
            digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()[:16]


def _decoded(codes: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """The values that codes (integers, or floats with NaN) stand for; a missing code (negative, NaN) is None."""
    missing = ~np.isfinite(codes) | (codes < 0) if codes.dtype.kind == "f" else codes < 0
    values = np.array([*vocabulary.values, None], dtype=object)
    return values[np.where(missing, len(vocabulary.values), codes).astype(np.intp)]


class Reference:
    """Up to ``capacity`` rows, kept from the first ones offered; complete once full.

    ``source`` is one of :data:`SOURCES`; ``vocabularies`` are those whose codes columns hold (by column
    name), read to compute :attr:`id` when the reference completes or is restored.
    """

    def __init__(
        self,
        capacity: int,
        columns: dict[str, Column],
        source: Source = "warmup",
        vocabularies: Mapping[str, Vocabulary] | None = None,
    ):
        self.capacity = capacity
        self.source = source
        self.vocabularies = vocabularies
        self._rows = Window(max(capacity, 1), columns)
        #: :func:`reference_id` of the rows, once complete (None until then).
        self.id: str | None = None

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
            self._identify()

    def _identify(self) -> None:
        """Set :attr:`id` once the reference is complete (the rows' digest; see :func:`reference_id`)."""
        if self.complete:
            kept = tuple(name for name, column in self._rows.columns.items() if not column.optional)
            view = self._rows.view(names=kept)  # an optional column is left out (see Column)
            self.id = reference_id({name: view[name] for name in kept}, self.vocabularies)

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
        """Take back a :meth:`snapshot` (restore the vocabularies first: the id reads them)."""
        self._rows.restore(snapshot)
        self._identify()


def reference_records(
    batches: Iterable[list[Record]],
    max_event_bytes: int,
    size: int,
    models: set[str] | None = None,
    last: bool = False,
) -> list[Record]:
    """Each model's first (or ``last``) ``size`` valid inference events, as the records they came in.

    What ``driftwarden reference build`` writes: a reference file is made of the
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

"""A sliding window of events, stored column by column in preallocated numpy rings.

A :class:`Window` holds the last ``capacity`` rows appended to it. Every
column shares one write cursor, so row ``i`` of each column describes the
same event. Appending a batch is a vectorised slice assignment (at most two,
when the batch wraps around the end); nothing grows per event. A duration
window is the same ring read through a mask on the ``timestamp_ms`` column,
so ``capacity`` bounds its memory however busy the model is.

>>> window = Window(3, {"timestamp_ms": Column(np.float64), "latency_ms": Column(np.float64)})
>>> window.append({"timestamp_ms": np.array([1.0, 2.0, 3.0, 4.0]),
...                "latency_ms": np.array([10.0, 20.0, 30.0, 40.0])})
>>> window.view()["latency_ms"]
array([20., 30., 40.])
>>> window.view(now_ms=4.0, duration_ms=2.0)["latency_ms"]
array([30., 40.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monitor.state.columns import TIMESTAMP_MS, Column

__all__ = ["Column", "Window"]


class Window:
    """The last ``capacity`` rows of a fixed set of columns, oldest first when read."""

    def __init__(self, capacity: int, columns: dict[str, Column]):
        if TIMESTAMP_MS not in columns:
            raise ValueError("a window needs a 'timestamp_ms' column")
        self.capacity = capacity
        self.columns = columns
        self._reset()

    def _reset(self) -> None:
        self._data = {
            name: np.full((self.capacity, *column.shape), column.missing, dtype=column.dtype)
            for name, column in self.columns.items()
        }
        self._n_appended = 0

    def __len__(self) -> int:
        return min(self._n_appended, self.capacity)

    @property
    def n_appended(self) -> int:
        """Rows ever appended, evicted ones included."""
        return self._n_appended

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Append equally long arrays, one per column (all columns must be given)."""
        n = len(batch[TIMESTAMP_MS])
        keep = min(n, self.capacity)  # of a batch longer than the ring, only its tail survives
        start = (self._n_appended + n - keep) % self.capacity
        first = min(keep, self.capacity - start)
        # The usual batch is whole and does not wrap around the ring: one copy a column, without the slices and
        # the empty copy of the general case (25 columns of 72 rows: 7 us against 17, measured).
        if first == n:
            for name, data in self._data.items():
                data[start : start + n] = batch[name]
        else:
            for name, data in self._data.items():
                rows = batch[name][n - keep :]
                data[start : start + first] = rows[:first]
                data[: keep - first] = rows[first:]
        self._n_appended += n

    def oldest(self, n: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Copies of ``names`` for the oldest ``n`` rows held (the ones the next appends overwrite first)."""
        first = self._n_appended - len(self)
        return self._rows(first, first + min(n, len(self)), names)

    def since(self, row: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Copies of ``names`` for the rows from ``row`` (counted from the first ever) to the newest, of those held."""
        first = max(row, self._n_appended - len(self))
        return self._rows(first, max(first, self._n_appended), names)

    def _rows(self, first: int, stop: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Copies of ``names`` for the held rows ``first`` to ``stop`` (counted from the first ever)."""
        positions = np.arange(first, stop) % self.capacity
        return {name: self._data[name][positions] for name in names}

    def holds(self, row: int) -> bool:
        """Whether the row appended at position ``row`` (counted from the first ever) is still in the ring."""
        return self._n_appended - len(self) <= row < self._n_appended

    def write(self, row: int, values: dict[str, float]) -> None:
        """Overwrite some columns of a row the ring still holds (see :meth:`holds`)."""
        position = row % self.capacity
        for name, value in values.items():
            self._data[name][position] = value

    def write_rows(self, rows: np.ndarray, name: str, values: Any) -> None:
        """Overwrite one column of several rows the ring still holds."""
        self._data[name][rows % self.capacity] = values

    def clear(self, name: str) -> None:
        """Set one column of every row to its missing value."""
        self._data[name][:] = self.columns[name].missing

    def read(self, row: int, name: str) -> Any:
        """One value of a row the ring still holds."""
        return self._data[name][row % self.capacity]

    def snapshot(self) -> dict:
        """The ring as it is, for a checkpoint (the arrays themselves, not copies)."""
        return {"n_appended": self._n_appended, "columns": self._data}

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot` of a window with the same capacity and columns (an optional column it
        lacks holds its missing value)."""
        columns = dict(snapshot["columns"])
        for name, data in self._data.items():
            saved = columns.get(name)
            if saved is None and self.columns[name].optional:
                saved = columns[name] = np.full(data.shape, self.columns[name].missing, dtype=data.dtype)
            if saved is None or saved.shape != data.shape:
                raise ValueError(f"the saved window does not fit column {name!r} of shape {data.shape}")
        self._data = {name: np.asarray(columns[name], dtype=data.dtype) for name, data in self._data.items()}
        self._n_appended = snapshot["n_appended"]

    def view(
        self, now_ms: float | None = None, duration_ms: float | None = None, names: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        """Copies of the columns (or only ``names``), oldest row first.

        With ``duration_ms``, only rows whose event time is after ``now_ms - duration_ms``.
        """
        size = len(self)
        cursor = self._n_appended % self.capacity
        wanted = self._data if names is None else {name: self._data[name] for name in (*names, TIMESTAMP_MS)}
        columns = {}
        for name, data in wanted.items():
            if size < self.capacity:
                columns[name] = data[:size].copy()
            else:
                columns[name] = np.concatenate((data[cursor:], data[:cursor]))
        if duration_ms is not None:
            if now_ms is None:
                raise ValueError("a duration window needs now_ms")
            inside = columns[TIMESTAMP_MS] > now_ms - duration_ms
            if not inside.all():  # else no gather (a quarter millisecond a column of 100,000 rows)
                columns = {name: values[inside] for name, values in columns.items()}
        return columns

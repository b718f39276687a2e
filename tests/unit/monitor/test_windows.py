"""Property tests of ``monitor.state.windows.Window`` against a plain-list reference model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.state.windows import Column, Window

DIM = 3
PROPERTIES = settings(max_examples=200, deadline=None, database=None)

capacities = st.integers(min_value=1, max_value=50)
batch_sizes = st.lists(st.integers(min_value=0, max_value=120), min_size=0, max_size=8)
orders = st.sampled_from(["increasing", "shuffled"])
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _columns() -> dict[str, Column]:
    return {
        "timestamp_ms": Column(np.float64),
        "latency_ms": Column(np.float64),
        "failed": Column(np.bool_, missing=False),
        "code": Column(np.int32, missing=-1),
        "text": Column(object, missing=None),
        "embedding": Column(np.float32, shape=(DIM,)),
    }


def _rows(sizes: list[int], order: str, seed: int) -> list[list[dict]]:
    """Batches of rows as plain Python dicts; row ``i`` is the ``i``-th ever appended."""
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    if order == "increasing":
        # Non-decreasing, ties included, as event time usually is.
        timestamps = np.cumsum(rng.integers(0, 3, size=total)).tolist()
    else:
        # Out of order, duplicates included, as late events make it.
        timestamps = rng.integers(0, max(total, 1) * 2, size=total).tolist()
    rows = []
    for i, timestamp in enumerate(timestamps):
        rows.append(
            {
                "timestamp_ms": float(timestamp),
                "latency_ms": float(i) if i % 7 else float("nan"),
                "failed": bool(i % 3 == 0),
                "code": int(i % 11) - 1,
                "text": None if i % 5 == 0 else f"row-{i}",
                "embedding": [float(i), float(-i), float(i) / 4.0],
            }
        )
    batches, start = [], 0
    for size in sizes:
        batches.append(rows[start : start + size])
        start += size
    return batches


def _as_batch(rows: list[dict], columns: dict[str, Column]) -> dict[str, np.ndarray]:
    batch = {}
    for name, column in columns.items():
        values = [row[name] for row in rows]
        if column.shape:
            batch[name] = np.array(values, dtype=column.dtype).reshape(len(rows), *column.shape)
        else:
            batch[name] = np.array(values, dtype=column.dtype)
    return batch


def _expected(rows: list[dict], name: str, column: Column) -> np.ndarray:
    values = [row[name] for row in rows]
    if column.shape:
        return np.array(values, dtype=column.dtype).reshape(len(rows), *column.shape)
    return np.array(values, dtype=column.dtype)


def _assert_view_equals(view: dict[str, np.ndarray], rows: list[dict], columns: dict[str, Column]) -> None:
    assert set(view) == set(columns)
    for name, column in columns.items():
        expected = _expected(rows, name, column)
        assert view[name].dtype == expected.dtype, name
        assert view[name].shape == expected.shape, name
        if column.dtype is object:
            assert view[name].tolist() == expected.tolist(), name
        else:
            np.testing.assert_array_equal(view[name], expected, err_msg=name)


def _steps(capacity: int, sizes: list[int], order: str, seed: int):
    """Append the batches to a window and to the reference list, yielding both before and after each batch."""
    columns = _columns()
    window = Window(capacity, columns)
    reference: list[dict] = []
    yield window, reference, columns
    for rows in _rows(sizes, order, seed):
        window.append(_as_batch(rows, columns))
        reference = (reference + rows)[-capacity:]
        yield window, reference, columns


def _fill(capacity: int, sizes: list[int], order: str, seed: int):
    """The window, the reference list and the columns after all batches."""
    *_, last = _steps(capacity, sizes, order, seed)
    return last


@PROPERTIES
@given(capacity=capacities, sizes=batch_sizes, order=orders, seed=seeds)
def test_view_equals_the_last_capacity_rows_in_arrival_order(capacity, sizes, order, seed):
    for window, reference, columns in _steps(capacity, sizes, order, seed):
        # Checked after every batch, not only at the end, so each wrap position is seen.
        _assert_view_equals(window.view(), reference, columns)
        assert len(window) == len(reference)
    assert window.n_appended == sum(sizes)
    assert len(window) == min(sum(sizes), capacity)


@PROPERTIES
@given(
    capacity=capacities,
    sizes=batch_sizes,
    order=orders,
    seed=seeds,
    now_ms=st.integers(min_value=-10, max_value=3_000),
    duration_ms=st.integers(min_value=0, max_value=3_000),
)
def test_duration_view_keeps_rows_after_now_minus_duration_in_order(capacity, sizes, order, seed, now_ms, duration_ms):
    window, reference, columns = _fill(capacity, sizes, order, seed)
    inside = [row for row in reference if row["timestamp_ms"] > now_ms - duration_ms]

    view = window.view(now_ms=float(now_ms), duration_ms=float(duration_ms))

    _assert_view_equals(view, inside, columns)


@PROPERTIES
@given(capacity=capacities, sizes=batch_sizes, order=orders, seed=seeds)
def test_view_with_duration_on_a_boundary_excludes_that_row(capacity, sizes, order, seed):
    window, reference, columns = _fill(capacity, sizes, order, seed)
    if not reference:
        assert window.view(now_ms=0.0, duration_ms=1.0)["timestamp_ms"].size == 0
        return
    # A duration ending exactly on the oldest kept row's event time leaves that row out.
    oldest = reference[0]["timestamp_ms"]
    now_ms = max(row["timestamp_ms"] for row in reference)
    duration_ms = now_ms - oldest
    view = window.view(now_ms=now_ms, duration_ms=duration_ms)
    assert oldest not in view["timestamp_ms"].tolist()
    _assert_view_equals(view, [row for row in reference if row["timestamp_ms"] > oldest], columns)


@PROPERTIES
@given(capacity=capacities, sizes=batch_sizes, order=orders, seed=seeds)
def test_memory_is_bounded_by_capacity(capacity, sizes, order, seed):
    columns = _columns()
    window = Window(capacity, columns)
    arrays = dict(window._data)
    for _ in range(3):  # many appends: the same batches three times over
        for rows in _rows(sizes, order, seed):
            window.append(_as_batch(rows, columns))
    for name, column in columns.items():
        assert window._data[name] is arrays[name], name  # never reallocated
        assert window._data[name].shape == (capacity, *column.shape), name
    assert len(window) == min(3 * sum(sizes), capacity)
    assert window.n_appended == 3 * sum(sizes)


def test_embedding_column_keeps_row_shape():
    columns = {"timestamp_ms": Column(np.float64), "embedding": Column(np.float32, shape=(4,))}
    window = Window(3, columns)
    vectors = np.arange(20, dtype=np.float32).reshape(5, 4)
    window.append({"timestamp_ms": np.arange(5, dtype=np.float64), "embedding": vectors})

    view = window.view()

    assert view["embedding"].shape == (3, 4)
    assert view["embedding"].dtype == np.float32
    np.testing.assert_array_equal(view["embedding"], vectors[2:])
    np.testing.assert_array_equal(window.view(now_ms=4.0, duration_ms=1.5)["embedding"], vectors[3:])


def test_empty_window_views_are_empty_with_the_right_shape():
    window = Window(4, _columns())

    view = window.view()

    assert len(window) == 0 and window.n_appended == 0
    assert view["timestamp_ms"].shape == (0,)
    assert view["embedding"].shape == (0, DIM)


def test_view_returns_copies():
    columns = {"timestamp_ms": Column(np.float64), "latency_ms": Column(np.float64)}
    for n in (2, 5):  # a window not yet full, and one that has wrapped
        window = Window(3, columns)
        window.append({"timestamp_ms": np.arange(n, dtype=np.float64), "latency_ms": np.ones(n)})
        window.view()["latency_ms"][:] = -1.0
        assert (window.view()["latency_ms"] == 1.0).all()


def test_now_without_duration_is_the_whole_window():
    columns = {"timestamp_ms": Column(np.float64)}
    window = Window(3, columns)
    window.append({"timestamp_ms": np.array([1.0, 2.0, 3.0])})

    np.testing.assert_array_equal(window.view(now_ms=100.0)["timestamp_ms"], [1.0, 2.0, 3.0])


def test_window_without_timestamp_column_is_rejected():
    with pytest.raises(ValueError, match="timestamp_ms"):
        Window(3, {"latency_ms": Column(np.float64)})


def test_duration_view_without_now_is_rejected():
    window = Window(3, {"timestamp_ms": Column(np.float64)})
    window.append({"timestamp_ms": np.array([1.0])})

    with pytest.raises(ValueError, match="now_ms"):
        window.view(duration_ms=10.0)

"""Tests of ``Vocabulary`` (bounded string codes) and ``Histogram`` (Prometheus ``le`` buckets)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.run.checkpoint import Checkpoint, CheckpointStore
from monitor.state.histogram import MAX_COUNT, MAX_SUMMED, Histogram
from monitor.state.vocabulary import MAX_VALUE_CHARS, MISSING, OTHER, Vocabulary

PROPERTIES = settings(max_examples=200, deadline=None, database=None)

words = st.text(alphabet="abcdef", min_size=1, max_size=3)


# Vocabulary


@PROPERTIES
@given(
    limit=st.integers(min_value=1, max_value=8),
    batches=st.lists(st.lists(st.one_of(st.none(), words), max_size=20), max_size=6),
)
def test_codes_are_first_come_capped_and_stable(limit, batches):
    vocabulary = Vocabulary(limit)
    admitted: dict[str, int] = {}  # the reference: first `limit` distinct values, in order of arrival
    for batch in batches:
        codes = vocabulary.encode(batch)
        assert codes.dtype == np.int32
        expected = []
        for value in batch:
            if value is None:
                expected.append(-1)
                continue
            if value not in admitted and len(admitted) < limit:
                admitted[value] = len(admitted) + 1
            expected.append(admitted.get(value, 0))
        assert codes.tolist() == expected
    assert vocabulary.values == [OTHER, *admitted]
    assert len(vocabulary) == len(admitted) + 1
    # Codes never change once given, whatever came after.
    for value, code in admitted.items():
        assert vocabulary.code(value) == code
        assert vocabulary.encode([value]).tolist() == [code]


def test_values_past_the_limit_fold_into_other():
    vocabulary = Vocabulary(limit=2)

    assert vocabulary.encode(["de", "en", "fr", None, "de", "it"]).tolist() == [1, 2, 0, MISSING, 1, 0]
    assert vocabulary.code("fr") == 0
    assert vocabulary.values == [OTHER, "de", "en"]
    assert MISSING == -1


def test_other_itself_is_code_zero():
    vocabulary = Vocabulary(limit=3)

    assert vocabulary.encode([OTHER, "a", OTHER]).tolist() == [0, 1, 0]
    assert vocabulary.values == [OTHER, "a"]


def test_a_value_too_long_to_be_a_category_folds_into_other_and_takes_no_room():
    vocabulary = Vocabulary(limit=2)
    long = "x" * (MAX_VALUE_CHARS + 1)

    assert vocabulary.encode([long, "x" * MAX_VALUE_CHARS, "b"]).tolist() == [0, 1, 2]
    assert vocabulary.code(long) == 0
    assert vocabulary.values == [OTHER, "x" * MAX_VALUE_CHARS, "b"]


def test_restore_gives_back_the_same_codes():
    vocabulary = Vocabulary(limit=3)
    vocabulary.encode(["b", "a"])
    restored = Vocabulary(limit=3)
    restored.restore(vocabulary.values)

    assert restored.encode(["a", "b", "c", "d"]).tolist() == [2, 1, 3, 0]
    assert restored.values == [OTHER, "b", "a", "c"]


def test_encode_of_nothing_is_an_empty_int32_array():
    codes = Vocabulary(limit=3).encode([])

    assert codes.dtype == np.int32 and codes.size == 0


# Histogram

BOUNDS = [-1.0, 0.0, 0.5, 1.0, 2.5, 10.0]


def _reference_cumulative(bounds: list[float], values: list[float]) -> list[int]:
    """Prometheus semantics with plain loops: bucket ``le=b`` counts the values ``<= b``, then +Inf."""
    counts = []
    for bound in bounds:
        n = 0
        for value in values:
            if not math.isnan(value) and value <= bound:
                n += 1
        counts.append(n)
    counts.append(sum(1 for value in values if not math.isnan(value)))
    return counts


# Values drawn near and exactly on the bounds, plus NaN.
observations = st.lists(
    st.one_of(
        st.sampled_from(BOUNDS),
        st.floats(min_value=-5.0, max_value=20.0, allow_nan=False),
        st.just(math.nan),
        st.sampled_from([math.nextafter(b, math.inf) for b in BOUNDS] + [math.nextafter(b, -math.inf) for b in BOUNDS]),
    ),
    max_size=60,
)


@PROPERTIES
@given(batches=st.lists(observations, max_size=5))
def test_counts_follow_le_semantics_and_ignore_nan(batches):
    histogram = Histogram(BOUNDS)
    seen: list[float] = []
    for batch in batches:
        histogram.observe(np.array(batch, dtype=np.float64))
        seen.extend(batch)

    finite = [value for value in seen if not math.isnan(value)]
    assert histogram.cumulative_counts().tolist() == _reference_cumulative(BOUNDS, seen)
    assert histogram.n_observed == len(finite)
    # The sum is kept in exact thousandths of the unit: each value rounded half-even, then added.
    assert histogram.total == sum(round(value * 1000.0) for value in finite) / 1000.0
    assert histogram.total == pytest.approx(math.fsum(finite), abs=0.0005 * len(finite) + 1e-9)


@PROPERTIES
@given(values=st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=100), data=st.data())
def test_sum_does_not_depend_on_how_observations_are_batched(values, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=6)))
    whole, split = Histogram(BOUNDS), Histogram(BOUNDS)
    whole.observe(np.array(values, dtype=np.float64))
    for start, end in zip([0, *cuts], [*cuts, len(values)]):
        split.observe(np.array(values[start:end], dtype=np.float64))
    assert split.total == whole.total
    assert split.counts.tolist() == whole.counts.tolist()


def test_absurd_values_are_capped_in_the_sum_only():
    histogram = Histogram([1.0])
    histogram.observe(np.array([1e300, 2.0]))
    assert histogram.total == MAX_SUMMED + 2.0
    assert histogram.counts.tolist() == [0, 2]


@PROPERTIES
@given(batches=st.lists(st.lists(st.integers(min_value=0, max_value=200_000), max_size=80), max_size=5))
def test_sum_is_exact_on_integer_valued_latencies(batches):
    # Integer-valued latencies are exact in thousandths, so the sum equals fsum to the last bit.
    histogram = Histogram([50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000, 120_000])
    seen: list[float] = []
    for batch in batches:
        values = [float(value) for value in batch]
        histogram.observe(np.array(values, dtype=np.float64))
        seen.extend(values)

    assert histogram.total == math.fsum(seen)
    assert histogram.cumulative_counts().tolist() == _reference_cumulative(
        [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000, 120_000], seen
    )


def test_values_on_bounds_count_in_that_bucket():
    histogram = Histogram([100.0, 500.0])

    histogram.observe(np.array([100.0, 500.0, math.nextafter(100.0, math.inf), math.nan, 501.0]))

    assert histogram.cumulative_counts().tolist() == [1, 3, 4]
    assert histogram.counts.tolist() == [1, 2, 1]
    assert histogram.total == 1201.0  # nextafter(100) is 100.000 to a thousandth


def test_all_nan_and_empty_batches_change_nothing():
    histogram = Histogram([1.0, 2.0])

    histogram.observe(np.array([], dtype=np.float64))
    histogram.observe(np.array([math.nan, math.nan]))

    assert histogram.cumulative_counts().tolist() == [0, 0, 0]
    assert histogram.total == 0.0 and histogram.n_observed == 0


@pytest.mark.parametrize(
    "bounds",
    [[1.0, 1.0], [2.0, 1.0], [1.0, 3.0, 2.0], [0.0, 5.0, 5.0, 6.0], [[1.0, 2.0], [3.0, 4.0]]],
    ids=["equal", "decreasing", "dip", "repeat-inside", "two-dimensional"],
)
def test_bounds_that_do_not_strictly_increase_are_rejected(bounds):
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram(bounds)


def test_nan_bounds_are_rejected():
    with pytest.raises(ValueError):
        Histogram([1.0, math.nan, 3.0])


def test_sum_past_2_64_thousandths_saturates_and_still_checkpoints(tmp_path):
    histogram = Histogram([100.0])
    capped = np.full(5_000_000, MAX_SUMMED)  # 5e18 thousandths a batch; four pass 2**64, where msgpack ends
    for _ in range(4):
        histogram.observe(capped)
    assert histogram.total == MAX_COUNT / 1000.0
    assert histogram.n_observed == 20_000_000
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint({}, {"latency": histogram.snapshot()}, "fingerprint"))
    restored = Histogram([100.0])
    restored.restore(store.load().pipeline["latency"])
    assert restored.total == histogram.total

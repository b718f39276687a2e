"""Online change detectors against oracles: river's ADWIN and Page-Hinkley, and CUSUM's self-starting recurrences.

ADWIN and PageHinkley must detect at exactly river's indices; CUSUM at exactly
the indices of a reference written from Page's (Montgomery's) recurrences on
Hawkins' self-starting values, and with the textbook average run lengths.
Every detector restored from a snapshot (through msgpack) continues exactly
as one that never stopped.
"""

from __future__ import annotations

import inspect

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors import adwin as adwin_module
from detectors.adwin import ADWIN
from detectors.cusum import CUSUM
from detectors.page_hinkley import PageHinkley
from detectors.warmup_scaled import WarmupScaled
from tests.components import c_extension, require

DETECTORS = (ADWIN, PageHinkley, CUSUM)
N = 1_000  # values per regime


def _mean_shift(rng):
    return np.concatenate([rng.normal(0.0, 1.0, N), rng.normal(1.0, 1.0, N)]).tolist()


def _variance_change(rng):
    return np.concatenate([rng.normal(0.0, 1.0, N), rng.normal(0.0, 4.0, N)]).tolist()


def _gradual_drift(rng):
    level = np.concatenate([np.zeros(N // 2), np.linspace(0.0, 3.0, N), np.full(N // 2, 3.0)])
    return (level + rng.normal(0.0, 1.0, len(level))).tolist()


def _error_ratio(rng):
    """Failed calls (1) among successes (0): 5% errors, then 25%, as Python ints."""
    return [int(failed) for failed in rng.random(2 * N) < np.repeat([0.05, 0.25], N)]


def _constant(rng):
    return [0.1] * (2 * N)  # 0.1 is not a binary fraction: the window sums round


def _integers(rng):
    return [int(count) for count in np.concatenate([rng.poisson(3.0, N), rng.poisson(6.0, N)])]


def _several_changes(rng):
    levels = np.repeat([0.0, 3.0, -1.0, 2.0, 0.0], 600)
    return (levels + rng.normal(0.0, 1.0, len(levels))).tolist()


STREAMS = {
    stream.__name__.lstrip("_"): stream
    for stream in (_mean_shift, _variance_change, _gradual_drift, _error_ratio, _constant, _integers, _several_changes)
}
SEEDS = (0, 1, 2)


def _detections(detector, stream) -> list[int]:
    found = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


@pytest.fixture(scope="module")
def river_drift():
    try:
        from river import drift
    except ImportError:
        require(False, "river (the oracle of ADWIN and Page-Hinkley)")
    return drift


# -- ADWIN and Page-Hinkley: river's detection indices -------------------------------------------------------------

CONFIGS = {
    "ADWIN": (
        {},
        {"delta": 0.05, "clock": 1, "max_buckets": 2, "min_window_length": 10, "grace_period": 50},
        {"clock": 1, "max_buckets": 1},  # merging empties rows; river survives it on these streams (see below)
    ),
    "PageHinkley": (
        {},
        {"min_instances": 10, "delta": 0.05, "threshold": 10.0, "alpha": 0.999, "mode": "up"},
        {"min_instances": 50, "delta": 0.0, "threshold": 20.0, "alpha": 1.0, "mode": "down"},
    ),
}
OURS = {"ADWIN": ADWIN, "PageHinkley": PageHinkley}
CASES = [
    pytest.param(name, config, id=f"{name}-{i}")
    for name, configs in CONFIGS.items()
    for i, config in enumerate(configs)
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stream_name", STREAMS)
@pytest.mark.parametrize(("name", "config"), CASES)
def test_detections_equal_rivers(river_drift, name, config, stream_name, seed):
    ours = OURS[name](**config)
    stream = STREAMS[stream_name](np.random.default_rng(seed))

    expected = _detections(getattr(river_drift, name)(**config), stream)

    assert _detections(ours, stream) == expected
    if stream_name == "constant":
        assert expected == []


#: Detections river's defaults make on every seed: equal indices mean something, resets included.
MIN_DETECTIONS = {
    ("ADWIN", "mean_shift"): 1,
    ("ADWIN", "gradual_drift"): 3,
    ("ADWIN", "error_ratio"): 1,
    ("ADWIN", "integers"): 1,
    ("ADWIN", "several_changes"): 4,
    ("PageHinkley", "mean_shift"): 1,
    ("PageHinkley", "gradual_drift"): 4,
    ("PageHinkley", "error_ratio"): 1,
    ("PageHinkley", "integers"): 5,
    ("PageHinkley", "several_changes"): 4,
}


@pytest.mark.parametrize(("name", "stream_name"), MIN_DETECTIONS)
def test_the_streams_make_river_detect(river_drift, name, stream_name):
    for seed in SEEDS:
        stream = STREAMS[stream_name](np.random.default_rng(seed))
        assert len(_detections(getattr(river_drift, name)(), stream)) >= MIN_DETECTIONS[name, stream_name]


def test_adwin_window_statistics_equal_rivers(river_drift):
    """``width`` and ``estimation`` are river's; ``variance`` is river's divided by the width (a real variance)."""
    ours, theirs = ADWIN(), river_drift.ADWIN()
    for x in _several_changes(np.random.default_rng(3)):
        ours.update(x)
        theirs.update(x)
        assert (ours.width, ours.estimation) == (theirs.width, theirs.estimation)
        assert ours.variance == theirs.variance / theirs.width  # river's `variance` is the sum of squares


def test_adwin_cut_test_survives_a_variance_rounded_below_zero(river_drift):
    """Dropping the old level leaves a constant window whose variance, by subtraction, is just below 0.

    river's square root is then NaN and the cut test false; ours says so without calling ``math.sqrt``.
    """
    stream = [0.1] * 64 + [1000.0] * 32
    ours, theirs = ADWIN(), river_drift.ADWIN()

    assert _detections(ours, stream) == _detections(theirs, stream) == [95]
    assert (ours.width, ours._variance) == (theirs.width, theirs.variance) == (32, pytest.approx(-6.5e-9, rel=0.01))


def test_adwin_keeps_going_where_rivers_panics(river_drift):
    """With ``max_buckets=1`` merging empties rows; once such a row is the last, river drops from it and panics.

    That happens while river shrinks its window after a detection. Ours drops the oldest bucket that exists:
    its detections are river's up to the panic, then it reports that detection and goes on.
    """
    stream = _several_changes(np.random.default_rng(0))
    theirs, found = river_drift.ADWIN(max_buckets=1), []
    with pytest.raises(BaseException, match="slice index starts at 1 but ends at 0"):  # pyo3's PanicException
        for i, x in enumerate(stream):
            theirs.update(x)
            if theirs.drift_detected:
                found.append(i)
    assert i == 1823

    assert _detections(ADWIN(max_buckets=1), stream) == found + [1823, 2431] == [639, 1215, 1823, 2431]


def test_page_hinkley_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        PageHinkley(mode="sideways")


# -- CUSUM: Hawkins' self-starting recurrences ----------------------------------------------------------------------


def _self_starting_z(segment: np.ndarray, min_instances: int) -> np.ndarray:
    """Each value from ``min_instances`` on as a standard normal value: its t statistic against all the values
    before it (Hawkins, 1987), through scipy's t and normal distributions; with no spread before it, 0 on their
    value and infinitely far off it."""
    n = np.arange(1, len(segment))  # values before each of segment[1:]
    mean = np.cumsum(segment)[:-1] / n
    std = np.sqrt(np.maximum(np.cumsum(segment**2)[:-1] - n * mean**2, 0.0) / np.maximum(n - 1, 1))
    flat = np.maximum.accumulate(segment)[:-1] == np.minimum.accumulate(segment)[:-1]
    mean, std = np.where(flat, segment[:-1], mean), np.where(flat, 0.0, std)
    deviation = segment[1:] - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        z = stats.norm.ppf(stats.t.cdf(deviation / std * np.sqrt(n / (n + 1)), np.maximum(n - 1, 1)))
    z = np.where(std > 0.0, z, np.where(deviation == 0.0, 0.0, np.copysign(np.inf, deviation)))
    return z[min_instances - 1 :]


def _cusum_reference(stream, k=0.5, h=5.0, min_instances=30) -> list[int]:
    """Page's two-sided tabular CUSUM on Hawkins' self-starting values, restarted after each alarm."""
    detections, start = [], 0
    while start + min_instances < len(stream):
        z = _self_starting_z(np.array(stream[start:], dtype=np.float64), min_instances)
        s_hi = s_lo = 0.0
        for i, value in enumerate(z.tolist(), start=start + min_instances):
            s_hi = max(0.0, s_hi + value - k)
            s_lo = max(0.0, s_lo - value - k)
            if s_hi > h or s_lo > h:
                detections.append(i)
                break
        else:
            break
        start = detections[-1] + 1
    return detections


CUSUM_CONFIGS = ({}, {"k": 0.25, "h": 8.0, "min_instances": 100}, {"k": 1.0, "h": 3.0, "min_instances": 2})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stream_name", STREAMS)
@pytest.mark.parametrize("config", CUSUM_CONFIGS, ids=range(len(CUSUM_CONFIGS)))
def test_cusum_detections_equal_the_self_starting_recurrences(config, stream_name, seed):
    stream = STREAMS[stream_name](np.random.default_rng(seed))

    assert _detections(CUSUM(**config), stream) == _cusum_reference(stream, **config)


def test_cusum_warm_up_without_spread_makes_any_departure_a_change():
    detector = CUSUM(min_instances=5)

    assert _detections(detector, [2.0] * 20 + [2.5] + [2.0] * 20) == [20]


def test_cusum_needs_a_warm_up_of_two_values():
    with pytest.raises(ValueError, match="min_instances"):
        CUSUM(min_instances=1)


def _run_length(detector, stream) -> int | None:
    """Values fed after the warm-up up to and including the first detection."""
    for x in stream[: detector.min_instances]:
        detector.update(x)
    found = _detections(detector, stream[detector.min_instances :])
    return found[0] + 1 if found else None


@pytest.mark.statistical
def test_cusum_catches_a_two_sigma_shift_within_a_few_values():
    """Montgomery's table 9.3: ARL 4.01 for a 2-sigma shift at k=0.5, h=5 on known parameters. Right after a
    30-value warm-up, the shifted values join the running mean and deviation they are standardised by: about 5."""
    run_lengths = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        stream = np.concatenate([rng.normal(0.0, 1.0, 30), rng.normal(2.0, 1.0, 100)]).tolist()
        run_lengths.append(_run_length(CUSUM(), stream))

    assert None not in run_lengths and max(run_lengths) <= 20
    assert 4.0 < np.mean(run_lengths) < 5.5


@pytest.mark.statistical
def test_cusum_false_alarms_come_at_the_textbook_run_length_from_the_first_value_after_a_short_warm_up():
    """In-control ARL 465 at k=0.5, h=5 (Montgomery's table 9.3), after the default 30 warm-up values: the
    self-starting values are standard normal whatever the warm-up, so the run length is about geometric (median
    about 320). The warm-up's frozen estimates ended half the runs within 130 to 140 values."""
    rng = np.random.default_rng(2024)
    run_lengths = [_run_length(CUSUM(), rng.normal(0.0, 1.0, 10_000).tolist()) for _ in range(300)]

    assert None not in run_lengths and 400 < np.mean(run_lengths) < 540
    assert 250 < np.median(run_lengths) < 400


# -- The contract, over every change detector -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", DETECTORS)
def test_constructible_with_its_config_kept_public(cls):
    detector = cls()

    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}
    assert {name: getattr(detector, name) for name in defaults} == defaults
    assert detector.drift_detected is False


@pytest.mark.parametrize("cls", DETECTORS)
def test_reset_is_idempotent(cls):
    fresh = cls().snapshot()
    detector = cls()
    _detections(detector, _several_changes(np.random.default_rng(0)))

    detector._reset()
    once = detector.snapshot()
    detector._reset()

    assert once == detector.snapshot() == fresh


@pytest.mark.parametrize("value", [0.0, 0.1, 7.0, -1e6])
@pytest.mark.parametrize("cls", DETECTORS)
def test_no_detection_on_a_constant_stream(cls, value):
    assert _detections(cls(), [value] * 5_000) == []


@pytest.mark.parametrize("cls", DETECTORS)
def test_detection_soon_after_a_shift(cls):
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(3.0, 1.0, 300)]).tolist()

    assert any(300 <= i < 400 for i in _detections(cls(), stream))


def _is_plain(value) -> bool:
    if isinstance(value, list):
        return all(_is_plain(item) for item in value)
    return isinstance(value, int | float | bool | str)


@pytest.mark.parametrize("cls", DETECTORS)
def test_snapshot_is_plain_and_round_trips(cls):
    detector = cls()
    _detections(detector, _several_changes(np.random.default_rng(0))[:1_000])
    snapshot = detector.snapshot()

    restored = cls()
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot)))

    assert all(_is_plain(value) for value in snapshot.values())
    assert restored.snapshot() == snapshot
    restored.update(1.0)
    assert detector.snapshot() == snapshot  # the snapshot shares no list with either detector


@settings(max_examples=60, deadline=None)
@given(cls=st.sampled_from(DETECTORS), seed=st.integers(0, 2**32 - 1), cut=st.integers(0, 3_000))
def test_restored_detector_continues_exactly(cls, seed, cut):
    stream = _several_changes(np.random.default_rng(seed))
    never_stopped = _detections(cls(), stream)

    before = cls()
    found = _detections(before, stream[:cut])
    after = cls()
    after.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(before.snapshot())))
    found += [cut + i for i in _detections(after, stream[cut:])]

    assert found == never_stopped


# -- The calibrated variants: in units of the stream's own spread ---------------------------------------------------

CALIBRATED = {
    "page_hinkley-relative": lambda: PageHinkley(delta=0.5, threshold=8.0, alpha=1.0, relative=True),
    "adwin-warmup-scaled": lambda: WarmupScaled(ADWIN(delta=1e-4, clock=1), warmup=30),
}


@pytest.mark.parametrize("make", CALIBRATED.values(), ids=CALIBRATED)
def test_a_calibrated_detector_finds_the_same_changes_at_any_scale_and_offset(make):
    stream = np.array(_several_changes(np.random.default_rng(3)))
    rescaled = (stream * 1_000.0 + 50.0).tolist()

    assert _detections(make(), rescaled) == _detections(make(), stream.tolist()) != []


@pytest.mark.parametrize("make", CALIBRATED.values(), ids=CALIBRATED)
def test_a_calibrated_detector_resets_idempotently_and_round_trips_through_msgpack(make):
    fresh, detector = make().snapshot(), make()
    _detections(detector, _several_changes(np.random.default_rng(0))[:700])
    restored = make()
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(detector.snapshot())))
    tail = _several_changes(np.random.default_rng(1))

    assert _detections(restored, tail) == _detections(detector, tail)
    detector._reset()
    assert detector.snapshot() == fresh


@pytest.mark.parametrize("value", [0.0, 7.0, -1e6])
@pytest.mark.parametrize("make", CALIBRATED.values(), ids=CALIBRATED)
def test_a_calibrated_detector_sees_no_change_in_a_constant_stream_and_any_departure_after_one(make, value):
    assert _detections(make(), [value] * 2_000) == []
    found = _detections(make(), [value] * 100 + [value + 1.0] * 50)  # ADWIN: as unscaled values, in ~26 of them
    assert found and 100 <= found[0] < 130


def test_warmup_scaled_needs_a_warm_up_of_two_values():
    with pytest.raises(ValueError, match="warmup"):
        WarmupScaled(ADWIN(), warmup=1)


def _adwin_cut_in_c():
    """The C cut test (detectors/_adwin_cut.c): built wherever CI runs, where its absence is a failure."""
    return c_extension("detectors._adwin_cut")


@settings(max_examples=20, deadline=None, database=None)
@given(
    st.sampled_from(sorted(STREAMS)),
    st.integers(0, 10_000),
    st.sampled_from([0.002, 0.1, 1e-5]),
    st.integers(1, 5),
    st.integers(1, 8),
)
def test_the_c_cut_test_equals_its_python_twin_at_every_update(stream_name, seed, delta, max_buckets, least):
    """Every test ADWIN makes (clock 1), on every window the stream leaves, cut or not (the tests above hold the C
    test's detections to river's indices)."""
    assert adwin_module._c_cut_found is _adwin_cut_in_c().cut_found
    detector = ADWIN(delta=delta, max_buckets=max_buckets, min_window_length=least)
    for x in STREAMS[stream_name](np.random.default_rng(seed)):
        detector._insert(x)
        while detector.width > detector.grace_period and detector._cut_found():
            assert detector._cut_found_twin()
            detector._drop_oldest_bucket()
        assert detector.width <= detector.grace_period or not detector._cut_found_twin()

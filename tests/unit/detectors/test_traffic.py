"""Traffic statistics against oracles: window quantiles equal numpy.quantile over the same events."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detectors.traffic import TrafficStats
from monitor.config import parse_config
from monitor.ingest import Record
from monitor.pipeline import Pipeline

QUANTILES = (0.5, 0.9, 0.95, 0.99)
T0_MS = 1_700_000_000_000
MODELS = ("chat", "search")


def _stream(seed: int, n: int, *, step_ms: int = 1_000, jitter_ms: int = 0) -> list[dict]:
    """A seeded stream of inference events (some without latency, some failed) and some feedback."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        timestamp_ms = T0_MS + i * step_ms + (int(rng.integers(-jitter_ms, jitter_ms + 1)) if jitter_ms else 0)
        event = {
            "request_id": f"r{i}",
            "timestamp": timestamp_ms / 1000,  # epoch seconds, as the schema has it
            "model": MODELS[int(rng.integers(0, 10) < 3)],
        }
        roll = rng.random()
        if roll < 0.15:
            pass  # no latency reported
        elif roll < 0.2:
            event["latency_ms"] = None  # null means absent
        else:
            event["latency_ms"] = float(np.round(rng.lognormal(6.0, 0.8), 3))
        if rng.random() < 0.08:
            event["error"] = str(rng.choice(["Timeout", "RateLimit", "ServerError"]))
        elif rng.random() < 0.1:
            event["error"] = None  # null error: the call succeeded
        events.append(event)
        if rng.random() < 0.1:
            events.append({"type": "feedback", "request_id": f"r{i}", "timestamp": timestamp_ms / 1000,
                           "model": event["model"], "rating": 1})  # fmt: skip
    return events


def _push(pipeline: Pipeline, events: list[dict], n_batches: int) -> None:
    records = [Record(json.dumps(event).encode(), "llm-events", 0, offset) for offset, event in enumerate(events)]
    records.insert(len(records) // 2, Record(b"{not json", "llm-events", 0, -1))  # rejected, not counted
    for batch in np.array_split(np.arange(len(records)), n_batches):
        pipeline.apply([records[i] for i in batch])


def _inference(events: list[dict], model: str) -> list[dict]:
    return [event for event in events if event.get("type", "inference") == "inference" and event["model"] == model]


def _oracle(window_events: list[dict]) -> tuple[list[float], float]:
    latencies = [event["latency_ms"] for event in window_events if event.get("latency_ms") is not None]
    failed = [event.get("error") is not None for event in window_events]
    quantiles = [float(np.quantile(np.array(latencies), q)) for q in QUANTILES]
    return quantiles, sum(failed) / len(failed)


def _assert_traffic(evaluation, window_events: list[dict]) -> None:
    quantiles, error_ratio = _oracle(window_events)
    traffic = evaluation.traffic
    assert evaluation.window_events == len(window_events)
    assert traffic.n_events == len(window_events)
    assert traffic.n_latencies == sum(1 for event in window_events if event.get("latency_ms") is not None)
    assert [q for q, _ in traffic.latency_quantiles_ms] == list(QUANTILES)
    np.testing.assert_allclose([value for _, value in traffic.latency_quantiles_ms], quantiles, rtol=1e-12)
    assert traffic.error_ratio == pytest.approx(error_ratio, rel=1e-12)


@pytest.mark.parametrize("size,n_batches", [(50, 7), (200, 3), (1_000, 11)])
def test_size_window_quantiles_equal_numpy_over_the_last_events(size, n_batches):
    events = _stream(seed=size, n=900, jitter_ms=5_000)  # "last N" is by arrival, not event time
    pipeline = Pipeline(parse_config({"windows": {"size": size, "min_samples": 1}}))

    _push(pipeline, events, n_batches)
    pipeline.evaluate(now_ms=pipeline.watermark_ms)

    assert set(pipeline.evaluations) == set(MODELS)
    for model in MODELS:
        last = _inference(events, model)[-size:]  # the last N inference events, in arrival order
        _assert_traffic(pipeline.evaluations[model], last)


def test_duration_window_counts_only_the_last_five_minutes_of_event_time():
    # ~30 minutes of events, one every 2 s, arriving up to a minute out of order.
    events = _stream(seed=5, n=900, step_ms=2_000, jitter_ms=60_000)
    pipeline = Pipeline(parse_config({"windows": {"size": 100_000, "duration": "5m", "min_samples": 1}}))

    _push(pipeline, events, n_batches=9)
    now_ms = pipeline.watermark_ms
    pipeline.evaluate(now_ms=now_ms)

    assert now_ms == max(event["timestamp"] * 1000.0 for event in events)
    for model in MODELS:
        inside = [event for event in _inference(events, model) if event["timestamp"] * 1000.0 > now_ms - 300_000]
        assert 0 < len(inside) < len(_inference(events, model))
        _assert_traffic(pipeline.evaluations[model], inside)


def test_duration_window_excludes_an_event_exactly_at_its_start():
    base = 1_700_000_000
    events = [
        {"request_id": "old", "timestamp": base - 300, "model": "m", "latency_ms": 1_000_000, "error": "Timeout"},
        {"request_id": "a", "timestamp": base - 299, "model": "m", "latency_ms": 10},
        {"request_id": "b", "timestamp": base, "model": "m", "latency_ms": 30},
    ]
    pipeline = Pipeline(parse_config({"windows": {"size": 100, "duration": "5m", "min_samples": 1}}))

    _push(pipeline, events, n_batches=1)
    pipeline.evaluate(now_ms=base * 1000.0)

    _assert_traffic(pipeline.evaluations["m"], events[1:])
    assert pipeline.evaluations["m"].traffic.error_ratio == 0.0


def test_window_below_min_samples_has_no_traffic_but_counts_its_events():
    events = _stream(seed=3, n=120)
    pipeline = Pipeline(parse_config({"windows": {"size": 60, "min_samples": 50}}))

    _push(pipeline, events, n_batches=4)
    pipeline.evaluate(now_ms=pipeline.watermark_ms)

    for model in MODELS:
        expected = min(len(_inference(events, model)), 60)
        evaluation = pipeline.evaluations[model]
        assert evaluation.window_events == expected
        assert evaluation.evaluated_at_ms == pipeline.watermark_ms
        if expected < 50:
            assert evaluation.traffic is None
        else:
            assert evaluation.traffic is not None
    # The stream is skewed 70/30, so one model is below min_samples and the other above it.
    assert {pipeline.evaluations[model].traffic is None for model in MODELS} == {True, False}


@pytest.mark.parametrize("n_events,has_traffic", [(9, False), (10, True), (11, True)])
def test_min_samples_is_inclusive(n_events, has_traffic):
    events = [{"request_id": f"r{i}", "timestamp": 1_700_000_000 + i, "model": "m", "latency_ms": i}
              for i in range(n_events)]  # fmt: skip
    pipeline = Pipeline(parse_config({"windows": {"size": 100, "min_samples": 10}}))

    _push(pipeline, events, n_batches=2)
    pipeline.evaluate(now_ms=pipeline.watermark_ms)

    evaluation = pipeline.evaluations["m"]
    assert evaluation.window_events == n_events
    assert (evaluation.traffic is not None) is has_traffic


def test_window_without_any_latency_has_empty_quantiles():
    events = [{"request_id": f"r{i}", "timestamp": 1_700_000_000 + i, "model": "m"} for i in range(5)]
    events[2]["error"] = "Timeout"
    pipeline = Pipeline(parse_config({"windows": {"size": 10, "min_samples": 1}}))

    _push(pipeline, events, n_batches=2)
    pipeline.evaluate(now_ms=pipeline.watermark_ms)

    traffic = pipeline.evaluations["m"].traffic
    assert traffic.latency_quantiles_ms == ()
    assert traffic.n_latencies == 0 and traffic.n_events == 5
    assert traffic.error_ratio == pytest.approx(0.2)


# TrafficStats on arrays


def _type7(sorted_values: list[float], q: float) -> float:
    """Hyndman and Fan's definition 7 (numpy's default 'linear'), with plain Python arithmetic."""
    h = (len(sorted_values) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


@settings(max_examples=200, deadline=None, database=None)
@given(
    data=st.data(),
    n=st.integers(min_value=0, max_value=300),
    quantiles=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5),
)
def test_traffic_stats_equal_numpy_on_random_arrays(data, n, quantiles):
    latency_ms = data.draw(hnp.arrays(np.float64, n, elements=st.floats(min_value=0.0, max_value=1e6, allow_nan=False)))
    missing = data.draw(hnp.arrays(np.bool_, n))
    latency_ms[missing] = np.nan
    failed = data.draw(hnp.arrays(np.bool_, n))

    result = TrafficStats(quantiles=quantiles).compute(latency_ms, failed)

    reported = [float(value) for value in latency_ms.tolist() if not math.isnan(value)]
    assert result.n_events == n
    assert result.n_latencies == len(reported)
    if reported:
        assert [q for q, _ in result.latency_quantiles_ms] == quantiles
        values = [value for _, value in result.latency_quantiles_ms]
        np.testing.assert_allclose(values, [np.quantile(np.array(reported), q) for q in quantiles], rtol=1e-12)
        ordered = sorted(reported)
        np.testing.assert_allclose(values, [_type7(ordered, q) for q in quantiles], rtol=1e-9, atol=1e-6)
    else:
        assert result.latency_quantiles_ms == ()
    if n:
        assert result.error_ratio == pytest.approx(sum(failed.tolist()) / n, rel=1e-12)
    else:
        assert math.isnan(result.error_ratio)


@pytest.mark.parametrize("quantiles", [(0.5, 1.5), (-0.1,), (math.nan,)])
def test_quantiles_outside_the_unit_interval_are_rejected(quantiles):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TrafficStats(quantiles=quantiles)

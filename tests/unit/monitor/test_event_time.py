"""Event time per model (issue 13, defects 3 and 4): one model's clock never moves another's; evaluations fall on
the boundaries of ``evaluate_every`` that each model's own event time crosses, whatever the batching; idle
models settle and follow the wall clock; a backlog is evaluated at a bounded rate."""

from __future__ import annotations

import json

import pytest

from monitor.config import parse_config
from monitor.ingest import Record
from monitor.pipeline import CATCH_UP_EVERY, CATCH_UP_LAG_MS, Pipeline

T0 = 1_700_000_000_000  # ms, a multiple of every evaluate_every used here
EVERY_MS = 10_000


def _config(**windows: object):
    return parse_config(
        {
            "windows": {"size": 100, "min_samples": 1, "evaluate_every": "10s", **windows},
            "models": [{"name": "a"}, {"name": "b"}],
        }
    )


def _record(model: str, at_ms: float, i: int = 0, **fields: object) -> Record:
    event = {"request_id": f"{model}{i}", "timestamp": at_ms / 1000, "model": model, "latency_ms": 100, **fields}
    return Record(json.dumps(event).encode(), "t", 0, i)


def _recording(pipeline: Pipeline) -> list[tuple[str, float]]:
    calls: list[tuple[str, float]] = []
    pipeline.on_evaluate = lambda models, now_ms: calls.append((models[0], now_ms))
    return calls


def test_one_models_clock_never_moves_anothers():
    pipeline = Pipeline(_config(duration="1m"))
    calls = _recording(pipeline)
    pipeline.apply([_record("a", T0 + i * 1_000, i) for i in range(25)])
    pipeline.apply([_record("b", 32_503_680_000_000, 99)])  # year 3000, for b (a replay has no wall clock)
    pipeline.apply([_record("nobody", 32_503_680_000_000, 98)])  # unmonitored: moves nothing at all
    pipeline.apply([_record("a", T0 + 25_000, 25)])
    assert pipeline.states["a"].watermark_ms == T0 + 25_000
    assert [now for model, now in calls if model == "a"] == [T0 + 10_000, T0 + 20_000]
    pipeline.evaluate(pipeline.states["a"].watermark_ms, ["a"])
    assert pipeline.evaluations["a"].window_events == 26  # a's duration window is whole, not emptied by b's clock


def test_feedback_moves_only_its_own_models_clock():
    pipeline = Pipeline(_config())
    pipeline.apply([_record("a", T0), _record("b", T0)])
    feedback = {"type": "feedback", "request_id": "a0", "timestamp": (T0 + 60_000) / 1000, "model": "a", "rating": 1}
    pipeline.apply([Record(json.dumps(feedback).encode(), "t", 0, 2)])
    assert (pipeline.states["a"].watermark_ms, pipeline.states["b"].watermark_ms) == (T0 + 60_000, T0)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 1_000])
def test_evaluations_fall_on_the_boundaries_each_model_crosses_whatever_the_batching(batch_size):
    # a: one call a second for 35 s; b: a call every 4 s, one out of order; they interleave.
    records = [_record("a", T0 + i * 1_000, i) for i in range(35)]
    records += [_record("b", T0 + i * 4_000, 100 + i) for i in range(9)]
    records.append(_record("b", T0 + 5_000, 200))  # late: neither a boundary nor a move of b's clock
    records.sort(key=lambda record: json.loads(record.value)["timestamp"] + (1e9 if record.offset == 200 else 0))
    pipeline = Pipeline(_config())
    calls = _recording(pipeline)
    window_sizes = []
    pipeline.on_evaluate = lambda models, now_ms: (
        calls.append((models[0], now_ms)),
        models[0] and window_sizes.append((models[0], now_ms, pipeline.evaluations[models[0]].window_events)),
    )
    for start in range(0, len(records), batch_size):
        pipeline.apply(records[start : start + batch_size])
    assert [call for call in calls if call[0] == "a"] == [("a", T0 + k * EVERY_MS) for k in (1, 2, 3)]
    assert [call for call in calls if call[0] == "b"] == [("b", T0 + k * EVERY_MS) for k in (1, 2, 3)]
    # Each evaluation saw exactly the events before its boundary.
    assert sorted(window_sizes) == sorted([("a", T0 + k * EVERY_MS, 10 * k) for k in (1, 2, 3)] + [
        ("b", T0 + 10_000, 3), ("b", T0 + 20_000, 5), ("b", T0 + 30_000, 8)])  # fmt: skip
    # Series without a model are evaluated as the latest evaluation time of all models advances.
    assert [now for model, now in calls if model == ""] == [T0 + k * EVERY_MS for k in (1, 2, 3)]


def test_an_event_that_jumps_several_boundaries_is_one_evaluation_at_the_last():
    pipeline = Pipeline(_config())
    calls = _recording(pipeline)
    pipeline.apply([_record("a", T0), _record("a", T0 + 45_000, 1)])
    assert [call for call in calls if call[0] == "a"] == [("a", T0 + 40_000)]


def test_an_idle_live_model_is_evaluated_as_of_its_last_event_then_follows_the_wall_clock():
    pipeline = Pipeline(_config(idle_after="1m"))
    calls = _recording(pipeline)
    wall_ms = T0 + 5_500
    pipeline.apply([_record("a", T0 + i * 1_000, i) for i in range(6)], wall_ms=wall_ms)
    pipeline.advance_idle(wall_ms + 59_000)
    assert calls == []  # not idle yet
    pipeline.advance_idle(wall_ms + 60_000)
    assert calls == [("a", T0 + 5_000), ("", T0 + 5_000)]  # as a replay ends: every event counts
    assert pipeline.evaluations["a"].window_events == 6
    # Then its event time is the wall clock less idle_after, evaluated at each boundary that crosses.
    assert pipeline.states["a"].watermark_ms == wall_ms
    pipeline.advance_idle(wall_ms + 85_000)
    assert pipeline.states["a"].watermark_ms == wall_ms + 25_000
    assert ("a", T0 + 30_000) in calls
    pipeline.advance_idle(wall_ms + 85_500)  # no new boundary, no new evaluation
    assert calls.count(("a", T0 + 30_000)) == 1
    # An event ends the idleness; later, it is settled again as of its latest event.
    pipeline.apply([_record("a", T0 + 31_000, 50)], wall_ms=wall_ms + 86_000)
    pipeline.advance_idle(wall_ms + 146_000)
    assert ("a", T0 + 31_000) in calls


def test_an_idle_backfill_keeps_its_own_time():
    pipeline = Pipeline(_config(idle_after="1m"))
    calls = _recording(pipeline)
    wall_ms = T0 + 7 * 86_400_000  # the events are a week old
    pipeline.apply([_record("a", T0 + i * 1_000, i) for i in range(6)], wall_ms=wall_ms)
    pipeline.advance_idle(wall_ms + 120_000)
    assert pipeline.states["a"].watermark_ms == T0 + 5_000
    assert [call for call in calls if call[0] == "a"] == [("a", T0 + 5_000)]


def test_a_backlog_is_evaluated_once_per_span_of_boundaries_and_live_traffic_at_each():
    records = [_record("a", T0 + i * 1_000, i) for i in range(1_000)]  # 100 boundaries
    backlog, live = Pipeline(_config()), Pipeline(_config())
    backlog_calls, live_calls = _recording(backlog), _recording(live)
    backlog.apply(records, wall_ms=T0 + 1_000_000 + CATCH_UP_LAG_MS + 1)
    live.apply(records, wall_ms=T0 + 1_000_000)
    span_ms = CATCH_UP_EVERY * EVERY_MS
    assert [now for model, now in backlog_calls if model == "a"] == [T0 + EVERY_MS] + [
        T0 + k * span_ms for k in range(1, 10)
    ]  # the first boundary, then the first of each new span (T0 is a multiple of the span)
    assert [now for model, now in live_calls if model == "a"] == [T0 + k * EVERY_MS for k in range(1, 100)]


def test_an_exception_while_evaluating_one_model_is_counted_and_the_others_are_evaluated(monkeypatch):
    pipeline = Pipeline(_config())
    pipeline.apply([_record("a", T0), _record("b", T0, 1)])
    suite = pipeline._quality_suite("a")
    monkeypatch.setattr(suite, "evaluate", lambda *args: 1 / 0)
    pipeline.evaluate(T0)
    assert "a" not in pipeline.evaluations and "b" in pipeline.evaluations
    assert pipeline.n_internal_errors["evaluate"] == 1


def test_an_exception_in_the_alert_rules_is_counted_and_ingest_goes_on():
    pipeline = Pipeline(_config())
    pipeline.on_evaluate = lambda models, now_ms: 1 / 0
    pipeline.apply([_record("a", T0 + i * 6_000, i) for i in range(5)])
    assert pipeline.states["a"].n_events["inference"] == 5
    assert pipeline.n_internal_errors["alerts"] == 2 * 2  # two boundaries: the model's rules and the global ones


def test_in_run_an_event_too_far_ahead_of_the_wall_clock_is_invalid_and_moves_no_clock():
    pipeline = Pipeline(_config())  # limits.max_clock_skew: 10m
    wall_ms = T0
    rejected = pipeline.apply(
        [_record("a", T0), _record("a", T0 + 9 * 60_000, 1), _record("a", T0 + 11 * 60_000, 2)], wall_ms=wall_ms
    )
    assert [(letter.record.offset, letter.invalid.reason) for letter in rejected] == [(2, "future_timestamp")]
    assert pipeline.states["a"].watermark_ms == T0 + 9 * 60_000
    assert pipeline.n_invalid["future_timestamp"] == 1
    # A replay has no wall clock: last week's, or next year's, events are valid there.
    assert Pipeline(_config()).apply([_record("a", T0 + 365 * 86_400_000)]) == []

"""Per-model state through the config and the pipeline: model routing, limits, feature columns, counters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitor.config import parse_config
from monitor.ingest import Record
from monitor.ingest.events import Event
from monitor.pipeline import Pipeline
from monitor.state.model import LATENCY_BUCKETS_MS, TTFT_BUCKETS_MS, ModelStates
from monitor.state.vocabulary import OTHER

T0 = 1_700_000_000  # epoch seconds


def _event(model: str, i: int, **fields) -> dict:
    return {"request_id": f"{model}-{i}", "timestamp": T0 + i, "model": model, **fields}


def _feedback(model: str, i: int, **fields) -> dict:
    return {"type": "feedback", "request_id": f"{model}-{i}", "timestamp": T0 + i, "model": model, **fields}


def _apply(pipeline: Pipeline, events: list[dict]) -> None:
    records = [Record(json.dumps(event).encode(), "t", 0, offset) for offset, event in enumerate(events)]
    rejected = pipeline.apply(records)
    assert rejected == [], [letter.invalid for letter in rejected]


def _ingest(states: ModelStates, model: str, events: list[dict]) -> None:
    """The decoded form of events, as the pipeline hands them to ModelStates."""
    decoded = [Event(type="inference", timestamp_ms=(T0 + i) * 1000.0, **event) for i, event in enumerate(events)]
    states.ingest(model, decoded)


# Which state an event goes to


def test_wildcard_creates_one_state_per_model_on_first_sight():
    pipeline = Pipeline(parse_config({"models": [{"name": "*"}]}))
    assert len(pipeline.states) == 0

    _apply(pipeline, [_event("a", 0), _event("b", 1), _event("a", 2)])
    _apply(pipeline, [_event("c", 3)])

    states = pipeline.states
    assert sorted(state.name for state in states) == ["a", "b", "c"]
    assert len(states["a"].window) == 2 and len(states["b"].window) == 1 and len(states["c"].window) == 1
    assert states["a"].n_events == {"inference": 2, "feedback": 0}
    assert states.n_unmonitored_events == 0 and states.n_folded_events == 0


def test_named_model_uses_its_own_config_and_others_the_wildcard():
    config = parse_config(
        {
            "models": [
                {"name": "*", "features": [{"name": "locale", "kind": "categorical", "path": "segment.locale"}]},
                {"name": "bot", "features": [{"name": "x", "kind": "numeric"}]},
            ]
        }
    )
    pipeline = Pipeline(config)

    _apply(
        pipeline,
        [
            _event("bot", 0, features={"x": 2.5}, segment={"locale": "de"}),
            _event("other", 1, features={"x": 7.0}, segment={"locale": "de"}),
        ],
    )

    bot, other = pipeline.states["bot"], pipeline.states["other"]
    assert [feature.name for feature in bot.features] == ["x"]
    assert [feature.name for feature in other.features] == ["locale"]
    assert {name for name in bot.window.view() if name.startswith("feature.")} == {"feature.x", "feature.x.wrong_type"}
    assert {name for name in other.window.view() if name.startswith("feature.")} == {
        "feature.locale",
        "feature.locale.wrong_type",
    }
    assert bot.window.view()["feature.x"].tolist() == [2.5]
    assert other.window.view()["feature.locale"].tolist() == [1]


def test_without_wildcard_unknown_models_are_counted_and_get_no_state():
    pipeline = Pipeline(parse_config({"models": [{"name": "bot"}]}))

    _apply(pipeline, [_event("bot", 0), _event("stranger", 1), _event("stranger", 2), _feedback("ghost", 3)])
    _apply(pipeline, [_event("stranger", 4)])

    assert [state.name for state in pipeline.states] == ["bot"]
    with pytest.raises(KeyError):
        pipeline.states["stranger"]
    assert pipeline.states.n_unmonitored_events == 4
    assert pipeline.states.n_folded_events == 0


def test_wildcard_models_past_max_models_fold_into_other():
    config = parse_config({"limits": {"max_models": 2}, "models": [{"name": "*"}]})
    pipeline = Pipeline(config)

    _apply(pipeline, [_event("a", 0), _event("b", 1), _event("c", 2), _event("c", 3), _event("d", 4)])
    _apply(pipeline, [_event("a", 5), _event("c", 6), _feedback("d", 7), _event("e", 8)])

    states = pipeline.states
    assert sorted(state.name for state in states) == sorted(["a", "b", OTHER])
    assert len(states) == 3  # max_models own states plus the one OTHER state
    assert states.n_folded_events == 2 + 1 + 1 + 1 + 1  # c, c, d | c, d (feedback), e
    other = states[OTHER]
    assert len(other.window) == 5  # the feedback event takes no slot
    assert other.n_events == {"inference": 5, "feedback": 1}
    assert len(states["a"].window) == 2 and len(states["b"].window) == 1


def test_named_models_do_not_use_up_the_wildcard_limit():
    config = parse_config({"limits": {"max_models": 1}, "models": [{"name": "bot"}, {"name": "*"}]})
    pipeline = Pipeline(config)

    _apply(pipeline, [_event("bot", 0), _event("a", 1), _event("b", 2)])

    assert sorted(state.name for state in pipeline.states) == sorted(["bot", "a", OTHER])
    assert pipeline.states.n_folded_events == 1


def test_feedback_is_counted_but_takes_no_window_slot():
    pipeline = Pipeline(parse_config({"windows": {"size": 3}}))

    _apply(pipeline, [_event("bot", 0, latency_ms=10), _event("bot", 1, latency_ms=20)])
    _apply(pipeline, [_feedback("bot", 0, label="yes"), _feedback("bot", 1, rating=1), _feedback("bot", 2)])
    _apply(pipeline, [_feedback("late", 9, judge_score=0.5)])  # feedback first: state, but no rows

    bot = pipeline.states["bot"]
    assert bot.n_events == {"inference": 2, "feedback": 3}
    assert len(bot.window) == 2 and bot.window.n_appended == 2
    assert bot.window.view()["latency_ms"].tolist() == [10.0, 20.0]
    assert bot.latency.n_observed == 2
    late = pipeline.states["late"]
    assert late.n_events == {"inference": 0, "feedback": 1}
    assert len(late.window) == 0
    assert pipeline.watermark_ms == (T0 + 9) * 1000.0


# Feature columns


def test_numeric_features_from_features_segment_and_top_level_fields():
    config = parse_config(
        {
            "models": [
                {
                    "name": "*",
                    "features": [
                        {"name": "x", "kind": "numeric"},  # features.x by default
                        {"name": "input_tokens", "kind": "numeric"},  # a top-level field by default
                        {"name": "age", "kind": "numeric", "path": "segment.age"},
                        {"name": "score", "kind": "numeric"},
                    ],
                }
            ]
        }
    )
    pipeline = Pipeline(config)

    _apply(
        pipeline,
        [
            _event("m", 0, features={"x": 1.5}, input_tokens=12, segment={"age": "forty"}, score=0.25),
            _event("m", 1, features={"x": 3}, segment={"other": "1"}),
            _event("m", 2, features={"x": True, "y": 4.0}, input_tokens=0),
            _event("m", 3, features={"x": "high"}, input_tokens=7, score=1),
            _event("m", 4),
        ],
    )

    view = pipeline.states["m"].window.view()
    nan = math.nan
    np.testing.assert_array_equal(view["feature.x"], [1.5, 3.0, 1.0, nan, nan])
    np.testing.assert_array_equal(view["feature.input_tokens"], [12.0, nan, 0.0, 7.0, nan])
    np.testing.assert_array_equal(view["feature.age"], [nan] * 5)  # segment values are strings
    np.testing.assert_array_equal(view["feature.score"], [0.25, nan, nan, 1.0, nan])
    assert view["feature.x"].dtype == np.float64


def test_numeric_feature_value_does_not_depend_on_the_rest_of_the_batch():
    config = parse_config({"models": [{"name": "*", "features": [{"name": "x", "kind": "numeric"}]}]})
    with_numbers, with_words = Pipeline(config), Pipeline(config)

    _apply(with_numbers, [_event("m", 0, features={"x": "40"}), _event("m", 1, features={"x": 3})])
    _apply(with_words, [_event("m", 0, features={"x": "40"}), _event("m", 1, features={"x": "high"})])
    _apply(with_numbers, [_event("m", 2, features={"x": "inf"}), _event("m", 3, features={"x": 1.0})])

    alone = with_numbers.states["m"].window.view()["feature.x"]
    among_words = with_words.states["m"].window.view()["feature.x"]
    np.testing.assert_array_equal(alone[:1], among_words[:1])  # the same event, the same value
    assert not np.isinf(alone).any()  # the schema admits no infinite value, not even through a string


def test_numeric_feature_on_a_list_field_is_nan_not_a_crash():
    config = parse_config({"models": [{"name": "*", "features": [{"name": "embedding", "kind": "numeric"}]}]})
    pipeline = Pipeline(config)

    _apply(pipeline, [_event("m", 0, embedding=[1.0, 2.0]), _event("m", 1, embedding=[3.0, 4.0])])

    np.testing.assert_array_equal(pipeline.states["m"].window.view()["feature.embedding"], [math.nan] * 2)


def test_categorical_features_are_capped_by_max_categories():
    config = parse_config(
        {
            "limits": {"max_categories": 2},
            "models": [
                {
                    "name": "*",
                    "features": [
                        {"name": "locale", "kind": "categorical", "path": "segment.locale"},
                        {"name": "tier", "kind": "categorical"},  # features.tier
                        {"name": "finish_reason", "kind": "categorical"},  # top-level field
                    ],
                }
            ],
        }
    )
    pipeline = Pipeline(config)

    _apply(
        pipeline,
        [
            _event("m", 0, segment={"locale": "de"}, features={"tier": True}, finish_reason="stop"),
            _event("m", 1, segment={"locale": "en"}, features={"tier": 3}, finish_reason="length"),
            _event("m", 2, segment={"locale": "fr"}, features={"tier": False}, finish_reason="content_filter"),
        ],
    )
    _apply(pipeline, [_event("m", 3, segment={"locale": "de"}, features={"tier": "gold"}), _event("m", 4)])

    state = pipeline.states["m"]
    view = state.window.view()
    assert view["feature.locale"].tolist() == [1, 2, 0, 1, -1]
    assert view["feature.tier"].tolist() == [1, 2, 0, 0, -1]
    assert view["feature.finish_reason"].tolist() == [1, 2, 0, -1, -1]
    assert view["feature.locale"].dtype == np.int32
    assert state.vocabularies["locale"].values == [OTHER, "de", "en"]
    assert state.vocabularies["tier"].values == [OTHER, "true", "3"]


def test_text_features_are_described_after_truncation_to_max_text_chars():
    config = parse_config(
        {
            "limits": {"max_text_chars": 5},
            "models": [
                {
                    "name": "*",
                    "features": [
                        {"name": "prompt", "kind": "text"},
                        {"name": "topic", "kind": "text", "path": "segment.topic"},
                        {"name": "note", "kind": "text"},  # features.note
                    ],
                }
            ],
        }
    )
    pipeline = Pipeline(config)

    _apply(
        pipeline,
        [
            _event("m", 0, prompt="hello world", segment={"topic": "billing"}, features={"note": "ok"}),
            _event("m", 1, prompt="hi", features={"note": 12}),
            _event("m", 2, prompt="", segment={"topic": "été à paris"}),
        ],
    )

    view = pipeline.states["m"].window.view()
    assert view["feature.prompt.length_chars"].tolist() == [5, 2, 0]  # described after truncation
    assert view["feature.prompt.length_words"].tolist() == [1, 1, 0]
    np.testing.assert_array_equal(view["feature.topic.length_chars"], [5, np.nan, 5])
    np.testing.assert_array_equal(view["feature.topic.non_ascii_share"], [0.0, np.nan, 0.6])
    np.testing.assert_array_equal(view["feature.note.length_chars"], [2, np.nan, np.nan])  # 12 is not text


def test_embeddings_of_the_wrong_dimension_become_nan_rows():
    config = parse_config(
        {"models": [{"name": "*", "features": [{"name": "embedding", "kind": "embedding", "dim": 3}]}]}
    )
    pipeline = Pipeline(config)

    _apply(
        pipeline,
        [
            _event("m", 0, embedding=[0.5, -1.0, 2.0]),
            _event("m", 1, embedding=[1.0, 2.0]),
            _event("m", 2, embedding=[1, 2, 3]),
            _event("m", 3),
            _event("m", 4, embedding=[1.0, 2.0, 3.0, 4.0]),
        ],
    )

    column = pipeline.states["m"].window.view()["feature.embedding"]
    assert column.shape == (5, 3) and column.dtype == np.float32
    nan = [math.nan] * 3
    np.testing.assert_array_equal(column, np.array([[0.5, -1.0, 2.0], nan, [1.0, 2.0, 3.0], nan, nan], np.float32))


def test_model_states_ingest_decoded_events_directly():
    config = parse_config({"models": [{"name": "*", "features": [{"name": "x", "kind": "numeric"}]}]})
    states = ModelStates(config)

    _ingest(states, "m", [{"features": {"x": 1.0}}, {"features": {"x": 2.0}, "error": "Timeout"}])

    view = states["m"].window.view()
    assert view["feature.x"].tolist() == [1.0, 2.0]
    assert view["failed"].tolist() == [False, True]
    assert view["timestamp_ms"].tolist() == [T0 * 1000.0, (T0 + 1) * 1000.0]


# Counters and histograms


def test_token_counters_and_histograms_count_what_was_ingested():
    rng = np.random.default_rng(11)
    events, latencies, ttfts = [], [], []
    input_total = output_total = 0
    for i in range(300):
        fields: dict = {}
        if i % 4:
            # Every other one sits exactly on a bucket bound, where `le` semantics matter.
            on_bound = float(LATENCY_BUCKETS_MS[i % len(LATENCY_BUCKETS_MS)])
            latency = on_bound if i % 2 else float(rng.uniform(0, 150_000))
            fields["latency_ms"] = latency
            latencies.append(latency)
        if i % 5:
            ttft_seconds = TTFT_BUCKETS_MS[i % len(TTFT_BUCKETS_MS)] / 1000 if i % 3 == 0 else float(rng.uniform(0, 12))
            fields["gen_ai.response.time_to_first_chunk"] = ttft_seconds  # seconds, converted to ms
            ttfts.append(ttft_seconds * 1000.0)
        if i % 6:
            fields["input_tokens"] = int(rng.integers(0, 5_000))
            input_total += fields["input_tokens"]
        if i % 7:
            fields["gen_ai.usage.output_tokens"] = int(rng.integers(0, 2_000))
            output_total += fields["gen_ai.usage.output_tokens"]
        events.append(_event("m", i, **fields))
    feedback = [_feedback("m", i, judge_score=0.5) for i in range(10)]

    pipeline = Pipeline(parse_config({"windows": {"size": 50}}))
    for start in range(0, 300, 70):
        _apply(pipeline, events[start : start + 70])
    _apply(pipeline, feedback)

    state = pipeline.states["m"]
    assert state.n_tokens == {"input": input_total, "output": output_total}
    assert state.n_events == {"inference": 300, "feedback": 10}

    def cumulative(bounds, values):
        return [sum(1 for value in values if value <= bound) for bound in bounds] + [len(values)]

    # The histograms count every ingested event, not only the window's last 50.
    assert state.latency.cumulative_counts().tolist() == cumulative(LATENCY_BUCKETS_MS, latencies)
    assert state.latency.total == sum(round(value * 1000.0) for value in latencies) / 1000.0  # exact thousandths
    assert state.ttft.cumulative_counts().tolist() == cumulative(TTFT_BUCKETS_MS, ttfts)
    assert state.ttft.total == sum(round(value * 1000.0) for value in ttfts) / 1000.0

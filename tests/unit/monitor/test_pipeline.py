"""The pipeline as a whole: whatever valid events arrive, under any feature config, it never raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import EVENT_FIELDS, parse_config
from monitor.ingest import Record, partition_batches
from monitor.ingest import records as records_of
from monitor.pipeline import Pipeline

KINDS = ("numeric", "categorical", "text", "embedding")
PATHS = (*EVENT_FIELDS, "features.a", "features.b", "segment.a")

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(-1e9, 1e9) | st.text(max_size=8)
identifiers = st.text(max_size=12)
non_negative = st.floats(0, 1e7) | st.integers(0, 10**6)
counts = st.integers(0, 10**6)
# Valid values for every optional field, so that the events reach the state rather than the dead letters.
OPTIONAL = {
    **dict.fromkeys(("model_version", "operation", "provider", "conversation_id", "finish_reason"), identifiers),
    "error": st.none() | identifiers,
    **dict.fromkeys(("latency_ms", "ttft_ms"), non_negative),
    **dict.fromkeys(("input_tokens", "output_tokens", "cache_read_input_tokens", "reasoning_output_tokens"), counts),
    **dict.fromkeys(("prompt", "response"), st.text(max_size=30)),
    "embedding": st.lists(st.floats(-10, 10), min_size=1, max_size=3),
    "features": st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2),
    "segment": st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=5), max_size=2),
    "prediction": st.text(max_size=5) | st.floats(-1e6, 1e6),
    "score": st.floats(0, 1),
    "stream": st.booleans(),
    "trace_id": st.text("0123456789abcdefABCDEF", min_size=32, max_size=32),
    "type": st.sampled_from(["inference", "feedback"]),
}
assert set(OPTIONAL) >= set(EVENT_FIELDS)
events = st.fixed_dictionaries(
    {"request_id": st.just("r"), "timestamp": st.integers(10**9, 2 * 10**9), "model": st.sampled_from(["m1", "m2"])},
    optional=OPTIONAL,
)
features = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(PATHS)), min_size=1, max_size=6, unique_by=lambda f: f[1]
)


@settings(max_examples=150, deadline=None, database=None)
@given(features=features, batches=st.lists(st.lists(events, max_size=8), max_size=4))
def test_any_valid_event_under_any_feature_config_is_ingested_without_raising(features, batches):
    config = parse_config(
        {
            "windows": {"size": 5, "min_samples": 1},
            "models": [
                {
                    "name": "*",
                    "features": [
                        {"name": f"f{i}", "kind": kind, "path": path, **({"dim": 2} if kind == "embedding" else {})}
                        for i, (kind, path) in enumerate(features)
                    ],
                }
            ],
        }
    )
    pipeline = Pipeline(config)
    n_sent = 0
    for batch in batches:
        rejected = pipeline.apply([Record(json.dumps(event).encode(), "t", 0, i) for i, event in enumerate(batch)])
        n_sent += len(batch)
        assert rejected == []
    pipeline.evaluate(now_ms=pipeline.watermark_ms)
    counted = sum(sum(state.n_events.values()) for state in pipeline.states) + sum(pipeline.n_invalid.values())
    assert counted == n_sent  # every event is either counted in a model or rejected with a reason
    for state in pipeline.states:
        view = state.window.view()
        assert all(len(column) == len(view["timestamp_ms"]) for column in view.values())


# -- What a poll hands over ------------------------------------------------------------------------------------------

_VALID = json.dumps({"request_id": "r", "timestamp": 1_700_000_000, "model": "m"}).encode()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(1, 3), st.booleans()),
        max_size=30,
    )
)
def test_each_partition_keeps_its_order_and_a_rejected_message_its_place(messages):
    """Records of interleaved partitions, offsets with gaps (a compacted topic): grouped by partition in order,
    read back as they came, and each rejected message dead-lettered with its own topic, partition and offset."""
    records, next_offset = [], {}
    for topic, partition, gap, valid in messages:
        offset = next_offset.get((topic, partition), 0) + gap - 1
        next_offset[topic, partition] = offset + 1
        records.append(Record(_VALID if valid else b"{", topic, partition, offset))

    batches = partition_batches(records)
    assert sorted(records_of(batches), key=_where) == sorted(records, key=_where)
    for batch in batches:
        assert list(batch.offsets) == [r.offset for r in records if (r.topic, r.partition) == batch[:2]]
    assert len({batch[:2] for batch in batches}) == len(batches)

    rejected = Pipeline(parse_config({})).apply(records)
    assert sorted(letter.record for letter in rejected) == sorted(r for r in records if r.value == b"{")
    assert {letter.invalid.reason for letter in rejected} <= {"not_json"}


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset

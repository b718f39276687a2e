"""OpenTelemetry traces from the SDK's own OTLP encoders into events: every model call once, with what it recorded."""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from monitor.cli import main
from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.ingest.events import Invalid
from monitor.ingest.otlp import ENCODINGS, decode_traces
from monitor.pipeline import Pipeline
from tests.components import statistics
from tests.otel import NS, encode, expected_calls, genai_calls

START_S = 1_767_225_600
SPANS = genai_calls(40, START_S)
CALLS = expected_calls(SPANS)


def _request(span_attributes: dict, start_ns: int = START_S * NS, end_ns: int = START_S * NS + 250_000_000) -> bytes:
    """A request of one span with ``span_attributes`` (values as protobuf AnyValue fields)."""
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(
            trace_id=bytes(range(16)), span_id=bytes(range(8)), start_time_unix_nano=start_ns, end_time_unix_nano=end_ns
        )
    )
    for key, value in span_attributes.items():
        field = {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value"}[type(value)]
        setattr(span.attributes.add(key=key).value, field, value)
    return request.SerializeToString()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_model_call_becomes_one_event_with_what_the_sdk_recorded(encoding):
    decoded = decode_traces(encode(SPANS, encoding), encoding)

    calls = [event for event in decoded.events if event.type == "inference"]
    assert decoded.rejected == []
    assert len(calls) == len(CALLS)
    for event, call in zip(
        sorted(calls, key=lambda e: e.request_id), sorted(CALLS, key=lambda c: c.trace_id + "-" + c.span_id)
    ):
        assert event.request_id == f"{call.trace_id}-{call.span_id}"
        assert event.trace_id == call.trace_id
        assert event.model == call.model and event.model_version == f"{call.model}-2026-01-01"
        assert event.latency_ms == pytest.approx(call.latency_ms, abs=1e-6)
        assert (event.input_tokens, event.output_tokens) == (call.input_tokens, call.output_tokens)
        assert isinstance(event.error, str) == call.failed
        assert (event.operation, event.provider) == ("chat", "openai")
        assert event.finish_reason in ("stop", "length")
    assert decoded.skipped == {"not_genai": 40, "not_a_model_call": 10}  # the HTTP spans; the tool calls


def test_both_encodings_give_the_same_events():
    by_encoding = [decode_traces(encode(SPANS, encoding), encoding).events for encoding in ENCODINGS]

    as_tuples = [[msgspec.structs.astuple(event) for event in events] for events in by_encoding]
    assert as_tuples[0] == as_tuples[1]


def test_an_evaluation_result_becomes_feedback_on_its_call():
    decoded = decode_traces(encode(SPANS, "otlp_proto"), "otlp_proto")

    feedback = [event for event in decoded.events if event.type == "feedback"]
    calls = {event.request_id: event for event in decoded.events if event.type == "inference"}
    assert len(feedback) == 8  # every fifth of 40 calls
    for event in feedback:
        call = calls[event.request_id]  # joins its call
        assert event.model == call.model and event.evaluation_name == "relevance"
        assert 0 <= event.judge_score <= 1
        assert event.timestamp_ms < call.timestamp_ms  # the event's own time


def test_a_failed_call_without_an_error_type_is_the_conventions_other():
    request = ExportTraceServiceRequest.FromString(_request({"gen_ai.request.model": "m"}))
    request.resource_spans[0].scope_spans[0].spans[0].status.code = 2  # STATUS_CODE_ERROR

    (event,) = decode_traces(request.SerializeToString(), "otlp_proto").events
    assert event.error == "_OTHER"


@pytest.mark.parametrize(
    ("attributes", "reason", "detail"),
    [
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": -1}, "negative", "gen_ai.usage.input_tokens"),
        (
            {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 2**62},
            "out_of_range",
            "gen_ai.usage.input_tokens",
        ),
        ({"gen_ai.request.model": "m", "gen_ai.usage.output_tokens": "12"}, "wrong_type", "gen_ai.usage.output_tokens"),
        ({"gen_ai.request.model": "m", "gen_ai.response.time_to_first_chunk": math.nan}, "non_finite", ""),
        ({"gen_ai.request.model": "m" * 300}, "too_long", "gen_ai.request.model"),  # named as sent
        ({"gen_ai.operation.name": "chat"}, "missing_field", "model"),  # a model call that names no model
    ],
)
def test_a_span_that_is_not_a_valid_call_is_rejected_alone(attributes, reason, detail):
    good = ExportTraceServiceRequest.FromString(encode(SPANS[:6], "otlp_proto"))
    bad = ExportTraceServiceRequest.FromString(_request(attributes))
    good.resource_spans.extend(bad.resource_spans)

    decoded = decode_traces(good.SerializeToString(), "otlp_proto")
    assert len(decoded.events) == len([span for span in SPANS[:6] if "gen_ai.request.model" in span.attributes]) + 1
    [(letter, invalid, n_spans)] = decoded.rejected
    assert invalid.reason == reason and invalid.detail.startswith(detail) and n_spans == 1
    assert ExportTraceServiceRequest.FromString(letter) == bad  # the span alone, as it came: it can be sent again


def test_a_rejected_span_of_a_json_topic_is_dead_lettered_in_json_with_hex_ids():
    bad = ExportTraceServiceRequest.FromString(_request({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": -1}))
    raw = encode(SPANS[:3], "otlp_json")
    document = msgspec.json.decode(raw)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        {
            "traceId": bytes(range(16)).hex(),
            "spanId": bytes(range(8)).hex(),
            "name": "chat m",
            "startTimeUnixNano": str(START_S * NS),
            "endTimeUnixNano": str(START_S * NS + 5),
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "-1"}},
            ],
        }
    )
    decoded = decode_traces(msgspec.json.encode(document), "otlp_json")

    [(letter, invalid, _)] = decoded.rejected
    assert invalid == Invalid("negative", "gen_ai.usage.input_tokens")
    [span] = msgspec.json.decode(letter)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert (span["traceId"], span["spanId"]) == (bytes(range(16)).hex(), bytes(range(8)).hex())
    assert decode_traces(letter, "otlp_json").rejected[0].invalid == invalid  # sent again, judged the same
    assert bad.resource_spans[0].scope_spans[0].spans[0].trace_id == bytes(range(16))


@pytest.mark.parametrize(
    ("raw", "encoding", "reason"),
    [
        (b"\xff\xff\xff", "otlp_proto", "not_otlp"),
        (b'{"request_id": "r1", "timestamp": 1767225600, "model": "m"}', "otlp_proto", "not_otlp"),  # JSON events
        (b"{not json", "otlp_json", "not_json"),
        (b"[1, 2]", "otlp_json", "not_otlp"),
        (_request({"gen_ai.request.model": "m"})[:-7], "otlp_proto", "not_otlp"),  # truncated
        (b"\x0a\x05\x12\x07\x12\x01\x00", "otlp_proto", "not_otlp"),  # a scope longer than its resource
        (b'{"resourceSpans": 7}', "otlp_json", "not_otlp"),
        (b'{"resourceSpans": [{"scopeSpans": [7]}]}', "otlp_json", "not_otlp"),
    ],
)
def test_a_message_that_does_not_decode_is_invalid_whole(raw, encoding, reason):
    decoded = decode_traces(raw, encoding)
    assert isinstance(decoded, Invalid) and decoded.reason == reason


_CORRUPT = b"corrupt-span"  # a span's name, replaced in the wire bytes by one that is not UTF-8


def _with_bad_span(encoding: str, corrupt: str) -> tuple[bytes, bytes]:
    """SPANS[:9] encoded with one more span in their last scope, whose ``corrupt`` ("span", "resource" or "scope")
    holds what its encoding cannot parse (a string not UTF-8; an int64 beyond its range, or an id not hex); and
    SPANS[:9] encoded alone."""
    alone = encode(SPANS[:9], encoding)
    request = ExportTraceServiceRequest.FromString(encode(SPANS[:9], "otlp_proto"))
    extra = ExportTraceServiceRequest.FromString(_request({"gen_ai.request.model": "m"}))
    request.resource_spans.extend(extra.resource_spans)
    resource_spans = request.resource_spans[-1]
    holder = {
        "span": resource_spans.scope_spans[0].spans[0].attributes,
        "resource": resource_spans.resource.attributes,
        "scope": resource_spans.scope_spans[0].scope.attributes,
    }[corrupt]
    if encoding == "otlp_proto":
        holder.add(key="bad").value.string_value = _CORRUPT.decode()
        raw = request.SerializeToString()
        return raw.replace(_CORRUPT, b"\xff" + _CORRUPT[1:]), alone
    holder.add(key="bad").value.int_value = 7
    return _as_otlp_json(request).replace(b'"intValue": "7"', b'"intValue": "18446744073709551616"'), alone


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("corrupt", ["span", "resource", "scope"])
def test_a_span_that_does_not_parse_is_rejected_alone_and_the_spans_beside_it_count(encoding, corrupt):
    """A string that is not UTF-8 (protobuf refuses the whole message for it) or an int64 out of range (protobuf's
    JSON mapping refuses the whole document): the message was ``not_otlp``, its good spans lost. The oracle is the
    message without the bad span; a resource or scope that does not parse rejects its spans."""
    raw, alone = _with_bad_span(encoding, corrupt)

    decoded = decode_traces(raw, encoding)

    expected = decode_traces(alone, encoding)
    assert decoded.events == expected.events and decoded.skipped == expected.skipped
    [(letter, invalid, n_spans)] = decoded.rejected
    assert invalid.reason == "not_otlp" and invalid.detail.startswith(corrupt) and n_spans == 1
    again = decode_traces(letter, encoding)  # the bad span alone, under its resource and scope: judged the same
    assert again.events == [] and [(r.invalid, r.n_spans) for r in again.rejected] == [(invalid, 1)]
    if encoding == "otlp_proto":
        assert b"\xff" + _CORRUPT[1:] in letter and len(letter) <= len(raw) - len(alone)
    else:
        [resource_spans] = msgspec.json.decode(letter)["resourceSpans"]
        assert resource_spans == json.loads(raw)["resourceSpans"][-1]  # as it came, ids in hex


@pytest.mark.parametrize(
    ("field", "value"), [("traceId", "not hex"), ("startTimeUnixNano", "soon"), ("droppedAttributesCount", -1)]
)
def test_an_otlp_json_span_with_a_value_its_mapping_refuses_is_rejected_alone(field, value):
    document = msgspec.json.decode(encode(SPANS[:3], "otlp_json"))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[1], field: value})

    decoded = decode_traces(msgspec.json.encode(document), "otlp_json")

    assert decoded.events == decode_traces(encode(SPANS[:3], "otlp_json"), "otlp_json").events
    [(letter, invalid, n_spans)] = decoded.rejected
    assert invalid.reason == "not_otlp" and n_spans == 1
    assert msgspec.json.decode(letter)["resourceSpans"][0]["scopeSpans"][0]["spans"] == [spans[-1]]


def test_an_oversized_message_is_invalid_before_it_is_parsed():
    raw = encode(SPANS, "otlp_proto")
    assert decode_traces(raw, "otlp_proto", max_bytes=len(raw) - 1) == Invalid(
        "oversized", f"{len(raw)} bytes > {len(raw) - 1}"
    )


@pytest.mark.parametrize(
    ("start_ns", "end_ns", "reason"), [(START_S * NS, START_S * NS - 1, "negative"), (0, 5, "bad_timestamp")]
)
def test_a_span_that_ends_before_it_starts_or_never_is_rejected(start_ns, end_ns, reason):
    decoded = decode_traces(_request({"gen_ai.request.model": "m"}, start_ns, end_ns), "otlp_proto")
    assert [rejected.invalid.reason for rejected in decoded.rejected] == [reason]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(ENCODINGS))
def test_the_decoder_never_raises(raw, encoding):
    assert isinstance(decode_traces(raw, encoding), Invalid | tuple)


def _otlp_config(encoding: str) -> dict:
    return {"kafka": {"topics": [{"name": "traces", "encoding": encoding}, "events"]}, "windows": {"min_samples": 1}}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_pipeline_counts_each_call_under_its_model_with_its_tokens(encoding):
    pipeline = Pipeline(parse_config(_otlp_config(encoding)))
    halves = [SPANS[: len(SPANS) // 2], SPANS[len(SPANS) // 2 :]]
    records = [Record(encode(half, encoding), "traces", 0, offset) for offset, half in enumerate(halves)]

    assert pipeline.apply(records) == []
    expected = Counter(call.model for call in CALLS)
    for model, n in expected.items():
        state = next(state for state in pipeline.states if state.name == model)
        assert state.n_events["inference"] == n
        calls = [call for call in CALLS if call.model == model]
        assert state.n_tokens == {
            "input": sum(call.input_tokens for call in calls),
            "output": sum(call.output_tokens for call in calls),
        }
    assert pipeline.n_spans_skipped == {"not_genai": 40, "not_a_model_call": 10}
    restored = Pipeline(parse_config(_otlp_config(encoding)))
    restored.restore(pipeline.snapshot())
    assert restored.n_spans_skipped == pipeline.n_spans_skipped


def test_a_topic_of_json_events_beside_one_of_traces_is_read_as_json():
    pipeline = Pipeline(parse_config(_otlp_config("otlp_proto")))
    letters = pipeline.apply([Record(encode(SPANS, "otlp_proto"), "events", 0, 0)])
    assert [letter.invalid.reason for letter in letters] == ["not_utf8"]  # protobuf's bytes, judged as JSON


def test_each_latency_bucket_links_to_its_latest_traced_call_in_openmetrics_only():
    pipeline = Pipeline(parse_config(_otlp_config("otlp_proto")))
    pipeline.apply([Record(encode(SPANS, "otlp_proto"), "traces", 0, 0)])
    registry = build_registry(pipeline)

    families = {family.name: family for family in text_string_to_metric_families(openmetrics(registry).decode())}
    buckets = [s for s in families["driftwarden_request_latency_seconds"].samples if s.name.endswith("_bucket")]
    exemplars = {(s.labels["model"], s.labels["le"]): s.exemplar for s in buckets if s.exemplar is not None}
    bounds = sorted({float(s.labels["le"]) for s in buckets})
    latest = {}  # the oracle: each model's last call (in the order sent) in each bucket
    for call in CALLS:
        le = next(bound for bound in bounds if call.latency_ms / 1000 <= bound)
        latest[call.model, "+Inf" if math.isinf(le) else str(le)] = call
    assert {key: (e.labels["trace_id"], e.value) for key, e in exemplars.items()} == {
        (model, le): (call.trace_id, pytest.approx(call.latency_ms / 1000)) for (model, le), call in latest.items()
    }
    assert b"trace_id" not in exposition(registry)  # Prometheus' text format 0.0.4 has no exemplars


def _with_evaluation(score: float, time_ns: int) -> bytes:
    request = ExportTraceServiceRequest.FromString(_request({"gen_ai.request.model": "m"}))
    event = request.resource_spans[0].scope_spans[0].spans[0].events.add(name="gen_ai.evaluation.result")
    event.time_unix_nano = time_ns
    event.attributes.add(key="gen_ai.evaluation.score.value").value.double_value = score
    return request.SerializeToString()


def test_an_evaluation_without_a_time_is_at_its_span_end():
    call, feedback = decode_traces(_with_evaluation(0.5, 0), "otlp_proto").events
    assert feedback.timestamp_ms == call.timestamp_ms and feedback.judge_score == 0.5


def test_a_span_whose_evaluation_is_invalid_is_rejected_whole_so_that_sending_it_again_counts_nothing_twice():
    decoded = decode_traces(_with_evaluation(5.0, START_S * NS), "otlp_proto")
    assert decoded.events == []
    assert [rejected.invalid for rejected in decoded.rejected] == [
        Invalid("out_of_range", "gen_ai.evaluation.score.value")
    ]


_KEYS = st.sampled_from(
    [
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.operation.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.time_to_first_chunk",
        "error.type",
        "gen_ai.tool.name",
        "http.request.method",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["chat", "execute_tool", "m"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)
_SPANS = st.lists(
    st.tuples(
        st.dictionaries(_KEYS, _VALUES, max_size=5),
        st.integers(0, 2**64 - 1),  # start
        st.integers(0, 2**64 - 1),  # end
        st.sampled_from([0, 1, 2]),  # status
        st.lists(st.one_of(st.none(), st.floats(-1, 2)), max_size=2),  # evaluation results' scores
    ),
    max_size=8,
)


def _hostile_request(spans: list) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for number, (attributes, start, end, status, scores) in enumerate(spans):
        span = scope.spans.add(
            trace_id=number.to_bytes(16, "big"), span_id=number.to_bytes(8, "big"), start_time_unix_nano=start,
            end_time_unix_nano=end,
        )  # fmt: skip
        span.status.code = status
        for key, value in attributes.items():
            target = span.attributes.add(key=key).value
            if isinstance(value, list):
                for item in value:
                    target.array_value.values.add().string_value = item
            else:
                field = {str: "string_value", bool: "bool_value", int: "int_value", float: "double_value"}
                setattr(target, field[type(value)], value)
        for score in scores:
            event = span.events.add(name="gen_ai.evaluation.result", time_unix_nano=start)
            if score is not None:
                event.attributes.add(key="gen_ai.evaluation.score.value").value.double_value = score
    return request


@settings(max_examples=300, deadline=None)
@given(_SPANS, st.sampled_from(ENCODINGS), st.sets(st.integers(0, 7)))
def test_every_span_is_counted_rejected_or_skipped_and_the_rejected_are_sent_back_by_reason(spans, encoding, broken):
    """Hostile attributes, times and statuses, and ``broken`` spans that do not parse (a name that is not UTF-8; a
    count out of its range): nothing raises, nothing is an internal error, and each span ends up exactly once as a
    call (with its evaluations), a rejection (whose dead letter holds the spans of its reason only) or a skip."""
    request = _hostile_request(spans)
    broken = {number for number in broken if number < len(spans)}
    for number in broken:  # marked, then spoilt in the encoded message
        request.resource_spans[0].scope_spans[0].spans[number].name = f"broken-{number}"
    if encoding == "otlp_proto":
        raw = request.SerializeToString()
        for number in broken:
            raw = raw.replace(f"broken-{number}".encode(), f"\xffroken-{number}".encode("latin-1"))
    else:
        raw = _as_otlp_json(request)
        for number in broken:
            raw = raw.replace(f'"name": "broken-{number}"'.encode(), b'"droppedAttributesCount": -1')

    decoded = decode_traces(raw, encoding)
    assert not isinstance(decoded, Invalid), decoded
    request_ids = {event.request_id for event in decoded.events}
    n_skipped = sum(decoded.skipped.values())
    n_rejected = sum(rejected.n_spans for rejected in decoded.rejected)
    assert len(request_ids) + n_rejected + n_skipped == len(spans)
    unparsed = [rejected.n_spans for rejected in decoded.rejected if rejected.invalid.reason == "not_otlp"]
    assert unparsed == ([len(broken)] if broken else [])
    assert not {f"{number:032x}-{number:016x}" for number in broken} & request_ids
    assert len({rejected.invalid.reason for rejected in decoded.rejected}) == len(decoded.rejected)  # one a reason
    for letter, invalid, n_spans in decoded.rejected:
        assert invalid.reason != "internal_error"
        again = decode_traces(letter, encoding)  # its spans only, rejected for the same reason
        assert not isinstance(again, Invalid) and again.events == [] and sum(again.skipped.values()) == 0
        assert [(rejected.invalid.reason, rejected.n_spans) for rejected in again.rejected] == [
            (invalid.reason, n_spans)
        ]


def _as_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """``request`` in OTLP/JSON: protobuf's JSON mapping, with ids in hex and enums as integers."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(document).encode()


def test_spans_rejected_for_one_reason_share_a_dead_letter_and_count_one_each():
    good = ExportTraceServiceRequest.FromString(encode(SPANS[:3], "otlp_proto"))
    for number in range(3):
        bad = ExportTraceServiceRequest.FromString(
            _request({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": -1 - number})
        )
        good.resource_spans.extend(bad.resource_spans)
    good.resource_spans.extend(
        ExportTraceServiceRequest.FromString(_request({"gen_ai.operation.name": "chat"})).resource_spans
    )
    pipeline = Pipeline(parse_config(_otlp_config("otlp_proto")))

    letters = pipeline.apply([Record(good.SerializeToString(), "traces", 0, 7)])
    assert [(letter.invalid.reason, letter.n_events, letter.record.offset) for letter in letters] == [
        ("negative", 3, 7),
        ("missing_field", 1, 7),
    ]
    assert pipeline.n_invalid["negative"] == 3 and pipeline.n_invalid["missing_field"] == 1
    assert len(ExportTraceServiceRequest.FromString(letters[0].record.value).resource_spans) == 3  # each its own


def test_a_span_with_the_all_zero_trace_id_is_a_call_without_an_exemplar():
    request = ExportTraceServiceRequest.FromString(_request({"gen_ai.request.model": "m"}))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = bytes(16)  # W3C: not a trace

    (event,) = decode_traces(request.SerializeToString(), "otlp_proto").events
    assert event.trace_id is msgspec.UNSET and event.model == "m"


def test_a_span_dated_after_the_daemons_clock_allows_is_rejected_as_a_json_event_is():
    """A tracer whose clock is a century ahead cannot move the model's event time: ``run`` passes the wall clock
    plus limits.max_clock_skew as ``latest_ms``."""
    in_2100 = 4_102_444_800 * NS
    raw = _request({"gen_ai.request.model": "m"}, in_2100, in_2100 + 5)
    decoded = decode_traces(raw, "otlp_proto", latest_ms=START_S * 1000.0)
    assert decoded.events == [] and [r.invalid for r in decoded.rejected] == [Invalid("future_timestamp", "timestamp")]


# --- Replaying a file of traces ---------------------------------------------------------------------------------------


def _replay_file(tmp_path, config: dict, *arguments: str) -> int:
    config_file = tmp_path / "driftwarden.yaml"
    config_file.write_text(json.dumps(config))  # YAML holds JSON
    try:
        return main(["replay", "--config", str(config_file), *arguments])
    except SystemExit as exit:  # argparse's refusals
        return exit.code


def test_a_file_named_as_an_otlp_topic_is_replayed_as_what_replay_is_told_not_by_that_topics_encoding(
    tmp_path, monkeypatch, capsys
):
    """A file's records are stamped with its path as their topic, and the pipeline looked the encoding up by topic:
    a file of JSON events named as a topic of traces was read as protobuf, each line ``not_otlp``."""
    monkeypatch.chdir(tmp_path)
    Path("traces").write_text('{"request_id": "r1", "timestamp": 1767225600, "model": "m"}\n' * 3)
    config = {"kafka": {"topics": [{"name": "traces", "encoding": "otlp_proto"}]}}

    assert _replay_file(tmp_path, config, "traces") == 0
    assert "replayed 3 messages (0 events rejected)" in capsys.readouterr().out
    assert _replay_file(tmp_path, config, "traces", "--encoding", "otlp_proto") == 0  # told wrong: framed wrong
    assert "replayed 1 messages (1 events rejected)" in capsys.readouterr().out


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_file_of_otlp_requests_is_replayed_as_the_collectors_file_exporter_writes_it(tmp_path, encoding):
    """``otlp_json``: one request a line; ``otlp_proto``: each preceded by its length, 4 bytes big-endian (the file
    exporter's ``format: proto``). The oracle is the SDK's spans; a message that is not a request is dead-lettered
    with its number in the file."""
    requests = [encode(SPANS[start : start + 30], encoding) for start in range(0, len(SPANS), 30)]
    garbage = b"\x00 not a protobuf message \xff" if encoding == "otlp_proto" else b"{not json"
    messages = [*requests[:2], garbage, *requests[2:]]
    path = tmp_path / "traces.otlp"
    if encoding == "otlp_proto":
        path.write_bytes(b"".join(len(message).to_bytes(4, "big") + message for message in messages))
    else:
        path.write_bytes(b"\n".join(messages) + b"\n")
    metrics, dead_letters = tmp_path / "out.prom", tmp_path / "dead.jsonl"
    outputs = ["--metrics-file", str(metrics), "--dead-letter-file", str(dead_letters)]

    assert _replay_file(tmp_path, {}, str(path), "--encoding", encoding, *outputs) == 0

    counted = statistics(metrics.read_text())
    calls = {labels: n for (name, labels), n in counted.items() if name == "driftwarden_events_total" and n}
    assert calls == {
        (("model", model), ("type", "inference")): n for model, n in Counter(call.model for call in CALLS).items()
    } | {(("model", model), ("type", "feedback")): 4 for model in ("chat-a", "chat-b")}  # every fifth call's
    skipped = {labels: n for (name, labels), n in counted.items() if name == "driftwarden_spans_skipped_total"}
    assert skipped == {(("reason", "not_genai"),): 40, (("reason", "not_a_model_call"),): 10}
    [letter] = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert (letter["offset"], letter["reason"]) == (3, "not_otlp" if encoding == "otlp_proto" else "not_json")


def test_a_topics_range_is_decoded_as_its_topic_is_configured_and_takes_no_encoding(tmp_path, capsys):
    arguments = ["--from-kafka", "traces", "--since", "2026-01-01", "--until", "2026-01-02", "--encoding", "json"]
    assert _replay_file(tmp_path, {}, *arguments) == 2
    assert "--encoding is a file's" in capsys.readouterr().err
    assert _replay_file(tmp_path, {}, "events.jsonl", "--encoding", "protobuf") == 2

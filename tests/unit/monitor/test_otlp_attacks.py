"""Attacks on the OpenTelemetry topics and the trace ids they bring: what a hostile or careless producer can send
(spans, OTLP/JSON documents, JSON events naming a ``trace_id``) and what it must not do to the events, the dead
letters and the exemplars.

Each test checks what comes out against the test's own record of what it sent. The tests marked ``xfail`` document
defects whose fix is a design decision (see their reasons).
"""

from __future__ import annotations

import json
import math
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.collectors import build_registry
from monitor.ingest import Record
from monitor.ingest.events import Invalid, decode, decode_batch
from monitor.ingest.otlp import decode_traces
from monitor.pipeline import Pipeline
from monitor.state.model import LATENCY_BUCKETS_MS, TTFT_BUCKETS_MS
from monitor.state.vocabulary import OTHER
from tests.unit.monitor.test_otlp import START_S, _as_otlp_json, _otlp_config, _request
from tests.unit.monitor.test_plain_parse import _BASE, _strictly

NS = 1_000_000_000
TRACE = bytes(range(16))
SPAN = bytes(range(8))

# --- A trace id in a JSON event ---------------------------------------------------------------------------------------

_HEX = "0123456789abcdefABCDEF"
_TRACE_IDS = st.one_of(
    st.text(),
    st.text(_HEX, min_size=31, max_size=33),
    st.builds(str.__add__, st.text(_HEX, min_size=32, max_size=32), st.sampled_from("\n\r \t\0")),
)


@settings(max_examples=400, deadline=None, database=None)
@given(_TRACE_IDS)
def test_a_trace_id_is_32_hex_digits_exactly_in_c_and_in_msgspec_alike(trace_id):
    """The oracle is the W3C definition (32 hexadecimal digits, nothing else), not the decoder's pattern: Python's
    ``$`` matches before a final newline, so ``"…0f\\n"`` was taken as a trace id and shown as an exemplar."""
    raw = _BASE + b', "trace_id": ' + json.dumps(trace_id).encode() + b"}"

    alone, batched = decode(raw), decode_batch([raw])[0]

    assert _strictly(batched) == _strictly(alone)  # the C parser and msgspec agree
    if re.fullmatch("[0-9a-fA-F]{32}", trace_id):
        assert type(alone) is not Invalid and alone.trace_id == trace_id
    else:
        assert alone == Invalid("wrong_type", "trace_id")


# --- OTLP/JSON documents ----------------------------------------------------------------------------------------------


def _document(**span_fields) -> dict:
    """An OTLP/JSON request of one model call's span, its fields overridden by ``span_fields``."""
    span = {
        "traceId": TRACE.hex(),
        "spanId": SPAN.hex(),
        "startTimeUnixNano": str(START_S * NS),
        "endTimeUnixNano": str(START_S * NS + 250_000_000),
        "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}],
        **span_fields,
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def test_ids_under_protobufs_original_field_names_are_read_as_hex_too():
    """protobuf's JSON mapping (and the Collector's own OTLP/JSON reader) take ``trace_id`` as well as ``traceId``:
    the ids under those names were read as base64, and 32 hex digits are valid base64, so the call was counted under
    a request id and trace id that no tracer ever wrote."""
    document = _document()
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["trace_id"], span["span_id"] = span.pop("traceId"), span.pop("spanId")

    (event,) = decode_traces(msgspec.json.encode(document), "otlp_json").events

    assert (event.request_id, event.trace_id) == (f"{TRACE.hex()}-{SPAN.hex()}", TRACE.hex())


def test_a_document_nested_deeper_than_the_parser_allows_is_oversized_as_a_json_event_is_not_an_internal_error():
    """A JSON event nested too deeply is ``oversized`` (see REASONS); an OTLP/JSON document was an internal error,
    counted as a bug of the decoder."""
    depth = 5_000
    deep = '{"arrayValue": {"values": [' * depth + '{"stringValue": "x"}' + "]}}" * depth
    document = json.dumps(_document()).replace('{"stringValue": "m"}', deep)

    decoded = decode_traces(document.encode(), "otlp_json")

    assert isinstance(decoded, Invalid) and decoded.reason == "oversized"


def _spelled(value, ensure_ascii: bool) -> str:
    """JSON text of ``value``, where an object is a list of (key, value) pairs, written in order, repeats and all."""
    if isinstance(value, list):
        return "[" + ", ".join(_spelled(item, ensure_ascii) for item in value) + "]"
    if isinstance(value, tuple):
        pairs = (f"{json.dumps(key, ensure_ascii=ensure_ascii)} :{_spelled(item, ensure_ascii)}" for key, item in value)
        return "{" + ",".join(pairs) + "}"
    return json.dumps(value, ensure_ascii=ensure_ascii)


_KEY_TEXT = st.text(st.sampled_from('ab:"\\ \n\u00e9\u2028'), max_size=3)
_TREES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _KEY_TEXT,
    lambda children: (
        st.lists(children, max_size=3).map(list) | st.lists(st.tuples(_KEY_TEXT, children), max_size=4).map(tuple)
    ),
    max_leaves=12,
)


def _repeated_keys(text: str) -> set[str]:
    """The oracle: every key some object of ``text`` names twice, as the stdlib's parser sees each object's pairs."""
    repeated = set()

    def pairs(items):
        keys = [key for key, _ in items]
        repeated.update(key for key in keys if keys.count(key) > 1)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return repeated


@settings(max_examples=400, deadline=None, database=None)
@given(_TREES, st.booleans())
def test_an_otlp_json_document_that_names_a_key_twice_anywhere_is_rejected_as_a_json_event_is(tree, ensure_ascii):
    """protobuf's JSON mapping and msgspec keep the last of repeated keys, so a document naming one twice was taken
    (a JSON event is ``duplicate_key``). Any tree of objects, arrays and strings with quotes, backslashes, colons,
    white space and non-ASCII, under a member the mapping ignores: rejected whole if and only if some object repeats
    a key, the detail one of them."""
    text = json.dumps(_document()).replace("{", '{"extra": ' + _spelled(tree, ensure_ascii) + ", ", 1)
    repeated = _repeated_keys(text)

    decoded = decode_traces(text.encode(), "otlp_json")

    if repeated:
        assert isinstance(decoded, Invalid) and decoded.reason == "duplicate_key"
        assert decoded.detail in {json.dumps(key)[1:-1] for key in repeated}
    else:
        assert not isinstance(decoded, Invalid) and len(decoded.events) == 1


def test_a_repeated_key_in_a_span_is_the_reason_a_json_event_gets():
    raw = json.dumps(_document(name="chat")).replace('"name": "chat"', '"traceId": "00", "name": "chat"').encode()
    as_event = decode(b'{"request_id": "r", "model": "m", "model": "n", "timestamp": 1767225600}')

    assert decode_traces(raw, "otlp_json") == Invalid(as_event.reason, "traceId")


# --- Spans --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_a_span_without_a_start_time_has_no_latency_rather_than_one_of_fifty_years(encoding):
    """OTLP's times are required, 0 meaning unset: a span that never set its start was a call that took since 1970
    (1.7e12 ms), in the latency histogram, its quantiles and the error budget's slow calls."""
    raw = _request({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 7}, start_ns=0)
    if encoding == "otlp_json":
        raw = _as_otlp_json(ExportTraceServiceRequest.FromString(raw))

    (event,) = decode_traces(raw, encoding).events

    assert event.latency_ms in (msgspec.UNSET, None)
    assert event.input_tokens == 7 and event.timestamp_ms == pytest.approx((START_S + 0.25) * 1000)


def test_the_dead_letters_of_a_messages_rejected_spans_are_not_much_larger_than_the_message():
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for number in range(50):
        resource_spans.resource.attributes.add(key=f"k8s.label.{number}").value.string_value = "x" * 2_000
    scope = resource_spans.scope_spans.add()
    for number in range(200):  # each a call that ends before it starts: negative latency
        span = scope.spans.add(
            trace_id=TRACE, span_id=number.to_bytes(8, "big"), start_time_unix_nano=START_S * NS + 1,
            end_time_unix_nano=START_S * NS,
        )  # fmt: skip
        span.attributes.add(key="gen_ai.request.model").value.string_value = "m"
    raw = request.SerializeToString()

    decoded = decode_traces(raw, "otlp_proto")

    [(letter, invalid, n_spans)] = decoded.rejected  # one reason: one dead letter, the resource in it once
    assert (invalid.reason, n_spans) == ("negative", 200)
    assert len(letter) <= len(raw)


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(946_684_800 * NS, 2**64 - 1), st.integers(0, 10**12))
def test_a_span_is_at_the_time_a_json_event_of_the_same_instant_is(end_ns, latency_ns):
    """The oracle is a JSON event whose timestamp is the span's end in decimal seconds, exactly: the two must fall on
    the same side of every boundary. Dividing by the float 1e9 rounded the nanoseconds to a float first, so a span
    ending at 12:00:00.250 was 0.2 us earlier, in the window before a boundary there."""
    start_ns = max(end_ns - latency_ns, 1)
    raw = _request({"gen_ai.request.model": "m"}, start_ns, end_ns)
    seconds = f"{end_ns // NS}.{end_ns % NS:09d}"
    as_json = decode(b'{"request_id": "r", "model": "m", "timestamp": ' + seconds.encode() + b"}")

    (event,) = decode_traces(raw, "otlp_proto").events

    assert event.timestamp_ms == as_json.timestamp_ms
    assert event.latency_ms == (end_ns - start_ns) / 10**6  # correctly rounded


def test_a_rejected_spans_json_dead_letter_writes_enums_as_integers_as_otlp_json_requires():
    """OTLP/JSON: "values of enum fields MUST be encoded as integer values". The dead letter wrote protobuf's names
    (``"kind": "SPAN_KIND_CLIENT"``), which a strict OTLP/JSON reader refuses: it could not be sent again as it was."""
    request = ExportTraceServiceRequest.FromString(
        _request({"gen_ai.request.model": "m"}, START_S * NS + 1, START_S * NS)
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.kind, span.status.code = 3, 2  # CLIENT, ERROR
    sent = _as_otlp_json(request)

    [(letter, invalid, _)] = decode_traces(sent, "otlp_json").rejected

    assert invalid.reason == "negative"
    assert msgspec.json.decode(letter) == json.loads(sent)  # the span as it came


# --- Exemplars in the OpenMetrics exposition --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.text(min_size=1, max_size=40).filter(lambda name: name != OTHER), min_size=1, max_size=3, unique=True)
)
def test_the_openmetrics_exposition_parses_with_an_exemplar_on_every_bucket_whatever_the_model_names(models):
    """Models named with quotes, backslashes, newlines, ``# EOF``, braces or any other character, each with a traced
    call in every latency and time-to-first-token bucket: the exposition parses as OpenMetrics, and every bucket's
    exemplar is the last call sent into it, under the model's name as sent."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    sent = {}  # (family, model, bucket's upper bound in ms) -> trace id of the last call into it
    number = 0
    for model in models:
        for _ in range(2):  # the second call into a bucket is its exemplar
            for latency_ms, ttft_ms in zip((*LATENCY_BUCKETS_MS, 10**6), (*TTFT_BUCKETS_MS, 10**6), strict=True):
                number += 1
                end_ns = START_S * NS + number * 10**6 + latency_ms * 10**6
                span = scope.spans.add(
                    trace_id=number.to_bytes(16, "big"), span_id=number.to_bytes(8, "big"),
                    start_time_unix_nano=end_ns - latency_ms * 10**6, end_time_unix_nano=end_ns,
                )  # fmt: skip
                span.attributes.add(key="gen_ai.request.model").value.string_value = model
                span.attributes.add(key="gen_ai.response.time_to_first_chunk").value.double_value = ttft_ms / 1000
                sent["driftwarden_request_latency_seconds", model, latency_ms] = f"{number:032x}"
                sent["driftwarden_time_to_first_token_seconds", model, ttft_ms] = f"{number:032x}"
    pipeline = Pipeline(parse_config(_otlp_config("otlp_proto")))
    assert pipeline.apply([Record(request.SerializeToString(), "traces", 0, 0)]) == []

    families = text_string_to_metric_families(openmetrics(build_registry(pipeline)).decode())

    shown = {
        (family.name, sample.labels["model"], float(sample.labels["le"])): sample.exemplar.labels["trace_id"]
        for family in families
        if family.name in ("driftwarden_request_latency_seconds", "driftwarden_time_to_first_token_seconds")
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }
    assert shown == {
        (family, model, math.inf if bound == 10**6 else bound / 1000): trace
        for (family, model, bound), trace in sent.items()
    }

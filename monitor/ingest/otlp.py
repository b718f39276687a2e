"""OpenTelemetry traces as the Collector's Kafka exporter writes them: each model call's span an inference event.

A message is one ``ExportTraceServiceRequest``, encoded ``otlp_proto`` (protobuf, the
Collector's default) or ``otlp_json`` (protobuf's JSON mapping, with OTLP's hex trace
and span ids and 64-bit integers as strings), decoded by the official
``opentelemetry-proto`` package. A span is a model call when it names a model
(``gen_ai.request.model``, else ``gen_ai.response.model``) or a model operation
(``chat``, ``text_completion``, ``generate_content``, ``embeddings``); its GenAI
attributes become the event's fields through the decoder's own alias table (see
:data:`monitor.ingest.events.ALIASES`), and :func:`~monitor.ingest.events.decode_mapping`
judges the result as it judges a JSON event. Besides them:

- ``request_id`` is ``TRACEID-SPANID`` (hex), ``trace_id`` the trace's (an exemplar);
- ``timestamp`` is the span's end, ``latency_ms`` its end minus its start (none if its start is unset, 0);
- ``error`` is ``error.type``, else ``_OTHER`` (the conventions' fallback) if the span's status is an error;
- ``model_version`` is ``gen_ai.response.model`` where it differs from the model asked for (the snapshot a
  provider served, as ``gpt-4o-2024-08-06`` for ``gpt-4o``).

Each ``gen_ai.evaluation.result`` event of a span becomes a feedback event on that span's call (its request id;
``gen_ai.response.id`` if the event names one): ``gen_ai.evaluation.name`` and ``gen_ai.evaluation.score.value``
(the judge score, in [0, 1]), at the event's time. A span whose call or evaluation is not a valid event is rejected
whole (sent again, nothing of it is counted twice). Other spans are skipped and counted by :data:`SKIPPED`. The
spans of a message rejected for one reason share a dead letter: a request holding them only (:class:`Rejected`), in
the topic's encoding, so that the dead letters of a message are never more than one copy of it a reason. A span
that does not parse, or whose resource or scope does not, is rejected alone as ``not_otlp`` (see :func:`_salvage`);
a message whose framing does not decode is rejected whole, as ``not_otlp``, and an ``otlp_json`` message that names
a key twice as ``duplicate_key``, as a JSON event is.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> request = ExportTraceServiceRequest()
>>> span = request.resource_spans.add().scope_spans.add().spans.add(
...     trace_id=bytes(range(16)), span_id=bytes(range(8)), start_time_unix_nano=1_700_000_000_000_000_000,
...     end_time_unix_nano=1_700_000_000_250_000_000)
>>> span.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
>>> decoded = decode_traces(request.SerializeToString(), "otlp_proto")
>>> [(event.model, event.latency_ms, event.request_id) for event in decoded.events]
[('gpt-4o', 250.0, '000102030405060708090a0b0c0d0e0f-0001020304050607')]
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from monitor.ingest.events import ALIASES, Event, Invalid, decode_mapping, repeated_key

__all__ = ["ENCODINGS", "SKIPPED", "Decoded", "Rejected", "decode_traces"]

#: The Collector's names of the encodings read here (its Kafka exporter's ``encoding``).
ENCODINGS = ("otlp_proto", "otlp_json")
#: Why a span is skipped: it has no GenAI attribute at all, or it has some but is not a model call (a tool's or an
#: agent's span). Each is a label value of ``driftwarden_spans_skipped_total``.
SKIPPED = ("not_genai", "not_a_model_call")
#: The operations that are model calls, even where the span names no model (then it is invalid: ``missing_field``).
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
EVALUATION_EVENT = "gen_ai.evaluation.result"
#: The conventions' ``error.type`` when nothing better is known.
OTHER_ERROR = "_OTHER"

_MODEL_ATTRIBUTES = ("gen_ai.request.model", "gen_ai.response.model")
#: The span attributes read: the decoder's aliases and the response model.
_READ = frozenset(ALIASES) | {"gen_ai.response.model"}
#: Hex in OTLP/JSON, base64 in protobuf's own mapping; under protobuf's original names too, which its mapping (and the
#: Collector's reader) takes as well.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
# Integers: an integer divided by one is correctly rounded, where the float 1e9 rounds the nanoseconds first (a span
# would be earlier than a JSON event of the same instant, on the other side of a boundary there).
_NS_PER_MS = 10**6
_NS_PER_S = 10**9
#: What protobuf's JSON mapping raises for a document it does not take.
_JSON_ERRORS = (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError)


class Rejected(NamedTuple):
    """A message's spans rejected for one reason: a request holding them (each resource and scope once), in the
    message's encoding; why the first was rejected; how many there are."""

    letter: bytes
    invalid: Invalid
    n_spans: int


class Decoded(NamedTuple):
    """What one message held: its events, its rejected spans (by reason) and how many spans were skipped, by
    reason."""

    events: list[Event]
    rejected: list[Rejected]
    skipped: dict[str, int]


def decode_traces(
    raw: bytes, encoding: str, max_bytes: int = 1_048_576, latest_ms: float = math.inf
) -> Decoded | Invalid:
    """The events of one ``ExportTraceServiceRequest`` in ``encoding``, or why the message is invalid as a whole.

    ``max_bytes`` and ``latest_ms`` are :func:`~monitor.ingest.events.decode`'s. Never raises.
    """
    try:
        if len(raw) > max_bytes:
            return Invalid("oversized", f"{len(raw)} bytes > {max_bytes}")
        request = _parse(raw, encoding)
        spans: Iterable[tuple[_Where, Span] | _Unparsed]
        if isinstance(request, Invalid):
            salvaged = _salvage(raw, encoding) if request.reason == "not_otlp" else None
            if salvaged is None:
                return request
            spans = salvaged
        else:
            spans = _spans(request)
        decoded = Decoded([], [], dict.fromkeys(SKIPPED, 0))
        rejected: dict[str, list[tuple[Invalid, _Where, Span]]] = {}  # by reason, in order
        unparsed: list[_Unparsed] = []
        for item in spans:
            if isinstance(item, _Unparsed):
                unparsed.append(item)
                continue
            where, span = item
            outcome = _add_span(span, decoded.events, latest_ms)
            if isinstance(outcome, Invalid):
                rejected.setdefault(outcome.reason, []).append((outcome, where, span))
            elif outcome is not None:
                decoded.skipped[outcome] += 1
        for group in rejected.values():
            letter = _request_of([(where, span) for _, where, span in group], encoding)
            decoded.rejected.append(Rejected(letter, group[0][0], len(group)))
        if unparsed:
            decoded.rejected.append(Rejected(_unparsed_request(unparsed, encoding), unparsed[0].invalid, len(unparsed)))
        return decoded
    except Exception as error:  # noqa: BLE001 - bad input must never stop the daemon
        return Invalid("internal_error", type(error).__name__)


def _parse(raw: bytes, encoding: str) -> ExportTraceServiceRequest | Invalid:
    if encoding == "otlp_proto":
        try:
            return ExportTraceServiceRequest.FromString(raw)
        except DecodeError as error:
            return Invalid("not_otlp", str(error)[:120])
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        return Invalid("not_json", str(error)[:120])
    except RecursionError:  # as a JSON event's
        return Invalid("oversized", "nested deeper than the parser allows")
    repeated = repeated_key(raw, document)
    if repeated is not None:  # as a JSON event's: protobuf's mapping would keep the last
        return Invalid("duplicate_key", repeated)
    try:
        _convert_ids(document, _hex_to_base64)
        return json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except _JSON_ERRORS as error:
        return Invalid("not_otlp", str(error)[:120])


def _hex_to_base64(text: str) -> str:
    return base64.b64encode(bytes.fromhex(text)).decode()


def _base64_to_hex(text: str) -> str:
    return base64.b64decode(text).hex()


def _convert_ids(document: Any, convert: Callable[[str], str]) -> None:
    """The trace and span ids of an OTLP/JSON ``document`` (its spans' and their links') converted in place: OTLP
    writes them in hex, protobuf's JSON mapping reads bytes in base64. ValueError or TypeError if not hex."""
    for resource_spans in document.get("resourceSpans") or document.get("resource_spans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or ():
            for span in scope_spans.get("spans") or ():
                _convert_span_ids(span, convert)


def _convert_span_ids(span: Any, convert: Callable[[str], str]) -> None:
    for holder in (span, *(span.get("links") or ())):
        for name in _ID_FIELDS:
            if holder.get(name):
                holder[name] = convert(holder[name])


class _Where(NamedTuple):
    """Where a span is in its request: its resource's and its scope's place, and theirs."""

    resource: int
    scope: int
    resource_spans: ResourceSpans
    scope_spans: ScopeSpans


def _spans(request: ExportTraceServiceRequest) -> Iterator[tuple[_Where, Span]]:
    for resource, resource_spans in enumerate(request.resource_spans):
        for scope, scope_spans in enumerate(resource_spans.scope_spans):
            for span in scope_spans.spans:
                yield _Where(resource, scope, resource_spans, scope_spans), span


class _Unparsed(NamedTuple):
    """A span that does not parse, or whose resource or scope does not (then each of its spans): why, where it is
    (its resource's and scope's place), and the pieces as they came: its resource's fields but its scopes, its
    scope's but its spans, and the span (wire bytes in ``otlp_proto``, JSON objects in ``otlp_json``)."""

    invalid: Invalid
    resource: int
    scope: int
    resource_head: Any
    scope_head: Any
    span: Any


class _Broken(Exception):
    """Where the request's resources, scopes or spans are cannot be read: the message is invalid whole."""


def _salvage(raw: bytes, encoding: str) -> list[tuple[_Where, Span] | _Unparsed] | None:
    """The spans of a request whose whole parse failed, each resource, scope and span parsed on its own (as
    :func:`_spans` gives them, or :class:`_Unparsed`); None if its framing is broken.

    ``otlp_proto``: protobuf's parser refuses a whole message for one bad field (a string that is not UTF-8), so
    the wire format is split here (request, field 1: resources; each resource's field 2: scopes; each scope's
    field 2: spans; the other fields of each are its head) and each piece parsed by its own class.
    ``otlp_json``: protobuf's mapping refuses a whole document for one bad value (an int64 out of range), so each
    resource's and scope's head and each span is mapped on its own.
    """
    split: Callable[[Any, int], tuple[Any, list[Any]]] = _split_proto if encoding == "otlp_proto" else _split_json
    parse: Callable[[type[Message], Any, str], Any] = _parse_proto if encoding == "otlp_proto" else _parse_json
    try:
        _, resources = split(raw if encoding == "otlp_proto" else msgspec.json.decode(raw), 0)
        salvaged: list[tuple[_Where, Span] | _Unparsed] = []
        for resource, resource_raw in enumerate(resources):
            resource_head, scopes = split(resource_raw, 1)
            resource_spans = parse(ResourceSpans, resource_head, "resource")
            for scope, scope_raw in enumerate(scopes):
                scope_head, spans = split(scope_raw, 2)
                scope_spans = parse(ScopeSpans, scope_head, "scope")
                head_invalid = next((head for head in (resource_spans, scope_spans) if isinstance(head, Invalid)), None)
                for span_raw in spans:
                    span = head_invalid or parse(Span, span_raw, "span")
                    if isinstance(span, Invalid):
                        salvaged.append(_Unparsed(span, resource, scope, resource_head, scope_head, span_raw))
                    else:
                        salvaged.append((_Where(resource, scope, resource_spans, scope_spans), span))
        return salvaged
    except _Broken:
        return None


#: The field of a request, a resource's and a scope's that holds its resources, scopes and spans; OTLP/JSON's names.
_CHILD_FIELDS = (1, 2, 2)
_CHILD_NAMES = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans",))


def _split_proto(raw: bytes, level: int) -> tuple[bytes, list[bytes]]:
    """A message's fields but its children's, as they came, and its children's bytes (see :data:`_CHILD_FIELDS`)."""
    child_field = _CHILD_FIELDS[level]
    head, children = [], []
    for number, wire_type, field, value in _wire_fields(raw):
        if number != child_field:
            head.append(field)
        elif wire_type == 2:
            children.append(value)
        else:
            raise _Broken(f"field {number} is not length-delimited")
    return b"".join(head), children


def _wire_fields(raw: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Each field of a protobuf message: its number, its wire type, its bytes and its value's (a length-delimited
    field's contents). Groups (deprecated; OTLP has none) are broken framing."""
    at = 0
    while at < len(raw):
        start = at
        key, at = _varint(raw, at)
        number, wire_type = key >> 3, key & 7
        value_at = at
        if wire_type == 0:
            _, at = _varint(raw, at)
        elif wire_type == 1:
            at += 8
        elif wire_type == 2:
            length, value_at = _varint(raw, at)
            at = value_at + length
        elif wire_type == 5:
            at += 4
        else:
            raise _Broken(f"wire type {wire_type}")
        if number == 0 or at > len(raw):
            raise _Broken("truncated" if number else "field 0")
        yield number, wire_type, raw[start:at], raw[value_at:at]


def _varint(raw: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and where it ends."""
    value = shift = 0
    while at < len(raw) and shift < 64:
        byte = raw[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
    raise _Broken("truncated varint")


def _length_delimited(number: int, value: bytes) -> bytes:
    """A length-delimited field of protobuf's wire format."""
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(value)) + value


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _parse_proto(message: type[Message], raw: bytes, what: str) -> Any:
    try:
        return message.FromString(raw)
    except DecodeError as error:
        return Invalid("not_otlp", f"{what}: {error}"[:120])


def _split_json(holder: Any, level: int) -> tuple[dict[str, Any], list[Any]]:
    """An object's members but its children, and its children (see :data:`_CHILD_NAMES`)."""
    names = _CHILD_NAMES[level]
    if type(holder) is not dict or sum(name in holder for name in names) > 1:
        raise _Broken("not an object, or its children under two names")
    children = next((holder[name] for name in names if name in holder), None) or []
    if type(children) is not list:
        raise _Broken(f"{names[0]} is not a list")
    return {name: value for name, value in holder.items() if name not in names}, children


def _parse_json(message: type[Message], holder: Any, what: str) -> Any:
    try:
        if message is Span:
            holder = copy.deepcopy(holder)  # the dead letter keeps its ids in hex, as it came
            _convert_span_ids(holder, _hex_to_base64)
        return json_format.ParseDict(holder, message(), ignore_unknown_fields=True)
    except _JSON_ERRORS as error:
        return Invalid("not_otlp", f"{what}: {error}"[:120])


def _unparsed_request(spans: list[_Unparsed], encoding: str) -> bytes:
    """A request that holds ``spans`` only, as they came, each under its resource and scope (each of those once):
    their dead letter, as :func:`_request_of` gives of parsed spans. It is put together from the pieces as they
    came (wire bytes, JSON objects) rather than from messages, which a piece that does not parse cannot be; so it
    shows the operator the bad span itself, and sent again it is judged the same."""
    resources: dict[int, tuple[Any, dict[int, tuple[Any, list[Any]]]]] = {}
    for span in spans:
        scopes = resources.setdefault(span.resource, (span.resource_head, {}))[1]
        scopes.setdefault(span.scope, (span.scope_head, []))[1].append(span.span)
    if encoding == "otlp_proto":
        return b"".join(
            _length_delimited(
                1,
                resource_head
                + b"".join(
                    _length_delimited(2, scope_head + b"".join(_length_delimited(2, raw) for raw in raws))
                    for scope_head, raws in scopes.values()
                ),
            )
            for resource_head, scopes in resources.values()
        )
    document = {
        "resourceSpans": [
            {**resource_head, "scopeSpans": [{**scope_head, "spans": raws} for scope_head, raws in scopes.values()]}
            for resource_head, scopes in resources.values()
        ]
    }
    return msgspec.json.encode(document)


def _add_span(span: Span, events: list[Event], latest_ms: float) -> str | Invalid | None:
    """Add the events of ``span`` (its call, its evaluations) to ``events``; why it was skipped, why it is
    invalid, or None."""
    attributes = {}
    genai = False
    for attribute in span.attributes:
        key = attribute.key
        if key.startswith("gen_ai."):
            genai = True
        if key in _READ:
            attributes[key] = _value(attribute.value)
    model = next((attributes[name] for name in _MODEL_ATTRIBUTES if attributes.get(name)), None)
    evaluations = [event for event in span.events if event.name == EVALUATION_EVENT]
    operation = attributes.get("gen_ai.operation.name")
    model_call = model is not None or (type(operation) is str and operation in MODEL_OPERATIONS)
    if not model_call and not evaluations:
        return "not_genai" if not genai else "not_a_model_call"
    request_id = f"{span.trace_id.hex()}-{span.span_id.hex()}"
    added = []
    if model is not None or not evaluations:
        call = _call(span, attributes, model, request_id, latest_ms)
        if isinstance(call, Invalid):
            return call
        added.append(call)
    for evaluation in evaluations:
        feedback = _evaluation(evaluation, model, request_id, span.end_time_unix_nano, latest_ms)
        if isinstance(feedback, Invalid):
            return feedback
        added.append(feedback)
    events += added
    return None


def _call(
    span: Span, attributes: dict[str, Any], model: str | None, request_id: str, latest_ms: float
) -> Event | Invalid:
    """The inference event of a model call's span."""
    mapping = {name: value for name, value in attributes.items() if name in ALIASES}
    mapping["model"] = model
    asked = attributes.get("gen_ai.request.model")
    served = attributes.get("gen_ai.response.model")
    if asked and served and served != asked:
        mapping["model_version"] = served
    mapping["request_id"] = request_id
    if len(span.trace_id) == 16 and any(span.trace_id):  # all zeros: no trace (W3C), no exemplar
        mapping["trace_id"] = span.trace_id.hex()
    mapping["timestamp"] = span.end_time_unix_nano / _NS_PER_S
    if span.start_time_unix_nano:  # 0 is unset: no latency, rather than one since 1970
        mapping["latency_ms"] = (span.end_time_unix_nano - span.start_time_unix_nano) / _NS_PER_MS
    if span.status.code == Status.STATUS_CODE_ERROR and "error.type" not in mapping:
        mapping["error"] = OTHER_ERROR
    return decode_mapping(mapping, latest_ms)


def _evaluation(
    evaluation: Span.Event, model: str | None, request_id: str, span_end_ns: int, latest_ms: float
) -> Event | Invalid:
    """The feedback event of a ``gen_ai.evaluation.result`` event of a span (at its span's end if it has no time)."""
    mapping: dict[str, Any] = {"type": "feedback", "model": model, "request_id": request_id}
    for attribute in evaluation.attributes:
        if attribute.key in _READ:
            mapping[attribute.key] = _value(attribute.value)
    if model is None:
        mapping["model"] = next((mapping[name] for name in _MODEL_ATTRIBUTES if mapping.get(name)), None)
    mapping.pop("gen_ai.response.model", None)
    mapping["timestamp"] = (evaluation.time_unix_nano or span_end_ns) / _NS_PER_S
    return decode_mapping(mapping, latest_ms)


def _value(value: AnyValue) -> Any:
    """An attribute's value as JSON would hold it (a list for an array; None for bytes, a map or nothing)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    return None


def _request_of(spans: list[tuple[_Where, Span]], encoding: str) -> bytes:
    """A request that holds ``spans`` only, each under its resource and scope (each of those once), encoded as
    ``encoding``: a dead letter that can be sent again as it is, no larger than the message it came from."""
    request = ExportTraceServiceRequest()
    resources: dict[int, ResourceSpans] = {}
    scopes: dict[tuple[int, int], ScopeSpans] = {}
    for where, span in spans:
        if where.resource not in resources:
            resource = resources[where.resource] = request.resource_spans.add(
                schema_url=where.resource_spans.schema_url
            )
            if where.resource_spans.HasField("resource"):
                resource.resource.CopyFrom(where.resource_spans.resource)
        if (where.resource, where.scope) not in scopes:
            scope = scopes[where.resource, where.scope] = resources[where.resource].scope_spans.add(
                schema_url=where.scope_spans.schema_url
            )
            if where.scope_spans.HasField("scope"):
                scope.scope.CopyFrom(where.scope_spans.scope)
        scopes[where.resource, where.scope].spans.append(span)
    if encoding == "otlp_proto":
        return request.SerializeToString()
    document = json_format.MessageToDict(request, use_integers_for_enums=True)  # as OTLP/JSON requires
    _convert_ids(document, _base64_to_hex)
    return msgspec.json.encode(document)

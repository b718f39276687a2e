"""Event schema v1: decode and validate Kafka messages, one or a batch at a time.

The schema is declared once, as the :class:`Event` struct below; msgspec checks
every type and bound of it in C while it parses, so validating an event
costs about what parsing it does. What a type cannot say (required fields,
timestamps, OpenTelemetry names, repeated keys) is finished here in Python.

The decoder is the only judge of validity: what it passes, the state takes
without checking again. So every integer a field reads is bounded by
:data:`MAX_EXACT_INT` (2**53, exact as a float64; beyond is ``out_of_range``),
a timestamp is from 2000 on and no later than the caller's ``latest_ms``, and
no object names a key twice (``duplicate_key``: msgspec would keep the last).

:func:`decode` returns the validated :class:`Event` (unknown keys dropped)
or an :class:`Invalid` naming one of the stable :data:`REASONS`;
:func:`decode_batch` returns the same for each message of a batch, decoded
in one parse and checked in a few passes in C when the batch allows. Neither
raises: the daemon must not stop on bad input, so even an unforeseen error
comes back as the reason ``internal_error``.

Events from OpenTelemetry GenAI instrumentation are accepted as they are:
their ``gen_ai.*`` attribute names and the deprecated aliases still common in
the wild are mapped onto the v1 fields, units converted (see :data:`ALIASES`).

>>> event = decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m",'
...                b' "gen_ai.response.time_to_first_chunk": 0.25}')
>>> event.type, event.timestamp_ms, event.ttft_ms
('inference', 1700000000000.0, 250.0)
>>> decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m", "latency_ms": -3}')
Invalid(reason='negative', detail='latency_ms')
>>> decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m", "input_tokens": 18446744073709551615}')
Invalid(reason='out_of_range', detail='input_tokens')
>>> decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m"}', latest_ms=1_600_000_000_000)
Invalid(reason='future_timestamp', detail='timestamp')
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime
from itertools import repeat
from operator import attrgetter, countOf
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, UnsetType, field
from msgspec.structs import astuple

__all__ = [
    "ALIASES",
    "FEEDBACK_FIELDS",
    "INFERENCE_FIELDS",
    "REASONS",
    "Event",
    "Invalid",
    "decode",
    "decode_batch",
    "decode_mapping",
    "packed_floats",
    "read_columns",
    "read_field",
    "repeated_key",
    "unset_as_none",
]

#: Every reason an event can be rejected for; each is a label value of
#: ``driftwarden_events_invalid_total`` and the header of its dead letter.
REASONS = (
    "oversized",  # larger than limits.max_event_bytes, or nested too deeply to parse
    "not_utf8",  # a text field is not UTF-8
    "not_json",  # not a JSON document
    "non_finite",  # NaN or +-Infinity, as a JSON literal or an overflowing number
    "not_object",  # JSON, but not an object
    "not_otlp",  # on an OpenTelemetry topic: not an ExportTraceServiceRequest in the topic's encoding
    "unknown_type",  # "type" is neither "inference" nor "feedback"
    "missing_field",  # a required field is absent or null (or the model is named "")
    "wrong_type",  # a field has the wrong JSON type
    "too_long",  # an identifier longer than MAX_ID_CHARS
    "bad_timestamp",  # not RFC 3339 with an offset, nor epoch seconds; before 2000, or epoch milliseconds
    "future_timestamp",  # later than the caller's latest_ms (in `run`: the wall clock + limits.max_clock_skew)
    "negative",  # a latency or token count below zero
    "out_of_range",  # a score outside [0, 1], or an integer beyond +-2**53 (what a float64 holds exactly)
    "non_scalar_feature",  # a feature or segment value that is a list or an object
    "duplicate_key",  # an object (the event, its features or segment, ...) that names a key twice
    "internal_error",  # a bug in the decoder; the event is kept as a dead letter
)

MAX_ID_CHARS = 256
#: The largest integer magnitude accepted: every integer up to it is exact as a float64, which is how
#: the state, the checkpoints and Prometheus hold numbers. Larger ones are ``out_of_range``.
MAX_EXACT_INT = 2**53
# Epoch seconds before 2000-01-01 are a clock that was never set; beyond 1e11 (year 5138), surely milliseconds.
_MIN_EPOCH_SECONDS = 946_684_800
_MAX_EPOCH_SECONDS = 1e11

# Every numeric type has an integer branch bounded by MAX_EXACT_INT: a float-only type would round a large
# integer silently, or fail on a 400-digit one as if it were an overflowing float.
Identifier = Annotated[str, Meta(max_length=MAX_ID_CHARS)]
ExactInt = Annotated[int, Meta(ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)]
Number = ExactInt | float
NonNegative = Annotated[int, Meta(ge=0, le=MAX_EXACT_INT)] | Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0, le=MAX_EXACT_INT)]
UnitInterval = Annotated[int, Meta(ge=0, le=1)] | Annotated[float, Meta(ge=0, le=1)]
Scalar = str | ExactInt | float | bool | None
Timestamp = Annotated[datetime, Meta(tz=True)]  # RFC 3339; a time without an offset is ambiguous
# W3C trace context's, as OpenTelemetry writes it; \Z, since Python's $ also matches before a final newline
TraceId = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{32}\Z")]


class Invalid(NamedTuple):
    """Why an event was rejected: a stable ``reason`` and a ``detail`` (usually the field)."""

    reason: str
    detail: str = ""


class Event(msgspec.Struct, gc=False):
    """One event as msgspec decodes it: every field of both types, typed and bounded.

    A field the message does not name is :data:`~msgspec.UNSET`, one it names as ``null`` is None;
    both mean "absent" (read a batch's fields with :func:`read_field`, and :func:`unset_as_none` makes both None). An
    inference event (one model call) requires ``request_id``, ``timestamp`` and ``model``; a feedback
    event (a label, rating or judge score) ``timestamp``, ``model`` and one of the two ids. Keys the
    schema does not name are dropped. ``timestamp_ms`` is set by the decoder, never read from a message.
    """

    # both types
    type: Literal["inference", "feedback"] | None | UnsetType = UNSET  # absent means "inference"
    request_id: Identifier | None | UnsetType = UNSET
    response_id: Identifier | None | UnsetType = UNSET
    timestamp: Timestamp | Number | None | UnsetType = UNSET  # RFC 3339 with an offset (parsed in C), or epoch s
    model: Identifier | None | UnsetType = UNSET
    # inference
    model_version: Identifier | None | UnsetType = UNSET
    operation: Identifier | None | UnsetType = UNSET
    provider: Identifier | None | UnsetType = UNSET
    conversation_id: Identifier | None | UnsetType = UNSET
    finish_reason: Identifier | None | UnsetType = UNSET
    error: Identifier | None | UnsetType = UNSET
    latency_ms: NonNegative | None | UnsetType = UNSET
    ttft_ms: NonNegative | None | UnsetType = UNSET
    input_tokens: Count | None | UnsetType = UNSET
    output_tokens: Count | None | UnsetType = UNSET
    cache_read_input_tokens: Count | None | UnsetType = UNSET
    reasoning_output_tokens: Count | None | UnsetType = UNSET
    prompt: str | None | UnsetType = UNSET
    response: str | None | UnsetType = UNSET
    embedding: Annotated[list[Number], Meta(min_length=1)] | None | UnsetType = UNSET
    features: dict[str, Scalar] | None | UnsetType = UNSET
    prediction: str | Number | None | UnsetType = UNSET
    score: UnitInterval | None | UnsetType = UNSET
    segment: dict[str, str | None] | None | UnsetType = UNSET
    stream: bool | None | UnsetType = UNSET
    trace_id: TraceId | None | UnsetType = UNSET  # the call's trace: an exemplar of the latency histograms
    # feedback
    label: str | Number | bool | None | UnsetType = UNSET
    rating: Number | None | UnsetType = UNSET
    judge_score: UnitInterval | None | UnsetType = UNSET
    evaluation_name: Identifier | None | UnsetType = UNSET
    # set by the decoder; read from a key no producer writes (it starts with DEL), of any type, so never a rejection
    timestamp_ms: Any = field(default=UNSET, name="\x7ftimestamp_ms")


class _WireEvent(Event, gc=False):
    """An event and the OpenTelemetry GenAI names and deprecated aliases of its fields (see :data:`ALIASES`),
    which :func:`decode` moves onto the fields. A batch is decoded as plain events: one that names an alias
    holds a key they drop, and so is decoded on its own (see :func:`decode_batch`)."""

    gen_ai_request_model: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.request.model")
    gen_ai_operation_name: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.operation.name")
    gen_ai_provider_name: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.provider.name")
    gen_ai_system: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.system")
    gen_ai_response_id: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.response.id")
    gen_ai_conversation_id: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.conversation.id")
    gen_ai_usage_input_tokens: Count | None | UnsetType = field(default=UNSET, name="gen_ai.usage.input_tokens")
    gen_ai_usage_prompt_tokens: Count | None | UnsetType = field(default=UNSET, name="gen_ai.usage.prompt_tokens")
    prompt_tokens: Count | None | UnsetType = UNSET
    gen_ai_usage_output_tokens: Count | None | UnsetType = field(default=UNSET, name="gen_ai.usage.output_tokens")
    gen_ai_usage_completion_tokens: Count | None | UnsetType = field(
        default=UNSET, name="gen_ai.usage.completion_tokens"
    )
    completion_tokens: Count | None | UnsetType = UNSET
    gen_ai_usage_cache_read_input_tokens: Count | None | UnsetType = field(
        default=UNSET, name="gen_ai.usage.cache_read.input_tokens"
    )
    gen_ai_response_finish_reasons: list[Identifier] | None | UnsetType = field(
        default=UNSET, name="gen_ai.response.finish_reasons"
    )
    gen_ai_response_time_to_first_chunk: NonNegative | None | UnsetType = field(
        default=UNSET, name="gen_ai.response.time_to_first_chunk"
    )
    error_type: Identifier | None | UnsetType = field(default=UNSET, name="error.type")
    gen_ai_evaluation_name: Identifier | None | UnsetType = field(default=UNSET, name="gen_ai.evaluation.name")
    gen_ai_evaluation_score_value: UnitInterval | None | UnsetType = field(
        default=UNSET, name="gen_ai.evaluation.score.value"
    )


#: How the C parser of plain messages reads each field of :class:`Event` (``plain_events`` in
#: ``monitor/ingest/_decode.c``; a test holds each kind to the field's type): a message that names a field not here
#: (``embedding``, an alias: see ``_PARSER_KINDS``) is decoded by msgspec. ``name``, ``class`` and ``label``
#: strings take few values, and a table in C shares them between events.
PLAIN_KINDS = (
    ("type", "type"),
    ("request_id", "id"),
    ("response_id", "id"),
    ("timestamp", "timestamp"),
    ("model", "name"),
    ("model_version", "name"),
    ("operation", "name"),
    ("provider", "name"),
    ("conversation_id", "id"),
    ("finish_reason", "name"),
    ("error", "name"),
    ("latency_ms", "nonnegative"),
    ("ttft_ms", "nonnegative"),
    ("input_tokens", "count"),
    ("output_tokens", "count"),
    ("cache_read_input_tokens", "count"),
    ("reasoning_output_tokens", "count"),
    ("prompt", "text"),
    ("response", "text"),
    ("features", "features"),
    ("prediction", "class"),
    ("score", "unit"),
    ("segment", "segment"),
    ("stream", "bool"),
    ("trace_id", "trace"),
    ("label", "label"),
    ("rating", "number"),
    ("judge_score", "unit"),
    ("evaluation_name", "name"),
)
_UNSET_EVENT = Event()  # what the C parser copies for each plain message


#: The fields of an inference event and of a feedback event (the other type's fields are ignored).
INFERENCE_FIELDS = tuple(Event.__struct_fields__[: Event.__struct_fields__.index("label")])
FEEDBACK_FIELDS = (*INFERENCE_FIELDS[:5], "label", "rating", "judge_score", "evaluation_name")


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _seconds_to_ms(seconds: float) -> float:
    return seconds * 1000.0


#: OpenTelemetry GenAI attribute names and deprecated aliases: the v1 field each
#: fills (unless that is present too) and the conversion, by name on the wire.
ALIASES: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "gen_ai.request.model": ("model", None),
    "gen_ai.operation.name": ("operation", None),
    "gen_ai.provider.name": ("provider", None),
    "gen_ai.system": ("provider", None),
    "gen_ai.response.id": ("response_id", None),
    "gen_ai.conversation.id": ("conversation_id", None),
    "gen_ai.usage.input_tokens": ("input_tokens", None),
    "gen_ai.usage.prompt_tokens": ("input_tokens", None),
    "prompt_tokens": ("input_tokens", None),
    "gen_ai.usage.output_tokens": ("output_tokens", None),
    "gen_ai.usage.completion_tokens": ("output_tokens", None),
    "completion_tokens": ("output_tokens", None),
    "gen_ai.usage.cache_read.input_tokens": ("cache_read_input_tokens", None),
    "gen_ai.response.finish_reasons": ("finish_reason", _first),
    "gen_ai.response.time_to_first_chunk": ("ttft_ms", _seconds_to_ms),
    "error.type": ("error", None),
    "gen_ai.evaluation.name": ("evaluation_name", None),
    "gen_ai.evaluation.score.value": ("judge_score", None),
}
_WIRE_NAMES = dict(zip(_WireEvent.__struct_fields__, _WireEvent.__struct_encode_fields__, strict=True))
#: The keys the C parser leaves to msgspec (the aliases, ``embedding``, the decoder's own field): the kinds it is
#: given. A key no field names is dropped there too, as msgspec drops it, if its value is a scalar.
_PARSER_KINDS = PLAIN_KINDS + tuple(
    (name, "msgspec") for name in _WireEvent.__struct_encode_fields__ if name not in dict(PLAIN_KINDS)
)
_ALIAS_ATTRIBUTES = [
    (attribute, *ALIASES[wire]) for attribute, wire in _WIRE_NAMES.items() if wire in ALIASES
]  # in ALIASES order: current names before deprecated ones
_ALIAS_ATTRIBUTES.sort(key=lambda alias: list(ALIASES).index(_WIRE_NAMES[alias[0]]))

_DECODER = msgspec.json.Decoder(_WireEvent)
_PLAIN_DECODER = msgspec.json.Decoder(Event)  # a batch's: see decode_batch
_FIELDS_LONGEST_FIRST = sorted(
    (name for name in _WireEvent.__struct_encode_fields__ if name != "\x7ftimestamp_ms"), key=len, reverse=True
)
_UNIT_FIELDS = frozenset(
    {"score", "judge_score", "gen_ai.evaluation.score.value"}
)  # the UnitInterval fields: beyond [0, 1] is out_of_range, not negative
_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")
_BEYOND_EXACT = ("Integer value out of range", f"<= {MAX_EXACT_INT}", f">= {-MAX_EXACT_INT}")
_BACKSLASH = ord("\\")  # an int, looked for with memchr: ten times faster than the one-byte bytes b"\\"
_TYPE = attrgetter("type")
_FEATURES = attrgetter("features")
_SEGMENT = attrgetter("segment")
_BACKSLASH_QUOTE = b'\\\\"'  # an escaped backslash that may end a string
_WHITE_SPACE = b" \t\n\r"
_TIMESTAMP = attrgetter("timestamp")
_REQUEST_ID = attrgetter("request_id")
_MODEL = attrgetter("model")


def read_field(events: list[Event], name: str) -> list[Any]:
    """Each event's ``name`` field as its struct holds it, :data:`~msgspec.UNSET` where the message did not name it:
    read from each event's slot in C (:func:`monitor.ingest._decode.field`; else one ``getattr`` per event).

    >>> read_field([Event(score=0.5), Event()], "score")
    [0.5, UNSET]
    """
    return _read_field(events, name)


def read_columns(events: list[Event], paths: tuple[tuple[str, str | None], ...]) -> tuple[list[Any], ...]:
    """For each ``(name, key)`` of ``paths``, each event's field ``name`` as :func:`read_field` reads it (``key``
    None), or its mapping (``features``, ``segment``) at ``key``, None where absent: all in one pass over the events
    in C (:func:`monitor.ingest._decode.columns`), at about half the cost of a pass each.

    >>> events = [Event(score=0.5, features={"topic": "billing"}), Event()]
    >>> read_columns(events, (("score", None), ("features", "topic")))
    ([0.5, UNSET], ['billing', None])
    """
    return _columns(events, paths)


def packed_floats(values: list[Any]) -> bytearray | None:
    """Numbers, None or unset (NaN) packed as float64s, in C (:func:`monitor.ingest._decode.floats`), ten times
    faster than numpy's conversion of a list; None where it was not built, or for other values (numpy converts
    them then, and says what it makes of them)."""
    return None if _floats is None else _floats(values, UNSET)


def unset_as_none(values: list[Any]) -> list[Any]:
    """Values as :func:`read_field` reads them, None where absent (unset or null): the list itself if none is unset.

    >>> unset_as_none(read_field([decode(b'{"request_id": "r", "timestamp": 1700000000, "model": "m", "score": 1}'),
    ...                           Event(score=None), Event()], "score"))
    [1, None, None]
    """
    if UNSET in values:
        if values.count(UNSET) == len(values):
            return [None] * len(values)
        return [None if value is UNSET else value for value in values]
    return values


def decode(raw: bytes, max_bytes: int = 1_048_576, latest_ms: float = math.inf) -> Event | Invalid:
    """Decode one message; return the validated event or why it is invalid.

    Parameters
    ----------
    raw
        The message's value.
    max_bytes
        Larger messages are ``oversized``.
    latest_ms
        Events dated later (epoch milliseconds) are ``future_timestamp``: the daemon passes its wall
        clock plus ``limits.max_clock_skew``; the default accepts any date, as a replay of old events must.
    """
    try:
        if len(raw) > max_bytes:
            return Invalid("oversized", f"{len(raw)} bytes > {max_bytes}")
        if not raw.isascii():  # msgspec checks UTF-8 only in the fields it keeps
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return Invalid("not_utf8", f"byte {error.start}")
        try:
            event = _DECODER.decode(raw)
            repeated = _repeated_key(raw, event)
        except msgspec.ValidationError as error:
            return _rejection(str(error))
        except msgspec.DecodeError as error:
            return _malformed(raw, str(error))
        except RecursionError:
            return Invalid("oversized", "nested deeper than the parser allows")
        if repeated is not None:
            return Invalid("duplicate_key", repeated)
        return _apply_aliases(event) or _complete(event, latest_ms)
    except Exception as error:  # noqa: BLE001 - bad input must never stop the daemon
        return Invalid("internal_error", type(error).__name__)


def decode_mapping(mapping: dict[str, Any], latest_ms: float = math.inf) -> Event | Invalid:
    """:func:`decode` of an event given as a mapping of wire names to values (an OpenTelemetry span's, see
    :mod:`monitor.ingest.otlp`): the same types, bounds, aliases and checks, without a parse. Never raises.

    >>> decode_mapping({"request_id": "r1", "timestamp": 1700000000, "gen_ai.request.model": "m"}).model
    'm'
    >>> decode_mapping({"request_id": "r1", "timestamp": 1700000000, "model": "m", "latency_ms": float("inf")})
    Invalid(reason='non_finite', detail='latency_ms')
    """
    try:
        for name, value in mapping.items():  # JSON has no such numbers, so msgspec's types let them through
            if type(value) is float and not math.isfinite(value):
                return Invalid("non_finite", name)
        try:
            event = msgspec.convert(mapping, _WireEvent)
        except msgspec.ValidationError as error:
            return _rejection(str(error))
        return _apply_aliases(event) or _complete(event, latest_ms)
    except Exception as error:  # noqa: BLE001 - bad input must never stop the daemon
        return Invalid("internal_error", type(error).__name__)


def decode_batch(
    raws: list[bytes] | list[bytes | None], max_bytes: int = 1_048_576, latest_ms: float = math.inf
) -> list[Event | Invalid]:
    """:func:`decode` of each message of a batch (None, a Kafka tombstone, as empty), checked batch-wise.

    Where the C extension was built, the plain messages (see :data:`PLAIN_KINDS`) are parsed straight
    into :class:`Event` structs in one call, which finds a repeated key as it parses, and strings that
    take few values are shared between events; every other message is decoded by :func:`decode`.
    Without it, the messages are decoded into plain :class:`Event` structs by msgspec and checked over
    the whole batch at once, each check one pass in C or in its twin (decoding them joined into one
    array was measured: it saves nothing over one call per message, and the join costs a copy); whenever
    the batch holds anything unusual (a message that is invalid, oversized, not UTF-8, that names a key
    :class:`Event` does not, such as an alias, or that may name one twice), each message is decoded by
    :func:`decode` instead. Either way the result is what :func:`decode` returns for each message (an
    :class:`Event` all the same).

    >>> [getattr(result, "reason", "valid") for result in decode_batch([
    ...     b'{"request_id": "a", "timestamp": 1700000000, "model": "m"}', b'{"request_id": "a"}', None])]
    ['valid', 'missing_field', 'not_json']
    """
    try:
        events = _decode_together(raws, max_bytes, latest_ms)  # type: ignore[arg-type]  # None is looked for
    except Exception:  # noqa: BLE001 - anything unforeseen: each message on its own, which never raises
        events = None
    if events is None:
        return [decode(raw or b"", max_bytes, latest_ms) for raw in raws]
    return events


def _decode_together(raws: list[bytes], max_bytes: int, latest_ms: float) -> list[Event | Invalid] | None:
    """The events of a batch checked batch-wise, or None where it must be decoded message by message."""
    if _plain_events is not None:
        return _parse_together(raws, max_bytes, latest_ms)
    if not raws or None in raws or max(map(len, raws)) > max_bytes:
        return None
    if not all(map(bytes.isascii, raws)):
        deque(map(bytes.decode, raws), maxlen=0)  # a UnicodeDecodeError sends the batch message by message
    try:
        events = list(map(_PLAIN_DECODER.decode, raws))
    except (msgspec.DecodeError, RecursionError):  # a ValidationError is a DecodeError
        return None
    if not _no_repeated_key(raws, events):
        return None
    if _complete_batch(events, float(latest_ms), UNSET, "inference"):
        return events  # type: ignore[return-value]  # a list of Event is a list of Event | Invalid
    return _completed_apart(events, latest_ms)


def _parse_together(raws: list[bytes], max_bytes: int, latest_ms: float) -> list[Event | Invalid]:
    """The batch parsed in C where its messages are plain (see :data:`PLAIN_KINDS`), the others decoded one by one."""
    assert _plain_events is not None, "called only where the parser was built"
    parsed: list[Event | None] = _plain_events(raws, _UNSET_EVENT, _PARSER_KINDS, max_bytes)
    plain = [event for event in parsed if event is not None]
    completed: list[Event | Invalid] = plain  # type: ignore[assignment]  # a list of Event is one of Event | Invalid
    if not _complete_batch(plain, float(latest_ms), UNSET, "inference"):
        completed = _completed_apart(plain, latest_ms)
    if len(plain) == len(raws):
        return completed
    taken = iter(completed)
    return [
        decode(raw or b"", max_bytes, latest_ms) if event is None else next(taken) for raw, event in zip(raws, parsed)
    ]


def _completed_apart(events: list[Event], latest_ms: float) -> list[Event | Invalid]:
    """:func:`_complete` of each event, the inference events of a batch that mixes in feedback (as a topic carrying
    both does) completed together in C, the feedback one by one."""
    inference = [event for event in events if event.type != "feedback"]
    if len(inference) < len(events) and _complete_batch(inference, float(latest_ms), UNSET, "inference"):
        return [_complete(event, latest_ms) if event.type == "feedback" else event for event in events]
    return [_complete(event, latest_ms) for event in events]


def _no_repeated_key(raws: list[bytes], events: list[Event]) -> bool:
    """Whether no message of the batch names a key twice (nor one its struct drops), by counts in C.

    A quote inside a string is escaped (``\\"``), so unless a string ends in an escaped backslash (then
    ``\\\\"`` is in the batch), every other quote delimits a string, and a colon whose last byte before it
    other than white space is such a quote ends a key (a string value followed by a colon is not JSON).
    These colons are then at least the batch's keys (a string value may start with a colon), as many as
    its events kept (their set fields and the keys of ``features`` and ``segment``) only if no object
    repeated a key or named one the schema does not.
    """
    n_keys = _key_colons(raws)
    if n_keys is None:
        return False
    n_nested = sum(map(len, filter(None, map(_FEATURES, events)))) + sum(map(len, filter(None, map(_SEGMENT, events))))
    return n_keys == _set_fields(events, UNSET) + n_nested


def _key_colons_twin(raws: list[bytes]) -> int | None:
    """:func:`monitor.ingest._decode.key_colons` where it was not built: the colons ending a key, the
    ``":`` not escaped once white space is taken out, message by message (a NUL byte, which no JSON holds, stands
    between two); None if a string may end in an escaped backslash."""
    joined = b"\0".join(raws).translate(None, _WHITE_SPACE)
    n_keys = joined.count(b'":')
    # Most batches hold no backslash at all: one memchr spares the two searches for escapes.
    if _BACKSLASH in joined:
        if _BACKSLASH_QUOTE in joined:
            return None
        n_keys -= joined.count(b'\\":')
    return n_keys


def _set_fields_twin(events: list[Event], unset: object) -> int:
    """:func:`monitor.ingest._decode.set_fields` where it was not built: the fields not ``unset``."""
    return sum(len(fields) - countOf(fields, unset) for fields in map(astuple, events))


def _repeated_key(raw: bytes, event: Event) -> str | None:
    """A key that some object of the message names twice (escaped for printing), or None.

    msgspec keeps the last of repeated keys, so the count of :func:`_no_repeated_key` decides first, in C;
    only a message it cannot clear (a repeat, a key the schema does not name, an escaped quote) is parsed
    again by :func:`_first_repeated_key`, about twice the cost of decoding it.
    """
    return None if _no_repeated_key([raw], [event]) else _first_repeated_key(raw)


def repeated_key(raw: bytes, document: Any) -> str | None:
    """A key that some object of a JSON document names twice (escaped for printing), or None; ``document`` is what
    msgspec decoded from ``raw`` (it keeps the last of repeated keys), of any shape.

    Where ``raw`` holds no backslash, none of its strings is escaped, so msgspec encodes each back byte for byte: the
    document encoded again has as many key colons (see :func:`_no_repeated_key`) as ``raw`` if and only if no key
    was dropped (measured: about 1% of decoding an OTLP/JSON request). Otherwise (a backslash, or a key dropped) the
    message is parsed again by :func:`_first_repeated_key` (about 6%).

    >>> repeated_key(b'{"a": [{"b": 1, "b": 2}]}', msgspec.json.decode(b'{"a": [{"b": 1, "b": 2}]}'))
    'b'
    """
    if _BACKSLASH not in raw and _key_colons([raw]) == _key_colons([msgspec.json.encode(document)]):
        return None
    return _first_repeated_key(raw)


class _Repeated(Exception):
    def __init__(self, key: str):
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    mapping = dict(pairs)
    if len(mapping) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return mapping


def _ignore(_: str) -> None:
    return None


# Only the keys matter: numbers are not even converted. msgspec has judged the rest already.
_PAIRS_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_pairs, parse_int=_ignore, parse_float=_ignore, parse_constant=_ignore, strict=False
)


def _first_repeated_key(raw: bytes) -> str | None:
    """The first key named twice in one object (any object of the message), by a parse that sees them all."""
    try:
        _PAIRS_DECODER.decode(raw.decode("utf-8"))
    except _Repeated as repeated:
        return json.dumps(repeated.key)[1:-1][:MAX_ID_CHARS]
    return None


def _complete(event: Event, latest_ms: float) -> Event | Invalid:
    """What the types cannot say: required fields, the timestamp."""
    kind = event.type or "inference"
    for name in _REQUIRED[kind]:
        if getattr(event, name) in _ABSENT:
            return Invalid("missing_field", name)
    if event.model == "":  # a model named "" is no model (and would meet the series of none: process-wide alerts)
        return Invalid("missing_field", "model")
    if kind == "feedback" and event.request_id in _ABSENT and event.response_id in _ABSENT:
        return Invalid("missing_field", "request_id")
    timestamp_ms = _timestamp_ms(event.timestamp)  # type: ignore[arg-type]  # required: given
    if timestamp_ms is None:
        return Invalid("bad_timestamp", "timestamp")
    if timestamp_ms > latest_ms:
        return Invalid("future_timestamp", "timestamp")
    event.type = kind
    event.timestamp_ms = timestamp_ms
    return event


_REQUIRED = {"inference": ("request_id", "timestamp", "model"), "feedback": ("timestamp", "model")}
_MS_PER_SECOND = 1000.0  # no numpy here: the producer SDK imports this module
_ABSENT = (None, UNSET)


def _complete_batch_twin(events: list[Event], latest_ms: float, unset: object, inference: str) -> bool:
    """:func:`monitor.ingest._decode.complete` where it was not built: :func:`_complete` of a batch of plain
    inference events, in a few passes in C; False, and nothing set, if any event is not such or not plainly valid
    (then each is completed on its own)."""
    if not {inference, None, unset}.issuperset(map(_TYPE, events)):
        return False
    if {*map(type, map(_REQUEST_ID, events)), *map(type, map(_MODEL, events))} != {str} or "" in map(_MODEL, events):
        return False  # a required identifier is absent (unset or null), or the model is named ""
    timestamps = list(map(_TIMESTAMP, events))
    types = set(map(type, timestamps))
    if types == {datetime}:
        try:
            seconds = list(map(datetime.timestamp, timestamps))
        except (ValueError, OverflowError):
            return False
    elif types <= {int, float}:
        seconds = timestamps  # each exact as a float64 (ints are within 2**53)
    else:
        return False  # absent
    if min(seconds) < _MIN_EPOCH_SECONDS or max(seconds) >= _MAX_EPOCH_SECONDS:
        return False
    timestamps_ms = list(map(_MS_PER_SECOND.__mul__, seconds))
    if max(timestamps_ms) > latest_ms:
        return False
    list(map(setattr, events, repeat("type"), repeat(inference, len(events))))
    list(map(setattr, events, repeat("timestamp_ms"), timestamps_ms))
    return True


def _entries_twin(events: list[Event], name: str, key: str) -> list[Any]:
    """Each event's mapping ``name`` at ``key``, None where absent (a path of :func:`_columns_twin`)."""
    return [mapping.get(key) if type(mapping) is dict else None for mapping in _read_field(events, name)]


def _columns_twin(events: list[Event], paths: tuple[tuple[str, str | None], ...]) -> tuple[list[Any], ...]:
    """:func:`monitor.ingest._decode.columns` where it was not built: a pass per path."""
    return tuple(_read_field(events, name) if key is None else _entries_twin(events, name, key) for name, key in paths)


def _read_field_twin(events: list[Event], name: str) -> list[Any]:
    """:func:`monitor.ingest._decode.field` where it was not built: one ``getattr`` per event, mapped in C."""
    return list(map(attrgetter(name), events))


_plain_events: Callable[[list[bytes], Event, tuple, int], list[Event | None]] | None
_floats: Callable[[list[Any], object], bytearray | None] | None
# The batch decoder in C (setup.py): its passes take about 1.5 us an event less than their twins; its parser 0.4 less
# than msgspec's path and the passes, and its shared strings cost less to hash and free downstream.
try:
    from monitor.ingest._decode import columns as _columns
    from monitor.ingest._decode import complete as _complete_batch
    from monitor.ingest._decode import field as _read_field
    from monitor.ingest._decode import floats as _floats
    from monitor.ingest._decode import key_colons as _key_colons
    from monitor.ingest._decode import plain_events as _plain_events
    from monitor.ingest._decode import set_fields as _set_fields
except ImportError:  # built without a C compiler: msgspec decodes every batch, checked by the twins
    _key_colons, _set_fields, _complete_batch = _key_colons_twin, _set_fields_twin, _complete_batch_twin
    _read_field, _columns = _read_field_twin, _columns_twin
    _plain_events = _floats = None


def _apply_aliases(event: _WireEvent) -> Invalid | None:
    """Move the aliases an event names onto their fields, in :data:`ALIASES` order (current names first)."""
    for attribute, name, convert in _ALIAS_ATTRIBUTES:
        value = getattr(event, attribute)
        if value is UNSET:
            continue
        setattr(event, attribute, UNSET)
        if getattr(event, name) in _ABSENT and value is not None:
            value = convert(value) if convert is not None else value
            if value != value or value in (math.inf, -math.inf):  # a unit conversion overflowed
                return Invalid("non_finite", _WIRE_NAMES[attribute])
            setattr(event, name, value)
    return None


def _timestamp_ms(value: datetime | float) -> float | None:
    """Milliseconds since the epoch, or None unless between 2000 and 5138 (later is surely milliseconds)."""
    if isinstance(value, datetime):
        try:
            value = value.timestamp()
        except (ValueError, OverflowError):
            return None
    return value * 1000.0 if _MIN_EPOCH_SECONDS <= value < _MAX_EPOCH_SECONDS else None


def _rejection(message: str) -> Invalid:
    """The reason for one of msgspec's validation messages, e.g. "Expected `float` >= 0.0 - at `$.latency_ms`"."""
    text, _, path = message.partition(" - at `$")
    field = next((name for name in _FIELDS_LONGEST_FIRST if path.startswith(("." + name, f'["{name}"'))), "")
    if not path:
        return Invalid("not_object", text) if text.startswith("Expected `object`") else Invalid("not_json", text)
    if text == "Number out of range":  # a float literal: every integer is parsed by an int branch
        return Invalid("non_finite", field)
    if text.endswith(_BEYOND_EXACT):
        return Invalid("out_of_range", field)
    if field == "type":
        return Invalid("unknown_type", field)
    if field == "timestamp":
        return Invalid("bad_timestamp", field)
    if "of length <=" in text:
        return Invalid("too_long", field)
    if text.endswith(("got `array`", "got `object`")) and path.startswith((".features[", ".segment[")):
        return Invalid("non_scalar_feature", field)
    if field in _UNIT_FIELDS and ("<=" in text or ">=" in text):
        return Invalid("out_of_range", field)
    if text.endswith(">= 0") or text.endswith(">= 0.0"):
        return Invalid("negative", field)
    return Invalid("wrong_type", field)


def _malformed(raw: bytes, message: str) -> Invalid:
    """``not_json``, or ``non_finite`` when the parser stopped at a NaN or Infinity literal."""
    where = _BYTE_OFFSET.search(message)
    if where and raw[int(where.group(1)) :].startswith((b"NaN", b"Infinity", b"-Infinity")):
        return Invalid("non_finite", message[:120])
    return Invalid("not_json", message[:120])

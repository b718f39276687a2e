"""Event schema v1: decode and validate one Kafka message.

The schema is declared once, as the typed dictionaries below; msgspec checks
every type and bound of it in C while it parses, so validating an event
costs about what parsing it does. What a type cannot say (required fields,
timestamps, OpenTelemetry names, repeated keys) is finished here in Python.

The decoder is the only judge of validity: what it passes, the state takes
without checking again. So every integer a field reads is bounded by
:data:`MAX_EXACT_INT` (2**53, exact as a float64; beyond is ``out_of_range``),
a timestamp is from 2000 on and no later than the caller's ``latest_ms``, and
no object names a key twice (``duplicate_key``: msgspec would keep the last).

:func:`decode` returns the validated event (a plain ``dict`` shaped like
:class:`InferenceEvent` or :class:`FeedbackEvent`, unknown keys dropped) or
an :class:`Invalid` naming one of the stable :data:`REASONS`. It never
raises: the daemon must not stop on bad input, so even an unforeseen error
comes back as the reason ``internal_error``.

Events from OpenTelemetry GenAI instrumentation are accepted as they are:
their ``gen_ai.*`` attribute names and the deprecated aliases still common in
the wild are mapped onto the v1 fields, units converted (see :data:`ALIASES`).

>>> event = decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m",'
...                b' "gen_ai.response.time_to_first_chunk": 0.25}')
>>> event["type"], event["timestamp_ms"], event["ttft_ms"]
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
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, TypedDict

import msgspec
from msgspec import Meta

__all__ = ["ALIASES", "REASONS", "FeedbackEvent", "InferenceEvent", "Invalid", "decode"]

#: Every reason an event can be rejected for; each is a label value of
#: ``driftwarden_events_invalid_total`` and the header of its dead letter.
REASONS = (
    "oversized",  # larger than limits.max_event_bytes, or nested too deeply to parse
    "not_utf8",  # a text field is not UTF-8
    "not_json",  # not a JSON document
    "non_finite",  # NaN or +-Infinity, as a JSON literal or an overflowing number
    "not_object",  # JSON, but not an object
    "unknown_type",  # "type" is neither "inference" nor "feedback"
    "missing_field",  # a required field is absent or null
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


class Invalid(NamedTuple):
    """Why an event was rejected: a stable ``reason`` and a ``detail`` (usually the field)."""

    reason: str
    detail: str = ""


class _Common(TypedDict, total=False):
    type: Literal["inference", "feedback"]  # absent means "inference"
    request_id: Identifier
    response_id: Identifier
    timestamp: Timestamp | Number  # RFC 3339 with an offset (parsed in C), or epoch seconds
    timestamp_ms: float  # set by the decoder from timestamp, never read from the message
    model: Identifier


class InferenceEvent(_Common, total=False):
    """One model call; ``request_id``, ``timestamp`` and ``model`` are required."""

    model_version: Identifier
    operation: Identifier
    provider: Identifier
    conversation_id: Identifier
    finish_reason: Identifier
    error: Identifier
    latency_ms: NonNegative
    ttft_ms: NonNegative
    input_tokens: Count
    output_tokens: Count
    cache_read_input_tokens: Count
    reasoning_output_tokens: Count
    prompt: str
    response: str
    embedding: Annotated[list[Number], Meta(min_length=1)]
    features: dict[str, Scalar]
    prediction: str | Number
    score: UnitInterval
    segment: dict[str, str | None]
    stream: bool


class FeedbackEvent(_Common, total=False):
    """A label, rating or judge score; ``timestamp``, ``model`` and one of the two ids are required."""

    label: str | Number | bool
    rating: Number
    judge_score: UnitInterval
    evaluation_name: Identifier


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _seconds_to_ms(seconds: float) -> float:
    return seconds * 1000.0


#: OpenTelemetry GenAI attribute names and deprecated aliases: their type on
#: the wire, the v1 field they fill (unless that is present too) and the conversion.
ALIASES: dict[str, tuple[Any, str, Callable[[Any], Any] | None]] = {
    "gen_ai.request.model": (Identifier, "model", None),
    "gen_ai.operation.name": (Identifier, "operation", None),
    "gen_ai.provider.name": (Identifier, "provider", None),
    "gen_ai.system": (Identifier, "provider", None),
    "gen_ai.response.id": (Identifier, "response_id", None),
    "gen_ai.conversation.id": (Identifier, "conversation_id", None),
    "gen_ai.usage.input_tokens": (Count, "input_tokens", None),
    "gen_ai.usage.prompt_tokens": (Count, "input_tokens", None),
    "prompt_tokens": (Count, "input_tokens", None),
    "gen_ai.usage.output_tokens": (Count, "output_tokens", None),
    "gen_ai.usage.completion_tokens": (Count, "output_tokens", None),
    "completion_tokens": (Count, "output_tokens", None),
    "gen_ai.usage.cache_read.input_tokens": (Count, "cache_read_input_tokens", None),
    "gen_ai.response.finish_reasons": (list[Identifier], "finish_reason", _first),
    "gen_ai.response.time_to_first_chunk": (NonNegative, "ttft_ms", _seconds_to_ms),
    "error.type": (Identifier, "error", None),
    "gen_ai.evaluation.name": (Identifier, "evaluation_name", None),
    "gen_ai.evaluation.score.value": (UnitInterval, "judge_score", None),
}
_ALIAS_KEYS = frozenset(ALIASES)

# What msgspec decodes: every field of both event types (but the decoder's own
# timestamp_ms) and every alias, each nullable (a null optional field means
# "absent"); unknown keys are dropped.
_WIRE_TYPES = {
    **typing.get_type_hints(InferenceEvent, include_extras=True),
    **typing.get_type_hints(FeedbackEvent, include_extras=True),
    **{alias: wire_type for alias, (wire_type, _, _) in ALIASES.items()},
}
del _WIRE_TYPES["timestamp_ms"]
_typed_dict: Any = TypedDict  # the functional form, with fields computed here, which a type checker cannot follow
_DECODER = msgspec.json.Decoder(
    _typed_dict("WireEvent", {name: kind | None for name, kind in _WIRE_TYPES.items()}, total=False)
)
_FIELDS_LONGEST_FIRST = sorted(_WIRE_TYPES, key=len, reverse=True)
_UNIT_FIELDS = frozenset(name for name, kind in _WIRE_TYPES.items() if kind is UnitInterval)
_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)")
_REQUIRED = {"inference": ("request_id", "timestamp", "model"), "feedback": ("timestamp", "model")}
_BEYOND_EXACT = ("Integer value out of range", f"<= {MAX_EXACT_INT}", f">= {-MAX_EXACT_INT}")
_EMPTY: dict = {}
_BACKSLASH = ord("\\")  # an int, looked for with memchr: ten times faster than the one-byte bytes b"\\"


def decode(
    raw: bytes, max_bytes: int = 1_048_576, latest_ms: float = math.inf
) -> dict[str, Any] | Invalid:
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
        return _complete(event, latest_ms)
    except Exception as error:  # noqa: BLE001 - bad input must never stop the daemon
        return Invalid("internal_error", type(error).__name__)


def _repeated_key(raw: bytes, event: dict) -> str | None:
    """A key that some object of the message names twice (escaped for printing), or None.

    msgspec keeps the last of repeated keys, so a count decides first, in C. Outside strings, JSON
    has exactly one colon per key: the message holds at least as many colons as keys in all its
    objects. When it holds no more than the distinct keys msgspec kept, plus the colons of strings
    it kept (at least two in an RFC 3339 time; those of ``prompt`` and ``response``) unless one may
    be the escape ``\\u003a``, then no object repeats a key (nor holds one msgspec dropped). Only
    the other messages (with unknown keys, colons in other strings, or a repeat) are parsed again
    by :func:`_first_repeated_key`, about twice the cost of decoding them.
    """
    n_colons = raw.count(b":")
    n_keys = len(event) + len(event.get("features") or _EMPTY) + len(event.get("segment") or _EMPTY)
    if n_colons > n_keys and (_BACKSLASH not in raw or b"\\u003" not in raw):  # no colon of a kept string is escaped
        if type(event.get("timestamp")) is datetime:
            n_keys += 2
        if n_colons > n_keys:
            n_keys += sum(text.count(":") for text in (event.get("prompt"), event.get("response")) if type(text) is str)
    return None if n_colons <= n_keys else _first_repeated_key(raw)


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


def _complete(event: dict, latest_ms: float) -> dict[str, Any] | Invalid:
    """What the types cannot say: aliases, required fields, the timestamp."""
    if not _ALIAS_KEYS.isdisjoint(event):
        invalid = _apply_aliases(event)
        if invalid is not None:
            return invalid
    kind = event.get("type") or "inference"
    for field in _REQUIRED[kind]:
        if event.get(field) is None:
            return Invalid("missing_field", field)
    if kind == "feedback" and event.get("request_id") is None and event.get("response_id") is None:
        return Invalid("missing_field", "request_id")
    timestamp_ms = _timestamp_ms(event["timestamp"])
    if timestamp_ms is None:
        return Invalid("bad_timestamp", "timestamp")
    if timestamp_ms > latest_ms:
        return Invalid("future_timestamp", "timestamp")
    event["type"] = kind
    event["timestamp_ms"] = timestamp_ms
    return event


def _apply_aliases(event: dict) -> Invalid | None:
    """Rename aliases in :data:`ALIASES` order (current names before deprecated ones)."""
    for alias in [alias for alias in ALIASES if alias in event]:
        _, field, convert = ALIASES[alias]
        value = event.pop(alias)
        if event.get(field) is None and value is not None:
            value = convert(value) if convert is not None else value
            if value != value or value in (math.inf, -math.inf):  # a unit conversion overflowed
                return Invalid("non_finite", alias)
            event[field] = value
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

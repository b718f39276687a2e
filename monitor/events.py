"""Event schema v1: decode and validate one Kafka message.

:func:`decode` turns raw bytes into a validated event (a plain ``dict``, typed
below as :class:`InferenceEvent` or :class:`FeedbackEvent`) or an
:class:`Invalid` naming a stable reason. It never raises: the daemon must not
stop on bad input, so even an unforeseen error comes back as the reason
``internal_error``.

Events from OpenTelemetry GenAI instrumentation are accepted as they are:
their ``gen_ai.*`` attribute names and the deprecated aliases still common in
the wild are mapped onto the v1 fields, with units converted (see
:data:`ALIASES`).

>>> event = decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m",'
...                b' "gen_ai.response.time_to_first_chunk": 0.25}')
>>> event["type"], event["timestamp_ms"], event["ttft_ms"]
('inference', 1700000000000.0, 250.0)
>>> decode(b'{"request_id": "r1", "timestamp": 1700000000, "model": "m", "latency_ms": -3}')
Invalid(reason='negative', detail='latency_ms')
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Callable, NamedTuple, TypedDict

import orjson

__all__ = [
    "ALIASES",
    "REASONS",
    "FeedbackEvent",
    "InferenceEvent",
    "Invalid",
    "decode",
    "validate",
]

#: Every reason an event can be rejected for; each is a label value of
#: ``driftwarden_events_invalid_total`` and the header of its dead letter.
REASONS = (
    "oversized",  # the message is larger than limits.max_event_bytes
    "not_utf8",  # the bytes are not UTF-8
    "not_json",  # not a JSON document
    "non_finite",  # NaN or +-Infinity, as a JSON literal or a value
    "not_object",  # JSON, but not an object
    "unknown_type",  # "type" is neither "inference" nor "feedback"
    "missing_field",  # a required field is absent or null
    "wrong_type",  # a field has the wrong JSON type
    "too_long",  # an identifier longer than MAX_ID_CHARS
    "bad_timestamp",  # not RFC 3339 with an offset, nor plausible epoch seconds
    "negative",  # a latency or token count below zero
    "out_of_range",  # a score outside [0, 1]
    "non_scalar_feature",  # a feature value that is a list or an object
    "internal_error",  # a bug in the decoder; the event is kept as a dead letter
)

MAX_ID_CHARS = 256
# Epoch seconds beyond this (year 5138) are surely milliseconds sent by mistake.
_MAX_EPOCH_SECONDS = 1e11


class Invalid(NamedTuple):
    """Why an event was rejected: a stable ``reason`` and a ``detail`` (usually the field)."""

    reason: str
    detail: str = ""


class InferenceEvent(TypedDict, total=False):
    """One model call. ``type`` and ``timestamp_ms`` are set by the decoder."""

    type: str
    request_id: str
    timestamp_ms: float
    model: str
    model_version: str
    operation: str
    provider: str
    latency_ms: float
    ttft_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    reasoning_output_tokens: int
    finish_reason: str
    error: str | None
    prompt: str
    response: str
    embedding: list[float]
    features: dict[str, float | str | bool]
    prediction: float | str
    score: float
    segment: dict[str, str]
    response_id: str
    conversation_id: str
    stream: bool


class FeedbackEvent(TypedDict, total=False):
    """A label, rating or judge score for an earlier (or later) call."""

    type: str
    request_id: str
    response_id: str
    timestamp_ms: float
    model: str
    label: float | str | bool
    rating: float
    judge_score: float
    evaluation_name: str


#: OpenTelemetry GenAI attribute names and deprecated aliases -> (v1 field, unit conversion).
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
    "gen_ai.response.finish_reasons": ("finish_reason", lambda v: v[0] if type(v) is list and v else v),
    "gen_ai.response.time_to_first_chunk": (
        "ttft_ms",
        lambda v: v * 1000.0 if type(v) in (int, float) else v,
    ),
    "error.type": ("error", None),
    "gen_ai.evaluation.name": ("evaluation_name", None),
    "gen_ai.evaluation.score.value": ("judge_score", None),
}
_ALIAS_KEYS = frozenset(ALIASES)


def decode(raw: bytes, max_bytes: int = 1_048_576) -> InferenceEvent | FeedbackEvent | Invalid:
    """Decode one message; return the validated event or why it is invalid."""
    if len(raw) > max_bytes:
        return Invalid("oversized", f"{len(raw)} bytes > {max_bytes}")
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return _undecodable(raw, error)
    if type(event) is not dict:
        return Invalid("not_object", type(event).__name__)
    return validate(event)


def validate(event: dict) -> InferenceEvent | FeedbackEvent | Invalid:
    """Validate and normalise an already-parsed event in place (also used by the producer SDK)."""
    try:
        return _validate(event)
    except Exception as error:  # noqa: BLE001 - bad input must never stop the daemon
        return Invalid("internal_error", type(error).__name__)


def _validate(event: dict) -> InferenceEvent | FeedbackEvent | Invalid:
    if not _ALIAS_KEYS.isdisjoint(event):
        _apply_aliases(event)
    kind = event.get("type")
    if kind is None or kind == "inference":
        kind = "inference"
        checks = _INFERENCE_CHECKS
    elif kind == "feedback":
        checks = _FEEDBACK_CHECKS
        if event.get("request_id") is None and event.get("response_id") is None:
            return Invalid("missing_field", "request_id")
    else:
        return Invalid("unknown_type", "type")
    for field in _REQUIRED[kind]:
        if event.get(field) is None:
            return Invalid("missing_field", field)
    for field, value in event.items():
        check = checks.get(field)
        if check is not None and value is not None:
            reason = check(value)
            if reason is not None:
                return Invalid(reason, field)
    timestamp_ms = _timestamp_ms(event["timestamp"])
    if timestamp_ms is None:
        return Invalid("bad_timestamp", "timestamp")
    event["type"] = kind
    event["timestamp_ms"] = timestamp_ms
    return event


def _apply_aliases(event: dict) -> None:
    for alias in _ALIAS_KEYS.intersection(event):
        field, convert = ALIASES[alias]
        value = event.pop(alias)
        if field not in event:
            event[field] = convert(value) if convert is not None else value


def _undecodable(raw: bytes, error: orjson.JSONDecodeError) -> Invalid:
    message = str(error)
    if "utf-8" in message.lower() or "surrogate" in message.lower():
        return Invalid("not_utf8", message[:120])
    if "infinity" in message.lower() or b"NaN" in raw or b"Infinity" in raw:
        return Invalid("non_finite", message[:120])
    return Invalid("not_json", message[:120])


def _timestamp_ms(value: Any) -> float | None:
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:  # RFC 3339 requires an offset; a naive time is ambiguous
                return None
            return parsed.timestamp() * 1000.0
        except (ValueError, OverflowError):
            return None
    if type(value) in (int, float) and 0 <= value < _MAX_EPOCH_SECONDS:
        return value * 1000.0
    return None


# Field checks return None when the value is fine, else a reason. None values
# never reach them: a null optional field means "absent".


def _string(value: Any) -> str | None:
    return None if type(value) is str else "wrong_type"


def _identifier(value: Any) -> str | None:
    if type(value) is not str:
        return "wrong_type"
    return "too_long" if len(value) > MAX_ID_CHARS else None


def _number(value: Any) -> str | None:
    if type(value) is int:
        return None
    if type(value) is float:
        return None if math.isfinite(value) else "non_finite"
    return "wrong_type"


def _non_negative(value: Any) -> str | None:
    reason = _number(value)
    if reason is None and value < 0:
        return "negative"
    return reason


def _count(value: Any) -> str | None:
    if type(value) is not int:
        return "wrong_type"
    return "negative" if value < 0 else None


def _unit_interval(value: Any) -> str | None:
    reason = _number(value)
    if reason is None and not 0.0 <= value <= 1.0:
        return "out_of_range"
    return reason


def _number_or_string(value: Any) -> str | None:
    return None if type(value) is str else _number(value)


def _label(value: Any) -> str | None:
    return None if type(value) in (str, bool) else _number(value)


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else "wrong_type"


def _timestamp(value: Any) -> str | None:
    if type(value) is str:
        return None
    reason = _number(value)
    return "bad_timestamp" if reason == "wrong_type" else reason


def _features(value: Any) -> str | None:
    if type(value) is not dict:
        return "wrong_type"
    for item in value.values():
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return "non_finite"
        elif kind is dict or kind is list:
            return "non_scalar_feature"
    return None


def _segment(value: Any) -> str | None:
    if type(value) is not dict:
        return "wrong_type"
    for item in value.values():
        if type(item) is not str:
            return "non_scalar_feature" if type(item) in (dict, list) else "wrong_type"
    return None


def _embedding(value: Any) -> str | None:
    if type(value) is not list or not value:
        return "wrong_type"
    for item in value:
        reason = _number(item)
        if reason is not None:
            return reason
    return None


_COMMON_CHECKS = {
    "request_id": _identifier,
    "response_id": _identifier,
    "model": _identifier,
    "timestamp": _timestamp,
}
_INFERENCE_CHECKS = {
    **_COMMON_CHECKS,
    "model_version": _identifier,
    "operation": _identifier,
    "provider": _identifier,
    "conversation_id": _identifier,
    "finish_reason": _identifier,
    "error": _identifier,
    "latency_ms": _non_negative,
    "ttft_ms": _non_negative,
    "input_tokens": _count,
    "output_tokens": _count,
    "cache_read_input_tokens": _count,
    "reasoning_output_tokens": _count,
    "prompt": _string,
    "response": _string,
    "embedding": _embedding,
    "features": _features,
    "prediction": _number_or_string,
    "score": _unit_interval,
    "segment": _segment,
    "stream": _boolean,
}
_FEEDBACK_CHECKS = {
    **_COMMON_CHECKS,
    "label": _label,
    "rating": _number,
    "judge_score": _unit_interval,
    "evaluation_name": _identifier,
}
_REQUIRED = {
    "inference": ("request_id", "timestamp", "model"),
    "feedback": ("timestamp", "model"),
}

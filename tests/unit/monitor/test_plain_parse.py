"""The C parser of plain messages (``plain_events`` in monitor/ingest/_decode.c) against msgspec, strictly.

For each message it returns None (msgspec's path then decodes it) or exactly the event msgspec decodes: the same
values of the same types (an int is not a float, -0.0 is not 0.0, a datetime has the same instant and offset). It
never takes a message msgspec rejects, nor one that names a key twice, and it leaks nothing.
"""

import gc
import json
import math
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.ingest import events as events_module
from monitor.ingest.events import PLAIN_KINDS, Event, Invalid, decode, decode_batch
from tests.components import c_extension

_decode = c_extension("monitor.ingest._decode")

_MAX_BYTES = 1_048_576
_BASE = b'{"request_id": "r", "timestamp": 1700000000, "model": "m"'


def _parse(raws, max_bytes=_MAX_BYTES):
    return _decode.plain_events(list(raws), events_module._UNSET_EVENT, events_module._PARSER_KINDS, max_bytes)


def _typed(value):
    """A value as its type and its exact content, at any depth: 1 and 1.0, 0.0 and -0.0, two offsets all differ."""
    if type(value) is dict:
        return "dict", [(_typed(key), _typed(item)) for key, item in value.items()]
    if type(value) is datetime:
        return "datetime", value.isoformat(), value.utcoffset()
    if type(value) is float:
        return "float", value.hex()
    return type(value).__name__, repr(value)


def _fields(event):
    return [(name, _typed(getattr(event, name))) for name in Event.__struct_fields__]


def _strictly(result):
    """A result of decode or decode_batch, its fields typed (an event decoded alone is a subclass of Event)."""
    return result if type(result) is Invalid else _fields(result)


def _assert_as_msgspec(raws, max_bytes=_MAX_BYTES):
    """Each message parsed is what msgspec decodes; return the parse."""
    parsed = _parse(raws, max_bytes)
    assert len(parsed) == len(raws)
    for raw, event in zip(raws, parsed, strict=True):
        if event is None:
            continue
        assert type(raw) is bytes and len(raw) <= max_bytes, raw
        assert type(event) is Event, raw
        try:
            expected = events_module._PLAIN_DECODER.decode(raw)
        except msgspec.DecodeError as error:
            pytest.fail(f"{raw!r} parsed, but msgspec rejects it: {error}")
        assert _fields(event) == _fields(expected), raw
        assert not events_module._first_repeated_key(raw), raw
    return parsed


def _member(key, value):
    return _BASE + b', "' + key.encode() + b'": ' + value.encode() + b"}"


# -- Values at the edges -----------------------------------------------------------------------------------------------

_NUMBERS = [
    "9007199254740992", "9007199254740993", "-9007199254740992", "-9007199254740993", "-0", "-0.0", "0.0", "0", "1",
    "1.0", "1e0", "2", "0.5", "1.2", "1.0000000000000002", "0.9999999999999999", "-1", "-0.5", "1e22", "1e23",
    "15e22", "0.1", "0.30000000000000004", "1.7976931348623157e308",
    "5e-324", "1e-22", "1e-23", "123456789012345678", "1234567890123456789012", "9007199254740992.0",
    "9007199254740991e1",
    "01", "-01", "00", "1.", ".5", "1e", "1e+", "1e-", "-", "+1", "1E5", "1e+5", "1e-5", "1.5e3", "0e0", "0e999",
    "1.00000000000000000000000000000000000", "0.00000000000000000000000000000000001", "1e0000000000000000000000001",
    "0x10", "1_0", "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "true", "false", "null", "1700000000.5",
    "1764000000.1234567", "0.12345678901234568", "1.7976931348623158e308", "1.7976931348623159e308", "1e-400",
    "-1e-400", "2.4703282292062328e-324", "2.4703282292062327e-324", "123456789012345678901234567890e-10",
    "0.1234567890123456789012345678901234567890", "1" + "0" * 400 + ".0", "0." + "0" * 400 + "1", "1e-1001",
    "9007199254740993.0", "-9007199254740993.0", "18446744073709551616.5", "1" * 120 + ".5", "0." + "1" * 120,
]  # fmt: skip
_NUMBER_FIELDS = ["latency_ms", "input_tokens", "score", "rating", "prediction", "label", "stream", "timestamp", "type"]


@pytest.mark.parametrize("name", _NUMBER_FIELDS)
def test_numbers_at_the_edges_parse_as_msgspec_reads_them(name):
    raws = [_member(name, number) for number in _NUMBERS]
    raws += [_member("features", '{"a": ' + number + "}") for number in _NUMBERS]
    _assert_as_msgspec(raws)


_ESCAPES = [
    r'"\"\\\/\b\f\n\r\t"', r'"\u0000"', r'"\u00e9\u00E9"', r'"\ud83d\ude00"', r'"\uD83D\uDE00"', r'"\ud83d"',
    r'"\ude00"',
    r'"\ud83d\u0041"', r'"\ude00\ud83d"', r'"\ud83dx"', r'"\ud83d\\ude00"', r'"\u12"', r'"\u12g4"', r'"\x41"', r'"\a"',
    r'"\u007f"', r'"\uFFFF"', r'"\uFEFF"', r'"\u"', r'"a\"', '"\\', '"\\\x01"', '"\\\u00e9"', '""', '"\x7f"',
]  # fmt: skip
_BYTES = [
    b'"\x01"', b'"\x1f"', b'"\t"', b'"\n"', b'"\xc3\xa9"', b'"\xf0\x9f\x98\x80"', b'"\xff"', b'"\xc0\xaf"',
    b'"\xe0\x80\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xc3"', b'"\xe2\x82"', b'"\x80"', b'"\x00"',
]  # fmt: skip
_LONG = [
    '"' + char * n + '"'
    for char in ["a", "\u00e9", "\U0001f600", r"\u00e9", r"\ud83d\ude00", r"\n"]
    for n in (255, 256, 257)
]
_STRINGS = [string.encode() for string in _ESCAPES + _LONG] + _BYTES


@pytest.mark.parametrize("name", ["request_id", "model", "prompt", "prediction", "label", "type", "timestamp"])
def test_strings_with_escapes_bad_utf8_or_of_the_longest_identifiers_parse_as_msgspec_reads_them(name):
    members = [b'"' + name.encode() + b'": ' + string for string in _STRINGS]
    raws = [b"{" + member + b"}" for member in members]
    raws += [_BASE + b", " + member + b"}" for member in members]
    raws += [_BASE + b', "features": {"a": ' + string + b"}}" for string in _STRINGS]
    raws += [_BASE + b', "segment": {"a": ' + string + b"}}" for string in _STRINGS]
    raws += [_BASE + b', "features": {' + string + b": 1}}" for string in _STRINGS]
    _assert_as_msgspec(raws)


def test_numbers_of_17_significant_digits_are_taken():
    """Python writes a float's shortest repr: ``time.time()`` and ``random()`` often take 17 digits, beyond 2**53."""
    numbers = ("0.12345678901234568", "1e-23", "0.1234567890123456789012345678901234567890")
    raws = [_member(name, number) for name in ("rating", "score") for number in numbers]
    raws += [_BASE.replace(b"1700000000", number) + b"}" for number in (b"1764000000.1234567", b"1764000000.123456789")]
    assert None not in _assert_as_msgspec(raws)


def test_timestamps_as_other_languages_write_them_are_taken():
    """.NET's "o" (7 digits), Go's RFC3339Nano and Java's Instant (9): rounded as msgspec rounds them (half up, by the
    7th digit)."""
    texts = ["2026-11-02T09:00:00.1234567Z", "2026-11-02T09:00:00.123456789+01:00", "2026-11-02T09:00:00.5+00:00",
             "2026-11-02t09:00:00.1234565z", "2026-11-02T09:00:00.1234564999Z",
             "2026-11-02T09:00:00.0000005Z"]  # fmt: skip
    raws = [json.dumps({"request_id": "r", "model": "m", "timestamp": text}).encode() for text in texts]
    assert None not in _assert_as_msgspec(raws)


def test_identifiers_are_counted_in_code_points():
    at_most = [_member("conversation_id", '"' + char * 256 + '"') for char in ["a", "\u00e9", "\U0001f600"]]
    assert None not in _assert_as_msgspec(at_most)
    assert _parse([_member("conversation_id", '"' + char * 257 + '"') for char in ["a", "\u00e9"]]) == [None, None]


def _timestamps():
    dates = ["2024-02-29", "2023-02-29", "1900-02-29", "2000-02-29", "2100-02-29", "2024-12-31", "2024-13-01",
             "2024-00-10", "2024-01-00", "2024-04-31", "0000-01-01", "0001-01-01", "9999-12-31",
             "2024-1-01"]  # fmt: skip
    times = ["23:59:59", "24:00:00", "23:59:60", "00:00:00", "12:60:00", "23:59:59.9", "00:00:00.123",
             "00:00:00.1234", "00:00:00.12345", "00:00:00.123456", "00:00:00.1234567", "23:59:59.9999995", "00:00:00.",
             "00:00"]  # fmt: skip
    offsets = ["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:30", "-05:30", "+0530", "+05", "",
               "+05:60", " Z", "+00:00Z"]  # fmt: skip
    return [f"{date}{t}{time}{offset}" for date in dates for t in "Tt _" for time in times for offset in offsets]


def test_timestamps_at_every_edge_parse_as_msgspec_reads_them():
    raws = [json.dumps({"request_id": "r", "model": "m", "timestamp": text}).encode() for text in _timestamps()]
    parsed = _assert_as_msgspec(raws)
    assert sum(event is not None for event in parsed) > 100  # the usual ones are taken


_MEMBERS = [
    b'"model": "n"', b'"features": {"a": 1, "a": 2}', b'"segment": {"a": "x", "a": null}', b'"mod\\u0065l": "x"',
    b'"features": {"a": 1, "\\u0061": 2}', b'"gen_ai.request.model": "x"', b'"\x7ftimestamp_ms": 1',
    b'"embedding": [1]', b'"zz": 1', b'"": 1', b'"features": {}', b'"features": null', b'"segment": {}',
    b'"features": {"a": {}}', b'"features": {"a": []}', b'"segment": {"a": 1}', b'"segment": {"a": true}',
    b'"segment": {"a": nul}', b'"features": {"a": 1,}', b'"features": {,}', b'"features": {"a" 1}', b"}", b"",
    b'"features": {"a": 1}x', b'"stream": True', b'"stream": tru', b'"stream": true1', b'"type": "Inference"',
    b'"type": "feedback"', b'"type": null', b'"type": "inference "', b'"features": {"": "", "\xc3\xa9": 1}',
]  # after those of _BASE
_STRUCTURES = [
    b"{}", b" {} ", b"{}x", b"{} {}", b"{}\x00", b"\xef\xbb\xbf{}", b"{\x0c}", b"{\x0b}", b'{"model": "m"\x0c}',
    b'{"model"\xc2\xa0: "m"}', b"[]", b"1", b'"x"', b"null", b"", b" ", b"{", b"}", b'{"model":}', b'{"model": "m",}',
    b'\t\n\r {\t\n\r "model"\t\n\r :\t\n\r "m"\t\n\r ,\t\n\r "features"\t\n\r :\t\n\r {\t\n\r "a"\t\n\r :\t\n\r 1'
    b"\t\n\r }\t\n\r }\t\n\r ",
    *[_BASE + b", " + member + b"}" for member in _MEMBERS],
]  # fmt: skip


def test_structures_and_repeated_keys_parse_as_msgspec_reads_them():
    truncated = [_BASE[:n] for n in range(len(_BASE) + 1)] + [(_BASE + b"}")[:-1]]
    parsed = _assert_as_msgspec(_STRUCTURES + truncated)
    assert parsed[0] is not None and parsed[1] is not None  # an empty object is plain: every field unset


def test_a_message_of_max_bytes_is_parsed_and_one_byte_more_is_not():
    raw = _BASE + b"}"
    assert _parse([raw], len(raw))[0] is not None
    assert _parse([raw], len(raw) - 1) == [None]


def test_what_is_not_bytes_is_not_parsed():
    raw = _BASE + b"}"
    assert _parse([None, bytearray(raw), memoryview(raw), raw.decode(), 1, raw])[:5] == [None] * 5


# -- Generated messages ------------------------------------------------------------------------------------------------

_KIND = dict(PLAIN_KINDS)
_ANY_NUMBER = (
    st.sampled_from(_NUMBERS)
    | st.integers(-(2**54), 2**54).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.builds("{}e{}".format, st.integers(0, 10**18), st.integers(-30, 30))
    | st.builds("{}.{}".format, st.integers(0, 10**10), st.integers(0, 10**10))
)
_ANY_STRING = (
    st.lists(st.text(max_size=4) | st.sampled_from(_ESCAPES).map(lambda escape: escape[1:-1]), max_size=5).map(
        lambda parts: '"' + "".join(parts) + '"'
    )
    | st.sampled_from(_LONG + ['"inference"', '"feedback"', '"m"'])
    | st.datetimes(timezones=st.timezones()).map(lambda moment: json.dumps(moment.isoformat()))
    | st.sampled_from(_timestamps()).map(json.dumps)
    | st.builds('"2024-12-31T23:59:59.{}{}"'.format, st.text("059", min_size=7, max_size=12), st.sampled_from("Zz"))
)
_FLAGS = st.sampled_from(["true", "false", "null", "tru", "nul"])


def _json_object(values, keys):
    return st.lists(st.tuples(keys, values), max_size=4).map(
        lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
    )


_NESTED_KEYS = st.sampled_from(['"a"', '"b"', '"a"', '"\\u0061"', '""', '"\u00e9"', '"x y"'])
_BY_KIND = {
    "type": st.sampled_from(['"inference"', '"feedback"', '"x"', '"inferenc\\u0065"']),
    "features": _json_object(_ANY_STRING | _ANY_NUMBER | _FLAGS | st.just("[1]"), _NESTED_KEYS),
    "segment": _json_object(_ANY_STRING | _FLAGS | _ANY_NUMBER, _NESTED_KEYS),
}
_KEYS = st.sampled_from(list(_KIND)) | st.sampled_from(["embedding", "gen_ai.request.model", "\x7ftimestamp_ms", "x"])
_SPACE = st.sampled_from(["", "", "", "", " ", "\t\n\r ", "\x0c", "\x0b", "\xa0"])


@st.composite
def _messages(draw):
    """A JSON object of fields (some repeated) with values of their kind or another, spaced, maybe cut or garbled."""
    names = draw(st.lists(_KEYS, max_size=10))
    if names and draw(st.booleans()):
        names.append(draw(st.sampled_from(names)))

    def value(name):
        kind = _KIND.get(name)
        if kind in _BY_KIND and draw(st.booleans()):
            return draw(_BY_KIND[kind])
        return draw(_ANY_STRING | _ANY_NUMBER | _FLAGS | _BY_KIND["features"])

    members = [draw(_SPACE) + json.dumps(name) + draw(_SPACE) + ":" + draw(_SPACE) + value(name) for name in names]
    raw = (draw(_SPACE) + "{" + ",".join(members) + draw(_SPACE) + "}" + draw(_SPACE)).encode("utf-8", "surrogatepass")
    garble = draw(st.integers(0, 9))
    if garble == 0:
        return raw[: draw(st.integers(0, len(raw)))]
    if garble == 1:
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=2)) + raw[at:]
    return raw


_BATCHES = st.lists(_messages() | st.binary(max_size=40) | st.just(None), max_size=6)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BATCHES, st.sampled_from([_MAX_BYTES, 300, 60]))
def test_a_parsed_message_is_what_msgspec_decodes(raws, max_bytes):
    _assert_as_msgspec(raws, max_bytes)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_BATCHES, st.sampled_from([math.inf, 1_700_000_000_000.0]), st.sampled_from([_MAX_BYTES, 300]))
def test_a_batch_decodes_to_what_each_message_decodes_to_field_by_field_and_type_by_type(raws, latest_ms, max_bytes):
    expected = [decode(raw or b"", max_bytes, latest_ms) for raw in raws]
    assert list(map(_strictly, decode_batch(raws, max_bytes, latest_ms))) == list(map(_strictly, expected))


# -- Taken, and leaking nothing ----------------------------------------------------------------------------------------

_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _ordinary(n):
    """Events as services write them: json.dumps of ids, usage, features, segment, prompt, RFC 3339 or epoch times."""
    events = []
    for i in range(n):
        moment = _START + timedelta(milliseconds=37 * i)
        timestamps = [moment.isoformat(), moment.isoformat(timespec="milliseconds")[:-6] + "Z", moment.timestamp()]
        events.append(
            {
                "request_id": f"3f1c9a7e-{i:012d}",
                "timestamp": timestamps[i % 3],
                "model": f"model-{i % 3}",
                "model_version": "2026-11-01",
                "provider": "openai",
                "latency_ms": round(650.0 + i * 0.7, 1),
                "ttft_ms": 120 + i,
                "input_tokens": 400 + i,
                "output_tokens": 150,
                "finish_reason": "stop",
                "error": None if i % 7 else "RateLimitError",
                "prompt": "How do I change the billing address on my account?\nThanks \u00e9",
                "features": {"topic": ["billing", "login"][i % 2], "temperature": 0.2, "retrieved": 3, "cached": False},
                "segment": {"locale": "en-US", "tier": None if i % 5 == 0 else "pro"},
                "stream": True,
                "score": 0.5,
            }
        )
    events.append({"type": "feedback", "request_id": "r", "timestamp": "2026-11-02T09:00:00-05:00", "model": "m",
                   "label": True, "rating": 4, "judge_score": 1, "evaluation_name": "helpfulness"})  # fmt: skip
    return [json.dumps(event).encode() for event in events]


def test_ordinary_events_are_taken_by_the_parser_and_decode_as_each_does_alone():
    raws = _ordinary(60)
    assert None not in _assert_as_msgspec(raws)
    assert list(map(_strictly, decode_batch(raws))) == [_strictly(decode(raw)) for raw in raws]


def test_parsing_leaks_no_reference_and_no_memory():
    strings = [b"{" + b'"' + name + b'": ' + string + b"}" for name in (b"request_id", b"model") for string in _STRINGS]
    raws = _ordinary(30) + _STRUCTURES + strings
    shared = [msgspec.UNSET, True, False, UTC, events_module._UNSET_EVENT]
    events = _parse(raws)
    shared += [events[0].model, events[0].provider, *events[0].features, events[0].features["topic"]]
    shared.append(events[30].timestamp.tzinfo)  # an offset's zone, made once
    del events
    for _ in range(20):
        _parse(raws)
    gc.collect()
    before = [sys.getrefcount(value) for value in shared]
    nones = sys.getrefcount(None)
    tracemalloc.start()
    try:
        _parse(raws)
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(2_000):
            _parse(raws)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    gc.collect()
    assert [sys.getrefcount(value) for value in shared] == before
    assert abs(sys.getrefcount(None) - nones) < 100  # the interpreter's own use drifts; one per parse would not
    assert grown < 200_000  # of ~300,000 messages parsed (some plain, some not), one object each would be 10 MB


# -- A template it cannot trust ----------------------------------------------------------------------------------------

_FOREIGN_COPIES = {
    "of-another-type": "def __copy__(self):\n        return 12345678901234567890",
    "that-empties-the-batch": "def __copy__(self):\n        raws.clear()\n        return Event()",
}


@pytest.mark.parametrize("copy", list(_FOREIGN_COPIES.values()), ids=list(_FOREIGN_COPIES))
def test_a_template_whose_copy_is_not_msgspecs_is_refused_not_written_into(copy):
    program = f"""
from monitor.ingest._decode import plain_events
from monitor.ingest.events import PLAIN_KINDS, Event
raws = [b'{{"model": "m", "prompt": "p"}}'] * 3
class Template(Event):
    {copy}
try:
    plain_events(raws, Template(), PLAIN_KINDS, 100)
except TypeError:
    print("refused")
"""
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip()) == (0, "refused"), run.stderr  # a crash is -11 (SIGSEGV)


def test_keys_in_changing_orders_and_names_that_prefix_each_other_are_each_read_as_what_they_name():
    """The parser tries first the key that followed the previous one last time: a key that only starts like it
    (model, model_version), or another order, is read as what it names."""
    orders = [
        b'{"model": "m", "model_version": "v", "request_id": "r", "timestamp": 1700000000}',
        b'{"model_version": "v", "model": "m", "timestamp": 1700000000, "request_id": "r"}',
        b'{"request_id": "r", "model_version": "v", "timestamp": 1700000000, "model": "m", "response_id": "x"}',
        b'{"request_id": "r", "model_version": "v", "timestamp": 1700000000, "model": "m", "response": "x"}',
        b'{"request_id": "r", "model_version": "v", "timestamp": 1700000000, "model": "m", "model": "n"}',
        b'{"request_id": "r", "model_version": "v", "timestamp": 1700000000, "modelx": "m"}',
        b'{"request_id": "r", "model_version": "v", "timestamp": 1700000000, "model"  : "m"}',
    ]
    parsed = _assert_as_msgspec(orders * 3)

    assert [event is None for event in parsed[:7]] == [False, False, False, False, True, False, False]
    assert [event.model for event in parsed[:7] if event is not None] == ["m", "m", "m", "m", msgspec.UNSET, "m"]


@pytest.mark.parametrize(
    "members",
    [
        b'"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"',
        b'"traceparent": "caf\\u00e9 \\n", "span_id": 7, "sampled": true, "parent": null, "w": -1.5e3, "f": false',
        b'"traceparent": "' + "caf\u00e9".encode() + b'"',
        b'"gen_ai_request_model": "m2"',  # not an alias (those have dots): a key like any other
    ],
)
def test_a_key_no_field_names_with_a_scalar_value_is_dropped_as_msgspec_drops_it(members):
    raw = _BASE + b", " + members + b"}"

    (event,) = _assert_as_msgspec([raw])

    assert event is not None
    assert _strictly(decode_batch([raw])[0]) == _strictly(decode(raw))


@pytest.mark.parametrize(
    "members",
    [
        b'"trace_id": "a", "trace_id": "b"',  # named twice: duplicate_key
        b'"trace_id": {"a": 1}',  # an object or array: its keys would need checking for repeats
        b'"trace_id": [1, 2]',
        b'"gen_ai.request.model": "m2"',  # an alias, which decode moves onto its field
        b'"\x7ftimestamp_ms": 5',  # the decoder's own field
        b'"trace_id": "\\x"',  # not JSON
        b'"trace_id": "\xff"',  # not UTF-8
        b'"trace_id": 1e999',  # beyond a double
        b", ".join(b'"k%d": 1' % i for i in range(17)),  # more unknown keys than the parser remembers
    ],
)
def test_a_key_no_field_names_with_anything_else_leaves_its_message_to_msgspec(members):
    raw = _BASE + b", " + members + b"}"

    assert _parse([raw]) == [None]
    assert _strictly(decode_batch([raw])[0]) == _strictly(decode(raw))

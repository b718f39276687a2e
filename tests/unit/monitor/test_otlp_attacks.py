"""Attacks on the OpenTelemetry topics and the trace ids they bring: what a hostile or careless producer can send
(spans, OTLP/JSON documents, JSON events naming a ``trace_id``) and what it must not do to the events, the dead
letters and the exemplars.

Each test checks what comes out against the test's own record of what it sent. The tests marked ``xfail`` document
defects whose fix is a design decision (see their reasons).
"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ingest.events import Invalid, decode, decode_batch
from tests.unit.monitor.test_plain_parse import _BASE, _strictly

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

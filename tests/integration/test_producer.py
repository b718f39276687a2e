"""The producer SDK against a real Kafka-protocol broker (Tansu), read back with a raw kafka-python consumer.

What serving code relies on: every event it hands to :class:`EventProducer`
arrives once, keyed by model, and decodes with the daemon's own decoder to
the fields it gave; prompt and response text stay out unless asked for; an
event the daemon would reject is never sent but counted with the daemon's
reason; with the broker down the request path pays microseconds, never the
broker's timeouts, and every dropped event is counted; events queued while
the broker is down are delivered when it comes back; and no argument, however
wrong, raises into the request.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter, defaultdict

import pytest
from kafka import KafkaConsumer
from msgspec import UNSET

from monitor.demo.broker import EmbeddedBroker, free_port
from monitor.ingest.events import Invalid, decode
from monitor.ingest.kafka import create_topics
from monitor.producer import EventProducer, ProducerStats
from tests.components import wait_for

MODELS = ("support-bot", "rag-search", "summarizer")


@pytest.fixture
def make_producer():
    """``EventProducer(...)`` that is closed at the end of the test even when it fails half-way (an open
    client connection would hold up the session broker's shutdown)."""
    producers = []

    def make(*args, **kwargs) -> EventProducer:
        producers.append(EventProducer(*args, **kwargs))
        return producers[-1]

    yield make
    for producer in producers:
        producer.close(timeout_s=1)


def read_topic(bootstrap_servers: str, topic: str, expected: int, settle_ms: int = 500) -> list:
    """Every message on ``topic`` (all partitions, from the start): ``expected`` of them within seconds,
    plus any that come in ``settle_ms`` more (a duplicate or an event that should not have been sent)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest")
    received = []

    def fetch(timeout_ms: int) -> int:
        batches = consumer.poll(timeout_ms=timeout_ms).values()
        received.extend(message for messages in batches for message in messages)
        return len(received)

    try:
        wait_for(lambda: fetch(200) >= expected, 15, f"{expected} messages on {topic}", every_s=0)
        fetch(settle_ms)
        return received
    finally:
        consumer.close()


def accounted(stats) -> int:
    """Calls the stats account for: each one ends sent or dropped for exactly one reason."""
    return stats.sent + sum(stats.dropped.values())


def after_queue(stats) -> int:
    """Accepted events the stats account for: sent, or dropped after they were queued."""
    # build_error and invalid:non_finite are found in the call, before the queue;
    # callers of this helper only use it where neither happens.
    return stats.sent + sum(count for reason, count in stats.dropped.items() if reason != "queue_full")


def daemon_reason(event: dict) -> str:
    """The reason the daemon gives for ``event`` as a serving process would write it (stdlib json)."""
    verdict = decode(json.dumps({"timestamp": time.time(), **event}).encode())
    assert type(verdict) is Invalid, f"the daemon accepts {event}"
    return verdict.reason


# --- 1. round trip -----------------------------------------------------------------------------


def inference_fields(i: int) -> dict:
    return {
        "latency_ms": 100.0 + i,
        "ttft_ms": 12.5,
        "input_tokens": 10 + i,
        "output_tokens": 20 + i,
        "model_version": "2026-01",
        "finish_reason": "stop",
        "stream": i % 2 == 0,
        "features": {"lang": "en", "length": i, "ratio": 0.25, "cached": True, "empty": None},
        "segment": {"tier": "gold" if i % 2 else "free", "region": None},
        "embedding": [0.5, -1.25, float(i)],
        "prediction": "yes",
        "score": 0.75,
    }


def feedback_fields(i: int) -> dict:
    return {"label": "correct", "rating": 4.0 + i, "judge_score": 0.5, "evaluation_name": "helpfulness"}


def test_events_arrive_once_keyed_by_model_and_decode_to_the_fields_given(kafka_broker, new_topic, make_producer):
    topic = new_topic(partitions=3)
    producer = make_producer(kafka_broker.bootstrap_servers, topic, buffer_size=1000)
    given: dict[tuple[str, str], tuple[str, dict]] = {}
    started = time.time()
    for i in range(45):
        model = MODELS[i % 3]
        fields = inference_fields(i)
        assert producer.inference(request_id=f"r{i}", model=model, **fields) is True
        given["inference", f"r{i}"] = (model, fields)
        if i % 5 == 0:
            fields = feedback_fields(i)
            assert producer.feedback(request_id=f"r{i}", model=model, **fields) is True
            given["feedback", f"r{i}"] = (model, fields)
    wait_for(lambda: producer.stats().sent == len(given), 20, "the producer to hand every event to Kafka")
    stats = producer.close(timeout_s=5)
    assert stats.queued == stats.sent == len(given)
    assert stats.dropped == {}

    messages = read_topic(kafka_broker.bootstrap_servers, topic, expected=len(given))
    assert len(messages) == len(given)
    seen = Counter()
    partitions_of = defaultdict(set)
    for message in messages:
        event = decode(message.value)
        assert type(event) is not Invalid, f"{message.value!r} does not decode: {event}"
        kind, request_id = event.type, event.request_id
        seen[kind, request_id] += 1
        model, fields = given[kind, request_id]
        assert event.model == model
        assert message.key == model.encode()
        partitions_of[model].add(message.partition)
        for name, value in fields.items():
            got = getattr(event, name)
            assert got == value, f"{kind} {request_id}: {name} = {got!r}, given {value!r}"
        assert started - 1 <= event.timestamp_ms / 1000 <= time.time() + 1
    assert seen == Counter({key: 1 for key in given}), "every event exactly once"
    assert Counter(kind for kind, _ in seen) == {"inference": 45, "feedback": 9}
    assert {model: len(partitions) for model, partitions in partitions_of.items()} == {model: 1 for model in MODELS}


# --- 2. privacy --------------------------------------------------------------------------------


@pytest.mark.parametrize("send_text", [False, True])
def test_prompt_and_response_leave_the_process_only_with_send_text(kafka_broker, new_topic, make_producer, send_text):
    topic = new_topic()
    prompt, response = f"PROMPT-{uuid.uuid4().hex}", f"RESPONSE-{uuid.uuid4().hex}"
    producer = make_producer(kafka_broker.bootstrap_servers, topic, send_text=send_text)
    assert producer.inference(request_id="r1", model="bot", latency_ms=5.0, prompt=prompt, response=response)
    assert producer.feedback(request_id="r1", model="bot", label="ok", prompt=prompt, response=response)
    wait_for(lambda: producer.stats().sent == 2, 20, "both events to be sent")
    producer.close(timeout_s=5)

    messages = read_topic(kafka_broker.bootstrap_servers, topic, expected=2)
    assert len(messages) == 2
    raw = b"".join(message.value + (message.key or b"") for message in messages)
    events = [decode(message.value) for message in messages]
    if send_text:
        assert raw.count(prompt.encode()) == 2 and raw.count(response.encode()) == 2
        assert all(event.prompt == prompt and event.response == response for event in events)
    else:
        assert prompt.encode() not in raw and response.encode() not in raw
        assert b"PROMPT-" not in raw and b"RESPONSE-" not in raw
        assert all(event.prompt is UNSET and event.response is UNSET for event in events)
        assert {event.type for event in events} == {"inference", "feedback"}


# --- 3. validation -----------------------------------------------------------------------------

#: Events the daemon rejects, as (kind, fields, the daemon's reason).
REJECTED = [
    ("inference", {"latency_ms": -5.0}, "negative"),
    ("inference", {"latency_ms": "fast"}, "wrong_type"),
    ("inference", {"latency_ms": 10**400}, "out_of_range"),  # an integer beyond 2**53
    ("inference", {"input_tokens": -1}, "negative"),
    ("inference", {"output_tokens": 1.5}, "wrong_type"),
    ("inference", {"score": 1.5}, "out_of_range"),
    ("inference", {"features": {"nested": {"a": 1}}}, "non_scalar_feature"),
    ("inference", {"segment": {"tier": ["a", "b"]}}, "non_scalar_feature"),
    ("inference", {"timestamp": "yesterday"}, "bad_timestamp"),
    ("inference", {"model_version": "v" * 300}, "too_long"),
    ("inference", {"stream": "yes"}, "wrong_type"),
    ("feedback", {"judge_score": 2.0}, "out_of_range"),
    ("feedback", {"rating": "great"}, "wrong_type"),
]

#: Fields that cannot be encoded as JSON at all.
UNENCODABLE = [{"latency_ms": object()}, {"features": {"x": object()}}, {"features": {(1, 2): "tuple key"}}]


def test_events_the_daemon_would_reject_are_counted_with_its_reason_and_never_sent(
    kafka_broker, new_topic, make_producer
):
    topic = new_topic()
    producer = make_producer(kafka_broker.bootstrap_servers, topic)
    expected = Counter()
    for n, (kind, fields, reason) in enumerate(REJECTED):
        assert daemon_reason({"type": kind, "request_id": f"bad{n}", "model": "bot", **fields}) == reason
        call = producer.inference if kind == "inference" else producer.feedback
        assert call(request_id=f"bad{n}", model="bot", **fields) is True  # queued; judged off the request path
        expected[f"invalid:{reason}"] += 1
    for n, fields in enumerate(UNENCODABLE):  # found in the call itself, which encodes the event
        assert producer.inference(request_id=f"unencodable{n}", model="bot", **fields) is False
        expected["build_error"] += 1
    assert producer.inference(request_id="good", model="bot", latency_ms=1.0) is True

    calls = len(REJECTED) + len(UNENCODABLE) + 1
    wait_for(lambda: accounted(producer.stats()) == calls, 20, "every event to be judged")
    stats = producer.close(timeout_s=5)
    assert stats.dropped == dict(expected)
    assert stats.sent == 1
    assert stats.queued == calls - len(UNENCODABLE)

    messages = read_topic(kafka_broker.bootstrap_servers, topic, expected=1)
    assert [decode(message.value).request_id for message in messages] == ["good"]


def test_an_event_over_max_event_bytes_is_counted_as_oversized(kafka_broker, new_topic, make_producer):
    topic = new_topic()
    producer = make_producer(kafka_broker.bootstrap_servers, topic, send_text=True, max_event_bytes=2000)
    assert producer.inference(request_id="big", model="bot", prompt="x" * 5000) is True
    assert producer.inference(request_id="small", model="bot", prompt="x" * 100) is True
    wait_for(lambda: accounted(producer.stats()) == 2, 20, "both events to be judged")
    stats = producer.close(timeout_s=5)
    assert stats.dropped == {"invalid:oversized": 1}
    assert stats.sent == 1
    assert [decode(m.value).request_id for m in read_topic(kafka_broker.bootstrap_servers, topic, 1)] == ["small"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_float_is_counted_as_non_finite_and_not_sent(kafka_broker, new_topic, make_producer, value):
    topic = new_topic()
    assert daemon_reason({"request_id": "r1", "model": "bot", "latency_ms": value}) == "non_finite"
    producer = make_producer(kafka_broker.bootstrap_servers, topic)
    # JSON has no NaN (msgspec would write null, "absent"), so the call itself refuses it
    assert producer.inference(request_id="nan", model="bot", latency_ms=value) is False
    assert producer.inference(request_id="good", model="bot", latency_ms=1.0) is True
    wait_for(lambda: accounted(producer.stats()) == 2, 20, "both events to be judged")
    stats = producer.close(timeout_s=5)
    sent = [decode(m.value) for m in read_topic(kafka_broker.bootstrap_servers, topic, 1)]
    assert [event.request_id for event in sent] == ["good"], f"sent: {sent}"
    assert stats.dropped == {"invalid:non_finite": 1}


def test_a_self_referential_value_is_a_build_error_and_the_sender_goes_on(kafka_broker, new_topic, make_producer):
    topic = new_topic()
    producer = make_producer(kafka_broker.bootstrap_servers, topic)
    assert producer.inference(request_id="before", model="bot", latency_ms=1.0) is True
    wait_for(lambda: producer.stats().sent == 1, 20, "the first event to be sent")
    loop: list = []
    loop.append(loop)
    assert producer.inference(request_id="loop", model="bot", features={"x": loop}) is False
    assert producer.inference(request_id="after", model="bot", latency_ms=2.0) is True
    wait_for(lambda: accounted(producer.stats()) == 3, 3, "the event after the bad one to be sent")
    stats = producer.close(timeout_s=5)
    assert stats.dropped == {"build_error": 1}
    assert stats.sent == 2


# --- 4. broker down ----------------------------------------------------------------------------


def test_with_the_broker_down_calls_never_block_and_drops_are_counted():
    buffer_size, calls = 100, 5000
    producer = EventProducer(f"127.0.0.1:{free_port()}", "nowhere", buffer_size=buffer_size)
    durations = []
    accepted = 0
    for i in range(calls):
        started = time.perf_counter()
        accepted += producer.inference(request_id=f"r{i}", model="bot", latency_ms=float(i))
        durations.append(time.perf_counter() - started)

    assert max(durations) < 0.050, f"slowest call {max(durations) * 1000:.1f} ms"
    assert sum(durations) < 1.0, f"{calls} calls took {sum(durations):.2f} s"
    stats = producer.stats()
    assert accepted in (buffer_size, buffer_size + 1)  # + the one the sender thread may hold
    assert stats.queued == accepted
    assert stats.sent == 0
    assert stats.dropped == {"queue_full": calls - accepted}
    assert stats.queued + stats.dropped["queue_full"] == calls

    started = time.monotonic()
    stats = producer.close(timeout_s=2)
    assert time.monotonic() - started < 2 + 2.5  # its budget, a connection attempt in flight, the client's close
    assert stats.sent == 0
    assert stats.dropped["queue_full"] == calls - accepted
    assert stats.dropped["closed"] >= buffer_size  # the queue's contents; see the next test for the held one


def test_close_with_the_broker_down_accounts_for_every_accepted_event():
    producer = EventProducer(f"127.0.0.1:{free_port()}", "nowhere", buffer_size=10)
    assert producer.inference(request_id="first", model="bot") is True
    time.sleep(0.3)  # the sender thread takes it and starts connecting
    for i in range(20):
        producer.inference(request_id=f"r{i}", model="bot")
    started = time.monotonic()
    stats = producer.close(timeout_s=1)
    assert time.monotonic() - started < 2.0
    assert stats.queued == 11
    assert after_queue(stats) == stats.queued, f"accepted {stats.queued}, accounted for {after_queue(stats)}: {stats}"


# --- 5. broker comes back ----------------------------------------------------------------------


def test_events_queued_while_the_broker_is_down_are_delivered_when_it_comes_back():
    port = free_port()
    topic = "comes-back"
    producer = EventProducer(f"127.0.0.1:{port}", topic, buffer_size=100)
    for i in range(5):
        assert producer.inference(request_id=f"r{i}", model=MODELS[i % 3], latency_ms=float(i)) is True
    time.sleep(0.5)  # the sender is retrying against the closed port meanwhile
    assert producer.stats().sent == 0

    broker = EmbeddedBroker(port=port).start()
    try:
        create_topics({"bootstrap_servers": broker.bootstrap_servers}, {topic: 1})
        up = time.monotonic()
        received = read_topic(broker.bootstrap_servers, topic, expected=5)  # waits on the consumer
        delivered_after_s = time.monotonic() - up
        stats = producer.close(timeout_s=5)
    finally:
        broker.stop()
    assert sorted(decode(message.value).request_id for message in received) == [f"r{i}" for i in range(5)]
    assert all(message.key == decode(message.value).model.encode() for message in received)
    assert stats == ProducerStats(queued=5, sent=5, dropped={})
    assert delivered_after_s < 15


def _producer_whose_broker_went_away(**client_settings: object) -> EventProducer:
    """A producer that delivered one event to a broker that has stopped since."""
    broker = EmbeddedBroker().start()
    try:
        create_topics({"bootstrap_servers": broker.bootstrap_servers}, {"goes-away": 1})
        producer = EventProducer(broker.bootstrap_servers, "goes-away", client_settings=client_settings)
        assert producer.inference(request_id="delivered", model="bot") is True
        wait_for(lambda: producer.stats().sent == 1, 20, "the first event to be sent")
        time.sleep(0.5)  # acknowledged
    finally:
        broker.stop()
    return producer


def test_an_event_lost_after_the_handoff_is_counted_once():
    producer = _producer_whose_broker_went_away(
        delivery_timeout_ms=2000, request_timeout_ms=1000, linger_ms=0, retries=0
    )
    assert producer.inference(request_id="lost", model="bot") is True
    wait_for(lambda: producer.stats().dropped.get("send_failed"), 20, "the client to give up on the second event")
    stats = producer.close(timeout_s=2)
    assert stats.queued == 2
    assert after_queue(stats) == stats.queued, f"2 events accepted, accounted for {after_queue(stats)}: {stats}"


def test_close_returns_in_time_when_the_broker_died_with_an_event_in_flight():
    """With the client's default delivery timeout (two minutes), kafka-python's own close raises on its timeout and
    leaves its sender thread running; the SDK's close returns in time and accounts for the event."""
    producer = _producer_whose_broker_went_away()
    assert producer.inference(request_id="in-flight", model="bot") is True
    time.sleep(1)  # handed to the client, which cannot deliver it
    started = time.monotonic()
    stats = producer.close(timeout_s=2)
    assert time.monotonic() - started < 8
    assert stats.queued == 2
    assert after_queue(stats) == stats.queued, f"2 events accepted, accounted for {after_queue(stats)}: {stats}"


# --- 6. the request path never raises ----------------------------------------------------------


class ExplodingStr(str):
    def encode(self, *args, **kwargs):
        raise ValueError("cannot encode")


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__


WEIRD_CALLS = [
    # (kind, keyword arguments, what the call returns, what becomes of the event)
    ("inference", {"request_id": "r", "model": None}, False, "build_error"),
    ("inference", {"request_id": "r", "model": 123}, False, "build_error"),
    ("feedback", {"request_id": "r", "model": b"bytes-model"}, False, "build_error"),
    ("inference", {"request_id": "r", "model": ExplodingStr("bot")}, False, "build_error"),
    ("inference", {"request_id": 123, "model": "bot"}, True, "invalid:wrong_type"),
    ("inference", {"request_id": None, "model": "bot"}, True, "invalid:missing_field"),
    ("feedback", {"request_id": ["a"], "model": "bot"}, True, "invalid:wrong_type"),
    ("inference", {"request_id": "r", "model": "bot", "latency_ms": Unprintable()}, False, "build_error"),
    ("inference", {"request_id": "r", "model": "bot", "features": Unprintable()}, False, "build_error"),
    ("inference", {"request_id": "r", "model": "bot", "latency_ms": lambda: 1}, False, "build_error"),
    ("inference", {"request_id": "r", "model": "bot", "segment": {"a": Unprintable()}}, False, "build_error"),
    ("inference", {"request_id": "r", "model": "bot", "features": "not a dict"}, True, "invalid:wrong_type"),
    ("inference", {"request_id": "r", "model": "bot", "type": "feedback"}, True, "sent"),  # inference() sets type
    ("inference", {"request_id": "r", "model": "bot", "prompt": Unprintable()}, True, "sent"),  # stripped unread
    ("inference", {"request_id": "r", "model": "modèle-ü", "latency_ms": 1}, True, "sent"),
]


def test_bad_arguments_never_raise_and_every_call_is_accounted_for(kafka_broker, new_topic, make_producer):
    topic = new_topic()
    producer = make_producer(kafka_broker.bootstrap_servers, topic)
    outcomes = Counter()
    for kind, kwargs, returns, outcome in WEIRD_CALLS:
        call = producer.inference if kind == "inference" else producer.feedback
        assert call(**kwargs) is returns, f"{kind} with {list(kwargs)}"
        outcomes[outcome] += 1
    wait_for(lambda: accounted(producer.stats()) == len(WEIRD_CALLS), 20, "every call to be accounted for")
    stats = producer.close(timeout_s=5)
    assert stats.queued == sum(returns for _, _, returns, _ in WEIRD_CALLS)
    assert stats.sent == outcomes.pop("sent")
    assert stats.dropped == dict(outcomes)
    assert accounted(stats) == len(WEIRD_CALLS)
    messages = read_topic(kafka_broker.bootstrap_servers, topic, expected=stats.sent)
    assert len(messages) == stats.sent
    assert {message.key for message in messages} == {b"bot", "modèle-ü".encode()}

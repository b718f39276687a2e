"""``driftwarden replay --from-kafka TOPIC --since ... --until ...`` against the real broker.

Messages carry Kafka timestamps one second apart, and event timestamps a day
earlier (so a range that read the events' own time would find nothing). The
oracle is what the test produced: exactly the messages stamped in the range
are counted, by model and by rejection reason, and dead-lettered with where
they came from; the daemon's consumer group holds no offset afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer

from monitor.cli import main
from monitor.config import parse_config
from monitor.ingest.backfill import TopicRange
from tests.components import committed_offset, statistics
from tests.otel import encode, expected_calls, genai_calls

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the first message's Kafka timestamp
N = 90
PARTITIONS = 4  # the last one stays empty
MALFORMED = {7: b"not json", 25: b"[1, 2]", 33: None, 61: b"{}"}  # message number: value (None: a tombstone)
REASONS = {b"not json": "not_json", b"[1, 2]": "not_object", None: "not_json", b"{}": "missing_field"}


def _iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).isoformat()


def _value(i: int) -> bytes | None:
    if i in MALFORMED:
        return MALFORMED[i]
    model = ("chat", "rag", "summarizer")[i % 3]
    event = {"request_id": f"r{i}", "timestamp": T0_MS // 1000 - 86_400 + i, "model": model, "latency_ms": 10 + i}
    return json.dumps(event).encode()


@pytest.fixture(scope="module")
def topic(kafka_broker):
    """One topic of ``N`` messages stamped ``T0_MS + i`` seconds, spread over all partitions but the last, produced
    in batches of several messages (a broker may answer a batch's offsets differently from a message's)."""
    from monitor.ingest.kafka import create_topics

    name = f"backfill-{uuid.uuid4().hex[:8]}"
    create_topics({"bootstrap_servers": kafka_broker.bootstrap_servers}, {name: PARTITIONS})
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, linger_ms=50)
    for i in range(N):
        partition, timestamp_ms = i % (PARTITIONS - 1), T0_MS + i * 1000
        producer.send(name, key=f"k{i}".encode(), value=_value(i), partition=partition, timestamp_ms=timestamp_ms)
        if i % 10 == 9:
            producer.flush()
    producer.close()
    return name


@pytest.fixture
def config_file(kafka_broker, tmp_path):
    path = tmp_path / "driftwarden.yaml"
    kafka = {"bootstrap_servers": kafka_broker.bootstrap_servers, "group_id": "backfill-daemon"}
    path.write_text(yaml.safe_dump({"kafka": kafka, "state": {"dir": str(tmp_path / "state")}}))
    return path


def _replay(config_file, *arguments: str) -> int:
    return main(["replay", "--config", str(config_file), *arguments])


def test_exactly_the_messages_stamped_in_the_range_are_counted_and_dead_lettered(
    kafka_broker, topic, config_file, tmp_path, capsys
):
    first, last = 20, 62  # [since, until): messages 20 to 61
    metrics, dead_letters = tmp_path / "out.prom", tmp_path / "dead.jsonl"
    since, until = _iso(T0_MS + first * 1000), _iso(T0_MS + last * 1000 - 500)
    arguments = ["--from-kafka", topic, "--since", since, "--until", until]
    outputs = ["--metrics-file", str(metrics), "--dead-letter-file", str(dead_letters)]
    assert _replay(config_file, *arguments, *outputs) == 0

    in_range = range(first, last)
    rejected = {i for i in in_range if i in MALFORMED}
    valid = Counter(json.loads(_value(i))["model"] for i in in_range if i not in rejected)
    assert f"replayed {len(in_range)} messages ({len(rejected)} events rejected)" in capsys.readouterr().out
    counted = statistics(metrics.read_text())
    assert {labels[0][1]: n for (name, labels), n in counted.items() if name == "driftwarden_events_total" and n} == {
        model: float(n) for model, n in valid.items()
    }  # every model's inference count (no feedback was sent)
    letters = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert sorted((letter["partition"], letter["offset"], letter["reason"]) for letter in letters) == sorted(
        (i % (PARTITIONS - 1), i // (PARTITIONS - 1), REASONS[MALFORMED[i]]) for i in rejected
    )
    assert {letter["topic"] for letter in letters} == {topic}


def test_the_daemons_group_is_neither_joined_nor_committed(kafka_broker, topic, config_file):
    assert _replay(config_file, "--from-kafka", topic, "--since", _iso(T0_MS), "--until", _iso(T0_MS + N * 1000)) == 0

    # (Tansu 0.6 lists no group in ListGroups, even one with members: what a group holds is checked instead)
    committed = [committed_offset(kafka_broker.bootstrap_servers, "backfill-daemon", topic, p) for p in range(4)]
    assert committed == [None] * PARTITIONS


@pytest.mark.parametrize(
    ("since_ms", "until_ms", "n_expected"),
    [
        (T0_MS - 3_600_000, T0_MS, 0),  # before every message
        (T0_MS + N * 1000, T0_MS + 3_600_000, 0),  # after every message
        (T0_MS + 10_200, T0_MS + 10_800, 0),  # between two messages
        (T0_MS + 10_000, T0_MS + 10_001, 1),  # one message
        (T0_MS - 3_600_000, T0_MS + 3_600_000, N),  # the whole topic
        (-3_600_000, T0_MS + 10_000, 10),  # from before the epoch (Kafka's time lookup refuses negative times)
    ],
)
def test_ranges_at_the_edges(kafka_broker, topic, since_ms, until_ms, n_expected):
    config = parse_config({"kafka": {"bootstrap_servers": kafka_broker.bootstrap_servers}})
    polls = TopicRange(config.kafka, topic, since_ms, until_ms).polls()
    assert sum(len(batch.values) for batches in polls for batch in batches) == n_expected


def test_messages_appended_during_the_backfill_are_not_read(kafka_broker, new_topic):
    """The end is the partition's as the backfill starts: a topic that keeps growing does not keep it reading."""
    grown = new_topic()
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, linger_ms=50)
    for i in range(20):
        producer.send(grown, value=b"{}", timestamp_ms=T0_MS + i)
    producer.flush()
    config = parse_config({"kafka": {"bootstrap_servers": kafka_broker.bootstrap_servers}})
    polls = TopicRange(config.kafka, grown, T0_MS, T0_MS + 3_600_000, batch_size=5).polls()
    n_read = sum(len(batch.values) for batch in next(polls))
    for i in range(20, 30):
        producer.send(grown, value=b"{}", timestamp_ms=T0_MS + i)
    producer.close()
    n_read += sum(len(batch.values) for batches in polls for batch in batches)
    assert 5 <= n_read == 20


def test_a_topic_that_does_not_exist_is_an_error_and_is_not_created(kafka_broker, config_file, capsys):
    arguments = ["--from-kafka", "no-such-topic", "--since", _iso(T0_MS), "--until", _iso(T0_MS + 1000)]
    assert _replay(config_file, *arguments) == 1
    assert "no topic 'no-such-topic'" in capsys.readouterr().err
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers, allow_auto_create_topics=False)
    try:
        assert "no-such-topic" not in consumer.topics()
    finally:
        consumer.close()


def test_no_broker_is_an_error_that_says_where_it_looked(tmp_path, capsys):
    from monitor.demo.broker import free_port

    address = f"127.0.0.1:{free_port()}"
    path = tmp_path / "driftwarden.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": address}, "state": {"dir": str(tmp_path)}}))
    assert _replay(path, "--from-kafka", "t", "--since", _iso(T0_MS), "--until", _iso(T0_MS + 1000)) == 1
    assert f"Kafka at {address}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "must come before --until"),
        (["--since", "2026-01-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "must come before --until"),
        (["--since", "2026-01-01T00:00:00Z"], "takes --since and --until"),
        (["--since", "1767225600", "--until", "1767225601"], "not an ISO 8601 time"),  # seconds or milliseconds?
        (["--since", "yesterday", "--until", "2026-01-01"], "not an ISO 8601 time"),
    ],
)
def test_a_range_that_makes_no_sense_is_refused_before_kafka_is_asked(config_file, capsys, arguments, says):
    assert _exit_code(config_file, "--from-kafka", "t", *arguments) == 2
    assert says in capsys.readouterr().err


def test_a_file_and_a_topic_together_are_refused(config_file, capsys):
    arguments = ["events.jsonl", "--from-kafka", "t", "--since", "2026-01-01", "--until", "2026-01-02"]
    assert _exit_code(config_file, *arguments) == 2
    assert "no EVENTS.jsonl" in capsys.readouterr().err
    assert _exit_code(config_file, "events.jsonl", "--since", "2026-01-01") == 2
    assert _exit_code(config_file) == 2


def _exit_code(config_file, *arguments: str) -> int:
    """What ``replay`` exits with, whether argparse or the command refuses the line."""
    try:
        return _replay(config_file, *arguments)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize(
    ("since", "until", "n_expected"),
    [
        ("2026-01-01T00:00:10.0004Z", "2026-01-01T00:00:12Z", 1),  # message 10 is before --since: 11 only
        ("2026-01-01T00:00:10Z", "2026-01-01T00:00:11.0004Z", 2),  # message 11 is before --until: 10 and 11
        ("2026-01-01T00:00:10.001Z", "2026-01-01T00:00:12.001Z", 2),  # 11, 12: a millisecond is exact (no float)
    ],
)
def test_a_time_between_two_milliseconds_bounds_the_range_as_it_says(
    topic, config_file, capsys, since, until, n_expected
):
    """Kafka stamps whole milliseconds: a message is at or after ``--since`` if it is at or after the millisecond
    above it, and before ``--until`` if before the millisecond above it. Rounding to the nearest one took a message
    stamped before ``--since`` and left out one before ``--until``."""
    assert _replay(config_file, "--from-kafka", topic, "--since", since, "--until", until) == 0
    assert f"replayed {n_expected} messages" in capsys.readouterr().out


def test_a_topic_of_traces_is_replayed_as_its_config_encodes_it_not_as_a_file_would_be(
    kafka_broker, new_topic, tmp_path, capsys
):
    """A file's encoding is given on the command line (json by default); a topic's range is decoded as the config
    names the topic's encoding: OpenTelemetry requests, each call counted under its model (the SDK's spans are the
    oracle)."""
    traces = new_topic()
    spans = genai_calls(20, T0_MS // 1000 - 86_400)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    for start in range(0, len(spans), 15):
        producer.send(traces, value=encode(spans[start : start + 15], "otlp_proto"), timestamp_ms=T0_MS + start)
    producer.close()
    path, metrics = tmp_path / "driftwarden.yaml", tmp_path / "out.prom"
    topics = [{"name": traces, "encoding": "otlp_proto"}]
    kafka = {"bootstrap_servers": kafka_broker.bootstrap_servers, "topics": topics}
    path.write_text(yaml.safe_dump({"kafka": kafka, "state": {"dir": str(tmp_path / "state")}}))
    arguments = ["--from-kafka", traces, "--since", _iso(T0_MS), "--until", _iso(T0_MS + 60_000)]

    assert _replay(path, *arguments, "--metrics-file", str(metrics)) == 0

    n_messages = -(-len(spans) // 15)
    assert f"replayed {n_messages} messages (0 events rejected)" in capsys.readouterr().out
    counted = statistics(metrics.read_text())
    assert {
        labels[0][1]: n
        for (name, labels), n in counted.items()
        if name == "driftwarden_events_total" and labels[1] == ("type", "inference")
    } == {model: float(n) for model, n in Counter(call.model for call in expected_calls(spans)).items()}

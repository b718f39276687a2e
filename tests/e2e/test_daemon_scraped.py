"""The daemon against real parts: events through a real broker, /metrics scraped by a real Prometheus.

Events come from raw kafka-python writes (valid and malformed) and from the
producer SDK. What Prometheus stored must equal what was produced: valid
events per model and type, invalid ones per reason; the dead-letter topic
must hold exactly the malformed messages with their reason and origin. The
daemon runs with each Kafka client (``kafka.client``).
"""

from __future__ import annotations

import json
from collections import Counter

from kafka import KafkaConsumer

from monitor.ingest.kafka import KafkaSink
from monitor.producer import EventProducer, ProducerStats
from tests.components import daemon_config, wait_for

MALFORMED = {
    b"not json at all": "not_json",
    b'{"request_id": "x", "timestamp": 1767225600, "model": "bot", "latency_ms": -1}': "negative",
    b'{"request_id": "x", "timestamp": "yesterday", "model": "bot"}': "bad_timestamp",
    b'{"timestamp": 1767225600, "model": "bot"}': "missing_field",
    b"[1, 2, 3]": "not_object",
    b"": "not_json",  # a tombstone
}


def produced_events() -> list[dict]:
    events = []
    for i in range(600):
        model = ("chat", "rag", "summarizer")[i % 3]
        event = {"request_id": f"r{i}", "timestamp": 1_767_225_600 + i, "model": model, "latency_ms": 100 + i}
        if i % 10 == 0:
            event = {"type": "feedback", "request_id": f"r{i - 1}", "timestamp": event["timestamp"], "model": model}
        events.append(event)
    return events


def test_prometheus_sees_every_valid_event_and_every_rejection(
    kafka_broker, new_topic, tmp_path, start_daemon, start_prometheus, kafka_client
):
    topic = new_topic(partitions=3)
    sink = KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, topic)
    events = produced_events()
    for position, event in enumerate(events):
        sink.send(json.dumps(event).encode(), key=event["model"].encode())
        if position % 100 == 0:
            for value in MALFORMED:
                sink.send(value, key=b"bad")
    sink.flush()
    producer = EventProducer(kafka_broker.bootstrap_servers, topic)  # as serving code would send them
    for i in range(150):
        producer.inference(request_id=f"sdk-{i}", model="sdk-bot", latency_ms=50.0 + i, input_tokens=i)
    producer.feedback(request_id="sdk-1", model="sdk-bot", rating=1)
    assert producer.close(timeout_s=10) == ProducerStats(queued=151, sent=151, dropped={})
    expected = Counter((event["model"], event.get("type", "inference")) for event in events)
    expected.update({("sdk-bot", "inference"): 150, ("sdk-bot", "feedback"): 1})
    expected_invalid = Counter()
    for reason in MALFORMED.values():
        expected_invalid[reason] += 6

    config = daemon_config(kafka_broker.bootstrap_servers, tmp_path / "state", topic, kafka={"client": kafka_client})
    daemon = start_daemon(config)
    prometheus = start_prometheus([f"127.0.0.1:{daemon.port}"])

    def scraped_everything():
        totals = prometheus.values("driftwarden_events_total", "model", "type")
        return totals if sum(totals.values()) == sum(expected.values()) else None

    totals = wait_for(scraped_everything, 60, "Prometheus to scrape every event")
    assert totals == {key: float(count) for key, count in expected.items()}
    invalid = prometheus.values("driftwarden_events_invalid_total > 0", "reason")
    assert invalid == {(reason,): float(count) for reason, count in expected_invalid.items()}
    assert prometheus.values("sum(driftwarden_consumer_lag)") == {(): 0.0}
    assert prometheus.values('up{job="driftwarden"}') == {(): 1.0}

    consumer = KafkaConsumer(
        f"{topic}-dlq",
        bootstrap_servers=kafka_broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    letters = list(consumer)
    consumer.close()
    assert Counter(letter.value for letter in letters) == Counter({value: 6 for value in MALFORMED})
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["driftwarden.reason"].decode() == MALFORMED[letter.value]
        assert headers["driftwarden.source.topic"].decode() == topic
        assert int(headers["driftwarden.source.partition"]) in (0, 1, 2)
        assert int(headers["driftwarden.source.offset"]) >= 0
    assert daemon.stop() == 0


def test_without_a_dead_letter_topic_malformed_events_are_counted_and_logged(
    kafka_broker, new_topic, tmp_path, start_daemon
):
    topic = new_topic()
    sink = KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, topic)
    sink.send(b'{"request_id": "a", "timestamp": 1767225600, "model": "bot"}')
    sink.send(b"half a messa")
    sink.flush()
    config = daemon_config(kafka_broker.bootstrap_servers, tmp_path / "state", topic, kafka={"dead_letter_topic": None})
    daemon = start_daemon(config)
    wait_for(lambda: b'driftwarden_events_invalid_total{reason="not_json"} 1.0' in daemon.metrics(), 30, "the count")
    assert b'driftwarden_events_total{model="bot",type="inference"} 1.0' in daemon.metrics()
    assert daemon.stop() == 0
    assert f"dropped {topic}[0]@1: not_json" in daemon.log()

"""OpenTelemetry traces, as a Collector's Kafka exporter writes them, through a real broker into ``driftwarden run``.

The spans are made by the real SDK and encoded by its own OTLP encoders, in both encodings, on two topics, mixed
with spans that are not model calls, with one message that is not OTLP at all and one that holds a span protobuf
cannot parse (a name that is not UTF-8). A real Prometheus scrapes the daemon (it negotiates OpenMetrics) with
exemplar storage on: every model call must be counted once under its model with its tokens, the other spans counted
as skipped or (the bad span alone) rejected, and each latency bucket's exemplar must be a trace that was sent.
"""

from __future__ import annotations

from collections import Counter

from monitor.ingest.kafka import KafkaSink
from tests.components import daemon_config, http_get, read_topic, wait_for
from tests.otel import encode, expected_calls, genai_calls

START_S = 1_767_225_600
NOT_OTLP = b"\x00 this is not a protobuf message \xff"
SPOILT = b"\xffOST /chat"  # an HTTP span's name, "POST /chat", no longer UTF-8


def test_spans_from_both_encodings_are_counted_once_with_their_tokens_and_exemplars(
    kafka_broker, new_topic, tmp_path, start_daemon, start_prometheus
):
    proto_topic, json_topic = new_topic(partitions=2), new_topic(partitions=1)
    spans = genai_calls(300, START_S, models=("chat-a", "chat-b", "embed-c"))
    beside_spoilt = genai_calls(8, START_S + 400, seed=1)  # 8 calls, 8 HTTP spans (one spoilt), 2 tools'
    calls = expected_calls(spans) + expected_calls(beside_spoilt)
    sinks = {
        "otlp_proto": KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, proto_topic),
        "otlp_json": KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, json_topic),
    }
    for start in range(0, len(spans), 40):  # a Collector batches spans: one request of 40 per message
        encoding = ("otlp_proto", "otlp_json")[start // 40 % 2]
        sinks[encoding].send(encode(spans[start : start + 40], encoding), key=str(start).encode())
    sinks["otlp_proto"].send(NOT_OTLP)
    sinks["otlp_proto"].send(encode(beside_spoilt, "otlp_proto").replace(b"POST /chat", SPOILT, 1))
    for sink in sinks.values():
        sink.flush()
    config = daemon_config(
        kafka_broker.bootstrap_servers,
        tmp_path / "state",
        proto_topic,
        kafka={
            "topics": [{"name": proto_topic, "encoding": "otlp_proto"}, {"name": json_topic, "encoding": "otlp_json"}]
        },
    )
    daemon = start_daemon(config)
    prometheus = start_prometheus([f"127.0.0.1:{daemon.port}"], features=("exemplar-storage",))

    expected = Counter(call.model for call in calls)

    def scraped_every_call():
        totals = prometheus.values('driftwarden_events_total{type="inference"}', "model")
        return totals if sum(totals.values()) == len(calls) else None

    totals = wait_for(scraped_every_call, 60, "Prometheus to scrape every model call")
    assert totals == {(model,): float(n) for model, n in expected.items()}
    tokens = prometheus.values("driftwarden_tokens_total", "model", "direction")
    assert tokens == {
        (model, direction): float(sum(getattr(call, f"{direction}_tokens") for call in calls if call.model == model))
        for model in expected
        for direction in ("input", "output")
    }
    feedback = prometheus.values('driftwarden_events_total{type="feedback"}', "model")
    assert sum(feedback.values()) == 60 + 2  # an evaluation result on every fifth call
    skipped = prometheus.values("driftwarden_spans_skipped_total", "reason")
    assert skipped == {("not_genai",): 300.0 + 7, ("not_a_model_call",): 75.0 + 2}  # HTTP spans; every fourth a tool's
    assert prometheus.values("driftwarden_events_invalid_total > 0", "reason") == {("not_otlp",): 2.0}
    letters = read_topic(kafka_broker.bootstrap_servers, f"{proto_topic}-dlq")
    [whole], [alone] = ([letter for letter in letters if (letter.value == NOT_OTLP) is it] for it in (True, False))
    assert whole.value == NOT_OTLP and dict(whole.headers)["driftwarden.reason"] == b"not_otlp"
    assert SPOILT in alone.value and dict(alone.headers)["driftwarden.reason"] == b"not_otlp"
    assert b"chat-a" not in alone.value  # the spoilt span alone, under its resource and scope

    _, openmetrics = http_get(daemon.url + "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert b'# {trace_id="' in openmetrics and openmetrics.endswith(b"# EOF\n")
    sent = {call.trace_id: call for call in calls}

    def stored_exemplars():
        series = prometheus.exemplars("driftwarden_request_latency_seconds_bucket")
        return series if {s["seriesLabels"]["model"] for s in series} == set(expected) else None

    series = wait_for(stored_exemplars, 30, "Prometheus to store the latency exemplars of every model")
    for one in series:
        for exemplar in one["exemplars"]:
            call = sent[exemplar["labels"]["trace_id"]]  # a trace that was sent ...
            assert call.model == one["seriesLabels"]["model"]  # ... by a call of that model ...
            assert float(exemplar["value"]) == call.latency_ms / 1000  # ... with its latency ...
            assert float(exemplar["value"]) <= float(one["seriesLabels"]["le"])  # ... in that bucket
    assert daemon.stop() == 0

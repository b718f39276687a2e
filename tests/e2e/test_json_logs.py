"""``driftwarden run --log-format json`` on the real broker: every line on stderr, the Kafka consumer process's
too, is one JSON object, and a line about a model names it in a field, however hostile its name."""

from __future__ import annotations

import json

from monitor.ingest.kafka import KafkaSink
from tests.components import DaemonProcess, daemon_config, wait_for

#: A model name that would forge a line of its own, a JSON object, and repaint a terminal if written raw.
HOSTILE = 'bot\n{"level": "INFO", "message": "forged"}\x1b[2J'
RULE = {"name": "Errors", "metric": "error_ratio", "op": ">", "threshold": 0.5, "actions": ["log"]}


def test_every_line_is_a_json_object_and_a_line_about_a_model_names_it(kafka_broker, new_topic, tmp_path):
    topic = new_topic()
    sink = KafkaSink({"bootstrap_servers": kafka_broker.bootstrap_servers}, topic)
    for i in range(40):
        event = {"request_id": f"r{i}", "timestamp": 1_767_225_600 + i, "model": HOSTILE, "latency_ms": 10.0 + i,
                 "error": "Timeout"}  # fmt: skip
        sink.send(json.dumps(event).encode())
    sink.send(b"not json")  # no dead-letter topic: dropped, and logged with where it came from
    sink.flush()
    sink.close()
    config = daemon_config(
        kafka_broker.bootstrap_servers, tmp_path / "state", topic,
        kafka={"dead_letter_topic": None}, alerts={"rules": [RULE]},
    )  # fmt: skip
    daemon = DaemonProcess(config, tmp_path, options=["--log-format", "json"])
    try:
        daemon.start()

        def lines() -> list[dict] | None:
            parsed = [json.loads(line) for line in daemon.log().splitlines()]
            return parsed if any(line.get("rule") == "Errors" for line in parsed) else None

        logged = wait_for(lines, 30, "the alert's log line")
        assert daemon.stop() == 0
    finally:
        daemon.close()
    logged = [json.loads(line) for line in daemon.log().splitlines()]  # every line, the last ones too
    assert all({"time", "level", "logger", "process", "message"} <= line.keys() for line in logged)
    alert = next(line for line in logged if line.get("rule") == "Errors")
    assert alert["model"] == HOSTILE
    assert alert["level"] == "WARNING"
    assert alert["logger"] == "driftwarden.alerts"
    dropped = next(line for line in logged if line["message"].startswith("dropped"))
    assert (dropped["topic"], dropped["partition"], dropped["offset"], dropped["reason"]) == (topic, 0, 40, "not_json")
    consumer = [line for line in logged if line["process"] == "kafka-consumer"]
    assert any(line["message"].startswith("consuming") for line in consumer), "the consumer process logs JSON too"

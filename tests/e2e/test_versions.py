"""A canary end to end: judged worse, paged, and rolled back once, through real parts.

A model's calls on the real broker (Tansu): a stable version ``v1`` and a canary ``v2`` at a fifth of the calls,
1.6 times slower and failing five times as often. ``driftwarden run`` (a child process) compares the two; a real
Prometheus, loaded with the shipped rules, scrapes it; the daemon's rule ``CanaryWorse`` (``version_verdict < 0``)
pages a real Alertmanager and requests a rollback on a topic. The test checks that the verdict appears in
Prometheus with its evidence, that the rule fires in Alertmanager with the version's labels, that exactly one
rollback request lands on the topic (keyed by model, with the comparisons, sample sizes and span), that
``driftwarden versions`` shows it, and that a restart on the same state directory, with more of the canary's calls,
publishes none. ``driftwarden reference promote`` asks the first daemon to relearn the reference from the canary's
calls; it takes the request at a checkpoint, and the reference completes, as ``promoted``, after the restart.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np

from tests.components import Prometheus, daemon_config, wait_for
from tests.e2e.test_alerts import driftwarden, jobs_on, samples, value
from tests.integration.kafka_helpers import JOIN_S, produce

MODEL = "bot"
RULES = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus"
T0 = (int(time.time()) // 3600 - 3) * 3600  # event time of the first call: three hours ago or more
RULE = {"name": "CanaryWorse", "metric": "version_verdict", "op": "<", "threshold": 0, "severity": "critical",
        "actions": ["alertmanager", "rollback"]}  # fmt: skip


def calls(start: int, n: int, seed: int) -> list[tuple[int, bytes]]:
    """``n`` calls from number ``start`` on, ten a second of event time; every fifth is the canary's."""
    rng = np.random.default_rng(seed)
    messages = []
    for i in range(start, start + n):
        canary = i % 5 == 0
        event = {
            "request_id": f"r{i}",
            "timestamp": T0 + i / 10,
            "model": MODEL,
            "model_version": "v2" if canary else "v1",
            "latency_ms": round(float(rng.lognormal(6.0, 0.4) * (1.6 if canary else 1.0)), 1),
            "error": "Timeout" if rng.random() < (0.1 if canary else 0.02) else None,
        }
        messages.append((0, json.dumps(event).encode()))
    return messages


def test_a_worse_canary_is_judged_paged_and_rolled_back_once(
    kafka_broker, new_topic, tmp_path, start_daemon, start_alertmanager
):
    alertmanager = start_alertmanager()
    topic, rollback_topic = new_topic(), new_topic()
    config = daemon_config(
        kafka_broker.bootstrap_servers,
        tmp_path / "state",
        topic,
        windows={"size": 2_000, "min_samples": 100, "evaluate_every": "1s"},
        models=[{"name": MODEL, "reference": {"warmup": 200}, "versions": {"min_samples": 100}}],
        alerts={"sinks": {"alertmanager": {"url": alertmanager.url, "timeout": "2s"}}, "rules": [RULE]},
        rollback={"topic": rollback_topic},
    )
    daemon = start_daemon(config)
    (tmp_path / "prometheus").mkdir()
    rule_files = [RULES / "recording.yaml", RULES / "alerts.yaml"]
    prometheus = Prometheus([f"127.0.0.1:{daemon.port}"], tmp_path / "prometheus", rule_files)
    try:
        produce(kafka_broker, topic, calls(0, 3_000, seed=1))
        worse = 'driftwarden_version_verdict{model="bot",version="v2",baseline="v1"} == -1'
        wait_for(lambda: prometheus.query(worse), JOIN_S + 30, "Prometheus to see the canary judged worse")
        ratio = prometheus.values(
            'driftwarden_version_comparison{model="bot",version="v2",metric="latency"}', "stat"
        )  # the latency ratio, its confidence sequence and its anytime-valid p-value
        assert 1.0 < ratio[("lower",)] < ratio[("effect",)] < ratio[("upper",)] and ratio[("p_value",)] < 0.05
        recorded = 'model:driftwarden_version_worse:count{model="bot"} == 1'
        wait_for(lambda: prometheus.query(recorded), 10, "the recording rule to count the worse canary")
        pending = 'ALERTS{alertname="DriftwardenVersionWorse",version="v2",alertstate="pending"}'
        wait_for(lambda: prometheus.query(pending), 10, "the shipped alert to be pending (it fires after 2m)")

        [alert] = wait_for(lambda: alertmanager.alerts(filter='alertname="CanaryWorse"'), 20, "the page")
        assert {key: alert["labels"][key] for key in ("model", "version", "baseline")} == {
            "model": MODEL, "version": "v2", "baseline": "v1"
        }  # fmt: skip
        [message] = wait_for(lambda: jobs_on(kafka_broker, rollback_topic), 20, "a rollback request on the topic")
        request = json.loads(message.value)
        assert message.key == MODEL.encode()
        assert (request["model"], request["version"]) == (MODEL, "v2")
        evidence = request["evidence"]
        assert evidence["verdict"] == -1 and evidence["baseline"] == "v1"
        calls_compared = evidence["metrics"]["error_ratio"]
        assert calls_compared["n_candidate"] >= 100 and calls_compared["n_baseline"] >= 4 * 100
        assert evidence["start_ms"] <= evidence["evaluated_at_ms"]
        assert any(figures.get("significant") for figures in evidence["metrics"].values())

        listed = driftwarden("versions", "list", "--config", str(daemon.config_path))
        assert "v2" in listed and "worse" in listed and request["id"][:12] in listed
        shown = json.loads(driftwarden("versions", "show", "--config", str(daemon.config_path), MODEL, "v2"))
        assert [each["id"] for each in shown["rollback_requests"]] == [request["id"]]
        # A promotion of the canary's calls to be the reference, taken at a checkpoint; it completes after the restart.
        driftwarden("reference", "promote", "--config", str(daemon.config_path), "--model", MODEL, "--version", "v2")
        wait_for(lambda: "reference is promoted from the next calls of version v2" in daemon.log(), 10, "the promotion")
        assert daemon.stop(signal.SIGTERM) == 0

        restarted = start_daemon(config)  # the same state directory and consumer group
        produce(kafka_broker, topic, calls(3_000, 1_000, seed=2))
        wait_for(
            lambda: value(restarted, "driftwarden_events_total", model=MODEL, type="inference") == 4_000,
            JOIN_S + 20,
            "the restarted daemon to count the new calls, and no old one twice",
        )
        wait_for(lambda: value(restarted, "driftwarden_version_verdict", model=MODEL, version="v2", baseline="v1")
                 == -1, 20, "the verdict after the restart")  # fmt: skip
        time.sleep(3)  # a few more ticks, each of which would ask for a request
        assert [json.loads(each.value)["id"] for each in jobs_on(kafka_broker, rollback_topic)] == [request["id"]]
        info = samples(restarted, "driftwarden_reference_info")
        [(labels, _)] = [(dict(labels), value) for labels, value in info.items() if dict(labels)["model"] == MODEL]
        assert labels["source"] == "promoted"  # 200 calls of v2 after the restart: the promoted reference is complete
        assert "reference is promoted" not in restarted.log()  # applied once: the request was dropped
        assert restarted.stop(signal.SIGTERM) == 0
    finally:
        prometheus.stop()

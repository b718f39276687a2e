"""Scale-out and failover: a model's state follows its partition to whichever replica owns it.

Everything is real: the Tansu broker, several ``driftwarden run`` processes in one consumer group, the
partition state in an S3 bucket (moto's S3 server on loopback), Alertmanager with a webhook receiver, and
real signals. Six models are keyed onto three partitions (model ``m<i>`` on partition ``i % 3``); each
learns a 200-event reference, and two of them (``m0``, ``m1``) then drift, so that the rule fires on them
and queues a retraining job.

One scenario (a module fixture) runs the story, recording what it saw; each test checks one promise:

1. replica A consumes alone, then B joins: each model is exported by exactly one of them;
2. both consume more (the drift: the alerts fire, the jobs are queued), then the owner of ``m0`` is
   SIGKILLed and more events come: the survivor's figures for every model equal one uninterrupted pass (a
   replay of every event), its reference the one learned before (same id, not re-learned);
3. a new replica C joins (partitions move to it) and is stopped again (they come back to A, which restores
   them from the store: no window spans the gap);
4. a rolling restart of both replicas, one at a time, while events keep coming: nothing lost, nothing
   counted twice (figures equal the replay's), each model exported once;
5. over the whole story: one retraining job per drifting model, one "firing" transition per alert in the
   daemons' logs, and one page for it at Alertmanager's receiver.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.collectors import exposition
from monitor.ingest.kafka import create_topics
from monitor.run.replay import replay
from tests.components import (
    Alertmanager,
    DaemonProcess,
    daemon_config,
    differences,
    free_port,
    http_get,
    statistics,
    wait_for,
)
from tests.e2e.test_alerts import jobs_on
from tests.integration.kafka_helpers import JOIN_S
from tests.receiver import Receiver

MODELS = [f"m{i}" for i in range(6)]
DRIFTING = ("m0", "m1")
N_PARTITIONS = 3
WARMUP = 200
T0 = (int(time.time()) // 3600 - 3) * 3600  # event time of the first call, in seconds: three hours ago
#: What a replica exports of its own (its consumer, checkpoints) rather than of a model, and the jobs a replay
#: never queues (test_failover_queues_no_second_job_and_pages_once counts them on the jobs topic).
NOT_REPLAYED = (
    "driftwarden_consumer_lag",
    "driftwarden_checkpoints",
    "driftwarden_dead_letters_failed",
    "driftwarden_retraining_jobs",
)
RULE = {
    "name": "DataDrift",
    "metric": "drift_share",
    "op": ">",
    "threshold": 0.75,  # both features: with two, one drifting by chance is a share of 0.5
    "severity": "critical",
    "actions": ["alertmanager", "retrain", "log"],
}


def calls(model: str, start: int, n: int) -> list[bytes]:
    """``n`` calls of ``model`` from call number ``start`` on, one a second in event time; the drifting models'
    calls from number 400 on come from another distribution."""
    index = MODELS.index(model)
    messages = []
    for i in range(start, start + n):
        rng = np.random.default_rng([index, i])
        drifted = model in DRIFTING and i >= 400
        event = {
            "request_id": f"{model}-{i}",
            "timestamp": T0 + i,
            "model": model,
            "latency_ms": float(rng.gamma(4.0, 100.0 + 10 * index)),
            "features": {
                "amount": float(rng.lognormal(3.0, 0.5) * (3.0 if drifted else 1.0)),
                "channel": str(rng.choice(["web", "app", "phone"], p=[0.1, 0.2, 0.7] if drifted else [0.6, 0.3, 0.1])),
            },
        }
        messages.append(json.dumps(event).encode())
    return messages


class Traffic:
    """The producer side: every model's calls in order, keyed by model onto its partition, and a log of all."""

    def __init__(self, bootstrap_servers: str, topic: str):
        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        self.sent: dict[str, int] = dict.fromkeys(MODELS, 0)
        self.lines: list[bytes] = []

    def send(self, n_per_model: int) -> None:
        for model in MODELS:
            values = calls(model, self.sent[model], n_per_model)
            for value in values:
                self._producer.send(self.topic, value=value, key=model.encode(), partition=MODELS.index(model) % 3)
            self.sent[model] += n_per_model
            self.lines += values
        self._producer.flush(timeout=30)

    def close(self) -> None:
        self._producer.close(timeout=5)


def by_model(text: str) -> dict[str, dict]:
    """Each model's series of an exposition (those with a ``model`` label), but for :data:`NOT_REPLAYED`."""
    series: dict[str, dict] = {}
    for (name, labels), value in statistics(text, leave_out=()).items():
        model = dict(labels).get("model")
        if model is not None and not name.startswith(NOT_REPLAYED):
            series.setdefault(model, {})[name, labels] = value
    return series


def exported(daemons: list[DaemonProcess]) -> dict[str, list[int]]:
    """Which of ``daemons`` (by position) export each model."""
    owners: dict[str, list[int]] = {}
    for position, daemon in enumerate(daemons):
        for model in by_model(daemon.metrics().decode()):
            owners.setdefault(model, []).append(position)
    return owners


def counted(daemons: list[DaemonProcess]) -> dict[str, float]:
    """Inference events counted per model, summed over ``daemons``."""
    total: dict[str, float] = {}
    for daemon in daemons:
        for family in text_string_to_metric_families(daemon.metrics().decode()):
            if family.name == "driftwarden_events":
                for sample in family.samples:
                    if sample.name.endswith("_total") and sample.labels["type"] == "inference":
                        model = sample.labels["model"]
                        total[model] = total.get(model, 0) + sample.value
    return total


def settled(daemons: list[DaemonProcess], traffic: Traffic, timeout_s: float = 60.0) -> dict[str, dict]:
    """Every model's series once all sent calls are counted, each model by one daemon, and an evaluation
    tick after that changed nothing; merged over the daemons."""
    deadline = time.monotonic() + timeout_s
    previous = None
    current: dict[str, dict] = {}
    while time.monotonic() < deadline:
        current = {}
        for daemon in daemons:
            current.update(by_model(daemon.metrics().decode()))
        complete = counted(daemons) == {model: float(n) for model, n in traffic.sent.items()}
        if complete and current == previous and all(len(owners) == 1 for owners in exported(daemons).values()):
            return current
        previous = current
        time.sleep(1.5)
    pytest.fail(f"not settled in {timeout_s:g} s: counted {counted(daemons)}, sent {traffic.sent}")


def replayed(config: dict, lines: list[bytes], directory: Path) -> dict[str, dict]:
    """Each model's series after one uninterrupted pass over ``lines`` (``driftwarden replay``)."""
    path = directory / f"events-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return by_model(exposition(replay(parse_config(config), path).registry()).decode())


def reference_ids(series: dict[str, dict]) -> dict[str, str]:
    """Each model's exported reference id (``driftwarden_reference_info``)."""
    ids = {}
    for model, samples in series.items():
        for name, labels in samples:
            if name == "driftwarden_reference_info":
                ids[model] = dict(labels)["reference_id"]
    return ids


@pytest.fixture(scope="module")
def story(kafka_broker, s3_server, tmp_path_factory) -> SimpleNamespace:
    directory = tmp_path_factory.mktemp("scale-out")
    topic, jobs_topic = f"scale-out-{uuid.uuid4().hex[:8]}", f"scale-out-jobs-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka_broker.bootstrap_servers
    create_topics({"bootstrap_servers": bootstrap}, {topic: N_PARTITIONS, f"{topic}-dlq": 1, jobs_topic: 1})
    receiver = Receiver()
    (directory / "alertmanager").mkdir()
    alertmanager = Alertmanager(directory / "alertmanager", webhook_url=receiver.url)
    environ = {name: s3_server.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    base = daemon_config(
        bootstrap,
        directory / "unused",
        topic,
        windows={"size": WARMUP, "min_samples": 50, "evaluate_every": "1s"},
        models=[
            {
                "name": "*",
                "reference": {"warmup": WARMUP},
                "features": [{"name": "amount", "kind": "numeric"}, {"name": "channel", "kind": "categorical"}],
            }
        ],
        alerts={"sinks": {"alertmanager": {"url": alertmanager.url, "timeout": "2s"}}, "rules": [RULE]},
        retraining={"topic": jobs_topic, "cooldown": "1h"},
    )
    # A group turns in about its rebalance timeout (kafka-python's max_poll_interval) and notices a dead member
    # after its session timeout: both short, for the nine turns of the story.
    base["kafka"] |= {"max_poll_interval": "4s", "session_timeout": "3s"}
    prefix = f"{uuid.uuid4().hex[:8]}/"
    store = {"store": "s3", "s3": {"bucket": s3_server.bucket, "prefix": prefix, "endpoint_url": s3_server.url}}
    daemons: list[DaemonProcess] = []

    def replica(name: str) -> DaemonProcess:
        """A new replica process: its own port and state directory, the shared group and bucket."""
        config = {
            **base,
            "server": {"host": "127.0.0.1", "port": free_port()},
            "state": {**base["state"], "dir": str(directory / name / "state"), **store},
        }
        (directory / name).mkdir(exist_ok=True)
        daemon = DaemonProcess(config, directory / name)
        daemons.append(daemon)
        daemon.launch(environ | {"AWS_DEFAULT_REGION": "us-east-1"})
        wait_for(lambda: daemon._alive() and ready(daemon), JOIN_S, f"{name} to be ready")
        return daemon

    traffic = Traffic(bootstrap, topic)
    seen = SimpleNamespace(config=base, traffic=traffic, receiver=receiver, jobs_topic=jobs_topic, daemons=daemons)
    try:
        # 1. A alone, then B joins.
        a = replica("a")
        traffic.send(300)
        seen.alone = settled([a], traffic)
        b = replica("b")
        wait_for(lambda: len(exported([a, b])) == len(MODELS) and both_own(a, b), 2 * JOIN_S, "B's share")
        traffic.send(300)  # the drift of m0 and m1 begins at call 400
        seen.two = settled([a, b], traffic)
        seen.owners_of_two = exported([a, b])
        seen.firing_before_kill = firing_models([a, b])

        # 2. The owner of m0 dies mid-stream; the other carries on with everything.
        victim, survivor = (a, b) if seen.owners_of_two["m0"] == [0] else (b, a)
        traffic.send(40)
        victim.stop(signal.SIGKILL)
        traffic.send(100)
        seen.after_kill = settled([survivor], traffic, timeout_s=3 * JOIN_S)
        seen.sent_after_kill = dict(traffic.sent)
        seen.expected_after_kill = replayed(base, traffic.lines, directory)

        # 3. C joins and takes partitions, then leaves: they come back to the survivor, from the store.
        c = replica("c")
        wait_for(lambda: both_own(survivor, c), 2 * JOIN_S, "C's share")
        traffic.send(60)
        settled([survivor, c], traffic)
        assert c.stop() == 0, c.log()
        traffic.send(60)
        seen.after_return = settled([survivor], traffic, timeout_s=3 * JOIN_S)
        seen.expected_after_return = replayed(base, traffic.lines, directory)

        # 4. A rolling restart of both replicas under load.
        d = replica("d")
        wait_for(lambda: both_own(survivor, d), 2 * JOIN_S, "D's share")
        sending = threading.Event()
        sending.set()

        def load() -> None:
            while sending.is_set():
                traffic.send(5)
                time.sleep(0.2)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            assert survivor.stop() == 0, survivor.log()
            e = replica("e")
            wait_for(lambda: both_own(d, e), 2 * JOIN_S, "E's share")
            assert d.stop() == 0, d.log()
            f = replica("f")
            wait_for(lambda: both_own(e, f), 2 * JOIN_S, "F's share")
        finally:
            sending.clear()
            loader.join(timeout=30)
        seen.after_rolling = settled([e, f], traffic, timeout_s=3 * JOIN_S)
        seen.owners_after_rolling = exported([e, f])
        seen.expected_after_rolling = replayed(base, traffic.lines, directory)
        seen.jobs = jobs_on(kafka_broker, jobs_topic)
        seen.logs = [daemon.log() for daemon in daemons]
        time.sleep(2)  # Alertmanager's group_wait: a second page would be on its way
        seen.pages = receiver.bodies()
        yield seen
    finally:
        traffic.close()
        for daemon in daemons:
            daemon.close()
        alertmanager.stop()
        receiver.close()


def ready(daemon: DaemonProcess) -> bool:
    return http_get(f"{daemon.url}/readyz")[0] == 200


def both_own(*daemons: DaemonProcess) -> bool:
    """Every daemon is ready (it owns partitions, none being restored) and each model is exported once."""
    owners = exported(list(daemons))
    return all(map(ready, daemons)) and {len(places) for places in owners.values()} <= {1} and len(owners) == 6


def firing_models(daemons: list[DaemonProcess]) -> set[str]:
    models = set()
    for daemon in daemons:
        for family in text_string_to_metric_families(daemon.metrics().decode()):
            if family.name == "driftwarden_alerts_firing":
                models |= {sample.labels["model"] for sample in family.samples if sample.value > 0}
    return models


def test_two_replicas_export_each_model_exactly_once(story):
    assert set(story.alone) == set(MODELS)
    assert sorted(story.owners_of_two) == MODELS
    assert all(len(owners) == 1 for owners in story.owners_of_two.values()), story.owners_of_two
    assert {owners[0] for owners in story.owners_of_two.values()} == {0, 1}  # both took a share


def test_after_a_sigkill_the_survivor_equals_one_uninterrupted_pass(story):
    expected = story.expected_after_kill
    for model in MODELS:
        actual = story.after_kill[model]
        assert actual == expected[model], f"{model}:\n{differences(actual, expected[model])}"
    assert reference_ids(story.after_kill) == reference_ids(story.two)  # the references moved, not re-learned
    for model in MODELS:  # and the window is the model's last WARMUP calls, as numpy sees them
        n_sent = story.sent_after_kill[model]
        latency_ms = [json.loads(value)["latency_ms"] for value in calls(model, n_sent - WARMUP, WARMUP)]
        for q in (0.5, 0.9, 0.95, 0.99):
            exported = story.after_kill[model][
                "driftwarden_window_latency_seconds", (("model", model), ("quantile", str(q)))
            ]
            assert exported == pytest.approx(np.quantile(latency_ms, q) / 1000, rel=1e-12), (model, q)


def test_a_partition_that_comes_back_is_restored_from_the_store_with_no_gap(story):
    expected = story.expected_after_return
    for model in MODELS:
        actual = story.after_return[model]
        assert actual == expected[model], f"{model}:\n{differences(actual, expected[model])}"


def test_a_rolling_restart_under_load_loses_nothing_and_counts_nothing_twice(story):
    expected = story.expected_after_rolling
    assert all(len(owners) == 1 for owners in story.owners_after_rolling.values()), story.owners_after_rolling
    for model in MODELS:
        actual = story.after_rolling[model]
        assert actual == expected[model], f"{model}:\n{differences(actual, expected[model])}"
    assert reference_ids(story.after_rolling) == reference_ids(story.two)


def test_failover_queues_no_second_job_and_pages_once(story):
    assert story.firing_before_kill == set(DRIFTING)
    jobs = [json.loads(message.value) for message in story.jobs]
    assert sorted(job["model"] for job in jobs) == sorted(DRIFTING), jobs
    fired = [line for log in story.logs for line in log.splitlines() if "alert firing DataDrift" in line]
    assert len(fired) == len(DRIFTING), fired
    # Alertmanager's receiver: one notification per alert (each alert is a group of its own), never a second.
    pages = Counter(alert["labels"]["model"] for body in story.pages for alert in body["alerts"])
    assert pages == dict.fromkeys(DRIFTING, 1), story.pages

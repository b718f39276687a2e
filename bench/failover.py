"""Failover: seconds from a replica's death until its models are exported again, against the raw group's own.

The deployment: two ``driftwarden run`` replicas, A and B, in one consumer group (``kafka.client``
kafka-python, the default) on a topic of 4 partitions, ``session_timeout`` 6 s and ``max_poll_interval``
10 s (the heartbeat is a third of the session timeout), the state in an S3 bucket (``state.store: s3``,
moto's server on loopback), a checkpoint every 5 s. 8 models of the demo's chat shape
(``monitor/demo/scenario.py`` ``CHAT_FEATURES``), events as ``bench/hot_path.py`` ``realistic_events``
makes them (1,000 a second of event time, ending now), keyed by model, model ``chat-<i>`` on partition
``i % 4``; windows of 10,000 events and references of 5,000, every model fed 16,000 events so that both are
full (``--quick``: 1,000, 500 and 2,000).

Once both replicas have counted every event and checkpointed since, B's process group (the daemon and its
consumer process, as when its pod or node dies) is SIGKILLed, and A's ``/metrics`` is read every 0.1 s
until it exports every model B exported: the driftwarden gap. A's log splits it: when A handed its own
partitions over (kafka-python's rebalance is eager), when it was assigned them all, and how long restoring
each took ("restored N models in X s"). The partitions' objects in the bucket (``list_objects_v2``) say
how many bytes a checkpoint of the group writes, and what a restore read.

The baseline, in the same run: two plain kafka-python consumers in subprocesses, in a group of their own
with the same session, poll and heartbeat settings; one is SIGKILLed, and the gap is the seconds until the
other owns all 4 partitions. Best of ``--repeat`` rounds each (a new group each round).

moto keeps objects in memory, so the store's part is the client's and the protocol's cost on loopback,
not a real bucket's network; ``bench/state_store.py`` measures the store itself.

Run: ``python bench/failover.py [--repeat 1] [--bootstrap HOST:PORT]``; ``--quick`` runs small, to check
that it runs. Without ``--bootstrap`` it starts the embedded broker (Tansu).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import yaml
from hot_path import realistic_events
from kafka import KafkaConsumer, KafkaProducer
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from monitor.demo.broker import EmbeddedBroker, free_port
from monitor.demo.scenario import CHAT_FEATURES
from monitor.ingest.kafka import create_topics

N_MODELS = 8
N_PARTITIONS = 4
BUCKET = "driftwarden-failover"
SCRAPE_EVERY_S = 0.1
#: A log line's time (monitor/logs.py FORMAT, local time) and the two lines of a turn of the group.
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
RESTORED = re.compile(STAMP + r".*?(\S+)\[(\d+)\]: restored (\d+) models in ([\d.]+) s", re.MULTILINE)
HANDED_OVER = re.compile(STAMP + r".*: handed over \d+ models", re.MULTILINE)
MB = 1e6
EVENTS = "driftwarden_events_total"  # by model and type: calls and feedback
CHECKPOINTS = "driftwarden_checkpoints_total"


@dataclass(frozen=True)
class Group:
    """The group's settings, the same for the replicas and the raw members."""

    session_timeout_ms: int
    max_poll_interval_ms: int
    checkpoint_every_ms: int

    @property
    def heartbeat_ms(self) -> int:
        return max(100, self.session_timeout_ms // 3)  # as monitor/ingest/kafka.py sets it


#: The stated deployment's, and ``--quick``'s (shorter, as tests/e2e/test_scale_out.py's group).
GROUP = Group(session_timeout_ms=6_000, max_poll_interval_ms=10_000, checkpoint_every_ms=5_000)
QUICK_GROUP = Group(session_timeout_ms=3_000, max_poll_interval_ms=4_000, checkpoint_every_ms=1_000)


@dataclass(frozen=True)
class Failover:
    """One round of the driftwarden replicas: the gap, when A handed over its own partitions and was assigned
    all of them (seconds after the kill, from its log), and what A restored from the bucket."""

    gap_s: float
    handed_over_s: float
    assigned_s: float
    n_models: int
    restore_s: float
    restored_bytes: int
    checkpoint_bytes: int


def chat_events(n: int) -> list[tuple[int, bytes, bytes]]:
    """``realistic_events`` of 8 models: ``(partition, key, value)``, model ``chat-<i>`` on partition ``i % 4``."""
    start = datetime.now(UTC) - timedelta(milliseconds=n)
    keyed = []
    for i, value in enumerate(realistic_events(n, start=start)):
        event = json.loads(value)
        model = event["model"] = f"chat-{i % N_MODELS}"
        keyed.append((i % N_MODELS % N_PARTITIONS, model.encode(), json.dumps(event).encode()))
    return keyed


def produce(bootstrap: str, topic: str, events: list[tuple[int, bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1_000_000, acks="all")
    for partition, key, value in events:
        producer.send(topic, value=value, key=key, partition=partition)
    producer.flush(timeout=60)
    producer.close()


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except OSError:
        return 0, b""


def wait_for(condition, timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


class Replica:
    """``driftwarden run`` in a process group of its own (the daemon and its consumer process), as a pod."""

    def __init__(self, config: dict, directory: Path, environ: dict[str, str]):
        directory.mkdir()
        self.port = config["server"]["port"]
        self.log_path = directory / "daemon.log"
        config_path = directory / "driftwarden.yaml"
        config_path.write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "monitor.cli", "run", "--config", str(config_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **environ}, start_new_session=True
            )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"a replica exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        return http_get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200

    def exposition(self) -> list:
        """The samples of ``/metrics`` (none while it does not answer)."""
        status, body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        text = body.decode() if status == 200 else ""
        return [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def models(self) -> set[str]:
        """The models this replica exports (a series labelled with each)."""
        return {sample.labels["model"] for sample in self.exposition() if "model" in sample.labels}

    def total(self, name: str) -> float:
        """The sum of the ``name`` samples over their labels."""
        return sum(sample.value for sample in self.exposition() if sample.name == name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: the daemon and its consumer process die together."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def driftwarden_round(
    bootstrap: str, group: Group, s3: dict, sizes: tuple[int, int, int], directory: Path
) -> Failover:
    """Two replicas fill their windows, B dies, A takes over: the gap and what A restored."""
    window, warmup, per_model = sizes
    run = uuid.uuid4().hex[:8]
    topic = f"failover-{run}"
    create_topics({"bootstrap_servers": bootstrap}, {topic: N_PARTITIONS, f"{topic}-dlq": 1})
    prefix = f"{run}/"

    def config() -> dict:
        return {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topics": [topic],
                "group_id": f"{topic}-group",
                "dead_letter_topic": f"{topic}-dlq",
                "session_timeout": f"{group.session_timeout_ms}ms",
                "max_poll_interval": f"{group.max_poll_interval_ms}ms",
            },
            "server": {"host": "127.0.0.1", "port": free_port()},
            "state": {
                "dir": str(directory / f"{run}-{uuid.uuid4().hex[:4]}"),
                "checkpoint_every": f"{group.checkpoint_every_ms}ms",
                "store": "s3",
                "s3": {"bucket": BUCKET, "prefix": prefix, "endpoint_url": s3["url"], "region": "us-east-1"},
            },
            "windows": {"size": window},
            "models": [{"name": "*", "features": CHAT_FEATURES, "reference": {"warmup": warmup}}],
        }

    environ = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    a = Replica(config(), directory / f"{run}-a", environ)
    b = None
    try:
        wait_for(a.ready, 60, "A to be ready")
        b = Replica(config(), directory / f"{run}-b", environ)
        wait_for(lambda: b.ready() and a.ready(), 60, "both to be ready")
        produce(bootstrap, topic, chat_events(N_MODELS * per_model))
        n_events = N_MODELS * per_model
        wait_for(lambda: a.total(EVENTS) + b.total(EVENTS) >= n_events, 300, "both to count every event", every_s=0.5)
        ours = a.models(), b.models()
        assert len(ours[0] | ours[1]) == N_MODELS and not ours[0] & ours[1], f"not one owner per model: {ours}"
        done = a.total(CHECKPOINTS), b.total(CHECKPOINTS)
        wait_for(lambda: a.total(CHECKPOINTS) > done[0] and b.total(CHECKPOINTS) > done[1], 60, "a checkpoint of each")
        sizes_by_key = _objects(s3, prefix)
        victims = b.models()
        log_before = len(a.log())
        b.kill()
        killed, killed_at = time.monotonic(), time.time()
        while not victims <= a.models():
            if time.monotonic() - killed > 120:
                raise TimeoutError(f"A did not take over {sorted(victims)} in 120 s:\n{a.log()[-3000:]}")
            time.sleep(SCRAPE_EVERY_S)
        gap_s = time.monotonic() - killed
        log = a.log()[log_before:]
        restores = RESTORED.findall(log)
        restore_s = sum(float(seconds) for *_, seconds in restores)
        return Failover(
            gap_s=gap_s,
            handed_over_s=_logged_at(HANDED_OVER.findall(log)[0]) - killed_at,
            assigned_s=_logged_at(restores[-1][0]) - restore_s - killed_at,  # the partitions restore in turn
            n_models=sum(int(n) for _, _, _, n, _ in restores),
            restore_s=restore_s,
            restored_bytes=sum(sizes_by_key[f"{topic}/{number}.msgpack"] for _, _, number, _, _ in restores),
            checkpoint_bytes=sum(sizes_by_key.values()),
        )
    finally:
        for replica in (a, b):
            if replica is not None:
                replica.kill()


def _logged_at(stamp: str) -> float:
    """The epoch seconds of a log line's local time stamp."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _objects(s3: dict, prefix: str) -> dict[str, int]:
    """The size of each object under ``prefix``, by key without it (``<group>/<topic>/<p>.msgpack``)."""
    client = boto3.client(
        "s3", endpoint_url=s3["url"], region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"][len(prefix) :].split("/", 1)[1]: item["Size"] for item in listing.get("Contents", [])}


def raw_member(bootstrap: str, topic: str, group_id: str, group: Group) -> None:
    """A plain kafka-python group member: prints its assignment (one JSON line) at every turn, polls forever."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        session_timeout_ms=group.session_timeout_ms,
        max_poll_interval_ms=group.max_poll_interval_ms,
        heartbeat_interval_ms=group.heartbeat_ms,
    )
    consumer.subscribe([topic])
    owned = None
    while True:
        consumer.poll(timeout_ms=500)
        now = sorted(partition.partition for partition in consumer.assignment())
        if now != owned:
            owned = now
            print(json.dumps(now), flush=True)


class RawMember:
    """:func:`raw_member` in a subprocess, its assignments read as they come."""

    def __init__(self, bootstrap: str, topic: str, group: Group):
        command = [sys.executable, __file__, "--raw-member", bootstrap, topic, f"{topic}-group"]
        command += ["--quick"] if group == QUICK_GROUP else []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.owned: list[int] = []
        self.changed_at = time.monotonic()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None  # a pipe, as Popen was asked
        for line in self.process.stdout:
            self.owned, self.changed_at = json.loads(line), time.monotonic()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def raw_round(bootstrap: str, group: Group) -> float:
    """Two plain consumers share the partitions; one dies: seconds until the other owns them all."""
    topic = f"failover-raw-{uuid.uuid4().hex[:8]}"
    create_topics({"bootstrap_servers": bootstrap}, {topic: N_PARTITIONS})
    first = RawMember(bootstrap, topic, group)
    second = None
    try:
        wait_for(lambda: len(first.owned) == N_PARTITIONS, 60, "the first member to own every partition")
        second = RawMember(bootstrap, topic, group)
        wait_for(lambda: first.owned and second.owned and len(first.owned + second.owned) == N_PARTITIONS, 60,
                 "the two members to share the partitions")  # fmt: skip
        time.sleep(1)  # a heartbeat or two in the settled group
        second.kill()
        killed = time.monotonic()
        wait_for(lambda: len(first.owned) == N_PARTITIONS, 120, "the survivor to own every partition", every_s=0.01)
        return first.changed_at - killed
    finally:
        for member in (first, second):
            if member is not None:
                member.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small windows, to check that it runs")
    parser.add_argument("--bootstrap", help="an existing broker; default: start the embedded one")
    parser.add_argument("--raw-member", nargs=3, metavar=("BOOTSTRAP", "TOPIC", "GROUP"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    group = QUICK_GROUP if arguments.quick else GROUP
    if arguments.raw_member:
        bootstrap, topic, group_id = arguments.raw_member
        raw_member(bootstrap, topic, group_id, group)
        return
    sizes = (1_000, 500, 2_000) if arguments.quick else (10_000, 5_000, 16_000)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        bootstrap = arguments.bootstrap or stack.enter_context(EmbeddedBroker()).bootstrap_servers
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        stack.callback(server.stop)
        s3 = {"url": f"http://127.0.0.1:{server.get_host_and_port()[1]}"}
        boto3.client(
            "s3", endpoint_url=s3["url"], region_name="us-east-1", aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        rounds, raw_gaps = [], []
        for _ in range(arguments.repeat):  # interleaved, so that a noisy neighbour hurts both alike
            raw_gaps.append(raw_round(bootstrap, group))
            rounds.append(driftwarden_round(bootstrap, group, s3, sizes, Path(directory)))
    best = min(rounds, key=lambda failover: failover.gap_s)
    raw_gap_s = min(raw_gaps)
    window, warmup, per_model = sizes
    print(f"deployment: 2 replicas, {N_MODELS} models of the demo's chat shape ({len(CHAT_FEATURES)} features) on "
          f"{N_PARTITIONS} partitions, windows of {window:,} events, references of {warmup:,}, {per_model:,} "
          f"events a model; session_timeout {group.session_timeout_ms / 1000:g} s, max_poll_interval "
          f"{group.max_poll_interval_ms / 1000:g} s, heartbeat {group.heartbeat_ms / 1000:g} s; "
          f"state.store s3 (moto on loopback), checkpoint_every {group.checkpoint_every_ms / 1000:g} s; "
          f"best of {arguments.repeat}")  # fmt: skip
    print(f"bytes per checkpoint (the group's {N_PARTITIONS} partition objects): {best.checkpoint_bytes:,}; "
          f"bytes per model: {best.checkpoint_bytes // N_MODELS:,}")  # fmt: skip
    print(f"A restored {best.n_models} models ({best.restored_bytes:,} bytes) in {best.restore_s:.2f} s: "
          f"{best.restored_bytes / MB / max(best.restore_s, 1e-3):,.1f} MB/s")  # fmt: skip
    print(f"ratio: driftwarden gap / raw group gap = {best.gap_s / raw_gap_s:.2f}x\n")
    print("| failover (SIGKILL of one of two members) | seconds |")
    print("| --- | ---: |")
    print(f"| raw kafka-python group: the survivor owns every partition | {raw_gap_s:.2f} |")
    print(f"| driftwarden: A exports every model B exported | {best.gap_s:.2f} |")
    print(f"| of which until A hands its own partitions over (B's death noticed, A checkpoints) "
          f"| {best.handed_over_s:.2f} |")  # fmt: skip
    rebalance_s = best.assigned_s - best.handed_over_s
    print(f"| of which the rebalance, until A is assigned every partition | {rebalance_s:.2f} |")
    print(f"| of which A restoring them from the bucket | {best.restore_s:.2f} |")
    rest_s = best.gap_s - best.assigned_s - best.restore_s
    print(f"| of which the rest (the next scrape of A's /metrics) | {rest_s:.2f} |")


if __name__ == "__main__":
    main()

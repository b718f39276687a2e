"""The partition store failing under real replicas: an outage of the S3 server, and objects of the wrong shape.

Real parts, as in :mod:`tests.e2e.test_scale_out`: the Tansu broker, ``driftwarden run`` processes in one
group, and moto's S3 server on loopback, here one of this module's own, stopped and started again (an
outage; moto keeps its objects in the test's process). Six models keyed onto three partitions learn a
200-event reference.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import boto3
import msgspec
import pytest

from monitor.ingest.kafka import create_topics
from monitor.run.checkpoint import PARTITION_FINGERPRINT
from tests.components import DaemonProcess, S3Server, daemon_config, free_port, http_get, wait_for
from tests.conftest import DEFAULT_CLIENT_FIRST
from tests.e2e.test_scale_out import (
    N_PARTITIONS,
    WARMUP,
    Traffic,
    counted,
    reference_ids,
    replayed,
    settled,
)
from tests.integration.kafka_helpers import JOIN_S


@pytest.fixture(scope="module")
def s3():
    """An S3 server of this module alone: its tests stop it."""
    server = S3Server()
    yield server
    server.stop()


class Group:
    """A topic of three partitions, its traffic, and replicas of one group that keep state in the bucket."""

    def __init__(self, bootstrap_servers: str, s3: S3Server, directory: Path):
        self.topic = f"store-failures-{uuid.uuid4().hex[:8]}"
        create_topics({"bootstrap_servers": bootstrap_servers}, {self.topic: N_PARTITIONS, f"{self.topic}-dlq": 1})
        self.s3, self.directory = s3, directory
        self.prefix = f"{uuid.uuid4().hex[:8]}/"
        self.config = daemon_config(
            bootstrap_servers,
            directory / "unused",
            self.topic,
            windows={"size": WARMUP, "min_samples": 50, "evaluate_every": "1s"},
            models=[
                {
                    "name": "*",
                    "reference": {"warmup": WARMUP},
                    "features": [{"name": "amount", "kind": "numeric"}, {"name": "channel", "kind": "categorical"}],
                }
            ],
        )
        self.traffic = Traffic(bootstrap_servers, self.topic)
        self.replicas: list[DaemonProcess] = []

    def replica(self, name: str) -> DaemonProcess:
        """A new replica process (not waited for): its own port and state directory, the shared bucket."""
        store = {"store": "s3", "s3": {"bucket": self.s3.bucket, "prefix": self.prefix, "endpoint_url": self.s3.url}}
        config = {
            **self.config,
            "server": {"host": "127.0.0.1", "port": free_port()},
            "state": {**self.config["state"], "dir": str(self.directory / name / "state"), **store},
        }
        (self.directory / name).mkdir()
        daemon = DaemonProcess(config, self.directory / name)
        self.replicas.append(daemon)
        environ = {name: self.s3.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        return daemon.launch(environ | {"AWS_DEFAULT_REGION": "us-east-1"})

    def put(self, partition: int, document: dict) -> None:
        """Write ``document`` as the partition's object in the bucket, as something else than a replica would."""
        body = msgspec.msgpack.encode(document)
        self._client().put_object(Bucket=self.s3.bucket, Key=self._key(partition), Body=body)

    def objects(self) -> list[bytes]:
        """The partitions' objects in the bucket, as they are."""
        client = self._client()
        return [client.get_object(Bucket=self.s3.bucket, Key=self._key(p))["Body"].read() for p in range(N_PARTITIONS)]

    def _key(self, partition: int) -> str:
        return f"{self.prefix}{self.config['kafka']['group_id']}/{self.topic}/{partition}.msgpack"

    def _client(self):  # noqa: ANN202 - boto3's client has no type of its own here
        return boto3.client(
            "s3",
            endpoint_url=self.s3.url,
            aws_access_key_id=self.s3.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.s3.environ["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def close(self) -> None:
        self.traffic.close()
        for daemon in self.replicas:
            daemon.close()


@pytest.fixture
def group(kafka_broker, s3, tmp_path):
    group = Group(kafka_broker.bootstrap_servers, s3, tmp_path)
    yield group
    group.close()


def readyz(daemon: DaemonProcess) -> tuple[int, str]:
    status, body = http_get(f"{daemon.url}/readyz")
    return status, body.decode()


def test_an_assignment_waits_for_a_store_that_does_not_answer_and_restores_the_saved_state(group):
    """Were the models to start afresh from the committed offset, their counts and references would be lost,
    and the next checkpoint would overwrite the saved state for good."""
    a = group.replica("a")
    wait_for(lambda: a._alive() and readyz(a)[0] == 200, JOIN_S, "A to be ready")
    group.traffic.send(WARMUP + 50)
    before = settled([a], group.traffic)
    assert a.stop() == 0, a.log()

    group.s3.stop()
    try:
        b = group.replica("b")
        wait_for(lambda: b._alive() and ("does not answer" in b.log() or "assigned" in b.log()), JOIN_S, "B's turn")
        group.traffic.send(50)
        time.sleep(3)
        waiting = readyz(b), counted([b])
    finally:
        group.s3.start()
    wait_for(lambda: b._alive() and readyz(b)[0] == 200, JOIN_S, "B to be ready once the store answers")
    after = settled([b], group.traffic, timeout_s=30)
    assert reference_ids(after) == reference_ids(before)  # not re-learned
    assert after == replayed(group.config, group.traffic.lines, group.directory)
    (status, why), n_counted = waiting
    assert status == 503 and "the state store does not answer" in why, why
    assert n_counted == {}  # nothing is read before the partitions' state is back
    assert b.stop() == 0, b.log()


def test_an_object_of_the_wrong_shape_never_stops_a_replica_and_its_models_start_afresh(group):
    """Every replica the partition moved to would stop in turn: a poison pill for the whole group."""
    document = {
        "format": "driftwarden-checkpoint",
        "version": 1,
        "created_at": 0.0,
        "config_fingerprint": PARTITION_FINGERPRINT,
        "offsets": [[group.topic, 0, 0]],
        "pipeline": {"models": {}},  # no alert state
    }
    group.put(0, document)
    group.put(1, {**document, "offsets": [[group.topic, 2, 0]]})  # another partition's, under this one's key
    a = group.replica("a")
    group.traffic.send(WARMUP + 20)
    wait_for(lambda: a._alive() and readyz(a)[0] == 200, JOIN_S, "A to be ready")
    settled([a], group.traffic, timeout_s=30)
    log = a.log()
    assert f"{group.topic}[0]: its saved state does not fit" in log
    assert f"{group.topic}[1]: its state cannot be restored" in log and "not of" in log
    assert a.stop() == 0, log


@pytest.mark.parametrize("kafka_client", DEFAULT_CLIENT_FIRST, indirect=True)
def test_a_replica_stopped_while_it_waits_for_the_store_exits_and_leaves_the_saved_state_as_it_was(group, kafka_client):
    """With either client: confluent's source knows where it stands in a partition whose state never came."""
    group.config["kafka"]["client"] = kafka_client
    a = group.replica("a")
    wait_for(lambda: a._alive() and readyz(a)[0] == 200, JOIN_S, "A to be ready")
    group.traffic.send(WARMUP + 10)
    before = settled([a], group.traffic)
    assert a.stop() == 0, a.log()
    saved = group.objects()

    group.s3.stop()
    try:
        b = group.replica("b")
        wait_for(
            lambda: b._alive() and "the state store does not answer" in readyz(b)[1], JOIN_S, "B to say why it waits"
        )
        assert b.stop(timeout_s=10) == 0, b.log()  # SIGTERM: no wait for the store
    finally:
        group.s3.start()
    assert group.objects() == saved
    c = group.replica("c")
    wait_for(lambda: c._alive() and readyz(c)[0] == 200, JOIN_S, "C to be ready")
    assert reference_ids(settled([c], group.traffic, timeout_s=30)) == reference_ids(before)


@pytest.mark.soak  # about 70 s; every run holds an assignment waiting out the store (test_an_assignment_waits_...)
def test_a_rebalance_during_an_outage_loses_nothing_and_counts_nothing_twice(group):
    """A's checkpoints fail meanwhile, so does the one before its partitions go: it commits nothing, and the
    replicas that get them carry on from the last checkpoint that was saved, once the store answers."""
    a = group.replica("a")
    wait_for(lambda: a._alive() and readyz(a)[0] == 200, JOIN_S, "A to be ready")
    group.traffic.send(WARMUP + 20)
    before = settled([a], group.traffic)
    group.s3.stop()
    try:
        group.traffic.send(30)  # applied by A, never saved
        wait_for(lambda: sum(counted([a]).values()) == sum(group.traffic.sent.values()), JOIN_S, "A to count them")
        b = group.replica("b")
        wait_for(lambda: b._alive() and ("does not answer" in b.log() or "assigned" in b.log()), 2 * JOIN_S, "B's turn")
    finally:
        group.s3.start()
    group.traffic.send(10)
    wait_for(lambda: readyz(a)[0] == 200 and readyz(b)[0] == 200, 2 * JOIN_S, "both to be ready")
    after = settled([a, b], group.traffic, timeout_s=60)
    assert reference_ids(after) == reference_ids(before)
    assert after == replayed(group.config, group.traffic.lines, group.directory)

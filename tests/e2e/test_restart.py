"""Restarts lose nothing and count nothing twice; a Kafka run and a replay of a file agree.

Everything here is real: a Kafka-protocol broker (Tansu), ``driftwarden run``
as a child process, and real signals. The reference is
:func:`monitor.run.replay.replay` of ``examples/events.jsonl`` under the same
config; the daemon's ``/metrics`` (without the families a replay has no notion
of: consumer lag, checkpoints, dead-letter failures) must equal the replay's exposition
byte for byte: counters, histogram buckets and exact sums, the spend (the
example prices its models), window gauges and the evaluation timestamp (the
watermark in both).

* Kafka vs replay: the whole file on a topic, one daemon, identical statistics.
* SIGKILL: half the file is consumed and checkpointed, a few hundred more
  events are consumed (and shown on /metrics) but not yet checkpointed, then
  the daemon is killed. A second daemon on the same state directory and
  consumer group reads the rest; the result equals the replay, so the events
  applied after the last checkpoint were neither lost nor counted twice.
* SIGTERM: the same, but the daemon is stopped gracefully: it must exit 0
  within a few seconds, having checkpointed everything it applied.

The SIGKILL restart runs with each Kafka client (``kafka.client``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.collectors import exposition
from monitor.ingest.kafka import KafkaSink
from monitor.run.checkpoint import CheckpointStore
from monitor.run.replay import replay
from tests.components import RUN_PROCESS, DaemonProcess, daemon_config, wait_for

EXAMPLES = Path(__file__).parents[2] / "examples"
EVENTS = EXAMPLES / "events.jsonl"
LINES = [line for line in EVENTS.read_bytes().splitlines() if line.strip()]  # as JsonlSource reads them

FIRST = 1_800  # consumed and checkpointed before the stop
EXTRA = 400  # consumed, then the stop (after SIGKILL: not checkpointed)
#: What only a daemon on Kafka exports.
RUN_ONLY = ("driftwarden_consumer_lag", "driftwarden_checkpoints", "driftwarden_dead_letters_failed", *RUN_PROCESS)


def make_config(bootstrap_servers: str, state_dir: Path, topic: str, client: str = "kafka-python", **state: str):
    """The test's kafka/server/state/windows sections with the example's models and limits."""
    example = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    return daemon_config(
        bootstrap_servers,
        state_dir,
        topic,
        kafka={"client": client},
        state=state,
        limits=example["limits"],
        models=example["models"],
    )


def reference_exposition(config: dict) -> str:
    result = replay(parse_config(config), EVENTS)
    assert result.n_records == len(LINES) == 3609 and result.n_rejected == 3
    text = exposition(result.registry()).decode()
    assert 'driftwarden_cost_total{currency="USD",model="support-bot"}' in text  # the example prices its models
    return text


def without_lag(text: str) -> str:
    """The exposition without the families only ``run`` has (their HELP, TYPE and samples)."""
    return "".join(line for line in text.splitlines(keepends=True) if not any(name in line for name in RUN_ONLY))


def n_counted(text: str) -> int:
    """Records the pipeline has accounted for: valid events plus rejected ones."""
    total = 0
    for family in text_string_to_metric_families(text):
        if family.name in ("driftwarden_events", "driftwarden_events_invalid"):
            total += sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return int(total)


def produce(bootstrap_servers: str, topic: str, lines: list[bytes]) -> None:
    sink = KafkaSink({"bootstrap_servers": bootstrap_servers}, topic)
    for line in lines:
        sink.send(line)
    sink.flush(timeout_s=30)
    sink.close()
    assert sink.n_failed == 0


def settled_metrics(daemon: DaemonProcess, n_records: int, timeout_s: float = 40.0) -> str:
    """/metrics (lag dropped) once ``n_records`` are counted and a later evaluation tick changed nothing.

    Two scrapes 1.5 s apart (evaluate_every is 1 s) must be equal: the second
    is then after a tick that saw every counted event. On timeout the last
    scrape comes back anyway, for the caller's assertions to show what is wrong.
    """
    deadline = time.monotonic() + timeout_s
    previous = None
    while time.monotonic() < deadline:
        current = without_lag(daemon.metrics().decode())
        if current == previous and n_counted(current) >= n_records:
            return current
        previous = current
        time.sleep(1.5)
    return previous


def checkpoint(state_dir: Path):
    return CheckpointStore(state_dir).load()


def test_kafka_run_equals_replay(kafka_broker, new_topic, tmp_path, start_daemon):
    topic = new_topic(partitions=1)
    config = make_config(kafka_broker.bootstrap_servers, tmp_path / "state", topic)
    expected = reference_exposition(config)
    produce(kafka_broker.bootstrap_servers, topic, LINES)

    daemon = start_daemon(config)
    actual = settled_metrics(daemon, len(LINES))

    assert n_counted(actual) == len(LINES)
    assert actual.splitlines() == expected.splitlines()
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    "kafka_client, signum",
    [
        pytest.param("kafka-python", signal.SIGTERM, id="kafka-python-SIGTERM"),
        pytest.param("confluent", signal.SIGKILL, id="confluent-SIGKILL"),
        # confluent on SIGTERM: test_daemon_*.py; kafka-python on SIGKILL: test_faults.py, and here in the soak run
        pytest.param("kafka-python", signal.SIGKILL, id="kafka-python-SIGKILL", marks=pytest.mark.soak),
    ],
)
def test_restart_after_signal_equals_uninterrupted_run(
    kafka_broker, new_topic, tmp_path, start_daemon, kafka_client, signum
):
    topic = new_topic(partitions=1)
    state_dir = tmp_path / "state"
    bootstrap = kafka_broker.bootstrap_servers
    # Checkpoints 6 s apart leave time (even on a loaded machine) to apply events no checkpoint holds yet.
    config = make_config(bootstrap, state_dir, topic, kafka_client, checkpoint_every="6s")
    expected = reference_exposition(config)

    produce(bootstrap, topic, LINES[:FIRST])
    first = start_daemon(config)
    wait_for(lambda: n_counted(first.metrics().decode()) == FIRST, 30, "the first half counted")
    covering = wait_for(
        lambda: (saved := checkpoint(state_dir)) and saved.offsets.get((topic, 0)) == FIRST and saved,
        15,
        "a checkpoint covering the first half",
    )
    # Right after a fresh checkpoint the next one is 6 s away: apply more events before it.
    wait_for(lambda: checkpoint(state_dir).created_at > covering.created_at, 15, "the next checkpoint")
    produce(bootstrap, topic, LINES[FIRST : FIRST + EXTRA])
    wait_for(lambda: n_counted(first.metrics().decode()) == FIRST + EXTRA, 10, "the extra events counted")

    children = first.children()
    # kafka-python's consumer runs in a child process; librdkafka's threads in the daemon's own.
    assert bool(children) == (kafka_client == "kafka-python"), children
    started = time.monotonic()
    exit_code = first.stop(signum)
    stop_s = time.monotonic() - started
    # Even after SIGKILL the orphaned consumer notices and leaves the group.
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 10, "the consumer process to exit")

    saved = checkpoint(state_dir)
    if signum == signal.SIGKILL:
        assert exit_code == -signal.SIGKILL
        # The kill landed between checkpoints: EXTRA applied events are in no checkpoint.
        assert saved.offsets == {(topic, 0): FIRST}
    else:
        assert exit_code == 0, first.log()
        assert stop_s < 10, f"SIGTERM took {stop_s:.1f} s"
        # A graceful stop checkpoints everything it applied.
        assert saved.offsets == {(topic, 0): FIRST + EXTRA}

    produce(bootstrap, topic, LINES[FIRST + EXTRA :])
    second = start_daemon(config)
    actual = settled_metrics(second, len(LINES))

    assert "restored the checkpoint" in second.log()
    assert n_counted(actual) == len(LINES)
    assert actual.splitlines() == expected.splitlines()
    assert second.stop() == 0

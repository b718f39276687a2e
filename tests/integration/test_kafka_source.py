"""KafkaSource, KafkaSink and the dead letters against a real Kafka-protocol broker (Tansu, on 127.0.0.1).

Every test has its own topic (``new_topic``) and consumer groups named after it.
Joining a group takes about 3 s on this broker, so each test joins as few
times as its point needs; committed offsets that only set the scene are
written by a plain kafka-python consumer with a manual assignment, which
joins nothing.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from kafka import KafkaConsumer, TopicPartition
from kafka.net.transport import KafkaTCPTransport
from kafka.structs import OffsetAndMetadata

from monitor.config import ConfigError, parse_config
from monitor.ingest import Record
from monitor.ingest.confluent import consumer_settings
from monitor.ingest.kafka import KafkaDeadLetters, KafkaSink, KafkaSource, client_settings, create_topics
from monitor.pipeline import Pipeline
from tests.certificates import make_certificates
from tests.components import TansuBroker, wait_for
from tests.integration.kafka_helpers import (
    JOIN_S,
    by_position,
    committed,
    kafka_config,
    poll_records,
    polling_in_background,
    produce,
    read_n,
)


def _commit_for_group(broker, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets for ``group`` without joining it (as another replica would have, earlier)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        partitions = {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}
        consumer.assign(list(partitions))
        consumer.commit({partition: OffsetAndMetadata(offset, "", -1) for partition, offset in partitions.items()})
    finally:
        consumer.close(autocommit=False)


def test_poll_returns_records_with_their_positions_and_tombstones_as_none(
    kafka_broker, new_topic, source_config, open_source
):
    topic = new_topic(partitions=2)
    produce(kafka_broker, topic, [(0, b"a0"), (1, b"b0"), (0, None), (1, b"b1"), (0, b'{"x": 1}')])
    source = open_source(source_config(topic, f"{topic}-group"))
    assert source.positions == {} and source.last_poll is None

    records = read_n(source, 5)

    # A tombstone's value is None.
    assert all(record.topic == topic for record in records)
    assert all(type(record.value) is bytes for record in records if (record.partition, record.offset) != (0, 1))
    assert by_position(records) == [(0, 0, b"a0"), (0, 1, None), (0, 2, b'{"x": 1}'), (1, 0, b"b0"), (1, 1, b"b1")]
    for partition in (0, 1):  # each partition's records come in offset order
        offsets = [record.offset for record in records if record.partition == partition]
        assert offsets == sorted(offsets)
    assert source.positions == {(topic, 0): 3, (topic, 1): 2}  # the next offset to read: last + 1
    assert source.assigned and source.last_poll is not None

    assert source.poll(300) == []  # nothing more, and the positions stay
    assert source.positions == {(topic, 0): 3, (topic, 1): 2}

    # The pipeline takes the batch as it comes: the tombstone is rejected as an empty message, not an exception.
    rejected = Pipeline(parse_config({})).apply(records)
    tombstone = [(letter.record.partition, letter.record.offset) for letter in rejected if letter.record.value is None]
    assert tombstone == [(0, 1)]
    assert [letter.invalid.reason for letter in rejected if letter.record.value is None] == ["not_json"]


def test_a_new_member_resumes_after_the_offsets_committed_by_the_last(
    kafka_broker, new_topic, source_config, open_source
):
    topic = new_topic(partitions=1)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(0, f"old-{i}".encode()) for i in range(5)])
    first = open_source(source_config(topic, group))
    assert [record.offset for record in read_n(first, 5)] == [0, 1, 2, 3, 4]
    first.commit({**first.positions, (topic, 7): 1})  # a partition it does not own is left out, not an error
    assert committed(kafka_broker, group, topic, 0) == 5
    first.close()

    produce(kafka_broker, topic, [(0, f"new-{i}".encode()) for i in range(3)])
    second = open_source(source_config(topic, group))
    records = read_n(second, 3)  # an old record read again would come first, being earlier in the partition
    assert by_position(records) == [(0, 5, b"new-0"), (0, 6, b"new-1"), (0, 7, b"new-2")]
    assert second.positions == {(topic, 0): 8}


def test_an_assigned_partition_resumes_where_its_saved_state_stands(
    kafka_broker, new_topic, source_config, open_source
):
    """on_assign restores the partitions' state and says where it stands: reading starts there, ahead of the
    group's committed offset (a crash between saving and committing) or behind it (a stale owner committed
    further: the restored state does not hold those events, so they are read again)."""
    topic = new_topic(partitions=3)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(p, f"{p}-{i}".encode()) for i in range(10) for p in range(3)])
    _commit_for_group(kafka_broker, group, {(topic, 0): 3, (topic, 1): 6, (topic, 2): 8})
    asked: list[list] = []

    def on_assign(partitions: list) -> dict:
        asked.append(sorted(partitions))
        return {(topic, 0): 7, (topic, 1): 2}  # partition 2: no saved state

    source = open_source(source_config(topic, group), on_assign=on_assign)
    records = read_n(source, 3 + 8 + 2)

    assert asked == [[(topic, 0), (topic, 1), (topic, 2)]]
    expected = [(0, i) for i in range(7, 10)] + [(1, i) for i in range(2, 10)] + [(2, i) for i in range(8, 10)]
    assert by_position(records) == [(p, i, f"{p}-{i}".encode()) for p, i in expected]
    assert source.positions == {(topic, 0): 10, (topic, 1): 10, (topic, 2): 10}


def test_lag_reports_the_backlog_at_most_once_a_second_and_reaches_zero(
    kafka_broker, new_topic, source_config, open_source
):
    topic = new_topic(partitions=1)
    n = 30
    produce(kafka_broker, topic, [(0, f"e-{i}".encode()) for i in range(n)])
    source = open_source(source_config(topic, f"{topic}-group", max_poll_records=2))
    assert source.lag == {}
    read: list = []
    wait_for(lambda: read.extend(poll_records(source, 200)) or read, JOIN_S, "the first records", every_s=0)
    assert len(read) <= 2  # max_poll_records: the rest of the backlog waits

    time.sleep(1.05)  # past the once-a-second limit: the next poll measures the lag
    read += poll_records(source, 200)
    position = source.positions[topic, 0]
    assert position == len(read) < n
    assert source.lag == {(topic, 0): n - position}
    measured = dict(source.lag)

    read += poll_records(source, 200)  # within the second: the lag is not measured again
    assert source.positions[topic, 0] > position
    assert source.lag == measured

    def caught_up() -> bool:
        read.extend(poll_records(source, 100))
        return source.lag == {(topic, 0): 0}

    wait_for(caught_up, 15, "the lag to reach 0", every_s=0.05)
    assert [record.offset for record in read] == list(range(n))
    assert source.positions == {(topic, 0): n}


def test_revoked_partitions_are_checkpointed_and_committed_so_the_next_owners_read_nothing_twice(
    kafka_broker, new_topic, source_config, open_source
):
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(partition, f"{partition}-{i}".encode()) for i in range(2) for partition in (0, 1)])
    revoked_with: list[tuple] = []
    first = open_source(
        source_config(topic, group),
        on_revoke=lambda partitions: revoked_with.append((sorted(partitions), dict(first.positions))) or True,
    )
    read = read_n(first, 4)
    assert revoked_with == []  # nothing revoked while it was alone

    second = open_source(source_config(topic, group))
    with polling_in_background(first, into=read):
        wait_for(
            lambda: read.extend(poll_records(second, 100)) or second.assigned,
            JOIN_S,
            "the second member's partition",
            every_s=0,
        )
        # Called with the partitions taken away (all of them: the group's protocol is eager) while their
        # positions were there to save.
        assert revoked_with == [([(topic, 0), (topic, 1)], {(topic, 0): 2, (topic, 1): 2})]
        produce(kafka_broker, topic, [(partition, f"{partition}-{i}".encode()) for i in (2, 3) for partition in (0, 1)])
        wait_for(
            lambda: read.extend(poll_records(second, 100)) or len(read) >= 8,
            JOIN_S,
            "the records sent after the rebalance",
            every_s=0,
        )
        read.extend(poll_records(second, 500))

    assert first.assigned and second.assigned  # one partition each
    # Each new owner went on from the revoked positions: nothing read twice, nothing skipped.
    assert by_position(read) == [(p, i, f"{p}-{i}".encode()) for p in (0, 1) for i in range(4)]
    assert all((committed(kafka_broker, group, topic, p) or 0) >= 2 for p in (0, 1))


def test_a_rebalance_in_the_middle_of_a_stream_reads_every_record_once(
    kafka_broker, new_topic, source_config, open_source
):
    """Partitions move while batches are in flight (small batches, a producer sending throughout): what the
    first member read before the revocation is committed by the handshake and never read again; what it had
    fetched but not yet returned is dropped and read by the next owner."""
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    n = 3_000
    messages = [(i % 2, f"{i % 2}-{i // 2}".encode()) for i in range(n)]
    first = open_source(source_config(topic, group, max_poll_records=50), on_revoke=lambda partitions: True)
    read_by_first: list = []
    produce(kafka_broker, topic, messages[:200])
    wait_for(
        lambda: read_by_first.extend(poll_records(first, 100)) or read_by_first,
        JOIN_S,
        "the first member's records",
        every_s=0,
    )
    second = open_source(source_config(topic, group, max_poll_records=50))
    read_by_second: list = []

    rebalanced = threading.Event()

    def stream() -> None:  # slowly until the second member has its share (longer than JOIN_S), then faster
        start = 200
        while start < n:
            size = 50 if rebalanced.is_set() else 5
            produce(kafka_broker, topic, messages[start : start + size])
            start += size
            time.sleep(0.1)

    producing = threading.Thread(target=stream)
    with polling_in_background(first, into=read_by_first) as failures:
        producing.start()
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or second.assigned,
            JOIN_S,
            "the second's share",
            every_s=0,
        )
        rebalanced.set()
        assert producing.is_alive(), "the stream ended before the rebalance"
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or len(read_by_first) + len(read_by_second) >= n,
            60,
            "every record, by one member or the other",
            every_s=0,
        )
        producing.join()
    assert not failures, failures
    read = by_position(read_by_first + read_by_second)
    assert len(read) == len(set(read)) == n  # nothing read twice, nothing skipped
    assert first.assigned and second.assigned and read_by_second


def test_kafka_python_clients_close_their_connections_with_their_io_thread_stopped(
    kafka_broker, new_topic, monkeypatch, caplog
):
    """kafka-python 3.0.12 closes connections from the thread calling ``close`` while its IO thread may be
    reading one; that thread then logs an AttributeError traceback (one close in twenty with data in flight;
    once at the demo's Ctrl-C in CI). The source and ``create_topics`` stop the IO thread first, every
    connection is closed with none running, and the member still leaves its group."""
    topic = new_topic(partitions=1)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(0, f"{i}".encode()) for i in range(3)])
    io_thread_running = []  # at each connection closed by another thread than the IO thread
    close_connection = KafkaTCPTransport._close
    earlier = set(threading.enumerate())  # a client an earlier test left open is not this test's

    def observed(transport, error=None):
        if not threading.current_thread().name.startswith("kafka-io-"):
            threads = set(threading.enumerate()) - earlier
            io_thread_running.append(any(thread.name.startswith("kafka-io-") for thread in threads))
        return close_connection(transport, error)

    monkeypatch.setattr(KafkaTCPTransport, "_close", observed)
    create_topics({"bootstrap_servers": kafka_broker.bootstrap_servers}, {f"{topic}-other": 1})
    assert io_thread_running and not any(io_thread_running)

    io_thread_running.clear()
    source = KafkaSource(kafka_config(kafka_broker, topic, group))
    read_n(source, 3)
    with caplog.at_level(logging.INFO, logger="kafka.coordinator"):
        source.close()
    assert io_thread_running and not any(io_thread_running)
    assert f"LeaveGroup request for group {group} returned successfully" in caplog.text  # what the broker answered


def test_a_kafka_python_member_closed_while_it_joins_logs_no_error(kafka_broker, new_topic, caplog):
    """Closing right after the first poll abandons requests in flight (a connection still opening, the
    coordinator still sought), which kafka-python logs as errors: at every restart, a page for whoever watches
    the daemon's errors. Leaving on purpose, the source logs none, and kafka-python's log level is as before."""
    topic = new_topic(partitions=1)
    source = KafkaSource(kafka_config(kafka_broker, topic, f"{topic}-group"))
    with caplog.at_level(logging.ERROR, logger="kafka"):
        source.poll(0)
        assert not source.assigned  # still joining
        source.close()
        assert logging.getLogger("kafka").level == logging.ERROR
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("kafka") and r.levelno >= logging.ERROR]
    assert errors == []  # its warnings (a slow task on a loaded machine) are not what this is about


def test_confluent_commits_and_readiness_while_the_broker_is_away(tmp_path, open_source, caplog):
    """librdkafka runs in the daemon's own process (no child): a commit must not hold the loop while the group
    coordinator is unreachable (a synchronous one waited for the session timeout), a failed one is logged, and
    ``connected`` follows the broker (the daemon's /readyz reads it)."""
    broker = TansuBroker(log_path=tmp_path / "tansu.log").start()
    try:
        create_topics({"bootstrap_servers": broker.bootstrap_servers}, {"away": 1})
        produce(broker, "away", [(0, b"one"), (0, b"two")])
        source = open_source(kafka_config(broker, "away", "away-group", client="confluent"))
        read_n(source, 2)
        wait_for(lambda: source.poll(100) == [] and source.connected, 5, "connected", every_s=0)

        broker.stop()
        wait_for(
            lambda: source.poll(100) == [] and not source.connected,
            10,
            "not connected while the broker is away",
            every_s=0,
        )
        started = time.monotonic()
        source.commit(source.positions)
        assert time.monotonic() - started < 0.5
        wait_for(
            lambda: source.poll(100) == [] and "offset commit of away[0] failed" in caplog.text,
            20,
            "the log",
            every_s=0,
        )

        broker.start()
        wait_for(
            lambda: source.poll(100) == [] and source.connected, 20, "connected once the broker is back", every_s=0
        )
    finally:
        broker.stop()


def test_dead_letters_carry_the_original_bytes_and_five_headers(kafka_broker, new_topic):
    topic = new_topic(partitions=1)
    config = kafka_config(kafka_broker, topic, f"{topic}-group")
    letters = KafkaDeadLetters(KafkaSink(client_settings(config), config.dead_letter_topic))
    originals = [
        (Record(b"\xff\xfe not utf-8 \x00", topic, 0, 41), "not_utf8", "byte 0"),
        (Record(b'{"model": "m"}', topic, 3, 2**40), "missing_field", "request_id — é"),
        (Record(None, topic, 1, 7), "not_json", "empty"),  # a tombstone, as the Kafka source passes it on
    ]
    try:
        for record, reason, detail in originals:
            letters.write(record, reason, detail)
        letters.flush()
        assert letters.sink.n_failed == 0
    finally:
        letters.close()

    reader = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap_servers, auto_offset_reset="earliest")
    try:
        reader.assign([TopicPartition(config.dead_letter_topic, 0)])
        messages = []
        wait_for(
            lambda: messages.extend(sum(reader.poll(200).values(), [])) or len(messages) >= 3,
            15,
            "3 letters",
            every_s=0,
        )
    finally:
        reader.close(autocommit=False)

    assert len(messages) == 3
    for message, (record, reason, detail) in zip(messages, originals):
        assert message.value == (record.value or b"")  # a tombstone's letter is empty, not a tombstone
        assert message.key is None
        assert list(message.headers) == [
            ("driftwarden.reason", reason.encode()),
            ("driftwarden.detail", detail.encode("utf-8")),
            ("driftwarden.source.topic", topic.encode()),
            ("driftwarden.source.partition", str(record.partition).encode()),
            ("driftwarden.source.offset", str(record.offset).encode()),
        ]


# --- Client settings: no broker needed ------------------------------------------------------------------------


def test_client_settings_pass_sasl_and_tls_settings_and_secrets_through():
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": ["b-1.example:9096", "b-2.example:9096"],
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "driftwarden",
                "sasl_password": "from-the-file",
                "ssl_cafile": "/etc/kafka/ca.pem",
                "ssl_certfile": "/etc/kafka/client.pem",
                "ssl_keyfile": "/etc/kafka/client.key",
                "ssl_password": "key-secret",
            }
        },
        environ={"DRIFTWARDEN_KAFKA_SASL_PASSWORD": "from-the-env"},
    )
    settings = client_settings(config.kafka)
    expected = {
        "bootstrap_servers": ["b-1.example:9096", "b-2.example:9096"],
        "security_protocol": "SASL_SSL",
        "client_id": "driftwarden",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "driftwarden",
        "sasl_plain_password": "from-the-env",  # the environment overrides the file
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_password": "key-secret",
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert None not in settings.values()
    assert type(settings["sasl_plain_password"]) is str and type(settings["ssl_password"]) is str  # not SecretStr
    assert "from-the-env" not in repr(config) and "key-secret" not in repr(config)  # the config keeps them hidden


def test_client_settings_leave_out_what_is_not_set():
    settings = client_settings(parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9092"}}, environ={}).kafka)
    assert settings["bootstrap_servers"] == "127.0.0.1:9092" and settings["security_protocol"] == "PLAINTEXT"
    assert None not in settings.values()
    assert not [key for key in settings if key.startswith(("sasl_", "ssl_"))]


@pytest.mark.parametrize("key, setting", [("sasl_password", "sasl_plain_password"), ("ssl_password", "ssl_password")])
def test_an_empty_secret_is_passed_as_an_empty_string(key, setting):
    config = parse_config({"kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", key: ""}}, environ={})
    value = client_settings(config.kafka)[setting]
    assert type(value) is str and value == ""


def test_confluent_settings_map_the_same_section_onto_librdkafkas_names(tmp_path):
    """One section, two clients: every standard setting reaches librdkafka under its name, and librdkafka takes
    them all (it refuses an unknown name or a missing file when the consumer is made)."""
    certificates = make_certificates(tmp_path)
    section = {
        "client": "confluent",
        "bootstrap_servers": ["b-1.example:9096", "b-2.example:9096"],
        "group_id": "replicas",
        "auto_offset_reset": "latest",
        "max_poll_interval": "2m",
        "session_timeout": "30s",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "driftwarden",
        "sasl_password": "from-the-file",
        "ssl_cafile": str(certificates.ca),
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
    }
    config = parse_config({"kafka": section}, environ={"DRIFTWARDEN_KAFKA_SASL_PASSWORD": "from-the-env"}).kafka
    settings = consumer_settings(config)
    assert {key: value for key, value in settings.items() if key != "statistics.interval.ms"} == {
        "bootstrap.servers": "b-1.example:9096,b-2.example:9096",
        "security.protocol": "sasl_ssl",
        "client.id": "driftwarden",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "driftwarden",
        "sasl.password": "from-the-env",
        "ssl.ca.location": str(certificates.ca),
        "ssl.certificate.location": str(certificates.client_cert),
        "ssl.key.location": str(certificates.client_key),
        "group.id": "replicas",
        "enable.auto.commit": False,
        "auto.offset.reset": "latest",
        "max.poll.interval.ms": 120_000,
        "session.timeout.ms": 30_000,
        "heartbeat.interval.ms": 10_000,
        "fetch.queue.backoff.ms": 100,
    }
    ConfluentConsumer(settings).close()  # no broker needed: the settings are checked when the consumer is made
    plain = consumer_settings(parse_config({"kafka": {"client": "confluent"}}, environ={}).kafka)
    assert not [key for key in plain if key.startswith(("sasl.", "ssl."))] and None not in plain.values()


def test_kafka_client_names_the_key_when_it_is_unknown():
    with pytest.raises(ConfigError, match=r"kafka\.client: must be one of 'kafka-python' or 'confluent'"):
        parse_config({"kafka": {"client": "librdkafka"}}, environ={})


def test_without_a_checkpoint_the_revoked_offsets_are_not_committed(
    kafka_broker, new_topic, source_config, open_source
):
    """on_revoke returning False (the state could not be saved): the next owner reads again from the last commit."""
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(partition, f"{partition}-{i}".encode()) for i in range(2) for partition in (0, 1)])
    first = open_source(source_config(topic, group), on_revoke=lambda partitions: False)
    read_n(first, 4)
    second = open_source(source_config(topic, group))
    read_by_second: list = []
    with polling_in_background(first):
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or len(read_by_second) >= 2,
            JOIN_S,
            "a re-read partition",
            every_s=0,
        )
    partition = read_by_second[0].partition
    assert [record.value for record in read_by_second] == [f"{partition}-{i}".encode() for i in range(2)]
    assert committed(kafka_broker, group, topic, partition) is None

"""Kafka: the consumer group the daemon reads, and the topics it writes (dead letters, serving events).

This is the only module that imports the Kafka client (kafka-python). Client
settings are Kafka's standard ones, so the same config works against Apache
Kafka, Redpanda, MSK or Tansu. Secrets pass from the config (itself filled
from the environment) to the client and are never logged.

Offsets are committed by hand, and only by the daemon after a checkpoint that
covers them is on disk: see :mod:`monitor.run.checkpoint` and :mod:`monitor.run.daemon`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from monitor.ingest import Offsets, Partition, PartitionBatch, Record, SourceProgress, offsets_of

if TYPE_CHECKING:  # annotations only: the producer SDK imports this module, and must not load the config's stack
    from pydantic import SecretStr

    from monitor.config import KafkaConfig

__all__ = [
    "KafkaDeadLetters",
    "KafkaError",
    "KafkaSink",
    "KafkaSource",
    "client_settings",
    "create_topics",
]

log = logging.getLogger(__name__)

_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")


def client_settings(config: KafkaConfig) -> dict:
    """kafka-python connection settings (servers, TLS, SASL) from the ``kafka`` config section."""
    settings = {
        "bootstrap_servers": config.bootstrap_servers,
        "security_protocol": config.security_protocol,
        "client_id": "driftwarden",
        "bootstrap_timeout_ms": 5_000,  # kafka-python waits 30 s; the daemon retries itself and must stop promptly
    }
    optional = {
        "sasl_mechanism": config.sasl_mechanism,
        "sasl_plain_username": config.sasl_username,
        "sasl_plain_password": _secret(config.sasl_password),
        "ssl_cafile": config.ssl_cafile,
        "ssl_certfile": config.ssl_certfile,
        "ssl_keyfile": config.ssl_keyfile,
        "ssl_password": _secret(config.ssl_password),
    }
    settings.update((key, value) for key, value in optional.items() if value is not None)
    return settings


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


class KafkaSource(SourceProgress):
    """The daemon's consumer group member: what each poll read, per partition, and the offsets it reached.

    The state of a partition moves with it (see :mod:`monitor.run.daemon`), so the source asks its owner at
    each turn of the group, inside :meth:`poll` (where the client allows no blocking call on itself):
    ``on_assign(partitions)`` restores their state and returns where it stands, the next offset to read of
    each partition that has saved state (reading starts there; the others start at the group's committed
    offset); ``on_revoke(partitions)`` checkpoints and forgets them, and when it returns True (the saved
    state covers :attr:`positions`) their offsets are committed asynchronously while they are still ours.
    """

    def __init__(
        self,
        config: KafkaConfig,
        on_assign: Callable[[list[Partition]], Offsets] = lambda partitions: {},
        on_revoke: Callable[[list[Partition]], bool] = lambda partitions: False,
    ):
        super().__init__()
        settings = {
            **client_settings(config),
            "group_id": config.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": config.auto_offset_reset,
            "max_poll_records": config.max_poll_records,
            "max_poll_interval_ms": config.max_poll_interval_ms,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": max(100, config.session_timeout_ms // 3),
        }
        self._consumer = KafkaConsumer(**settings)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._owned: set[TopicPartition] = set()  # kafka-python's assignment() lags behind a rebalance
        self._consumer.subscribe(config.topic_names, listener=_Rebalance(self))

    @property
    def assigned(self) -> bool:
        return bool(self._owned)

    @property
    def connected(self) -> bool:
        """Whether the client holds a connection to a broker of the cluster.

        kafka-python's ``poll`` returns at once, empty, while no broker answers, so a recent poll does not
        mean Kafka is reachable. This reads the client's connection table (kafka-python 3.x has no public
        call for it); if a release moves it, this says True rather than keep a healthy daemon unready.
        """
        try:
            client = self._consumer._client  # type: ignore[attr-defined]  # private: no public call for it
            return any(client.connected(broker.node_id) for broker in client.cluster.brokers())
        except AttributeError:
            return True

    def poll(self, timeout_ms: int = 500) -> list[PartitionBatch]:
        """What the next poll read (possibly nothing), one :class:`PartitionBatch` per partition."""
        batches = []
        for partition, messages in self._consumer.poll(timeout_ms=timeout_ms).items():
            offsets = offsets_of(messages, _OFFSET)
            batches.append(PartitionBatch(partition.topic, partition.partition, list(map(_VALUE, messages)), offsets))
            self.positions[partition.topic, partition.partition] = offsets[-1] + 1
        self._polled()
        return batches

    def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` for the partitions still assigned; a failed commit is logged, not raised."""
        commits = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in offsets.items()
            if TopicPartition(topic, partition) in self._owned
        }
        if not commits:
            return
        try:
            self._consumer.commit(commits)
        except KafkaError as error:
            log.warning("offset commit failed (the checkpoint still holds them): %s", error)

    def close(self) -> None:
        """Leave the group at once, so that its partitions move to another member without waiting.

        Nothing is committed here: the owner of the state commits what its last checkpoint covers. kafka-python
        logs each request that closing abandons (a connection still opening, a coordinator still sought) as an
        error; leaving on purpose, those are not errors, so its log is held to critical ones meanwhile.
        """
        self._closing = True
        _stop_io_thread(self._consumer)
        kafka_log = logging.getLogger("kafka")
        level = kafka_log.level
        kafka_log.setLevel(logging.CRITICAL)
        try:
            self._consumer.close(autocommit=False)
        finally:
            kafka_log.setLevel(level)

    def _update_lag(self) -> None:
        lag = {}
        for partition in self._owned:
            key = (partition.topic, partition.partition)
            if key not in self.positions:
                position = self._consumer.position(partition, timeout_ms=0)
                if position is None:
                    continue
                self.positions[key] = position
            end = self._consumer.highwater(partition)
            if end is not None:
                lag[key] = max(0, end - self.positions[key])
        self.lag = lag

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        self._owned.update(partitions)
        if partitions:
            saved = self._on_assign([(partition.topic, partition.partition) for partition in partitions])
            for partition in partitions:
                offset = saved.get((partition.topic, partition.partition))
                if offset is not None:
                    self._consumer.seek(partition, offset)
                    self.positions[partition.topic, partition.partition] = offset
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "no partitions")

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        self._owned.difference_update(partitions)
        if not partitions or self._closing:
            return
        revoked = [(partition.topic, partition.partition) for partition in partitions]
        checkpointed = self._on_revoke(revoked)
        self.lag = {key: lag for key, lag in self.lag.items() if key not in revoked}  # a scrape may be reading it
        commits = {}
        for partition in partitions:
            position = self.positions.pop((partition.topic, partition.partition), None)
            if position is not None:
                commits[partition] = OffsetAndMetadata(position, "", -1)
        if commits and checkpointed:
            self._consumer.commit_async(commits)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource):
        self.source = source

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.source._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.source._assigned(list(assigned))


class KafkaSink:
    """Asynchronous sends to one topic. Failed deliveries are counted in :attr:`n_failed` and logged."""

    def __init__(self, settings: dict, topic: str, **overrides: Any):
        self.topic = topic
        self.n_failed = 0
        producer_settings: dict[str, Any] = {"acks": "all", "linger_ms": 20, **settings, **overrides}
        self._producer = KafkaProducer(**producer_settings)
        #: The largest message the client sends (its ``max_request_size``); larger ones it refuses at once.
        self.max_message_bytes: int = self._producer.config["max_request_size"]

    def send(
        self, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> FutureRecordMetadata:
        """Queue one message; blocks only while the client's own buffer is full (``max_block_ms``).

        The returned future resolves when the broker has the message (or fails).
        """
        future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        future.add_errback(self._failed)
        return future

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until what is queued is delivered or has failed; False if some is still pending after ``timeout_s``."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError:
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued within ``timeout_s``, then stop; what is still pending is dropped (as failed)."""
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaTimeoutError:  # kafka-python's close gives up here and leaves its sender thread running
            message = "closing the producer for %s: the broker took no more in %g s"
            log.warning(message, self.topic, timeout_s, extra={"topic": self.topic})
            sender = self._producer._sender  # type: ignore[attr-defined]  # private: the stub omits it
            sender.force_close()  # fails what is pending, and the thread ends
            sender.join(timeout_s)

    def _failed(self, error: Exception) -> None:
        self.n_failed += 1
        log.error("delivery to %s failed: %s", self.topic, error, extra={"topic": self.topic})


class KafkaDeadLetters:
    """Rejected records sent to the dead-letter topic: the original bytes, why, and where they came from.

    Headers: ``driftwarden.reason``, ``driftwarden.detail``, ``driftwarden.source.topic``,
    ``driftwarden.source.partition`` and ``driftwarden.source.offset`` (all UTF-8 text). A record larger
    than the producer may send (``max_request_size``, 1 MiB by default; a compressed message passes the
    broker far larger) is sent truncated to fit, with ``driftwarden.truncated: true`` and
    ``driftwarden.original_size`` (bytes) added.

    A send the client refuses or the broker fails is kept and sent again by the next :meth:`flush`, which
    says False until every dead letter so far is delivered: the checkpoint that would commit past them is
    aborted meanwhile (:mod:`monitor.run.checkpointer`). :attr:`backlog` counts what waits to be sent again.
    """

    def __init__(self, sink: KafkaSink, flush_timeout_s: float = 10.0):
        self.sink = sink
        self.flush_timeout_s = flush_timeout_s
        self.n_failed = 0  # deliveries that failed (each retry that fails counts again)
        self._failed: list[tuple[bytes, list[tuple[str, bytes]]]] = []

    @property
    def backlog(self) -> int:
        return len(self._failed)

    def write(self, record: Record, reason: str, detail: str) -> None:
        value = record.value or b""  # a tombstone's value is None
        headers = [
            ("driftwarden.reason", reason.encode()),
            ("driftwarden.detail", detail.encode()),
            ("driftwarden.source.topic", record.topic.encode()),
            ("driftwarden.source.partition", str(record.partition).encode()),
            ("driftwarden.source.offset", str(record.offset).encode()),
        ]
        room = self.sink.max_message_bytes - _RECORD_OVERHEAD - sum(len(k) + len(v) for k, v in headers)
        if len(value) > room:
            headers += [("driftwarden.truncated", b"true"), ("driftwarden.original_size", str(len(value)).encode())]
            value = value[: max(0, room - _TRUNCATION_HEADERS)]
        self._send(value, headers)

    def flush(self) -> bool:
        """Send again what failed, wait for everything sent; True only if every dead letter is delivered."""
        retry, self._failed = self._failed, []
        for value, headers in retry:
            self._send(value, headers)
        return self.sink.flush(self.flush_timeout_s) and not self._failed

    def close(self) -> None:
        self.sink.close()

    def _send(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        def failed(error: Exception) -> None:
            self.n_failed += 1
            self._failed.append((value, headers))

        try:
            self.sink.send(value, headers=headers).add_errback(failed)
        except Exception as error:  # noqa: BLE001 - refused at once (buffer full, closed): one send never stops the loop
            log.error("dead letter to %s refused: %s", self.sink.topic, error, extra={"topic": self.sink.topic})
            failed(error)


#: Bytes a record adds to its key, value and headers in a batch (varints, attributes, batch header), rounded up.
_RECORD_OVERHEAD = 1_024
_TRUNCATION_HEADERS = 64


def create_topics(settings: dict, partitions: dict[str, int]) -> None:
    """Create topics with the given partition counts; topics that exist already are left as they are."""
    admin = KafkaAdminClient(**settings)
    try:
        for name, count in partitions.items():
            try:
                admin.create_topics([NewTopic(name, num_partitions=count, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        _stop_io_thread(admin)
        admin.close()


def _stop_io_thread(client: KafkaConsumer | KafkaAdminClient) -> None:
    """Stop the client's IO thread, so that its ``close`` runs the network loop on the calling thread.

    kafka-python 3.0.12 closes the connections from the thread calling ``close`` while its IO thread may be
    reading one of them: that thread then finds the socket gone and logs an ``AttributeError`` traceback,
    after about one close in twenty with data in flight. Without the IO thread, the client drives its loop
    on the caller's thread (its ``run``), leaving the group included. If a release moves ``_net``, this
    does nothing.
    """
    network = getattr(client, "_net", None)  # private: no public call for it
    if network is not None:
        network.stop()

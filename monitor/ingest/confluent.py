"""The consumer group through confluent-kafka (librdkafka): ``kafka.client: confluent``.

The same member as :class:`~monitor.ingest.kafka.KafkaSource`, with the same
face (``poll``, ``commit``, ``positions``, ``lag``, ``assigned``,
``connected``, ``last_poll``, ``close``) and the same promises: offsets are
committed by hand, only for partitions still owned, and only by the daemon
after a checkpoint covers them; a partition assigned resumes where its
saved state stands (``on_assign``); before partitions are taken away,
``on_revoke`` checkpoints and forgets them, and their positions are committed
while they are still ours.

librdkafka fetches and decompresses in its own threads, outside the
interpreter lock, so the daemon runs this source in its own process (no
consumer child process; see the README's "Ingest, end to end"). Dead letters still
go through :class:`~monitor.ingest.kafka.KafkaSink`.

Settings are the ``kafka`` section's standard ones, mapped onto librdkafka's
names in :func:`consumer_settings`:

>>> from monitor.config import parse_config
>>> section = {"bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "SASL_SSL",
...            "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}
>>> settings = consumer_settings(parse_config({"kafka": section}, environ={}).kafka)
>>> settings["bootstrap.servers"], settings["security.protocol"], settings["sasl.password"]
('a:9092,b:9092', 'sasl_ssl', 'p')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from operator import methodcaller
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from monitor.config import KafkaConfig
from monitor.ingest import Offsets, Partition, PartitionBatch, SourceProgress, offsets_of

__all__ = ["ConfluentSource", "connection_settings", "consumer_settings"]

log = logging.getLogger(__name__)

_RETRY_COMMIT_S = 1.0
# A message's parts are read by comprehensions: in CPython 3.11, map() with a methodcaller takes 80 ns a message
# where a comprehension calling the method takes 24 (a pass each for error, topic, partition and value: about a
# twentieth of the daemon's time per event, measured on bench/ingest.py's events).
_OFFSET = methodcaller("offset")  # read of two messages a batch, where offsets follow each other
#: librdkafka reports each broker's connection state this often (read by :attr:`ConfluentSource.connected`).
_STATISTICS_EVERY_MS = 1_000
#: How long librdkafka waits to fetch again once its queue holds ``queued.min.messages`` (100,000). Its default,
#: 1 s, caps a partition at 100,000 messages a second whenever the daemon reads slower than the broker serves:
#: the queue fills, the fetcher sleeps a second, the daemon drains it in less and waits (librdkafka #2879;
#: bench/ingest.py read 108,000 events/s with it, 139,000 without).
_FETCH_QUEUE_BACKOFF_MS = 100


def connection_settings(config: KafkaConfig) -> dict[str, Any]:
    """librdkafka's connection settings (servers, TLS, SASL) from the ``kafka`` section: one place maps the names."""
    servers = config.bootstrap_servers
    settings: dict[str, Any] = {
        "bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers),
        "security.protocol": config.security_protocol.lower(),
        "client.id": "driftwarden",
    }
    optional = {
        "sasl.mechanism": config.sasl_mechanism,
        "sasl.username": config.sasl_username,
        "sasl.password": None if config.sasl_password is None else config.sasl_password.get_secret_value(),
        "ssl.ca.location": config.ssl_cafile,
        "ssl.certificate.location": config.ssl_certfile,
        "ssl.key.location": config.ssl_keyfile,
        "ssl.key.password": None if config.ssl_password is None else config.ssl_password.get_secret_value(),
    }
    settings.update((key, value) for key, value in optional.items() if value is not None)
    return settings


def consumer_settings(config: KafkaConfig) -> dict[str, Any]:
    """The consumer group member's librdkafka settings; the same defaults as kafka-python's where Kafka has one."""
    return {
        **connection_settings(config),
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": config.auto_offset_reset,
        "max.poll.interval.ms": config.max_poll_interval_ms,
        "session.timeout.ms": config.session_timeout_ms,
        "heartbeat.interval.ms": max(100, config.session_timeout_ms // 3),
        "statistics.interval.ms": _STATISTICS_EVERY_MS,
        "fetch.queue.backoff.ms": _FETCH_QUEUE_BACKOFF_MS,
    }


class ConfluentSource(SourceProgress):
    """The daemon's consumer group member on librdkafka: what each poll read, per partition, and the offsets it
    reached.

    At each turn of the group, inside :meth:`poll`, it asks the owner of the state as
    :class:`~monitor.ingest.kafka.KafkaSource` does: ``on_assign(partitions)`` restores theirs and returns the
    next offset to read of each that has saved state (the others start at the group's committed offset);
    ``on_revoke(partitions)`` checkpoints and forgets them (also when they were lost with the session), and
    when it returns True the offsets of revoked partitions are committed, synchronously, while they are
    still ours.
    """

    def __init__(
        self,
        config: KafkaConfig,
        on_assign: Callable[[list[Partition]], Offsets] = lambda partitions: {},
        on_revoke: Callable[[list[Partition]], bool] = lambda partitions: False,
    ):
        super().__init__()
        settings = {
            **consumer_settings(config),
            "logger": _librdkafka_log,
            "error_cb": self._error,
            "stats_cb": self._statistics,
            "on_commit": self._committed,
        }
        self._consumer = Consumer(settings)
        self._max_records = config.max_poll_records
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._owned: set[tuple[str, int]] = set()
        self._brokers_up = False
        self._reported: set[int] = set()  # kinds of error logged since a broker connection was last up
        self._sent: Offsets = {}  # the last offset sent for commit, per partition
        self._retry: Offsets = {}  # commits that failed and were not superseded: sent again from poll
        self._retry_at = 0.0
        self._consumer.subscribe(
            config.topic_names, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    @property
    def assigned(self) -> bool:
        return bool(self._owned)

    @property
    def connected(self) -> bool:
        """Whether a broker connection was up at librdkafka's last statistics (once a second)."""
        return self._brokers_up

    def poll(self, timeout_ms: int = 500) -> list[PartitionBatch]:
        """What the next poll read (possibly nothing), one :class:`PartitionBatch` per partition.

        librdkafka drops what it had fetched for a partition revoked during the call.
        """
        messages = self._consumer.consume(self._max_records, timeout_ms / 1000)
        errors = [message.error() for message in messages]
        if errors.count(None) < len(errors):
            self._errors(messages)
            messages = [message for message in messages if message.error() is None]
        batches = [
            PartitionBatch(topic, partition, [message.value() for message in part], offsets_of(part, _OFFSET))
            for (topic, partition), part in _by_partition(messages)
        ]
        self.positions.update({(batch.topic, batch.partition): batch.offsets[-1] + 1 for batch in batches})
        now = self._polled()
        if self._retry and now - self._retry_at >= _RETRY_COMMIT_S:
            self._retry_at = now
            self.commit(self._retry)
        return batches

    def commit(self, offsets: Offsets) -> None:
        """Commit ``offsets`` for the partitions still assigned, asynchronously: the loop never waits for the
        group coordinator (during an outage a synchronous commit blocks for the session timeout). A failed
        commit is logged and sent again from :meth:`poll` (once a second) until it succeeds or a later one
        supersedes it: the daemon commits an offset only once, so one failure would otherwise leave the
        group behind the checkpoint until new events come."""
        commits = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in self._owned
        ]
        if commits:
            for partition in commits:
                self._sent[partition.topic, partition.partition] = partition.offset
                self._retry.pop((partition.topic, partition.partition), None)  # superseded: this one is later
            try:
                self._consumer.commit(offsets=commits, asynchronous=True)
            except KafkaException as error:
                log.warning("offset commit failed (the checkpoint still holds them): %s", error)

    def close(self) -> None:
        """Leave the group at once; nothing is committed here (the owner of the state commits what it covers)."""
        self._closing = True
        self._consumer.close()

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (served inside :meth:`poll`)."""
        failed = [partition for partition in partitions if partition.error is not None or error is not None]
        if failed and not self._retry:  # once per run of failures (during an outage every retry fails)
            where = ", ".join(f"{p.topic}[{p.partition}]" for p in failed)
            log.warning("offset commit of %s failed, to be sent again: %s", where, error or failed[0].error)
        for partition in failed:
            key = (partition.topic, partition.partition)
            if self._sent.get(key) == partition.offset and key in self._owned:  # not superseded by a later commit
                self._retry[key] = partition.offset

    def _errors(self, messages: list[Message]) -> None:
        for message in messages:
            error = message.error()
            if error is not None:
                self._error(error)

    def _error(self, error: KafkaError) -> None:
        """librdkafka retries by itself: each kind of error is logged once until a broker connection is up again."""
        if error.code() not in self._reported:
            self._reported.add(error.code())
            log.warning("Kafka: %s; librdkafka is retrying", error.str())

    def _statistics(self, statistics: str) -> None:
        brokers = json.loads(statistics).get("brokers", {})
        self._brokers_up = any(broker.get("state") == "UP" for broker in brokers.values())
        if self._brokers_up:
            self._reported.clear()

    def _update_lag(self) -> None:
        lag = {}
        for key in self._owned:
            if key not in self.positions:
                (position,) = self._consumer.position([TopicPartition(*key)])
                if position.offset < 0:
                    continue
                self.positions[key] = position.offset
            _, end = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            if end >= 0:
                lag[key] = max(0, end - self.positions[key])
        self.lag = lag

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._owned.update((partition.topic, partition.partition) for partition in partitions)
        if partitions:
            saved = self._on_assign([(partition.topic, partition.partition) for partition in partitions])
            for partition in partitions:
                offset = saved.get((partition.topic, partition.partition))
                if offset is not None:
                    partition.offset = offset
                    self.positions[partition.topic, partition.partition] = offset
            consumer.assign(partitions)
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "no partitions")

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(consumer, partitions, commit=True)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a rebalance (the session timed out): no longer ours to commit."""
        self._give_up(consumer, partitions, commit=False)

    def _give_up(self, consumer: Consumer, partitions: list[TopicPartition], commit: bool) -> None:
        """Checkpoint and forget ``partitions`` before they go, then commit their positions (synchronously:
        the next owner starts from them)."""
        revoked = {(partition.topic, partition.partition) for partition in partitions}
        self._owned.difference_update(revoked)
        if not revoked or self._closing:
            return
        checkpointed = self._on_revoke(sorted(revoked))
        self.lag = {key: lag for key, lag in self.lag.items() if key not in revoked}  # a scrape may be reading it
        positions = {key: self.positions.pop(key) for key in revoked if key in self.positions}
        for key in revoked:
            self._retry.pop(key, None)  # no longer ours to commit; a new owner may be ahead by now
        if positions and checkpointed and commit:
            commits = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]
            try:
                consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as error:
                log.warning("offset commit before the rebalance failed (the checkpoint holds them): %s", error)


def _by_partition(messages: list[Message]) -> list[tuple[Partition, list[Message]]]:
    """``messages`` grouped by partition, each in order: two passes in C when they share one, as usual."""
    if not messages:
        return []
    # a message without an error (as all here are) names its topic and partition
    topics = cast(list[str], [message.topic() for message in messages])
    partitions = cast(list[int], [message.partition() for message in messages])
    if topics.count(topics[0]) == len(topics) and partitions.count(partitions[0]) == len(partitions):
        return [((topics[0], partitions[0]), messages)]
    grouped: dict[Partition, list[Message]] = {}
    for key, message in zip(zip(topics, partitions), messages):
        grouped.setdefault(key, []).append(message)
    return list(grouped.items())


class _WithoutReconnectLines(logging.Filter):
    """librdkafka logs every failed reconnect (a line per backoff, during an outage); the source's ``error_cb``
    reports each new kind of error once, so these lines are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("FAIL ")


_librdkafka_log = logging.getLogger("monitor.ingest.librdkafka")
_librdkafka_log.addFilter(_WithoutReconnectLines())

"""The Kafka consumer in a child process, so that fetching and parsing overlap with the pipeline.

kafka-python parses every message in Python, under the same interpreter lock
as the pipeline; in one process the two take turns (bench/ingest.py). Here a
child process runs the :class:`~monitor.ingest.kafka.KafkaSource` and sends
what each poll read (:class:`~monitor.ingest.PartitionBatch`) through a pipe,
while the daemon applies the previous one. A thread of the daemon takes each
batch off the pipe as it comes, so the child does not wait for the pipeline
to finish a batch before it writes the next; at most :data:`BATCHES_AHEAD`
batches wait (and one the receiving thread holds), so a slow pipeline slows
the child down instead of filling memory.

:class:`ConsumerProcess` has the same face as ``KafkaSource`` (``poll``,
``commit``, ``positions``, ``lag``, ``assigned``, ``last_poll``, ``close``).
``connected`` says whether the child
holds a connection to a broker (kafka-python's polls return at once, empty,
while none answers). Its ``positions`` are those of the last batch handed to the caller, so a
checkpoint saves exactly the offsets of what was applied. At each turn of the
group the child asks the parent and waits for its answer: to restore the state
of partitions assigned and say where it stands (``on_assign``), and to
checkpoint and forget partitions before they are taken away (``on_revoke``).
If the parent dies, the child's next send fails and it leaves the group; if
the child dies, :meth:`ConsumerProcess.poll` raises.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any

from monitor.config import KafkaConfig
from monitor.ingest import Offsets, Partition, PartitionBatch
from monitor.ingest.kafka import KafkaError, KafkaSource
from monitor.logs import LogFormat, log_format, log_to_stderr
from monitor.run.heap import settle_heap

__all__ = ["ConsumerProcess"]

log = logging.getLogger(__name__)

_RETRY_S = 2.0
#: Signals that stop the daemon: the child ignores them, and leaves when the daemon closes it.
_PARENTS_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_CLOSE_WITHIN_S = 15.0
#: Batches received and waiting for the pipeline; beyond them the receiver holds one it cannot queue yet, and the
#: child blocks writing the next into the pipe.
BATCHES_AHEAD = 2


class ConsumerProcess:
    """A :class:`~monitor.ingest.kafka.KafkaSource` running in a child process."""

    def __init__(
        self,
        config: KafkaConfig,
        on_assign: Callable[[list[Partition]], Offsets] = lambda partitions: {},
        on_revoke: Callable[[list[Partition]], bool] = lambda partitions: False,
    ):
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        self._connection, child_end = context.Pipe()
        level = logging.getLogger().getEffectiveLevel()
        self._process = context.Process(
            target=_consume, args=(config, child_end, level, log_format()), name="kafka-consumer"
        )
        # Ctrl-C reaches the whole process group, the child too, maybe before it has set these signals aside (it
        # imports for a second): it is born with them blocked. Here they stay pending meanwhile: none is lost.
        # Starting multiprocessing's resource tracker (the first start() does) unblocks them: it is started first.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENTS_SIGNALS)
        child_end.close()
        #: What the child sent, in order, taken off the pipe by ``_receiver``; None once the pipe has closed.
        self._received: queue.Queue[tuple | None] = queue.Queue(maxsize=BATCHES_AHEAD)
        self._receiver = threading.Thread(target=self._receive, name="kafka-consumer-pipe", daemon=True)
        self._receiver.start()
        self.positions: Offsets = {}
        self.lag: Offsets = {}
        self.assigned = False
        self.connected = False
        self.last_poll: float | None = None

    def poll(self, timeout_ms: int = 500) -> list[PartitionBatch]:
        """What the child's next poll read (possibly nothing); raises if the child has died."""
        try:
            message = self._received.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            return []
        if message is None:
            self._received.put(None)  # for the next poll too
            self._process.join(timeout=1)
            raise RuntimeError(f"the Kafka consumer process exited ({self._process.exitcode})")
        kind = message[0]
        if kind == "assign":
            self._connection.send(("restored", self._on_assign(message[1])))
            return []
        if kind == "revoke":
            revoked = message[1]
            self._connection.send(("checkpointed", self._on_revoke(revoked)))  # False: commit nothing
            # Not ours any more: no later checkpoint may save them (their new owner does), whatever the next
            # batch, which brings the child's positions, says.
            self.positions = {key: offset for key, offset in self.positions.items() if key not in revoked}
            self.lag = {key: lag for key, lag in self.lag.items() if key not in revoked}
            return []
        _, batches, self.positions, self.lag, self.assigned, self.connected = message
        self.last_poll = time.monotonic()
        return batches

    def commit(self, offsets: Offsets) -> None:
        """Ask the child to commit; if it has died, the checkpoint still holds the offsets."""
        try:
            self._connection.send(("commit", offsets))
        except OSError:
            log.warning("the Kafka consumer process is gone; offsets not committed (the checkpoint holds them)")

    def close(self) -> None:
        """Ask the child to leave the group and exit; batches received or still in the pipe are not applied."""
        try:
            self._connection.send(("close",))
        except OSError:
            pass  # the child is gone already
        self._discard_received(time.monotonic() + _CLOSE_WITHIN_S)
        self._process.join(timeout=1)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._discard_received(math.inf)  # the pipe has closed with the child: the receiver ends
        self._connection.close()

    def _discard_received(self, deadline: float) -> None:
        """Drop what was received until the receiver ends or ``deadline`` (monotonic) passes: each batch dropped
        unblocks the receiver, and so the child if it is blocked sending."""
        while self._receiver.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._received.get(timeout=0.1)

    def _receive(self) -> None:
        """Take what the child sends off the pipe as it comes, until the pipe closes (then put None)."""
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                self._received.put(None)
                return
            self._received.put(message)


def _consume(config: KafkaConfig, parent: Connection, level: int, logs: LogFormat) -> None:
    """The child: poll, send what each poll read, obey commit and close, until told or orphaned."""
    for signum in _PARENTS_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)  # the parent decides; any that came while blocked is dropped
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENTS_SIGNALS)
    log_to_stderr(level, logs)
    pending: list[tuple] = []  # commands that arrive while a revocation waits for its checkpoint
    source = _connect(config, parent, pending)
    if source is None:
        return
    settle_heap()
    try:
        while True:
            while pending or parent.poll():
                command = pending.pop(0) if pending else parent.recv()
                if command[0] == "commit":
                    source.commit(command[1])
                elif command[0] == "close":
                    return
            batches = source.poll(500)
            parent.send(("batch", batches, dict(source.positions), dict(source.lag), source.assigned, source.connected))
    except (EOFError, OSError):
        log.warning("the daemon is gone; leaving the group")
    finally:
        source.close()


def _connect(config: KafkaConfig, parent: Connection, pending: list) -> KafkaSource | None:
    """Join the group, retrying while Kafka is unreachable; None if told to close first."""

    def ask(question: tuple, answer: str, unanswered: Any) -> Any:
        """Ask the parent (at a turn of the group) and wait for its answer; ``unanswered`` if it closes or is gone.
        Commands that arrive meanwhile wait in ``pending``."""
        try:
            parent.send(question)
            while (command := parent.recv())[0] != answer:
                pending.append(command)
                if command[0] == "close":
                    return unanswered
        except (EOFError, OSError):
            return unanswered
        return command[1]

    def restore(partitions: list[Partition]) -> Offsets:
        return ask(("assign", partitions), "restored", {})

    def checkpoint_before_revoke(partitions: list[Partition]) -> bool:
        return ask(("revoke", partitions), "checkpointed", False)

    while True:
        try:
            source = KafkaSource(config, restore, checkpoint_before_revoke)
            log.info("consuming %s as group %r", ", ".join(config.topic_names), config.group_id)
            return source
        except KafkaError as error:
            log.warning("Kafka at %s: %s; retrying in %g s", config.bootstrap_servers, error, _RETRY_S)
        try:
            if parent.poll(_RETRY_S):
                command = parent.recv()
                if command[0] == "close":
                    return None
                pending.append(command)
        except (EOFError, OSError):
            return None  # the daemon is gone

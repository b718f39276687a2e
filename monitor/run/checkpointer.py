"""The at-least-once order, in one place: flush the sinks and check them, snapshot, save, commit.

Everything the daemon sends on behalf of the events it has applied (dead
letters today) must be in Kafka before the offsets of those events are
committed, and the state that counted them must be on disk first too. So
:meth:`Checkpointer.checkpoint` does, in this order and nothing else:

1. flush every sink and ask whether all it was given has been delivered; a
   sink that failed or timed out aborts the checkpoint (it keeps what failed
   and sends it again on the next flush);
2. snapshot the state and the offsets it covers;
3. save both atomically: with a shared store, first each partition's own checkpoint (its offset and the
   models at home there, which move with it), then this process's (the rest); a full or failing disk or
   store aborts the checkpoint;
4. commit the offsets to the consumer group, never one below what was
   committed before for the same partition.

An aborted checkpoint saves and commits nothing: after a crash the events
since the last good checkpoint are read again, so nothing is lost and nothing
counted twice. The counts of each outcome are exported
(``driftwarden_checkpoints_total{result}``).

>>> import tempfile
>>> from monitor.run.checkpoint import CheckpointStore
>>> class Sink:
...     delivered = True
...     def flush(self): return self.delivered
>>> sink, committed = Sink(), []
>>> checkpointer = Checkpointer(CheckpointStore(tempfile.mkdtemp()), lambda: {}, "f", [sink])
>>> checkpointer.checkpoint({("events", 0): 10}, committed.append)
{('events', 0): 10}
>>> sink.delivered = False
>>> checkpointer.checkpoint({("events", 0): 20}, committed.append) is None
True
>>> committed, checkpointer.n_checkpoints
([{('events', 0): 10}], {'saved': 1, 'sink_failed': 1, 'save_failed': 0})
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from monitor.ingest import Offsets, Partition
from monitor.run.checkpoint import PARTITION_FINGERPRINT, Checkpoint, CheckpointStore, PartitionCheckpoints

__all__ = ["Checkpointer", "Flushable"]

log = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush(self) -> bool:
        """Wait for what was sent; True only if every message so far has been delivered."""
        ...


class Checkpointer:
    """Owns the order of a checkpoint; see the module docstring.

    ``snapshot()`` returns the state to save (under the caller's locks); ``fingerprint`` is stored beside it.
    With ``partitions`` (the shared store), ``snapshot_home(partition)`` returns what moves with each
    partition, saved there (stamped with :data:`~monitor.run.checkpoint.PARTITION_FINGERPRINT`), and
    ``snapshot()`` the rest.
    """

    def __init__(
        self,
        store: CheckpointStore,
        snapshot: Callable[[], dict],
        fingerprint: str,
        sinks: Sequence[Flushable] = (),
        partitions: PartitionCheckpoints | None = None,
        snapshot_home: Callable[[Partition], dict] | None = None,
    ):
        self.store = store
        self.snapshot = snapshot
        self.fingerprint = fingerprint
        self.sinks = list(sinks)
        self.partitions = partitions
        self.snapshot_home = snapshot_home
        self.n_checkpoints = {"saved": 0, "sink_failed": 0, "save_failed": 0}
        self._committed: Offsets = {}

    def checkpoint(self, positions: Offsets, commit: Callable[[Offsets], object]) -> Offsets | None:
        """Save the state with ``positions`` (the offsets it covers), then ``commit`` them; the offsets
        committed, or None if the checkpoint was aborted and nothing was saved or committed."""
        for sink in self.sinks:
            if not sink.flush():
                self.n_checkpoints["sink_failed"] += 1
                log.warning("checkpoint aborted: a sink has undelivered messages; nothing committed")
                return None
        offsets = dict(positions)
        try:
            if self.partitions is not None and self.snapshot_home is not None:
                for partition, offset in offsets.items():
                    moving = self.snapshot_home(partition)
                    self.partitions.save(Checkpoint({partition: offset}, moving, PARTITION_FINGERPRINT))
            self.store.save(Checkpoint(offsets, self.snapshot(), self.fingerprint))
        except OSError as error:
            self.n_checkpoints["save_failed"] += 1
            log.error("checkpoint aborted: cannot save (%s); nothing committed", error)
            return None
        self.n_checkpoints["saved"] += 1
        forward = {key: offset for key, offset in offsets.items() if offset > self._committed.get(key, -1)}
        if forward:
            commit(forward)
            self._committed.update(forward)
        return offsets

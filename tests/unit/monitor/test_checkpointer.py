"""The at-least-once order with fakes: flush and check the sinks, save, commit; a failed step commits nothing.

Issue 13, defect 5: the daemon flushed its dead letters without asking whether they were delivered, then saved
and committed past them. These run in milliseconds; tests/e2e/test_faults.py does the same through a real broker.
"""

from __future__ import annotations

import errno

import pytest

from monitor.run.checkpoint import CheckpointStore
from monitor.run.checkpointer import Checkpointer

OFFSETS = {("events", 0): 10, ("events", 1): 7}


class Sink:
    """A dead-letter queue whose deliveries fail while ``down``; what failed waits to be sent again."""

    def __init__(self):
        self.down = False
        self.flushes = 0

    def flush(self) -> bool:
        self.flushes += 1
        return not self.down


class FullDisk(CheckpointStore):
    """A store whose disk is full while ``full``."""

    full = False

    def save(self, checkpoint):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().save(checkpoint)


@pytest.fixture
def parts(tmp_path):
    sink, store, committed = Sink(), FullDisk(tmp_path), []
    state = {"n": 0}
    checkpointer = Checkpointer(store, lambda: dict(state), "fingerprint", [sink])
    return checkpointer, sink, store, committed, state


def test_a_checkpoint_flushes_then_saves_then_commits(parts):
    checkpointer, sink, store, committed, state = parts
    state["n"] = 3
    assert checkpointer.checkpoint(OFFSETS, committed.append) == OFFSETS
    assert sink.flushes == 1
    saved = store.load()
    assert (saved.offsets, saved.pipeline, saved.config_fingerprint) == (OFFSETS, {"n": 3}, "fingerprint")
    assert committed == [OFFSETS]
    assert checkpointer.n_checkpoints == {"saved": 1, "sink_failed": 0, "save_failed": 0}


def test_an_undelivered_dead_letter_aborts_the_checkpoint_until_it_is_delivered(parts):
    checkpointer, sink, store, committed, state = parts
    checkpointer.checkpoint(OFFSETS, committed.append)
    sink.down = True
    state["n"] = 1
    ahead = {("events", 0): 20, ("events", 1): 9}
    assert checkpointer.checkpoint(ahead, committed.append) is None
    assert store.load().offsets == OFFSETS and store.load().pipeline == {"n": 0}  # nothing saved past it
    assert committed == [OFFSETS]  # nor committed
    sink.down = False
    assert checkpointer.checkpoint(ahead, committed.append) == ahead
    assert committed == [OFFSETS, ahead]
    assert checkpointer.n_checkpoints == {"saved": 2, "sink_failed": 1, "save_failed": 0}


def test_a_full_disk_aborts_the_checkpoint_without_committing_and_the_next_one_recovers(parts):
    checkpointer, _, store, committed, state = parts
    store.full = True
    assert checkpointer.checkpoint(OFFSETS, committed.append) is None
    assert store.load() is None and committed == []
    store.full = False
    state["n"] = 5
    assert checkpointer.checkpoint(OFFSETS, committed.append) == OFFSETS
    assert store.load().pipeline == {"n": 5} and committed == [OFFSETS]
    assert checkpointer.n_checkpoints == {"saved": 1, "sink_failed": 0, "save_failed": 1}


def test_committed_offsets_never_go_backwards(parts):
    checkpointer, _, _, committed, _ = parts
    checkpointer.checkpoint({("events", 0): 10, ("events", 1): 7}, committed.append)
    checkpointer.checkpoint({("events", 0): 4, ("events", 1): 9}, committed.append)  # partition 0 sought back
    checkpointer.checkpoint({("events", 0): 10, ("events", 1): 9}, committed.append)  # nothing new: no commit
    assert committed == [{("events", 0): 10, ("events", 1): 7}, {("events", 1): 9}]

"""What a daemon does with what it finds in the partition store when the group assigns it a partition.

Pure tests of :meth:`monitor.run.daemon.Daemon._assigned` (no broker, no server started): the store is a
directory, or a store that does not answer for a while. A document in the store must never stop the daemon
(every replica the partition moves to would stop in turn), and a store that does not answer must not make
the partition's models start afresh (the next checkpoint would overwrite the saved state, references
included).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import msgspec
import pytest

from monitor.config import parse_config
from monitor.ingest import Record
from monitor.run.checkpoint import PARTITION_FINGERPRINT, Checkpoint, PartitionCheckpoints, _encode
from monitor.run.daemon import Daemon
from monitor.run.store import DirectoryStore, StoreError
from tests.unit.monitor.test_checkpoint import EXAMPLE_CONFIG, EXAMPLE_LINES

PARTITION = ("llm-events", 0)


_DAEMONS: list[Daemon] = []


def _daemon(directory: Path) -> Daemon:
    config = {**EXAMPLE_CONFIG, "state": {"dir": str(directory)}, "server": {"host": "127.0.0.1", "port": 0}}
    _DAEMONS.append(Daemon(parse_config(config)))
    return _DAEMONS[-1]


@pytest.fixture(autouse=True)
def _close_servers():
    """A daemon binds its port when made: let it go after each test."""
    yield
    while _DAEMONS:
        _DAEMONS.pop().server.stop()


def _saved_by_another_replica(directory: Path) -> Checkpoint:
    """The checkpoint of PARTITION after 300 example events, as its previous owner saved it."""
    previous = _daemon(directory / "previous")
    previous.pipeline.apply([Record(line, *PARTITION, offset) for offset, line in enumerate(EXAMPLE_LINES[:300])])
    return Checkpoint({PARTITION: 300}, previous._snapshot_home(PARTITION), PARTITION_FINGERPRINT)


def _put(daemon: Daemon, document: object) -> None:
    daemon.partitions.store.put(daemon.partitions.key(PARTITION), msgspec.msgpack.encode(document))


def _document(checkpoint: Checkpoint, **changes: object) -> dict:
    """The checkpoint as saved, with top-level fields changed (``alerts``: the pipeline's alert state)."""
    document = msgspec.msgpack.decode(_encode(checkpoint))
    if "alerts" in changes:
        document["pipeline"]["alerts"] = changes.pop("alerts")
    return {**document, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"pipeline": {"models": {}}},  # no alert state
        {"pipeline": {"models": [1, 2], "alerts": {}}},
        {"alerts": "garbage"},  # the models fit, their alert state does not: none is kept
        {"pipeline": "garbage"},
        {"offsets": [["llm-events", 1, 300]]},  # another partition's checkpoint under this key
        {"offsets": [["llm-events", 0, "300"]]},
        {"offsets": [["llm-events", 0, -5]]},
        {"offsets": []},
    ],
    ids=["no-alerts", "models-list", "garbage-alerts", "pipeline-str", "other-partition", "offset-str",
         "offset-negative", "no-offsets"],
)  # fmt: skip
def test_a_document_of_the_wrong_shape_is_logged_and_its_models_start_afresh(tmp_path, caplog, changes):
    daemon = _daemon(tmp_path / "here")
    _put(daemon, _document(_saved_by_another_replica(tmp_path), **changes))
    with caplog.at_level(logging.ERROR, logger="monitor.run.daemon"):
        offsets = daemon._assigned([PARTITION])
    assert offsets in ({}, {PARTITION: 300})  # the saved offset only if it is one
    assert len(daemon.pipeline.states) == 0
    assert "llm-events[0]" in caplog.text and "start afresh" in caplog.text
    assert daemon.ready() != "restoring the state of assigned partitions"


def test_garbage_bytes_are_logged_and_the_models_start_afresh(tmp_path, caplog):
    daemon = _daemon(tmp_path)
    daemon.partitions.store.put(daemon.partitions.key(PARTITION), b"\xc1not msgpack")
    with caplog.at_level(logging.ERROR, logger="monitor.run.daemon"):
        assert daemon._assigned([PARTITION]) == {}
    assert "unreadable checkpoint" in caplog.text


def test_a_well_formed_document_is_restored(tmp_path):
    daemon = _daemon(tmp_path / "here")
    _put(daemon, _document(_saved_by_another_replica(tmp_path)))
    assert daemon._assigned([PARTITION]) == {PARTITION: 300}
    assert {state.name for state in daemon.pipeline.states} == {"support-bot", "summarizer"}


class _Outage:
    """A directory store that does not answer for its first ``n_failures`` reads (as S3Store raises)."""

    def __init__(self, directory: Path, n_failures: int):
        self.directory = DirectoryStore(directory)
        self.n_failures = n_failures
        self.failing = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        self.directory.put(key, data)

    def get(self, key: str) -> bytes | None:
        if self.n_failures > 0:
            self.n_failures -= 1
            self.failing.set()
            raise StoreError(f"s3://bucket/{key}: cannot get: Could not connect to the endpoint URL")
        return self.directory.get(key)

    def describe(self) -> str:
        return "an outage"


def test_while_the_store_does_not_answer_the_restore_waits_for_it_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr("monitor.run.daemon._RETRY_S", 0.05)
    daemon = _daemon(tmp_path / "here")
    _put(daemon, _document(_saved_by_another_replica(tmp_path)))
    daemon.partitions.store = store = _Outage(tmp_path / "here", n_failures=3)
    daemon._source = type("Source", (), {"last_poll": 0.0})()  # ready() asks the source first
    reasons = []
    assigning = threading.Thread(target=lambda: reasons.append(daemon._assigned([PARTITION])))
    assigning.start()
    assert store.failing.wait(5)
    deadline = time.monotonic() + 5  # the store has failed; the daemon says so once it has caught the error
    while "the state store does not answer" not in (why := daemon.ready() or "") and time.monotonic() < deadline:
        time.sleep(0.005)
    assigning.join(10)
    assert "the state store does not answer" in why and "Could not connect" in why
    assert reasons == [{PARTITION: 300}]  # restored once it answered, not started afresh
    assert {state.name for state in daemon.pipeline.states} == {"support-bot", "summarizer"}


def test_a_partition_still_waiting_for_the_store_at_stop_is_never_saved(tmp_path, monkeypatch):
    """Its saved state must survive: a checkpoint of it here would hold no models."""
    monkeypatch.setattr("monitor.run.daemon._RETRY_S", 0.05)
    daemon = _daemon(tmp_path / "here")
    saved = _document(_saved_by_another_replica(tmp_path))
    _put(daemon, saved)
    daemon.partitions.store = _Outage(tmp_path / "here", n_failures=10**9)
    daemon._source = type("Source", (), {"positions": {PARTITION: 0}, "commit": lambda self, offsets: None})()
    threading.Timer(0.2, daemon.stop).start()

    assert daemon._assigned([PARTITION]) == {}
    daemon._checkpoint()  # as run() does once the loop ends

    assert msgspec.msgpack.decode(daemon.partitions.store.directory.get(daemon.partitions.key(PARTITION))) == saved


@pytest.mark.parametrize("group_id", [".", "..", "a/..", "%2E"])
def test_any_group_id_names_a_key_of_its_own(tmp_path, group_id):
    """Kafka takes any string as a group id; a key part may not be '.' or '..' (every checkpoint would fail)."""
    partitions = PartitionCheckpoints(DirectoryStore(tmp_path), group_id)
    partitions.save(Checkpoint({PARTITION: 7}, {"models": {}}, "f"))
    saved = partitions.load(PARTITION)
    assert saved is not None and saved.offsets == {PARTITION: 7}


def test_group_ids_that_differ_name_different_keys(tmp_path):
    groups = [".", "..", "%2E", "%2E%2E", "a/..", "a%2F.."]
    assert len({PartitionCheckpoints(DirectoryStore(tmp_path), group).key(PARTITION) for group in groups}) == 6


def test_a_replica_with_another_max_models_keeps_the_reference_of_a_partition_it_is_given(tmp_path):
    """A rolling upgrade that changes limits.max_models (a limit per replica) keeps every partition's models:
    a partition's checkpoint is stamped with the layout alone (PARTITION_FINGERPRINT), each model with its own."""
    saved = _saved_by_another_replica(tmp_path)
    config = {**EXAMPLE_CONFIG, "state": {"dir": str(tmp_path / "here")}, "server": {"host": "127.0.0.1", "port": 0}}
    _DAEMONS.append(Daemon(parse_config({**config, "limits": {**config.get("limits", {}), "max_models": 50}})))
    daemon = _DAEMONS[-1]
    daemon.partitions.store.put(daemon.partitions.key(PARTITION), _encode(saved))

    daemon._assigned([PARTITION])

    assert {state.name for state in daemon.pipeline.states} == {"support-bot", "summarizer"}

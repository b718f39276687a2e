"""A model's state moves with its home partition: handed from one pipeline to another, it carries on exactly.

Pure tests (no network): the example events keyed by model onto two partitions, as the producer SDK does
(support-bot on 0, summarizer on 1), and the partition checkpoints written to a directory store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import PARTITION_FINGERPRINT, Checkpoint, PartitionCheckpoints
from monitor.run.daemon import Daemon
from monitor.run.store import DirectoryStore
from monitor.state.vocabulary import OTHER
from tests.components import differences, statistics
from tests.unit.monitor.test_checkpoint import EXAMPLE_CONFIG, EXAMPLE_LINES, _example_config

TOPIC = "llm-events"
HOMES = {b'"support-bot"': 0, b'"summarizer"': 1}


def _keyed(lines: list[bytes], first: int = 0) -> list[Record]:
    """Records as a producer keying by model would write them: each model on its partition, in order."""
    offsets = {0: 0, 1: 0}
    records = []
    for line in lines:
        partition = next((p for model, p in HOMES.items() if model in line), 0)
        records.append(Record(line, TOPIC, partition, first + offsets[partition]))
        offsets[partition] += 1
    return records


def _by_model(pipeline: Pipeline, now_ms: float) -> dict[str, dict]:
    """Each model's series of the pipeline's exposition as of ``now_ms``."""
    pipeline.evaluate(now_ms)
    series: dict[str, dict] = {}
    for (name, labels), value in statistics(exposition(build_registry(pipeline)), leave_out=()).items():
        model = dict(labels).get("model")
        if model is not None:
            series.setdefault(model, {})[name, labels] = value
    return series


def test_a_model_is_at_home_on_the_partition_of_its_first_event():
    pipeline = Pipeline(_example_config())
    pipeline.apply(_keyed(EXAMPLE_LINES[:600]))
    assert {state.name: state.home for state in pipeline.states} == {
        "support-bot": (TOPIC, 0),
        "summarizer": (TOPIC, 1),
    }
    assert pipeline.states.n_split_events == {}


def test_events_of_a_model_on_another_partition_are_counted_as_split_and_still_applied():
    pipeline = Pipeline(_example_config())
    records = _keyed(EXAMPLE_LINES[:600])
    elsewhere = [record._replace(partition=5) for record in records if b'"summarizer"' in record.value]
    pipeline.apply(records)
    n_before = sum(pipeline.states["summarizer"].n_events.values())

    rejected = pipeline.apply(elsewhere)

    n_valid = len(elsewhere) - len(rejected)
    assert pipeline.states.n_split_events == {"summarizer": n_valid}
    assert sum(pipeline.states["summarizer"].n_events.values()) == n_before + n_valid
    assert pipeline.states["summarizer"].home == (TOPIC, 1)  # its home does not move


def test_the_fold_of_models_past_the_limit_is_never_split():
    config = parse_config({"limits": {"max_models": 1}})
    pipeline = Pipeline(config)
    line = b'{"request_id": "r%d", "timestamp": 1700000000, "model": "m%d"}'
    pipeline.apply([Record(line % (i, i), TOPIC, i, 0) for i in range(4)])
    assert {state.name for state in pipeline.states} == {"m0", OTHER}
    assert pipeline.states.n_split_events == {}


@pytest.mark.parametrize("split", [900, 2400])
def test_a_partition_handed_to_another_pipeline_carries_its_models_on_exactly(tmp_path: Path, split: int):
    """Replica A reads both partitions, then partition 1 moves to replica B through the store: B's series of
    summarizer equal one uninterrupted pass over every event, and A no longer has any."""
    config = _example_config()
    records = _keyed(EXAMPLE_LINES)
    first, rest = records[:split], records[split:]
    moved = (TOPIC, 1)
    a, b, uninterrupted = Pipeline(config), Pipeline(config), Pipeline(config)
    a.apply(first)
    uninterrupted.apply(records)

    store = PartitionCheckpoints(DirectoryStore(tmp_path), "driftwarden")
    offset = max(record.offset for record in first if record.partition == 1) + 1
    store.save(Checkpoint({moved: offset}, a.snapshot_home(moved), PARTITION_FINGERPRINT))
    assert a.forget([moved]) == ["summarizer"]
    saved = store.load(moved)
    assert saved is not None and saved.offsets == {moved: offset}
    assert b.restore_home(saved.pipeline) == ["summarizer"]
    a.apply([record for record in rest if record.partition == 0])
    b.apply([record for record in rest if record.partition == 1])

    now_ms = uninterrupted.watermark_ms
    expected = _by_model(uninterrupted, now_ms)
    at_a, at_b = _by_model(a, now_ms), _by_model(b, now_ms)
    assert set(at_a) == {"support-bot"} and set(at_b) == {"summarizer"}
    assert at_b["summarizer"] == expected["summarizer"], differences(at_b["summarizer"], expected["summarizer"])
    assert at_a["support-bot"] == expected["support-bot"], differences(at_a["support-bot"], expected["support-bot"])


def test_a_partition_without_a_checkpoint_loads_none(tmp_path: Path):
    assert PartitionCheckpoints(DirectoryStore(tmp_path), "g").load((TOPIC, 3)) is None


def test_partition_keys_name_the_group_escaped_the_topic_and_the_partition(tmp_path: Path):
    store = PartitionCheckpoints(DirectoryStore(tmp_path), "team a/monitor")
    assert store.key(("llm-events", 2)) == "team%20a%2Fmonitor/llm-events/2.msgpack"


def test_the_fold_of_models_past_the_limit_stays_with_its_replica(tmp_path: Path):
    """``limits.max_models`` is a limit per replica, and so is the fold it fills: it has no home, never moves
    with a partition, and every event folded on a replica stays counted there."""
    config = parse_config({"limits": {"max_models": 1}})
    line = b'{"request_id": "r%d", "timestamp": 1700000000, "model": "m%d"}'
    a, b = Pipeline(config), Pipeline(config)
    a.apply([Record(line % (i, i % 2 * 2), TOPIC, 0, i) for i in range(10)])  # m0 admitted, m2 folded
    b.apply([Record(line % (i, 1 + i % 2 * 2), TOPIC, 1, i) for i in range(10)])  # m1 admitted, m3 folded
    moved = (TOPIC, 1)
    store = PartitionCheckpoints(DirectoryStore(tmp_path), "driftwarden")
    store.save(Checkpoint({moved: 10}, b.snapshot_home(moved), PARTITION_FINGERPRINT))
    saved = store.load(moved)
    assert saved is not None and list(saved.pipeline["models"]) == ["m1"]

    assert b.forget([moved]) == ["m1"]
    assert a.restore_home(saved.pipeline) == ["m1"]

    assert a.states[OTHER].home is None and b.states[OTHER].home is None
    assert {state.name: sum(state.n_events.values()) for state in a.states} == {"m0": 5, OTHER: 5, "m1": 5}
    assert {state.name: sum(state.n_events.values()) for state in b.states} == {OTHER: 5}
    assert OTHER in b.snapshot(homed_models=False)["states"]["models"]  # saved with b's own checkpoint


def test_a_model_split_between_two_replicas_from_the_start_is_said_so_by_one_of_them(tmp_path: Path):
    """Each replica owns one of the model's partitions (a producer keying by request id): neither sees it on
    two, but the homes recorded in the shared store at each checkpoint tell the second to claim one."""
    config = parse_config({**EXAMPLE_CONFIG, "state": {"dir": str(tmp_path)}, "server": {"port": 0}})
    records = [record for record in _keyed(EXAMPLE_LINES[:600]) if b'"summarizer"' in record.value]
    a, b = Daemon(config), Daemon(config)  # one store, as replicas share a bucket
    try:
        a.pipeline.apply([record._replace(partition=0) for record in records[::2]])
        b.pipeline.apply([record._replace(partition=1) for record in records[1::2]])
        assert a.pipeline.states.n_split_events == b.pipeline.states.n_split_events == {}

        a._claim_homes()  # a's checkpoint records summarizer's home
        b._claim_homes()  # b's finds it recorded on another partition
        a._claim_homes()  # a checks its claim once more: its own
        n_at_b = sum(b.pipeline.states["summarizer"].n_events.values())
        assert a.pipeline.states.n_split_events == {}
        assert b.pipeline.states.n_split_events == {"summarizer": n_at_b}
        b.pipeline.apply([records[1]._replace(partition=1, offset=999)])  # and so are its later events
        assert b.pipeline.states.n_split_events == {"summarizer": n_at_b + 1}
    finally:
        a.server.stop()
        b.server.stop()


def test_models_of_any_name_move_with_their_partition(tmp_path: Path):
    """Names are content, never part of a key: '/', '..', unicode and 255 characters move like any other."""
    names = ["a/b", "..", "../../etc/passwd", "modèle-日本語-🙂", "x" * 255]
    config = parse_config({})
    line = '{"request_id": "r%d", "timestamp": 1700000000, "model": %s}'
    records = [Record((line % (i, json.dumps(name))).encode(), TOPIC, 3, i) for i, name in enumerate(names)]
    a, b = Pipeline(config), Pipeline(config)
    assert a.apply(records) == []
    store = PartitionCheckpoints(DirectoryStore(tmp_path), "driftwarden")
    store.save(Checkpoint({(TOPIC, 3): 5}, a.snapshot_home((TOPIC, 3)), PARTITION_FINGERPRINT))
    assert sorted(a.forget([(TOPIC, 3)])) == sorted(names)
    saved = store.load((TOPIC, 3))
    assert saved is not None and sorted(b.restore_home(saved.pipeline)) == sorted(names)
    assert {state.name: state.home for state in b.states} == dict.fromkeys(names, (TOPIC, 3))


def test_a_replica_that_hands_models_over_admits_new_ones_in_their_place():
    """limits.max_models bounds the models a replica holds: those it handed over no longer take a place."""
    config = parse_config({"limits": {"max_models": 2}})
    line = b'{"request_id": "r%d", "timestamp": 1700000000, "model": "m%d"}'
    pipeline = Pipeline(config)
    pipeline.apply([Record(line % (i, i), TOPIC, i, 0) for i in range(2)])  # m0 on 0, m1 on 1: both admitted
    assert pipeline.forget([(TOPIC, 1)]) == ["m1"]

    pipeline.apply([Record(line % (2, 2), TOPIC, 0, 1)])

    assert {state.name for state in pipeline.states} == {"m0", "m2"}
    assert pipeline.states.n_folded_events == 0

"""Checkpoints: a saved and restored pipeline carries on exactly as if it had never stopped.

Pure tests (no network): ``CheckpointStore`` writes into ``tmp_path`` and the
pipelines are fed from the example and golden event files or from events that
hypothesis makes up. A restored pipeline is compared with the one that never
stopped twice: by its Prometheus exposition, byte for byte, and by its whole
state (window rings, cursors, vocabularies, histograms), array for array.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointError, CheckpointStore, config_fingerprint
from monitor.state.model import ModelStates
from monitor.state.windows import Column, Window
from tests.conftest import DATA
from tests.golden import GOLDEN, golden_config, golden_exports, golden_pipeline

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_CONFIG = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
EXAMPLE_LINES = (ROOT / "examples" / "events.jsonl").read_bytes().splitlines()


def _example_config(size: int = 500):
    """The example config (numeric, categorical and text features) with a ring small enough to wrap."""
    windows = {**EXAMPLE_CONFIG["windows"], "size": size, "min_samples": min(size, 100)}
    return parse_config({**EXAMPLE_CONFIG, "windows": windows})


def _records(lines: list[bytes], first_offset: int = 0) -> list[Record]:
    return [Record(line, "llm-events", 0, first_offset + i) for i, line in enumerate(lines)]


def _metrics(pipeline: Pipeline, now_ms: float | None = None) -> bytes:
    pipeline.evaluate(pipeline.watermark_ms if now_ms is None else now_ms)
    return exposition(build_registry(pipeline))


def _through_disk(pipeline: Pipeline, directory: Path, offsets: dict | None = None) -> Pipeline:
    """Checkpoint ``pipeline`` to ``directory``, load it back and restore it into a fresh pipeline."""
    config = pipeline.config
    store = CheckpointStore(directory)
    store.save(Checkpoint(offsets or {}, pipeline.snapshot(), config_fingerprint(config)))
    loaded = store.load()
    assert loaded is not None
    assert loaded.config_fingerprint == config_fingerprint(config)
    restored = Pipeline(config)
    restored.restore(loaded.pipeline)
    return restored


def _assert_same(a: object, b: object, where: str = "snapshot") -> None:
    """Deep equality of snapshots: same keys in the same order, arrays of the same dtype, shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        if a.dtype == object:
            assert a.tolist() == b.tolist(), where
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)  # NaN equals NaN here
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


# --- Round trips through the disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 499, 500, 1234, len(EXAMPLE_LINES)])
def test_a_restored_pipeline_exports_and_continues_exactly_like_the_original(tmp_path, split):
    records = _records(EXAMPLE_LINES)
    original = Pipeline(_example_config())
    original.apply(records[:split])

    restored = _through_disk(original, tmp_path)
    assert _metrics(restored) == _metrics(original)
    _assert_same(restored.snapshot(), original.snapshot())

    # The same further events, in the same batches, into both: a true continuation (ring cursor, codes, sums).
    for start in range(split, len(records), 700):
        batch = records[start : start + 700]
        assert [d.invalid for d in restored.apply(batch)] == [d.invalid for d in original.apply(batch)]
    assert _metrics(restored) == _metrics(original)
    _assert_same(restored.snapshot(), original.snapshot())


def test_the_round_trip_exercises_every_kind_of_state_it_claims_to_keep(tmp_path):
    """Guards the test above: the example data really wraps the rings, fills vocabularies, text descriptors
    and the warm-up reference."""
    original = Pipeline(_example_config())
    original.apply(_records(EXAMPLE_LINES[:1234]))
    restored = _through_disk(original, tmp_path)
    bot = restored.states["support-bot"]
    assert bot.window.n_appended > bot.window.capacity  # the ring has wrapped, so its cursor matters
    assert bot.window.n_appended == original.states["support-bot"].window.n_appended
    assert len(bot.vocabularies["locale"]) > 2 and len(bot.vocabularies["topic"]) > 2
    assert bot.vocabularies["topic"].values == original.states["support-bot"].vocabularies["topic"].values
    window = bot.window.view()
    assert not np.isnan(window["feature.prompt.length_chars"]).all()
    texts = {name for name, column in window.items() if column.dtype == object}
    assert texts == {"request_id", "response_id"}  # the ids feedback joins by; the text itself is never kept
    assert 0 < len(bot.reference) == len(original.states["support-bot"].reference)
    assert bot.latency.n_observed > 0 and bot.latency.total == original.states["support-bot"].latency.total
    assert sum(restored.n_invalid.values()) > 0 and restored.n_invalid == original.n_invalid
    assert restored.watermark_ms == original.watermark_ms > 0

    # A new category after the restore gets the next code, not one already given away.
    vocabulary = bot.vocabularies["topic"]
    n_known = len(vocabulary)
    assert vocabulary.encode(["a-topic-never-seen"]).tolist() == [n_known]


def test_the_golden_events_restored_from_a_checkpoint_still_render_the_golden_exposition(tmp_path, golden_records):
    config = golden_config(tmp_path / "original")
    original = golden_pipeline(config, golden_records)
    restored = _through_disk(original, tmp_path / "checkpoint")
    golden = GOLDEN.read_text()
    assert exposition(golden_exports(config, original).registry).decode() == golden
    # The restore resets nothing this time: the scenario's state reset (support-bot's older config) is gone.
    after = exposition(golden_exports(golden_config(tmp_path / "restored"), restored).registry).decode()
    reset = "driftwarden_state_reset{"
    assert after.splitlines() == [line for line in golden.splitlines() if not line.startswith(reset)]


def test_an_empty_pipeline_round_trips(tmp_path):
    config = _example_config()
    restored = _through_disk(Pipeline(config), tmp_path)
    assert restored.watermark_ms == float("-inf")
    assert len(restored.states) == 0
    _assert_same(restored.snapshot(), Pipeline(config).snapshot())


# --- The property: checkpoint anywhere, and the result is the same -------------------------------------------

PROPERTY_CONFIG = parse_config(
    {
        "windows": {"size": 4, "min_samples": 1},
        "limits": {"max_models": 2, "max_categories": 3, "max_text_chars": 5},
        "models": [
            {"name": "pinned", "features": [{"name": "topic", "kind": "categorical"}]},
            {
                "name": "*",
                "features": [
                    {"name": "input_tokens", "kind": "numeric"},
                    {"name": "locale", "kind": "categorical", "path": "segment.locale"},
                    {"name": "prompt", "kind": "text"},
                    {"name": "embedding", "kind": "embedding", "dim": 2},
                ],
            },
        ],
    }
)

_event = st.fixed_dictionaries(
    {
        "request_id": st.just("r"),
        "timestamp": st.integers(1_700_000_000, 1_700_000_100),
        # With max_models 2, a third model folds into __other__; "pinned" has its own entry.
        "model": st.sampled_from(["a", "b", "c", "pinned"]),
    },
    optional={
        "type": st.sampled_from(["inference", "feedback"]),
        "latency_ms": st.floats(0, 1e5) | st.integers(0, 10**6),
        "ttft_ms": st.floats(0, 1e4),
        "input_tokens": st.integers(0, 10**6),
        "output_tokens": st.integers(0, 10**6),
        "error": st.none() | st.sampled_from(["Timeout", "RateLimitError"]),
        "prompt": st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
        "embedding": st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=3),
        "segment": st.fixed_dictionaries({}, optional={"locale": st.sampled_from(["de", "en", "fr", "ja", "pt"])}),
        "features": st.fixed_dictionaries({}, optional={"topic": st.sampled_from(["x", "y", "z", "w"])}),
    },
)
_junk = st.sampled_from([b"not json", b"[1]", b"{}"])
_message = st.integers(0, 9).flatmap(lambda n: _junk if n == 0 else _event.map(lambda e: json.dumps(e).encode()))
# Long enough streams that the rings (4 rows) wrap before and after the split.
_streams = st.integers(0, 60).flatmap(lambda n: st.lists(_message, min_size=n, max_size=n))


@settings(max_examples=100, deadline=None, database=None)
@given(messages=_streams, data=st.data())
def test_checkpointing_at_any_point_then_applying_the_rest_equals_applying_everything_at_once(messages, data):
    split = data.draw(st.integers(0, len(messages)), label="split")
    records = _records(messages)

    at_once = Pipeline(PROPERTY_CONFIG)
    at_once.apply(records)

    before = Pipeline(PROPERTY_CONFIG)
    before.apply(records[:split])
    with tempfile.TemporaryDirectory() as directory:  # not tmp_path: one directory per example
        after = _through_disk(before, Path(directory), {("llm-events", 0): split})
        assert CheckpointStore(directory).load().offsets == {("llm-events", 0): split}
    after.apply(records[split:])

    _assert_same(after.snapshot(), at_once.snapshot())
    assert _metrics(after) == _metrics(at_once)


# --- What a checkpoint carries besides the state -------------------------------------------------------------


def test_offsets_created_at_and_fingerprint_survive_exactly(tmp_path):
    offsets = {("llm-events", 0): 0, ("llm-events", 7): 42, ("other.topic-ü", 3): 2**40 + 1}
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint(offsets, Pipeline(parse_config({})).snapshot(), "0123456789abcdef", created_at=1234.5678))
    loaded = store.load()
    assert loaded.offsets == offsets
    assert all(type(partition) is int and type(offset) is int for (_, partition), offset in loaded.offsets.items())
    assert loaded.created_at == 1234.5678
    assert loaded.config_fingerprint == "0123456789abcdef"


def test_created_at_defaults_to_the_time_of_the_checkpoint(tmp_path):
    before = time.time()
    checkpoint = Checkpoint({}, {}, "f")
    assert before <= checkpoint.created_at <= time.time()
    store = CheckpointStore(tmp_path)
    store.save(checkpoint)
    assert store.load().created_at == checkpoint.created_at


BASE = {
    "kafka": {"bootstrap_servers": "127.0.0.1:9092", "group_id": "driftwarden"},
    "windows": {"size": 100, "min_samples": 10},
    "models": [{"name": "*", "features": [{"name": "locale", "kind": "categorical", "path": "segment.locale"}]}],
}


def _with(section: str, **values: object) -> dict:
    return {**BASE, section: {**BASE.get(section, {}), **values}}


BIAS = {"attributes": ["segment.x"], "outcome": {"positive": "y"}}


def _model_fingerprint(config: dict) -> str:
    """The fingerprint of model "m"'s state under ``config``."""
    return ModelStates(parse_config(config)).state_for("m", 0).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        _with("windows", size=101),
        _with("limits", max_categories=50),
        _with("limits", max_text_chars=10),
        {**BASE, "models": [{"name": "*"}]},
        {**BASE, "models": [{"name": "*", "features": [{"name": "locale", "kind": "text", "path": "segment.locale"}]}]},
        {**BASE, "models": [{**BASE["models"][0], "bias": BIAS}]},
        {**BASE, "models": [{**BASE["models"][0], "quality": {"json_response": True}}]},
    ],
    ids=["size", "max_categories", "max_text_chars", "no-features", "feature-kind", "bias-attribute", "json-response"],
)
def test_a_models_fingerprint_changes_with_what_shapes_its_state(changed):
    assert _model_fingerprint(changed) != _model_fingerprint(BASE)
    assert config_fingerprint(parse_config(changed)) == config_fingerprint(parse_config(BASE))


def test_the_checkpoint_fingerprint_changes_with_the_model_limit_only():
    assert config_fingerprint(parse_config(_with("limits", max_models=3))) != config_fingerprint(parse_config(BASE))
    with_model = {**BASE, "models": [*BASE["models"], {"name": "support-bot"}]}
    assert config_fingerprint(parse_config(with_model)) == config_fingerprint(parse_config(BASE))
    assert _model_fingerprint(with_model) == _model_fingerprint(BASE)


@pytest.mark.parametrize(
    "unchanged",
    [
        _with("kafka", bootstrap_servers="broker-1:9093", group_id="other", topics=["a", "b"]),
        _with("kafka", security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p"),
        _with("kafka", max_poll_interval="10s", session_timeout="6s", max_poll_records=5),
        _with("server", host="127.0.0.1", port=9999),
        _with("state", dir="/somewhere/else", checkpoint_every="1s"),
        _with("windows", evaluate_every="5s", min_samples=20, duration="15m"),
        _with("limits", max_event_bytes=2048),
    ],
    ids=["servers-group-topics", "sasl", "client-timeouts", "server", "state", "evaluation", "event-size"],
)
def test_the_fingerprint_ignores_settings_that_do_not_shape_the_state(unchanged):
    assert config_fingerprint(parse_config(unchanged)) == config_fingerprint(parse_config(BASE))
    assert _model_fingerprint(unchanged) == _model_fingerprint(BASE)


def test_the_fingerprint_is_stable_across_parses_and_short():
    first, second = (
        config_fingerprint(parse_config(BASE)),
        config_fingerprint(parse_config(json.loads(json.dumps(BASE)))),
    )
    assert first == second
    assert len(first) == 16 and int(first, 16) >= 0


# --- Atomicity and durability --------------------------------------------------------------------------------


def _checkpoint(offset: int) -> Checkpoint:
    return Checkpoint({("llm-events", 0): offset}, {"marker": np.arange(offset, dtype=np.int64)}, "f")


def test_a_missing_checkpoint_loads_as_none(tmp_path):
    assert CheckpointStore(tmp_path).load() is None
    assert CheckpointStore(tmp_path / "not" / "created" / "yet").load() is None


def test_save_creates_the_directory_and_leaves_only_the_checkpoint_file(tmp_path):
    store = CheckpointStore(tmp_path / "state" / "nested")
    for offset in (3, 5, 8):
        store.save(_checkpoint(offset))
        assert sorted(os.listdir(store.directory)) == ["checkpoint.msgpack"]  # no temp file left behind
    assert store.load().offsets == {("llm-events", 0): 8}
    assert store.path == tmp_path / "state" / "nested" / "checkpoint.msgpack"


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_save_leaves_the_previous_checkpoint_readable(tmp_path, monkeypatch, failing):
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(3))
    saved = store.path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, failing, broken)
        with pytest.raises(OSError, match="No space left"):
            store.save(_checkpoint(99))

    assert store.path.read_bytes() == saved
    loaded = store.load()
    assert loaded.offsets == {("llm-events", 0): 3}
    np.testing.assert_array_equal(loaded.pipeline["marker"], np.arange(3))

    store.save(_checkpoint(5))  # and the next save, once the disk is back, works and tidies up
    assert store.load().offsets == {("llm-events", 0): 5}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.msgpack"]


def test_a_torn_temp_file_from_a_crash_neither_breaks_load_nor_the_next_save(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(_checkpoint(3))
    (tmp_path / ".checkpoint.msgpack.tmp").write_bytes(_truncated_real_checkpoint())  # a crash mid-write

    assert store.load().offsets == {("llm-events", 0): 3}
    store.save(_checkpoint(4))
    assert store.load().offsets == {("llm-events", 0): 4}
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.msgpack"]


def _document(**overrides: object) -> bytes:
    document = {
        "format": "driftwarden-checkpoint",
        "version": 1,
        "created_at": 1.0,
        "config_fingerprint": "f",
        "offsets": [["llm-events", 0, 1]],
        "pipeline": {},
    }
    document.update(overrides)
    return msgspec.msgpack.encode({key: value for key, value in document.items() if value is not ...})


def test_the_handmade_document_is_a_valid_checkpoint(tmp_path):
    """Guards the corrupt-file cases below: each breaks exactly one thing of this valid document."""
    store = CheckpointStore(tmp_path)
    store.path.write_bytes(_document())
    assert store.load() == Checkpoint({("llm-events", 0): 1}, {}, "f", 1.0)


def _truncated_real_checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory)
        store.save(_checkpoint(1000))
        payload = store.path.read_bytes()
    return payload[: len(payload) // 2]


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"", "truncated"),
        (b"\xc1 this is not msgpack", ""),
        (b"just some text, definitely not a checkpoint\n", ""),
        (_truncated_real_checkpoint(), "truncated"),
        (pickle.dumps({"format": "driftwarden-checkpoint", "version": 1}), ""),
        (msgspec.msgpack.encode([1, 2, 3]), "not a driftwarden checkpoint"),
        (msgspec.msgpack.encode({"format": "something-else", "version": 1}), "not a driftwarden checkpoint"),
        (_document(version=2), "format version 2, this driftwarden reads 1"),
        (_document(version="1"), "format version"),
        (_document(version=...), "version"),
        (_document(pipeline=...), "pipeline"),
        (_document(offsets=[["llm-events", 0]]), ""),
        (_document(pipeline={"x": msgspec.msgpack.Ext(9, b"")}), "unknown extension type 9"),
        (_document(pipeline={"x": msgspec.msgpack.Ext(1, b"\x01")}), ""),
        (_document(pipeline={"x": msgspec.msgpack.Ext(1, msgspec.msgpack.encode([["<f8", [3]], b"\0" * 8]))}), ""),
    ],
    ids=[
        "empty",
        "bad-msgpack",
        "text",
        "torn",
        "pickle",
        "not-a-map",
        "other-format",
        "newer-version",
        "version-as-text",
        "no-version",
        "no-pipeline",
        "short-offset",
        "unknown-ext",
        "garbled-array",
        "short-array",
    ],
)
def test_an_unusable_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, payload, why):
    store = CheckpointStore(tmp_path)
    store.path.write_bytes(payload)
    with pytest.raises(CheckpointError) as raised:
        store.load()
    message = str(raised.value)
    assert message.startswith(f"{store.path}: unreadable checkpoint")
    assert why in message
    assert "move it aside" in message
    assert store.path.read_bytes() == payload  # load never deletes or rewrites what it cannot read


# --- Restoring under a different shape ------------------------------------------------------------------------


def _two_models(bot: dict | None = None) -> dict:
    """A config monitoring "bot" (with ``bot``'s settings) and "other"."""
    return {"windows": {"size": 50, "min_samples": 1}, "models": [{"name": "bot", **(bot or {})}, {"name": "other"}]}


def _events_of_two_models() -> list[Record]:
    lines = [
        json.dumps({"request_id": f"r{i}", "timestamp": 1_700_000_000 + i, "model": ("bot", "other")[i % 2],
                    "latency_ms": 100 + i, "segment": {"region": "north"}, "response": "{}"}).encode()
        for i in range(40)
    ]  # fmt: skip
    return _records(lines)


@pytest.mark.parametrize(
    "bot",
    [
        {"bias": {"attributes": ["segment.region"], "outcome": {"positive": "y"}}},
        {"quality": {"json_response": True}},
    ],
    ids=["bias-attribute-added", "json-response-toggled"],
)
def test_a_config_change_resets_only_the_model_it_shapes_and_never_raises(tmp_path, bot):
    """Defect 7 of issue 13: adding a bias attribute or toggling quality.json_response changed the window's
    columns without changing the checkpoint's fingerprint, and restoring raised (the daemon crash-looped)."""
    before = Pipeline(parse_config(_two_models()))
    before.apply(_events_of_two_models())
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint({}, before.snapshot(), config_fingerprint(before.config)))

    after = Pipeline(parse_config(_two_models(bot)))
    assert store.load().config_fingerprint == config_fingerprint(after.config)
    after.restore(store.load().pipeline)

    assert after.states.resets == {"bot": "config_changed"}
    assert after.states["bot"].n_events["inference"] == 0  # afresh
    _assert_same(after.states["other"].snapshot(), before.states["other"].snapshot())
    exported = exposition(build_registry(after)).decode()
    assert 'driftwarden_state_reset{model="bot",reason="config_changed"} 1.0' in exported


def test_a_saved_model_state_that_does_not_fit_starts_afresh_as_unreadable(tmp_path):
    before = Pipeline(parse_config(_two_models()))
    before.apply(_events_of_two_models())
    snapshot = before.snapshot()
    snapshot["states"]["models"]["bot"]["window"]["columns"] = {"timestamp_ms": np.zeros(7)}  # not this window's

    after = Pipeline(parse_config(_two_models()))
    after.restore(snapshot)
    assert after.states.resets == {"bot": "unreadable"}
    assert after.states["bot"].n_events["inference"] == 0
    assert after.states["other"].n_events["inference"] == 20


def test_a_model_no_longer_monitored_is_dropped_from_the_restored_state():
    before = Pipeline(parse_config(_two_models()))
    before.apply(_events_of_two_models())
    after = Pipeline(parse_config({"windows": {"size": 50, "min_samples": 1}, "models": [{"name": "other"}]}))
    after.restore(before.snapshot())
    assert [state.name for state in after.states] == ["other"]


def test_a_window_refuses_a_snapshot_of_another_capacity_and_keeps_its_own_rows():
    columns = {"timestamp_ms": Column(np.float64), "latency_ms": Column(np.float64)}
    big, small = Window(4, columns), Window(3, columns)
    big.append({"timestamp_ms": np.arange(5.0), "latency_ms": np.arange(5.0) * 10})
    small.append({"timestamp_ms": np.array([7.0]), "latency_ms": np.array([70.0])})
    with pytest.raises(ValueError, match=r"does not fit column '\w+' of shape \(3,\)"):
        small.restore(big.snapshot())
    assert small.view()["latency_ms"].tolist() == [70.0]
    assert small.n_appended == 1


def test_a_window_refuses_a_snapshot_missing_one_of_its_columns():
    window = Window(3, {"timestamp_ms": Column(np.float64), "feature.x": Column(np.float64)})
    other = Window(3, {"timestamp_ms": Column(np.float64), "feature.y": Column(np.float64)})
    with pytest.raises(ValueError, match="'feature.x'"):
        window.restore(other.snapshot())


def test_an_embedding_of_another_dimension_starts_the_model_afresh(tmp_path):
    def config(dim: int):
        feature = {"name": "vector", "kind": "embedding", "path": "embedding", "dim": dim}
        return parse_config({"windows": {"size": 5}, "models": [{"name": "*", "features": [feature]}]})

    original = Pipeline(config(3))
    original.apply(_records([b'{"request_id": "r", "timestamp": 1700000000, "model": "m", "embedding": [1, 2, 3]}']))
    restored = Pipeline(config(4))
    restored.restore(original.snapshot())
    assert restored.states.resets == {"m": "config_changed"}


# --- Large and awkward columns ---------------------------------------------------------------------------------


def test_large_embedding_and_text_columns_round_trip_compactly(tmp_path):
    rng = np.random.default_rng(7)
    embedding = rng.standard_normal((4096, 768)).astype(np.float32)
    embedding[::97] = np.nan  # missing rows, as a ring holds them
    texts = np.empty(4096, dtype=object)
    texts[:] = [None if i % 13 == 0 else ("é€😀" + "x" * 4096)[: i % 4100] for i in range(4096)]
    arrays = {
        "embedding": embedding,
        "text": texts,
        "failed": rng.random(4096) < 0.5,
        "codes": rng.integers(-1, 1000, size=4096).astype(np.int32),
        "strided": embedding[::2, ::3],  # not contiguous: saved as its values, not its buffer
        "big_endian": np.arange(5, dtype=">f8"),
        "empty": np.zeros((0, 768), dtype=np.float32),
    }
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint({}, {"columns": arrays}, "f"))
    loaded = store.load().pipeline["columns"]
    _assert_same(loaded, arrays, "columns")
    assert loaded["embedding"].flags.writeable and loaded["embedding"].flags.c_contiguous
    # Numeric arrays are stored as raw bytes, not as msgpack lists of floats.
    raw_bytes = sum(array.nbytes for name, array in arrays.items() if name != "text")
    text_bytes = sum(len(text.encode()) for text in texts if text is not None)
    assert store.path.stat().st_size < 1.05 * (raw_bytes + text_bytes)


def test_a_pipeline_with_embedding_and_text_features_restores_and_continues(tmp_path):
    dim = 256
    config = parse_config(
        {
            "windows": {"size": 50, "min_samples": 1},
            "limits": {"max_text_chars": 64},
            "models": [
                {
                    "name": "*",
                    "features": [
                        {"name": "vector", "kind": "embedding", "path": "embedding", "dim": dim},
                        {"name": "prompt", "kind": "text"},
                    ],
                }
            ],
        }
    )
    rng = np.random.default_rng(3)

    def event(i: int) -> bytes:
        vector = rng.standard_normal(dim if i % 9 else dim - 1).astype(np.float32).tolist()  # every 9th: wrong dim
        prompt = None if i % 5 == 0 else f"prompt {i} " + "ü" * 100
        fields = {"request_id": f"r{i}", "timestamp": 1_700_000_000 + i, "model": "m", "latency_ms": i}
        return json.dumps({**fields, "embedding": vector, "prompt": prompt}).encode()

    lines = [event(i) for i in range(180)]
    original = Pipeline(config)
    original.apply(_records(lines[:120]))
    restored = _through_disk(original, tmp_path)

    view = restored.states["m"].window.view()
    assert view["feature.vector"].shape == (50, dim) and view["feature.vector"].dtype == np.float32
    wrong_dim = view["latency_ms"] % 9 == 0  # latency_ms is the event's number i
    assert wrong_dim.any() and np.isnan(view["feature.vector"][wrong_dim]).all()
    assert not np.isnan(view["feature.vector"][~wrong_dim]).any()
    lengths = view["feature.prompt.length_chars"]
    assert set(lengths[~np.isnan(lengths)].tolist()) == {64.0}  # truncated to max_text_chars, then described
    _assert_same(restored.snapshot(), original.snapshot())

    original.apply(_records(lines[120:], 120))
    restored.apply(_records(lines[120:], 120))
    _assert_same(restored.snapshot(), original.snapshot())
    assert _metrics(restored) == _metrics(original)


PRE_LAYOUT = DATA / "pre_layout"


def test_a_checkpoint_written_before_the_layout_change_restores_and_carries_on():
    """``tests/data/pre_layout`` was written by the daemon before issue 14 moved ``monitor/`` into subpackages
    (and changed the columns and decoder): the first ``split`` events of ``events.jsonl`` applied, then saved.
    Restored by today's code and fed the rest, it must export exactly what a fresh pipeline fed every event
    exports: no model reset, nothing lost or counted twice. The labelled cohort aside: that checkpoint has no label
    store, so the calls that had left its window are not there for their labels (it starts with the window's)."""
    settings_ = yaml.safe_load((PRE_LAYOUT / "config.yaml").read_text())
    lines = (PRE_LAYOUT / "events.jsonl").read_bytes().splitlines()
    split = int((PRE_LAYOUT / "split").read_text())
    config = parse_config({**settings_, "state": {"dir": str(PRE_LAYOUT)}})
    checkpoint = CheckpointStore(PRE_LAYOUT).load()
    assert checkpoint is not None and checkpoint.offsets == {("llm-events", 0): split}
    assert checkpoint.config_fingerprint == config_fingerprint(config)
    restored = Pipeline(config)
    restored.restore(checkpoint.pipeline)
    assert restored.states.resets == {}
    assert restored.apply(_records(lines[split:], split)) == []
    fresh = Pipeline(config)
    assert fresh.apply(_records(lines)) == []
    now_ms = fresh.watermark_ms
    assert restored.watermark_ms == now_ms
    after, expected = _metrics(restored, now_ms), _metrics(fresh, now_ms)
    assert b"driftwarden_cohort_calls{" in after
    assert _without_cohort(after) == _without_cohort(expected)


def _without_cohort(exposition_: bytes) -> list[bytes]:
    return [line for line in exposition_.splitlines() if b"driftwarden_cohort_" not in line]

"""A model's reference: its id and source, exported, and kept across a restart and a config change that leaves it be.

Pure tests without a broker: pipelines are fed records of JSON events made here (one call a second from
``T0``, categories and classes in turn), checkpoints go to ``tmp_path`` through the real
:class:`~monitor.run.checkpoint.CheckpointStore`, and what Prometheus would read is checked on the exposition.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointStore, config_fingerprint
from monitor.state.columns import LABEL, PREDICTION, Columns

T0 = 1_790_000_000  # epoch seconds of call 0
WARMUP = 10
LOCALES = ("de", "en", "fr")
LOCALE = Columns.feature("locale")


def _config(size: int = 20, features: tuple[dict, ...] = (), reference: dict | None = None) -> dict:
    model = {
        "name": "m",
        "reference": reference or {"warmup": WARMUP},
        "features": [{"name": "locale", "kind": "categorical", "path": "segment.locale"}, *features],
        "bias": {"attributes": ["segment.tier"], "outcome": {"field": "prediction", "positive": "yes"}},
    }
    return {"windows": {"size": size, "min_samples": 1}, "models": [model]}


def _call(i: int, locale: str | None = None) -> dict:
    return {
        "request_id": f"m-{i}", "timestamp": T0 + i, "model": "m", "latency_ms": 100.0 + i,
        "prediction": ("yes", "no")[i % 2], "score": 0.5,
        "segment": {"locale": locale or LOCALES[i % 3], "tier": ("gold", "free")[i % 2]},
    }  # fmt: skip


def _feedback(i: int, label: str) -> dict:
    return {"type": "feedback", "request_id": f"m-{i}", "timestamp": T0 + 1_000 + i, "model": "m", "label": label}


def _records(events: list[dict], first_offset: int = 0) -> list[Record]:
    return [Record(json.dumps(event).encode(), "llm-events", 0, first_offset + i) for i, event in enumerate(events)]


def _fed(config: dict, events: list[dict]) -> Pipeline:
    pipeline = Pipeline(parse_config(config))
    assert pipeline.apply(_records(events)) == []
    return pipeline


def _restarted(before: Pipeline, config: dict, directory: Path) -> Pipeline:
    """``before`` checkpointed to ``directory`` and restored under ``config``, as ``driftwarden run`` restarts."""
    store = CheckpointStore(directory)
    store.save(Checkpoint({("llm-events", 0): 1}, before.snapshot(), config_fingerprint(before.config)))
    loaded = store.load()
    assert loaded is not None
    after = Pipeline(parse_config(config))
    after.restore(loaded.pipeline)
    return after


def _reference_info(pipeline: Pipeline) -> list[dict[str, str]]:
    """The labels of the exported ``driftwarden_reference_info`` series (each of value 1)."""
    families = text_string_to_metric_families(exposition(build_registry(pipeline)).decode())
    [family] = [family for family in families if family.name == "driftwarden_reference_info"]
    assert all(sample.value == 1 for sample in family.samples)
    return [sample.labels for sample in family.samples]


def test_a_complete_reference_is_exported_with_its_id_and_source_and_an_incomplete_one_is_not():
    filling = _fed(_config(), [_call(i) for i in range(WARMUP - 1)])
    assert filling.states["m"].reference.id is None
    assert _reference_info(filling) == []

    complete = _fed(_config(), [_call(i) for i in range(WARMUP + 5)])
    reference = complete.states["m"].reference
    assert reference.source == "warmup" and len(reference.id) == 16 and int(reference.id, 16) >= 0
    assert _reference_info(complete) == [{"model": "m", "reference_id": reference.id, "source": "warmup"}]
    # computed when it completed, from the first events only
    assert reference.id == _fed(_config(), [_call(i) for i in range(WARMUP)]).states["m"].reference.id
    assert reference.id != _fed(_config(), [_call(i + 1) for i in range(WARMUP)]).states["m"].reference.id


def test_the_same_events_have_the_same_id_learned_at_warm_up_or_read_from_a_file(tmp_path):
    """The id is a digest of the events, not of the codes a vocabulary happened to give their categories."""
    file = tmp_path / "reference.jsonl"
    file.write_text("".join(json.dumps(_call(i)) + "\n" for i in range(WARMUP)))
    from_file = _fed(_config(reference={"file": str(file)}), [_call(i, "it") for i in range(100, 103)])
    learned = _fed(_config(), [_call(i) for i in range(WARMUP)])
    assert from_file.states["m"].reference.source == "file"
    assert from_file.states["m"].reference.id == learned.states["m"].reference.id
    assert _reference_info(from_file) == [{"model": "m", "reference_id": learned.states["m"].reference.id,
                                           "source": "file"}]  # fmt: skip


def test_a_restart_exports_the_same_reference_even_after_labels_joined_it(tmp_path):
    events = [_call(i) for i in range(WARMUP + 5)]
    before = _fed(_config(), [*events, _feedback(3, "yes"), _feedback(12, "no")])
    assert not math.isnan(before.states["m"].reference.columns()[LABEL][3])  # a label joined the reference
    after = _restarted(before, _config(), tmp_path)
    assert after.states.resets == {}
    assert _reference_info(after) == _reference_info(before) != []


def test_a_restart_after_changing_the_window_size_keeps_the_reference_and_starts_the_window_afresh(tmp_path, caplog):
    before = _fed(_config(size=20), [_call(i) for i in range(30)])
    reference = before.states["m"].reference

    after = _restarted(before, _config(size=30), tmp_path)
    state = after.states["m"]
    assert after.states.resets == {"m": "config_changed"}
    assert f"kept: its warm-up reference {reference.id} and its category vocabularies" in caplog.text
    assert (state.reference.id, state.reference.source) == (reference.id, "warmup")
    assert _reference_info(after) == _reference_info(before)
    for name, column in reference.columns().items():
        np.testing.assert_array_equal(state.reference.columns()[name], column, err_msg=name)
    assert len(state.window) == 0 and state.window.capacity == 30
    assert state.n_events["inference"] == 0

    # a new category first: the window's codes must still mean what the reference's codes mean
    assert after.apply(_records([_call(100, "it"), _call(101, "de"), _call(102, "en")], 1)) == []
    window = state.window.view()
    de_in_reference = reference.columns()[LOCALE][0]  # call 0 is "de"
    assert window[LOCALE].tolist() == [state.vocabularies["locale"].code("it"), de_in_reference,
                                       reference.columns()[LOCALE][1]]  # fmt: skip
    assert window[PREDICTION][1] == reference.columns()[PREDICTION][1]  # both "no"
    tier = Columns.group("segment.tier")
    assert window[tier][1] == reference.columns()[tier][1]  # both "free"
    # the kept reference is tested against from the first evaluation on
    after.evaluate(after.watermark_ms)
    assert after.evaluations["m"].drift is not None and after.evaluations["m"].drift.n_reference == WARMUP


def test_labels_still_join_a_kept_reference_and_new_calls_never_take_its_rows(tmp_path):
    before = _fed(_config(size=20), [_call(i) for i in range(30)])
    after = _restarted(before, _config(size=30), tmp_path)
    assert after.apply(_records([_call(100 + i) for i in range(3)], 1)) == []

    assert after.apply(_records([_feedback(4, "yes"), _feedback(101, "no")], 4)) == []
    state = after.states["m"]
    labels = state.reference.columns()[LABEL]
    yes, no = state.categories[PREDICTION].code("yes"), state.categories[PREDICTION].code("no")
    assert labels[4] == yes  # call 4 is in the reference
    assert np.isnan(np.delete(labels, 4)).all()  # call 101 is the window's row 1, not the reference's
    assert state.window.view()[LABEL].tolist()[1] == no
    assert state.join.n_joined == 2


def test_a_restart_after_adding_a_feature_learns_the_reference_again(tmp_path):
    before = _fed(_config(), [_call(i) for i in range(30)])
    changed = _config(features=({"name": "latency", "kind": "numeric", "path": "latency_ms"},))

    after = _restarted(before, changed, tmp_path)
    state = after.states["m"]
    assert after.states.resets == {"m": "config_changed"}
    assert len(state.reference) == 0 and state.reference.id is None
    assert _reference_info(after) == []
    assert state.vocabularies["locale"].values == ["__other__"]  # nothing kept

    assert after.apply(_records([_call(100 + i) for i in range(WARMUP)], 1)) == []
    assert state.reference.id is not None and state.reference.id != before.states["m"].reference.id


def test_an_incomplete_warm_up_reference_is_learned_again_after_a_window_change(tmp_path):
    """Its rows would not line up with the fresh window's for the feedback join; it starts over."""
    before = _fed(_config(size=20), [_call(i) for i in range(WARMUP - 3)])
    after = _restarted(before, _config(size=30), tmp_path)
    assert after.states.resets == {"m": "config_changed"}
    assert len(after.states["m"].reference) == 0


def test_a_reference_file_is_read_again_after_a_window_change(tmp_path):
    file = tmp_path / "reference.jsonl"
    file.write_text("".join(json.dumps(_call(i)) + "\n" for i in range(WARMUP)))
    before = _fed(_config(size=20, reference={"file": str(file)}), [_call(i) for i in range(100, 130)])
    after = _restarted(before, _config(size=30, reference={"file": str(file)}), tmp_path / "state")
    assert after.states.resets == {"m": "config_changed"}
    assert _reference_info(after) == _reference_info(before) != []


def test_an_edited_reference_file_has_the_id_a_fresh_start_on_it_has(tmp_path):
    """Read again after a restart under the restored vocabularies, the file's new categories take other codes
    than on a fresh start: the id must not depend on them."""
    file = tmp_path / "reference.jsonl"
    config = _config(reference={"file": str(file)})
    file.write_text("".join(json.dumps(_call(i)) + "\n" for i in range(WARMUP)))
    before = _fed(config, [_call(i, "it") for i in range(100, 110)])
    file.write_text("".join(json.dumps(_call(i, ("es", "it")[i % 2])) + "\n" for i in range(WARMUP)))

    after = _restarted(before, config, tmp_path / "state")
    fresh = _fed(config, [_call(200, "it")])
    assert after.states.resets == {}
    assert after.states["m"].reference.id == fresh.states["m"].reference.id != before.states["m"].reference.id

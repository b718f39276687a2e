"""The label store, the labelled cohort and the join under the worst inputs: ids that collide, labels that come
when the window is empty, and restarts between a call and its label.

Pure tests (no network), through a pipeline fed records as the daemon is.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.state import labels as labels_module
from monitor.state.labels import LabelStore
from tests.components import c_extension

T0 = 1_700_000_000
TOPIC = "llm-events"


def _apply(pipeline: Pipeline, events: list[dict], first: int = 0, batch: int = 64) -> None:
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        records = [Record(json.dumps(e).encode(), TOPIC, 0, first + start + k) for k, e in enumerate(chunk)]
        assert pipeline.apply(records) == []


def _series(pipeline: Pipeline, now_ms: float) -> dict[tuple[str, tuple], float]:
    pipeline.evaluate(now_ms)
    series = {}
    for family in text_string_to_metric_families(exposition(build_registry(pipeline)).decode()):
        for sample in family.samples:
            series[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return series


def _call(i: int, prediction: str, at_s: float) -> dict:
    return {"request_id": f"r-{i}", "timestamp": at_s, "model": "m", "prediction": prediction, "latency_ms": 100.0}


def _label(request_id: str, label: str, at_s: float) -> dict:
    return {"type": "feedback", "request_id": request_id, "timestamp": at_s, "model": "m", "label": label}


def test_labels_that_come_while_the_window_is_empty_still_give_the_cohorts_figures():
    """A day's calls, then the night: no call, but the day's labels arrive two hours late. The window (its
    last 10 minutes) is empty; the cohort of labelled calls is not, and its figures must be exported."""
    config = parse_config({
        "windows": {"size": 5_000, "duration": "10m", "min_samples": 50},
        "models": [{"name": "m", "reference": {"warmup": 100}, "quality": {"positive": "yes", "cohort": "1d"}}],
    })  # fmt: skip
    pipeline = Pipeline(config)
    rng = np.random.default_rng(3)
    predictions = rng.choice(["yes", "no"], size=1_000)
    labels = np.where(rng.random(1_000) < 0.8, predictions, np.where(predictions == "yes", "no", "yes"))
    calls = [_call(i, str(predictions[i]), T0 + i) for i in range(1_000)]
    late = [_label(f"r-{i}", str(labels[i]), T0 + 1_000 + 7_200 + i) for i in range(1_000)]
    _apply(pipeline, calls)
    _apply(pipeline, late, first=len(calls))

    series = _series(pipeline, pipeline.watermark_ms)
    accuracy = [value for (name, key), value in series.items()
                if name == "driftwarden_cohort_quality" and ("metric", "accuracy") in key]  # fmt: skip
    assert accuracy == [np.mean(predictions == labels)]
    assert series["driftwarden_cohort_calls", (("model", "m"),)] == 1_000


def test_an_id_that_differs_only_by_trailing_nul_characters_joins_no_other_call():
    """JSON allows ``\\u0000`` in an id; the label store hashes ids as fixed-width bytes, which drop trailing
    NULs: the label of a call never made (``r-0\\0``) must not join the call ``r-0``, nor ``r-1``'s that of
    ``r-1\\0\\0``."""
    pipeline = Pipeline(parse_config({"windows": {"size": 100, "min_samples": 10},
                                      "models": [{"name": "m", "quality": {"positive": "yes"}}]}))  # fmt: skip
    _apply(pipeline, [_call(i, "yes", T0 + i) for i in range(300)])  # r-0 and r-1 have left the window
    _apply(pipeline, [_label("r-0\0", "no", T0 + 400), _label("r-1\0\0", "no", T0 + 400)], first=300)

    cohort = pipeline.states["m"].labels.cohort(now_ms=(T0 + 400) * 1000.0, span_ms=86_400_000)
    assert cohort["timestamp_ms"].tolist() == []
    assert pipeline.states["m"].join.n_joined == 0


def test_an_unreadable_label_does_not_erase_the_label_its_call_has():
    """A second label for a call that no class can be made of (a name longer than a class can be) is unknown:
    the call keeps the label it has, in the window and in the label store alike."""
    pipeline = Pipeline(parse_config({"windows": {"size": 100, "min_samples": 10},
                                      "models": [{"name": "m", "quality": {"positive": "yes"}}]}))  # fmt: skip
    _apply(pipeline, [_call(i, "yes", T0 + i) for i in range(300)])  # r-0 has left the window, r-299 has not
    _apply(pipeline, [_label("r-0", "yes", T0 + 301), _label("r-299", "yes", T0 + 301)], first=300)
    _apply(pipeline, [_label("r-0", "y" * 1_000, T0 + 302), _label("r-299", "y" * 1_000, T0 + 302)], first=302)

    state = pipeline.states["m"]
    cohort = state.labels.cohort(now_ms=(T0 + 400) * 1000.0, span_ms=86_400_000)
    assert cohort["timestamp_ms"].tolist() == [T0 * 1000.0, (T0 + 299) * 1000.0]
    assert not np.isnan(state.window.view()["label"][-1])


def test_an_id_sent_with_several_calls_finds_the_newest_as_the_window_does_and_after_a_restore_too():
    """Retries resend a request id. The window's join gives a label to the newest call with its id; the label
    store must too, and give the same call after a restart, whose index is rebuilt in another order."""
    rng = np.random.default_rng(4)
    store = LabelStore(1_000, ttl_ms=1e18, group_columns=())
    ids = [f"r{i}" for i in rng.integers(0, 800, size=1_500)]
    for start in range(0, len(ids), 50):
        n = len(ids[start : start + 50])
        store.append({
            "timestamp_ms": np.arange(start, start + n, dtype=float),
            "request_id": np.array(ids[start : start + n], dtype=object),
            "response_id": np.full(n, None, dtype=object),
            "prediction": np.ones(n),
            "score": np.ones(n),
        })  # fmt: skip
    restored = LabelStore(1_000, ttl_ms=1e18, group_columns=())
    restored.restore(store.snapshot())

    keys = [f"r{i}" for i in range(800)]
    held = {key: row for row, key in enumerate(ids) if row >= len(ids) - 1_000}  # the newest row of each id held
    newest = [held.get(key, -1) for key in keys]
    assert store.find(keys, np.zeros(800)).tolist() == newest
    assert restored.find(keys, np.zeros(800)).tolist() == newest


def test_the_estimate_is_set_beside_the_truth_only_on_enough_scored_calls():
    """The accuracy estimate and its error are on the cohort's calls that have a score. A cohort of 600
    labelled calls of which 3 were scored must not report an estimate error on those 3: the alert that reads
    it (beyond 5 points on at least 500 calls, by the cohort's size) would fire on noise."""
    quality = {"positive": "yes", "cohort": "20m"}
    config = parse_config({"windows": {"size": 200, "min_samples": 50},
                           "models": [{"name": "m", "reference": {"warmup": 300}, "quality": quality}]})  # fmt: skip
    pipeline = Pipeline(config)
    rng = np.random.default_rng(6)
    events = []
    for i in range(1_300):
        right = rng.random() < 0.8
        call = _call(i, "yes", T0 + i)
        if i < 300 or i % 200 == 0:  # the warm-up is scored (the estimate's calibration), then 1 call in 200
            call["score"] = float(np.clip(rng.normal(0.85 if right else 0.55, 0.1), 0, 1))
        events.append(call)
        events.append(_label(f"r-{i}", "yes" if right else "no", T0 + i + (1 if i < 300 else 600)))
    events.sort(key=lambda event: event["timestamp"])
    _apply(pipeline, [event for event in events if event["timestamp"] <= T0 + 1_900])

    series = _series(pipeline, pipeline.watermark_ms)
    assert series["driftwarden_cohort_calls", (("model", "m"),)] == 600  # calls 701 to 1,300: 3 scored
    cohort_metrics = {dict(labels)["metric"] for name, labels in series if name == "driftwarden_cohort_quality"}
    assert "accuracy" in cohort_metrics and "estimate_error" not in cohort_metrics


# --- The index's probes in C and their Python twins ---------------------------------------------------------------


def _probes() -> object:
    """The C probes (monitor/state/_probe.c): built wherever CI runs, where their absence is a failure."""
    return c_extension("monitor.state._probe")


@settings(max_examples=60, deadline=None, database=None)
@given(
    capacity=st.integers(1, 40),
    batches=st.lists(st.lists(st.sampled_from([*(f"r{i}" for i in range(30)), None]), max_size=25), max_size=12),
    looked_up=st.lists(st.sampled_from([*(f"r{i}" for i in range(35)), None]), max_size=20),
)
def test_the_index_finds_in_c_what_its_twins_find_and_what_a_dict_of_the_held_calls_says(capacity, batches, looked_up):
    """Ids repeat (retries), overwrite one another as the ring turns, and fill the table to its rebuilds; each look-up
    answers the newest held call with the id, as a dict of the calls the ring holds does."""
    probes = _probes()
    stores = {"c": LabelStore(capacity, ttl_ms=1e12, group_columns=()), "twins": LabelStore(capacity, 1e12, ())}
    newest: dict[str, int] = {}  # the oracle: each id's newest call ever, by row
    row = 0
    for batch in batches:
        columns = {
            "timestamp_ms": np.full(len(batch), 1_000.0),
            "request_id": np.array(batch, dtype=object),
            "response_id": np.array([None] * len(batch), dtype=object),
            "prediction": np.zeros(len(batch)),
            "score": np.zeros(len(batch)),
        }
        for name, store in stores.items():
            with _probes_as(name, probes):
                store.append(columns)
        for key in batch:
            if key:
                newest[key] = row
            row += 1
    expected = [newest[key] if key in newest and newest[key] > row - 1 - capacity else -1 for key in looked_up]
    for name, store in stores.items():
        with _probes_as(name, probes):
            found = store.find(looked_up, np.full(len(looked_up), 2_000.0)).tolist()
        assert found == expected, name


@contextlib.contextmanager
def _probes_as(name: str, probes: object):
    """The label store's probes in C, or its Python twins, for a block."""
    saved = labels_module._insert, labels_module._find
    if name == "twins":
        labels_module._insert, labels_module._find = labels_module._insert_twin, labels_module._find_twin
    else:
        labels_module._insert, labels_module._find = probes.insert, probes.find  # type: ignore[attr-defined]
    try:
        yield
    finally:
        labels_module._insert, labels_module._find = saved


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.none() | st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=64)))
def test_the_keys_hashed_in_c_equal_their_numpy_twins(keys):
    """A checkpoint's hashes must be found again by a process built with or without a C compiler."""
    hashed = _probes().hashes(keys, *map(int, (labels_module._SEED, labels_module._PRIME, *labels_module._MIX)))

    assert np.frombuffer(hashed, dtype=np.uint64).tolist() == labels_module._key_hashes_twin(keys).tolist()


def test_a_key_the_c_hash_does_not_take_sends_the_batch_to_numpy():
    assert _probes().hashes(["r", "é"], 1, 3, 5, 7) is None  # not ASCII: never a join key (join_key digests it)
    assert _probes().hashes(["r", "x" * 65], 1, 3, 5, 7) is None
    keys = ["r", "x" * 65]
    assert labels_module.key_hashes(keys).tolist() == labels_module._key_hashes_twin(keys).tolist()

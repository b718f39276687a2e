"""Labels that arrive after their call has left the window: the label store, the labelled cohort and its figures.

Pure tests (no network): a classifier whose every label comes twice the window's span after its call, so that
no label finds its call in the window; the figures on the labelled cohort against scikit-learn and fairlearn.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import equalized_odds_difference
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from monitor.config import ConfigError, parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import (
    PARTITION_FINGERPRINT,
    Checkpoint,
    CheckpointStore,
    PartitionCheckpoints,
    config_fingerprint,
)
from monitor.run.store import DirectoryStore
from monitor.state.labels import BYTES_PER_CALL, BYTES_PER_GROUP, LabelStore
from monitor.state.memory import memory_bound
from tests.oracles import classification_figures

T0 = 1_700_000_000
TOPIC = "llm-events"
WINDOW = 200  # calls, one a second: the window spans 200 s
DELAY_S = 2 * WINDOW  # every label comes twice the window's span after its call
N_CALLS = 1_500
REGIONS = ("eu", "us", "apac")


def _config(**quality: object) -> dict:
    return {
        "windows": {"size": WINDOW, "min_samples": 50},
        "models": [
            {
                "name": "m",
                "reference": {"warmup": 100},
                "quality": {"positive": "yes", "cohort": "1h", "label_ttl": "1d", **quality},
                "bias": {
                    "attributes": ["segment.region"],
                    "outcome": {"field": "prediction", "positive": "yes"},
                    "min_group_size": 30,
                },
            }
        ],
    }


def _stream(seed: int = 7, n_calls: int = N_CALLS) -> tuple[list[dict], dict[int, tuple[str, str, str]]]:
    """Calls one a second and each call's label ``DELAY_S`` later, in event-time order; and the truth of each
    call: (prediction, label, region). The model is right less often in one region, and its score says so."""
    rng = np.random.default_rng(seed)
    events, truth = [], {}
    for i in range(n_calls):
        region = REGIONS[rng.integers(3)]
        label = "yes" if rng.random() < 0.4 else "no"
        right = rng.random() < (0.6 if region == "apac" else 0.9)
        prediction = label if right else ("no" if label == "yes" else "yes")
        score = float(np.clip(rng.normal(0.9 if right else 0.6, 0.1), 0, 1))
        truth[i] = (prediction, label, region)
        call = {"request_id": f"r-{i}", "timestamp": T0 + i, "model": "m", "prediction": prediction,
                "score": score, "segment": {"region": region}}  # fmt: skip
        feedback = {"type": "feedback", "request_id": f"r-{i}", "timestamp": T0 + i + DELAY_S, "model": "m",
                    "label": label}  # fmt: skip
        events += [(T0 + i, 0, call), (T0 + i + DELAY_S, 1, feedback)]
    last = T0 + n_calls - 1  # the stream ends with the last call: the window's calls have no label yet
    return [event for at, _, event in sorted(events, key=lambda item: item[:2]) if at <= last], truth


def _apply(pipeline: Pipeline, events: list[dict], batch: int = 64, first: int = 0) -> None:
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        records = [Record(json.dumps(e).encode(), TOPIC, 0, first + start + k) for k, e in enumerate(chunk)]
        assert pipeline.apply(records) == []


def _series(pipeline: Pipeline) -> dict[tuple[str, tuple], float]:
    pipeline.evaluate(pipeline.watermark_ms)
    series = {}
    for family in text_string_to_metric_families(exposition(build_registry(pipeline)).decode()):
        for sample in family.samples:
            series[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return series


def _value(series: dict, name: str, **labels: str) -> float:
    (value,) = [value for (sample, key), value in series.items() if sample == name and labels.items() <= set(key)]
    return value


def _labelled(truth: dict, last_s: float, span_s: float) -> list[int]:
    """The calls of the cohort: made in (last - span, last] whose labels had arrived by ``last``."""
    return [i for i in truth if T0 + i > last_s - span_s and T0 + i + DELAY_S <= last_s]


def test_labels_twice_the_windows_span_late_give_the_cohort_scikit_learns_and_fairlearns_figures():
    events, truth = _stream()
    pipeline = Pipeline(parse_config(_config()))
    _apply(pipeline, events)
    series = _series(pipeline)

    last_s = pipeline.watermark_ms / 1000.0
    cohort = _labelled(truth, last_s, 3_600)
    assert len(cohort) > 1_000
    predicted = [truth[i][0] for i in cohort]
    true = [truth[i][1] for i in cohort]
    regions = [truth[i][2] for i in cohort]
    assert _value(series, "driftwarden_quality", model="m", metric="label_coverage") == 0.0  # the window's: none
    for metric, expected in classification_figures(true, predicted, "yes").items():
        assert _value(series, "driftwarden_cohort_quality", model="m", metric=metric) == pytest.approx(expected)
    assert _value(series, "driftwarden_cohort_calls", model="m") == len(cohort)
    assert _value(series, "driftwarden_cohort_oldest_call_timestamp_seconds", model="m") == T0 + min(cohort)
    assert _value(series, "driftwarden_cohort_newest_call_timestamp_seconds", model="m") == T0 + max(cohort)
    fairlearn = equalized_odds_difference(
        np.array(true) == "yes", np.array(predicted) == "yes", sensitive_features=regions
    )
    eo = _value(series, "driftwarden_cohort_bias", model="m", attribute="segment.region")
    assert eo == pytest.approx(fairlearn)
    assert eo > 0.2  # the model is far worse in one region


def test_the_estimate_is_reported_beside_the_truth_on_the_same_calls_and_their_difference():
    events, truth = _stream()
    pipeline = Pipeline(parse_config(_config()))
    _apply(pipeline, events)
    series = _series(pipeline)
    cohort = _labelled(truth, pipeline.watermark_ms / 1000.0, 3_600)

    truth_accuracy = np.mean([truth[i][0] == truth[i][1] for i in cohort])
    scored = _value(series, "driftwarden_cohort_quality", model="m", metric="scored_accuracy")
    estimated = _value(series, "driftwarden_cohort_quality", model="m", metric="estimated_accuracy")
    error = _value(series, "driftwarden_cohort_quality", model="m", metric="estimate_error")
    assert scored == pytest.approx(truth_accuracy)  # every call has a score: the same calls
    assert error == pytest.approx(estimated - scored)
    assert abs(error) < 0.05  # calibrated on the warm-up, the same model: the estimate holds


def _through_checkpoint(pipeline: Pipeline, directory: Path) -> Pipeline:
    store = CheckpointStore(directory)
    store.save(Checkpoint({(TOPIC, 0): 1}, pipeline.snapshot(), config_fingerprint(pipeline.config)))
    loaded = store.load()
    assert loaded is not None
    restored = Pipeline(pipeline.config)
    restored.restore(loaded.pipeline)
    return restored


def _through_partition_move(pipeline: Pipeline, directory: Path) -> Pipeline:
    store = PartitionCheckpoints(DirectoryStore(directory), "driftwarden")
    store.save(Checkpoint({(TOPIC, 0): 1}, pipeline.snapshot_home((TOPIC, 0)), PARTITION_FINGERPRINT))
    loaded = store.load((TOPIC, 0))
    assert loaded is not None
    restored = Pipeline(pipeline.config)
    assert restored.restore_home(loaded.pipeline) == ["m"]
    return restored


@pytest.mark.parametrize("move", [_through_checkpoint, _through_partition_move])
def test_a_restart_or_a_partition_move_keeps_the_label_store(tmp_path: Path, move):
    """Half the stream, a restart (or the partition moves to another pipeline), the rest: the labels that come
    after it join calls stored before it, and every figure equals one uninterrupted pass."""
    events, _ = _stream()
    uninterrupted = Pipeline(parse_config(_config()))
    _apply(uninterrupted, events)
    first = Pipeline(parse_config(_config()))
    half = len(events) // 2
    _apply(first, events[:half])
    moved = move(first, tmp_path)
    _apply(moved, events[half:], first=half)

    expected, got = _series(uninterrupted), _series(moved)
    cohort = {key: value for key, value in expected.items() if key[0].startswith("driftwarden_cohort")}
    assert len(cohort) > 10
    assert {key: got.get(key) for key in cohort} == cohort


def test_an_old_checkpoint_without_a_label_store_still_loads(tmp_path: Path):
    events, _ = _stream(n_calls=300)
    pipeline = Pipeline(parse_config(_config()))
    _apply(pipeline, events)
    snapshot = pipeline.snapshot()
    del snapshot["states"]["models"]["m"]["labels"]
    restored = Pipeline(pipeline.config)
    restored.restore(snapshot)
    assert restored.states.resets == {}
    assert len(restored.states["m"].labels) == WINDOW  # it starts with the calls the window holds
    assert restored.states["m"].window.n_appended == pipeline.states["m"].window.n_appended


def test_a_label_later_than_label_ttl_after_its_call_does_not_join_it():
    pipeline = Pipeline(parse_config(_config(label_ttl="1h")))
    calls = [{"request_id": f"r-{i}", "timestamp": T0 + i, "model": "m", "prediction": "yes"} for i in range(400)]
    _apply(pipeline, calls)
    late = {"type": "feedback", "request_id": "r-0", "timestamp": T0 + 3_601, "model": "m", "label": "no"}
    in_time = {"type": "feedback", "request_id": "r-1", "timestamp": T0 + 3_601, "model": "m", "label": "no"}
    _apply(pipeline, [late, in_time], first=400)
    cohort = pipeline.states["m"].labels.cohort(now_ms=(T0 + 3_601) * 1000.0, span_ms=86_400_000)
    assert cohort["timestamp_ms"].tolist() == [(T0 + 1) * 1000.0]


def test_a_store_restored_at_another_capacity_keeps_the_newest_calls_that_fit():
    store = LabelStore(100, ttl_ms=1e12, group_columns=())
    n = 250
    store.append({"timestamp_ms": np.arange(n, dtype=float), "request_id": np.array([f"r{i}" for i in range(n)]),
                  "response_id": np.array([None] * n), "prediction": np.ones(n), "score": np.ones(n)})  # fmt: skip
    smaller = LabelStore(40, ttl_ms=1e12, group_columns=())
    smaller.restore(store.snapshot())
    assert smaller.find(["r249", "r210", "r209"], np.zeros(3)).tolist() == [99, 60, -1]


def test_a_million_calls_hold_the_stated_bytes_and_no_object_per_call():
    """The store's arrays are allocated once: filling it twice over allocates nothing that stays."""
    capacity, n_groups = 1_000_000, 2
    store = LabelStore(capacity, ttl_ms=1e12, group_columns=("group.a", "group.b"))
    assert store.nbytes == capacity * (BYTES_PER_CALL + BYTES_PER_GROUP * n_groups)
    batch = 10_000
    ids = np.array([f"request-{i:012d}" for i in range(2 * capacity)], dtype=object)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for start in range(0, 2 * capacity, batch):
            store.append({
                "timestamp_ms": np.arange(start, start + batch, dtype=float), "request_id": ids[start : start + batch],
                "response_id": ids[start : start + batch], "prediction": np.ones(batch), "score": np.ones(batch),
                "group.a": np.zeros(batch, np.int32), "group.b": np.zeros(batch, np.int32),
            })  # fmt: skip
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1_000_000  # a megabyte of transients at most, against 69 MB of store
    assert len(store) == capacity
    assert store.find(["request-000001999999", "request-000000999999"], np.zeros(2)).tolist() == [1_999_999, -1]


def test_the_memory_bound_counts_the_label_store_by_the_stated_formula():
    config = {"models": [{"name": "m", "quality": {"max_labelled_calls": 50_000},
                          "bias": {"attributes": ["segment.a"], "outcome": {"positive": "yes"}}}]}  # fmt: skip
    none = {"models": [{"name": "m", "quality": {"max_labelled_calls": 0},
                        "bias": {"attributes": ["segment.a"], "outcome": {"positive": "yes"}}}]}  # fmt: skip
    assert memory_bound(parse_config(config)).labels == 50_000 * (BYTES_PER_CALL + BYTES_PER_GROUP)
    assert memory_bound(parse_config(none)).labels == 0


def test_a_numeric_models_cohort_has_scikit_learns_mae_and_rmse():
    pipeline = Pipeline(parse_config({"windows": {"size": 50, "min_samples": 20},
                                      "models": [{"name": "m", "quality": {"numeric": True}}]}))  # fmt: skip
    rng = np.random.default_rng(5)
    predicted, true = rng.normal(10, 2, 300), rng.normal(10, 2, 300)
    calls = [{"request_id": f"r-{i}", "timestamp": T0 + i, "model": "m", "prediction": float(predicted[i])}
             for i in range(300)]  # fmt: skip
    labels = [{"type": "feedback", "request_id": f"r-{i}", "timestamp": T0 + 300, "model": "m", "label": float(true[i])}
              for i in range(200)]  # fmt: skip: the labels of calls that have all left the 50-call window
    _apply(pipeline, calls + labels)
    series = _series(pipeline)
    assert _value(series, "driftwarden_cohort_calls", model="m") == 200
    mae = _value(series, "driftwarden_cohort_quality", model="m", metric="mae")
    rmse = _value(series, "driftwarden_cohort_quality", model="m", metric="rmse")
    assert mae == pytest.approx(mean_absolute_error(true[:200], predicted[:200]))
    assert rmse == pytest.approx(root_mean_squared_error(true[:200], predicted[:200]))


@pytest.mark.parametrize(("quality", "problem"), [
    ({"max_labelled_calls": -1}, "models[0].quality.max_labelled_calls: must be >= 0 (got -1)"),
    ({"max_labelled_calls": True}, "models[0].quality.max_labelled_calls: must be an integer (got True)"),
    ({"cohort": "soon"}, "models[0].quality.cohort: must be a positive duration"),
])  # fmt: skip
def test_the_label_store_settings_are_validated(quality, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config({"models": [{"name": "m", "quality": quality}]})
    assert problem in str(raised.value)

"""Data quality wired into the daemon: records through a pipeline, each check flagged for its feature only.

The reference is a warm-up of 2,000 calls with three features; then 2,000 calls in which one thing goes wrong.
The oracle is scipy's Fisher exact test on the counts the test itself makes of the events it sent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import fisher_exact

from monitor.cli import main
from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline

T0 = 1_790_000_000
N = 2_000
CATEGORIES = ("web", "app", "phone", "kiosk")
FEATURES = [
    {"name": "amount", "kind": "numeric", "path": "features.amount"},
    {"name": "age", "kind": "numeric", "path": "features.age"},
    {"name": "channel", "kind": "categorical", "path": "features.channel"},
]
CONFIG = {
    "windows": {"size": N, "min_samples": 50, "evaluate_every": "1h"},
    "models": [{"name": "m", "reference": {"warmup": N}, "features": FEATURES}],
}


def _features(rng: np.random.Generator) -> dict:
    return {
        "amount": float(rng.lognormal(3.0, 0.5)),
        "age": float(rng.normal(40.0, 8.0)),
        "channel": CATEGORIES[int(rng.integers(0, len(CATEGORIES)))],
    }


def _record(i: int, features: dict) -> Record:
    event = {"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", "latency_ms": 100.0, "features": features}
    return Record(json.dumps(event).encode(), "llm-events", 0, i)


def _evaluated(spoil) -> Pipeline:
    """A pipeline fed a clean reference, then ``N`` calls each passed through ``spoil(i, features, rng)``."""
    rng = np.random.default_rng(11)
    pipeline = Pipeline(parse_config(CONFIG))
    records = [_record(i, _features(rng)) for i in range(N)]
    records += [_record(i, spoil(i, _features(rng), rng)) for i in range(N, 2 * N)]
    for start in range(0, len(records), 500):
        assert pipeline.apply(records[start : start + 500]) == []
    pipeline.evaluate(now_ms=(T0 + 2 * N) * 1000.0)
    return pipeline


def _flagged(pipeline: Pipeline) -> list[tuple[str, str]]:
    return pipeline.evaluations["m"].data_quality.flagged


def test_a_feature_that_goes_sixty_percent_missing_is_flagged_and_only_it():
    gone = []

    def spoil(i, features, rng):
        if rng.random() < 0.6:  # the other values keep their distribution
            del features["amount"]
            gone.append(i)
        return features

    pipeline = _evaluated(spoil)

    assert _flagged(pipeline) == [("amount", "missing")]
    result = pipeline.evaluations["m"].data_quality.checks["amount"]["missing"]
    expected = fisher_exact([[len(gone), N - len(gone)], [0, N]], alternative="greater").pvalue
    assert result.share == len(gone) / N and result.reference_share == 0.0
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert "amount" not in pipeline.evaluations["m"].drift.drifted  # what is left did not drift: drift is blind


def test_a_null_counts_as_missing():
    def spoil(i, features, rng):
        if i % 2:
            features["age"] = None
        return features

    assert _flagged(_evaluated(spoil)) == [("age", "missing")]


@pytest.mark.parametrize(
    ("feature", "wrong"),
    [("channel", 7), ("amount", "12.5 EUR"), ("age", "forty")],
    ids=["number-for-a-category", "string-for-a-number", "word-for-a-number"],
)
def test_a_value_of_the_wrong_type_is_flagged_for_its_feature_only(feature, wrong):
    sent = []

    def spoil(i, features, rng):
        if rng.random() < 0.1:
            features[feature] = wrong
            sent.append(i)
        return features

    pipeline = _evaluated(spoil)

    assert (feature, "type_violation") in _flagged(pipeline)  # and the category "7" is one never seen
    assert all(flagged == feature for flagged, _ in _flagged(pipeline))
    result = pipeline.evaluations["m"].data_quality.checks[feature]["type_violation"]
    expected = fisher_exact([[len(sent), N - len(sent)], [0, N]], alternative="greater").pvalue
    assert result.share == len(sent) / N and result.p_value == pytest.approx(expected, rel=1e-9)
    assert pipeline.n_invalid["wrong_type"] == 0  # measured, not rejected


def test_values_out_of_the_references_range_are_flagged_for_their_feature_only():
    def spoil(i, features, rng):
        if rng.random() < 0.05:
            features["age"] = 150.0
        return features

    pipeline = _evaluated(spoil)

    assert ("age", "out_of_range") in _flagged(pipeline)
    assert all(feature == "age" for feature, _ in _flagged(pipeline))


def test_categories_the_reference_never_saw_are_flagged_for_their_feature_only():
    def spoil(i, features, rng):
        if rng.random() < 0.05:
            features["channel"] = "smart-tv"
        return features

    pipeline = _evaluated(spoil)

    assert _flagged(pipeline) == [("channel", "unseen_category")]


def test_clean_traffic_flags_nothing_and_exports_every_check():
    pipeline = _evaluated(lambda i, features, rng: features)

    assert _flagged(pipeline) == []
    families = {
        family.name: family for family in text_string_to_metric_families(exposition(build_registry(pipeline)).decode())
    }
    flagged = families["driftwarden_data_quality_flagged"].samples
    assert {(sample.labels["feature"], sample.labels["check"]) for sample in flagged} == {
        ("amount", "missing"), ("amount", "type_violation"), ("amount", "out_of_range"),
        ("age", "missing"), ("age", "type_violation"), ("age", "out_of_range"),
        ("channel", "missing"), ("channel", "type_violation"), ("channel", "unseen_category"),
    }  # fmt: skip
    assert all(sample.value == 0.0 for sample in flagged)
    assert {sample.value for sample in families["driftwarden_data_quality_threshold"].samples} == {
        pipeline.evaluations["m"].data_quality.checks["age"]["missing"].threshold
    }


def test_check_config_states_the_data_quality_budget(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    model = {"name": "m", "features": FEATURES, "drift": {"false_alarms_per_week": 2}}
    path.write_text(json.dumps({"models": [model]}))

    assert main(["check-config", str(path)]) == 0

    expected = "data quality: 9 checks at alpha 9.92e-05 after bh correction, as drift: at most 2 false data-quality"
    assert expected in capsys.readouterr().out

"""Drift wired into the daemon: its config checks, warm-up and file references, checkpoints, metrics and /report.

Pure tests without a broker: pipelines are fed records made here, checkpoints go to ``tmp_path``, and the one
HTTP server listens on a free port of 127.0.0.1. Evidently renders a single small report, the slowest step here.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from monitor.cli import main
from monitor.config import Config, ConfigError, parse_config
from monitor.evaluate.drift import DriftSuite, drift_alpha, false_alarm_policy
from monitor.export.collectors import MetricsServer, build_registry, exposition
from monitor.export.report import DriftReports, render_page
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointStore, config_fingerprint
from monitor.state.columns import TIMESTAMP_MS, Columns
from monitor.state.model import ModelStates
from monitor.state.reference import ReferenceFileError, read_reference_file, reference_records
from monitor.state.vocabulary import MISSING

T0 = 1_790_000_000  # epoch seconds of event 0
CATEGORIES = ("web", "app", "phone")
FEATURES = [{"name": "x", "kind": "numeric"}, {"name": "c", "kind": "categorical"}]


def _inference(i: int, model: str = "m", x: float | None = None, c: str | None = None) -> dict:
    """Inference event number ``i``: one a second, ``x`` defaulting to ``i``, ``c`` cycling through CATEGORIES."""
    return {
        "request_id": f"{model}-{i}",
        "timestamp": T0 + i,
        "model": model,
        "latency_ms": 100.0 + i % 50,
        "features": {"x": float(i) if x is None else x, "c": CATEGORIES[i % 3] if c is None else c},
    }


def _feedback(i: int, model: str = "m") -> dict:
    return {"type": "feedback", "request_id": f"{model}-{i}", "timestamp": T0 + i, "model": model, "rating": 1.0}


def _records(events: list[dict], first_offset: int = 0) -> list[Record]:
    return [Record(json.dumps(event).encode(), "llm-events", 0, first_offset + i) for i, event in enumerate(events)]


def _apply_in_batches(pipeline: Pipeline, events: list[dict], size: int = 7) -> None:
    """Batches of an odd size, so that some batch straddles the end of the reference."""
    for start in range(0, len(events), size):
        assert pipeline.apply(_records(events[start : start + size], start)) == []


def _metrics(pipeline: Pipeline, now_ms: float) -> bytes:
    pipeline.evaluate(now_ms)
    return exposition(build_registry(pipeline))


def _samples(text: bytes, prefix: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of the samples whose name starts with ``prefix``."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name.startswith(prefix)
    }


def _by_feature(samples: dict, name: str) -> dict[str, float]:
    return {dict(labels)["feature"]: value for (sample, labels), value in samples.items() if sample == name}


def _through_disk(pipeline: Pipeline, directory: Path, before_restore: Callable[[], object] | None = None) -> Pipeline:
    """Checkpoint ``pipeline``, load the checkpoint back and restore it into a fresh pipeline of the same config.

    ``before_restore`` runs between the save and the restore (a restart in between, say).
    """
    store = CheckpointStore(directory)
    store.save(Checkpoint({("llm-events", 0): 1}, pipeline.snapshot(), config_fingerprint(pipeline.config)))
    if before_restore is not None:
        before_restore()
    loaded = store.load()
    assert loaded is not None and loaded.config_fingerprint == config_fingerprint(pipeline.config)
    restored = Pipeline(pipeline.config)
    restored.restore(loaded.pipeline)
    return restored


def _decoded(state, codes: np.ndarray) -> list[str | None]:
    """Categorical codes of ``state``'s feature ``c`` back to their values."""
    values = state.vocabularies["c"].values
    return [None if code == MISSING else values[code] for code in codes.tolist()]


# --- 1. Config errors name the key and the reason --------------------------------------------------------------


def _model(**fields: object) -> dict:
    return {"models": [{"name": "bot", **fields}]}


NUMERIC_METHODS = "valid: auto, anderson, jensenshannon, ks, psi, wasserstein"

CONFIG_ERRORS = [
    pytest.param(
        _model(drift={"numeric": "kss"}),
        "models[0].drift",
        ("unknown numeric drift method 'kss'", NUMERIC_METHODS),
        id="unknown-numeric-method",
    ),
    pytest.param(
        _model(features=[{"name": "a", "kind": "numeric"}, {"name": "x", "kind": "numeric", "method": "chisquare"}]),
        "models[0].features[1]",
        ("unknown numeric drift method 'chisquare'", NUMERIC_METHODS),
        id="categorical-method-on-a-numeric-feature",
    ),
    pytest.param(
        _model(drift={"thresholds": {"ks": 0.1}}),
        "models[0].drift",
        ("thresholds: 'ks' is not a distance method (classifier, jensenshannon, psi, wasserstein)", "use 'alpha'"),
        id="threshold-for-a-p-value-method",
    ),
    pytest.param(
        _model(drift={"alpha": 0.01, "false_alarms_per_week": 2}),
        "models[0].drift",
        ("give either 'alpha' or 'false_alarms_per_week', not both",),
        id="alpha-and-false-alarms",
    ),
    pytest.param(
        _model(drift={"alpha": 0.05, "false_alarms_per_week": 2}),
        "models[0].drift",
        ("give either 'alpha' or 'false_alarms_per_week', not both",),
        id="alpha-at-its-default-value-and-false-alarms",
    ),
    pytest.param(
        _model(drift={"correction": "none", "false_alarms_per_week": 2}),
        "models[0].drift",
        ("'false_alarms_per_week' needs correction 'bh' or 'bonferroni'",),
        id="false-alarms-without-correction",
    ),
    pytest.param(
        {
            "windows": {"evaluate_every": "1h"},
            "models": [{"name": "a"}, {"name": "b", "drift": {"false_alarms_per_week": 168}}],
        },
        "models[1].drift.false_alarms_per_week",
        ("must be below the 168 evaluations a week that windows.evaluate_every gives (got 168.0)",),
        id="false-alarms-beyond-the-evaluations",
    ),
    pytest.param(
        _model(reference={"warmup": 50, "file": "reference.jsonl"}),
        "models[0].reference",
        ("give either 'warmup' or 'file', not both",),
        id="warmup-and-file",
    ),
    pytest.param(
        _model(drift={"change_detector": "adwn"}),
        "models[0].drift",
        ("unknown change_detector 'adwn'; valid: adwin, page_hinkley, cusum or null",),
        id="unknown-change-detector",
    ),
    pytest.param(_model(drift={"alpha": 0}), "models[0].drift.alpha", ("must be >= 1e-09 (got 0)",), id="alpha-zero"),
    pytest.param(_model(drift={"change_arl": 5}), "models[0].drift.change_arl", ("must be >= 10.0",), id="arl-short"),
    pytest.param(_model(drift={"change_shift": 0}), "models[0].drift.change_shift", ("must be > 0",), id="shift-0"),
    pytest.param(
        _model(drift={"change_warmup": 2}), "models[0].drift.change_warmup", ("must be >= 5",), id="warmup-short"
    ),
    pytest.param(_model(drift={"alpha": 1.0}), "models[0].drift.alpha", ("must be < 1.0 (got 1.0)",), id="alpha-one"),
]


@pytest.mark.parametrize(("data", "where", "reasons"), CONFIG_ERRORS)
def test_a_bad_drift_setting_is_one_error_that_names_its_key_and_the_reason(data, where, reasons):
    with pytest.raises(ConfigError) as raised:
        parse_config(data, environ={})
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(where), message
    for reason in reasons:
        assert reason in message


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (_model(drift={"numeric": "kss"}), "models[0].drift.numeric"),
        (
            _model(features=[{"name": "a", "kind": "numeric"}, {"name": "x", "kind": "numeric", "method": "ks2"}]),
            "models[0].features[1].method",
        ),
        (_model(drift={"change_detector": "adwn"}), "models[0].drift.change_detector"),
    ],
    ids=["drift.numeric", "features[i].method", "drift.change_detector"],
)
def test_a_bad_method_is_reported_at_the_key_that_holds_it(data, path):
    with pytest.raises(ConfigError) as raised:
        parse_config(data, environ={})
    assert str(raised.value).startswith(f"{path}: ")


def test_false_alarms_just_below_the_evaluations_a_week_are_accepted():
    config = parse_config({"windows": {"evaluate_every": "1h"}, **_model(drift={"false_alarms_per_week": 167.5})})
    assert config.models[0].drift.false_alarms_per_week == 167.5


# --- 2. The false-alarm policy -----------------------------------------------------------------------------------


def test_false_alarms_per_week_set_alpha_through_the_evaluations_a_week():
    config = parse_config({"windows": {"evaluate_every": "30s"}, **_model(drift={"false_alarms_per_week": 2})})
    drift, windows = config.models[0].drift, config.windows

    assert windows.evaluations_per_week == 20_160
    assert drift_alpha(drift, windows) == 2 / 20_160
    assert false_alarm_policy(drift, windows) == (
        "alpha 9.92e-05 after bh correction, 20160 evaluations a week: "
        "at most 2 false drift alerts a week without drift"
    )


def test_without_false_alarms_per_week_alpha_is_the_configured_one():
    config = parse_config({"windows": {"evaluate_every": "30s"}, **_model(drift={"alpha": 0.01})})
    assert drift_alpha(config.models[0].drift, config.windows) == 0.01


def test_the_policy_without_correction_counts_false_alarms_per_feature():
    config = parse_config({"windows": {"evaluate_every": "30s"}, **_model(drift={"alpha": 0.01, "correction": "none"})})
    line = false_alarm_policy(config.models[0].drift, config.windows)

    assert line.startswith("alpha 0.01 per feature without correction, 20160 evaluations a week: ")
    assert "up to 202 false drift alerts a week per feature" in line
    assert "set correction: bh" in line


def test_check_config_says_which_features_the_promise_covers(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(
        "models: [{name: m, drift: {thresholds: {wasserstein: 0.2}}, features: [{name: amount, kind: numeric},"
        " {name: tier, kind: categorical}, {name: v, kind: embedding, dim: 4},"
        " {name: q, kind: numeric, method: ks}]}]\n"
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "    drift promise: covers tier, q; not amount (thresholds.wasserstein is pinned), "
        "v (classifier's threshold is fixed)\n"
    ) in out
    assert (  # the defaults: ADWIN, blocks of windows.min_samples events
        "    changes: adwin on blocks of 200 events, a warm-up of 30 blocks: at most a false change every 10000 blocks"
        " (2e+06 events) on average per signal; adapts to any step\n"
    ) in out


def _suite_columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Columns of SUITE_MODEL's features, all from one distribution (int32 codes for the category), none of a
    wrong type."""
    features = {
        "amount": rng.normal(10.0, 2.0, n),
        "wait_s": rng.exponential(5.0, n),
        "channel": rng.choice(3, n, p=[0.6, 0.3, 0.1]).astype(np.int32),
        "pinned": rng.normal(size=n),
    }
    return {
        TIMESTAMP_MS: np.arange(n, dtype=float),
        **{Columns.feature(name): values for name, values in features.items()},
        **{Columns.wrong_type(name): np.zeros(n, dtype=bool) for name in features},
    }


SUITE_CONFIG = parse_config(
    {
        "windows": {"min_samples": 100},
        "models": [
            {
                "name": "m",
                "drift": {"alpha": 0.1, "correction": "bonferroni", "thresholds": {"psi": 0.5}},
                "features": [  # on a reference of 1,500 rows auto picks wasserstein and jensenshannon
                    {"name": "amount", "kind": "numeric"},
                    {"name": "wait_s", "kind": "numeric", "method": "ks"},
                    {"name": "channel", "kind": "categorical"},
                    {"name": "pinned", "kind": "numeric", "method": "psi"},
                ],
            }
        ],
    }
)


def _suite() -> DriftSuite:
    return DriftSuite(SUITE_CONFIG.models[0], alpha=0.1, min_samples=100)


def test_the_suite_shares_alpha_among_the_covered_features_and_calibrates_the_unpinned_distances():
    rng = np.random.default_rng(8)
    reference = _suite_columns(rng, 1_500)
    suite, again = _suite(), _suite()
    suite.fit(reference, 0.0)
    again.fit(reference, 0.0)  # a refit after a restore: the same seeds, the same thresholds
    window = _suite_columns(rng, 400)
    drift = suite.score(window, 0.0)

    methods = {label: result.method for label, result in drift.features.items()}
    assert methods == {"amount": "wasserstein", "wait_s": "ks", "channel": "jensenshannon", "pinned": "psi"}
    # Three features covered: each calibrated distance at alpha / 3, the one p-value test corrected at the rest.
    assert drift.features["wait_s"].threshold == pytest.approx(0.1 / 3)
    assert drift.features["pinned"].threshold == 0.5
    for label in ("amount", "channel"):
        calibrated = suite._tests[label]
        assert drift.features[label].threshold == calibrated.threshold(0.1 / 3, 400)
        assert drift.features[label].threshold != 0.1  # not Evidently's fixed one
    assert again.score(window, 0.0) == drift


@pytest.mark.statistical
def test_under_auto_methods_a_null_stream_raises_at_most_alpha_false_alarms():
    """Each pair a new reference of 1,500 rows and a window of 200 from the same distributions (see
    tests/unit/detectors/test_calibrated_distance.py): Evidently's fixed 0.1 flagged the Wasserstein feature in
    most windows of this size, whatever alpha."""
    rng = np.random.default_rng(9)
    model = SUITE_CONFIG.models[0].model_copy(update={"features": SUITE_CONFIG.models[0].features[:3]})
    n_pairs, alarms = 60, 0
    for _ in range(n_pairs):
        suite = DriftSuite(model, alpha=0.1, min_samples=100)
        suite.fit(_suite_columns(rng, 1_500), 0.0)
        alarms += bool(suite.score(_suite_columns(rng, 200), 0.0).drifted)
    low, high = stats.binomtest(alarms, n_pairs).proportion_ci(0.90)

    assert low <= 0.1, f"{alarms / n_pairs:.3f} of windows flagged ({low:.3f} to {high:.3f})"


def _heavy_null_alarms(alpha: float, n_pairs: int, seed: int) -> tuple[int, set[str]]:
    """Under ``auto``, a new reference of 2,000 lognormal (spread 2) values and a window of 200 to 2,000 from the same
    law, each pair: the windows flagged, and the methods the suite chose (see detectors/tails.py)."""
    model = SUITE_CONFIG.models[0].model_copy(update={"features": SUITE_CONFIG.models[0].features[:1]})
    rng = np.random.default_rng(seed)
    alarms, methods = 0, set()

    def columns(n: int) -> dict[str, np.ndarray]:
        amount = rng.lognormal(0.0, 2.0, n)
        return {TIMESTAMP_MS: np.arange(n, dtype=float), Columns.feature("amount"): amount,
                Columns.wrong_type("amount"): np.zeros(n, dtype=bool)}  # fmt: skip

    for _ in range(n_pairs):
        suite = DriftSuite(model, alpha=alpha, min_samples=100)
        suite.fit(columns(2_000), 0.0)
        result = suite.score(columns(int(rng.integers(200, 2_001))), 0.0)
        methods |= {tested.method for tested in result.features.values()}
        alarms += bool(result.drifted)
    return alarms, methods


def test_under_auto_a_heavy_tailed_feature_is_tested_by_ks_and_false_alarms_at_most_alpha():
    """A calibrated Wasserstein threshold drew 0.043 false alarms a window at alpha 0.01 here (1,200 pairs):
    ``auto`` tests a heavy tail with ``ks`` instead, whose p-value holds whatever the tails."""
    alarms, methods = _heavy_null_alarms(alpha=0.1, n_pairs=300, seed=13)
    low, high = stats.binomtest(alarms, 300).proportion_ci(0.90)

    assert methods == {"ks"}
    assert low <= 0.1, f"{alarms / 300:.3f} of windows flagged ({low:.3f} to {high:.3f})"


@pytest.mark.soak
def test_under_auto_a_heavy_tail_false_alarms_at_most_alpha_at_a_small_alpha():
    alarms, methods = _heavy_null_alarms(alpha=0.01, n_pairs=1_500, seed=14)
    low, high = stats.binomtest(alarms, 1_500).proportion_ci(0.90)

    assert methods == {"ks"}
    assert low <= 0.01, f"{alarms / 1_500:.4f} of windows flagged ({low:.4f} to {high:.4f})"


# --- 3. The warm-up reference --------------------------------------------------------------------------------------

WARMUP_CONFIG = parse_config(
    {
        "windows": {"size": 80, "min_samples": 20},
        "models": [{"name": "*", "reference": {"warmup": 50}, "features": FEATURES}],
    }
)


def _warmup_stream(first: int, last: int) -> list[dict]:
    """Inference events ``first..last-1`` of model ``m``, with feedback of ``m`` and calls of another model between."""
    events = []
    for i in range(first, last):
        if i % 3 == 0:
            events.append(_feedback(i))
        if i % 4 == 0:
            events.append(_inference(i, model="other", x=-1.0))
        events.append(_inference(i))
    return events


def test_a_warmup_reference_takes_exactly_the_first_inference_events_of_its_model_and_then_stays():
    pipeline = Pipeline(WARMUP_CONFIG)
    _apply_in_batches(pipeline, _warmup_stream(0, 80))
    state = pipeline.states["m"]
    assert state.n_events["feedback"] >= 15  # feedback arrived while the reference was filling

    reference = state.reference.columns()
    assert state.reference.complete and len(state.reference) == 50
    np.testing.assert_array_equal(reference["feature.x"], np.arange(50.0))
    np.testing.assert_array_equal(reference["timestamp_ms"], (T0 + np.arange(50.0)) * 1000.0)
    assert _decoded(state, reference["feature.c"]) == [CATEGORIES[i % 3] for i in range(50)]
    assert state.reference.newest_ms == (T0 + 49) * 1000.0
    assert len(pipeline.states["other"].reference) == 20  # another model's calls fill its own reference

    _apply_in_batches(pipeline, _warmup_stream(80, 200))
    after = state.reference.columns()
    assert list(after) == list(reference)
    for column, values in reference.items():
        np.testing.assert_array_equal(after[column], values, err_msg=column)
    samples = _samples(_metrics(pipeline, pipeline.watermark_ms), "driftwarden_reference_events")
    assert samples[("driftwarden_reference_events", (("model", "m"),))] == 50


def test_a_complete_warmup_reference_survives_a_checkpoint_and_the_next_evaluation_is_the_same(tmp_path):
    original = Pipeline(WARMUP_CONFIG)
    _apply_in_batches(original, _warmup_stream(0, 120))
    original.evaluate(original.watermark_ms)
    assert original.evaluations["m"].drift is not None  # the suite was fitted before the checkpoint

    restored = _through_disk(original, tmp_path)

    saved, back = original.states["m"].reference, restored.states["m"].reference
    assert back.complete and len(back) == len(saved) == 50
    assert list(back.columns()) == list(saved.columns())
    for column, values in saved.columns().items():
        np.testing.assert_array_equal(back.columns()[column], values, err_msg=column)
    now_ms = original.watermark_ms + 5_000
    assert _metrics(restored, now_ms) == _metrics(original, now_ms)
    assert restored.evaluations["m"].drift == original.evaluations["m"].drift
    assert restored.evaluations["m"].drift.features  # something was tested

    # Further events leave the restored reference as it was, and both pipelines keep agreeing.
    more = _warmup_stream(120, 150)
    _apply_in_batches(original, more)
    _apply_in_batches(restored, more)
    np.testing.assert_array_equal(back.columns()["feature.x"], np.arange(50.0))
    assert _metrics(restored, original.watermark_ms) == _metrics(original, original.watermark_ms)


def test_calibrated_distance_thresholds_are_the_same_after_a_restore(tmp_path):
    """The suite is not saved: the restored pipeline refits it on the saved reference, with the same seeds."""
    config = parse_config(
        {
            "windows": {"size": 80, "min_samples": 20},
            "models": [
                {
                    "name": "*",
                    "reference": {"warmup": 50},
                    "drift": {"numeric": "wasserstein", "categorical": "jensenshannon"},
                    "features": FEATURES,
                }
            ],
        }
    )
    original = Pipeline(config)
    _apply_in_batches(original, _warmup_stream(0, 120))
    original.evaluate(original.watermark_ms)
    restored = _through_disk(original, tmp_path)
    restored.evaluate(original.watermark_ms)

    drift = original.evaluations["m"].drift
    assert {result.method for result in drift.features.values()} == {"wasserstein", "jensenshannon"}
    assert restored.evaluations["m"].drift == drift
    assert all(result.threshold != 0.1 for result in drift.features.values())  # calibrated, not Evidently's


def test_a_partly_filled_warmup_reference_carries_on_filling_after_a_restore(tmp_path):
    original = Pipeline(WARMUP_CONFIG)
    _apply_in_batches(original, _warmup_stream(0, 30))
    restored = _through_disk(original, tmp_path)
    assert len(restored.states["m"].reference) == 30 and not restored.states["m"].reference.complete

    rest = _warmup_stream(30, 90)
    _apply_in_batches(original, rest)
    _apply_in_batches(restored, rest)

    for pipeline in (original, restored):
        np.testing.assert_array_equal(pipeline.states["m"].reference.columns()["feature.x"], np.arange(50.0))
    assert _metrics(restored, original.watermark_ms) == _metrics(original, original.watermark_ms)


# --- 4. What the checkpoint fingerprint covers ---------------------------------------------------------------

FINGERPRINT_BASE = {
    "windows": {"size": 100, "min_samples": 10},
    "models": [{"name": "m", "reference": {"warmup": 50}, "features": FEATURES}],
}


def _changed(path: str, value: object) -> dict:
    """FINGERPRINT_BASE with ``models[0].<path>`` (dotted; a number indexes a list) set to ``value``."""
    data = copy.deepcopy(FINGERPRINT_BASE)
    *parents, key = path.split(".")
    node = data["models"][0]
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[int(key) if key.isdigit() else key] = value
    return data


@pytest.mark.parametrize(
    "unchanged",
    [
        _changed("drift.alpha", 0.01),
        _changed("drift.numeric", "wasserstein"),
        _changed("drift.categorical", "psi"),
        _changed("drift.thresholds", {"psi": 0.2}),
        _changed("drift.correction", "bonferroni"),
        _changed("drift.false_alarms_per_week", 1),
        _changed("features.0.method", "psi"),
    ],
    ids=["alpha", "numeric-method", "categorical-method", "thresholds", "correction", "false-alarms", "feature-method"],
)
def test_changing_only_how_drift_is_tested_keeps_the_fingerprint(unchanged):
    assert config_fingerprint(parse_config(unchanged)) == config_fingerprint(parse_config(FINGERPRINT_BASE))
    assert _model_fingerprint(unchanged) == _model_fingerprint(FINGERPRINT_BASE)


def _model_fingerprint(config: dict) -> str:
    return ModelStates(parse_config(config)).state_for("m", 0).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        _changed("reference", {"warmup": 60}),
        _changed("reference", {"file": "reference.jsonl"}),
        _changed("features", [*FEATURES, {"name": "y", "kind": "numeric"}]),
        _changed("features.1.kind", "text"),
        _changed("drift.change_detector", "cusum"),
        _changed("drift.change_detector", None),
    ],
    ids=["warmup", "file", "new-feature", "feature-kind", "change-detector", "no-change-detector"],
)
def test_changing_the_reference_a_feature_or_the_change_detector_changes_the_models_fingerprint(changed, tmp_path):
    if "file" in changed["models"][0]["reference"]:
        changed["models"][0]["reference"]["file"] = str(_write(tmp_path / "reference.jsonl", []))
    assert _model_fingerprint(changed) != _model_fingerprint(FINGERPRINT_BASE)


def test_state_saved_under_one_drift_method_is_tested_with_the_new_one_after_a_restart(tmp_path):
    """The fingerprint's promise kept: the saved state restores under the new config, whose method tests it."""
    before = parse_config(FINGERPRINT_BASE)
    after = parse_config(_changed("drift.numeric", "wasserstein"))
    original = Pipeline(before)
    _apply_in_batches(original, _warmup_stream(0, 100))
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint({}, original.snapshot(), config_fingerprint(before)))

    assert store.load().config_fingerprint == config_fingerprint(after)
    restarted = Pipeline(after)
    restarted.restore(store.load().pipeline)
    restarted.evaluate(restarted.watermark_ms)
    original.evaluate(original.watermark_ms)

    assert original.evaluations["m"].drift.features["x"].method == "ks"
    assert restarted.evaluations["m"].drift.features["x"].method == "wasserstein"
    assert restarted.evaluations["m"].drift.n_reference == 50


# --- 5. The file reference ---------------------------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _file_config(path: Path) -> Config:
    return parse_config(
        {
            "windows": {"size": 40, "min_samples": 10},
            "models": [{"name": "m", "reference": {"file": str(path)}, "features": FEATURES}],
        }
    )


def test_a_reference_file_is_read_as_each_models_inference_events_in_order(tmp_path):
    lines = [
        json.dumps(_inference(0, "m")),
        "",
        json.dumps(_inference(1, "n")),
        json.dumps(_feedback(0, "m")),
        json.dumps(_inference(2, "m")),
        json.dumps(_inference(3, "m")),
    ]
    by_model = read_reference_file(_write(tmp_path / "reference.jsonl", lines), 10_000)

    assert sorted(by_model) == ["m", "n"]
    assert [event.request_id for event in by_model["m"]] == ["m-0", "m-2", "m-3"]
    assert [event.request_id for event in by_model["n"]] == ["n-1"]
    assert all(event.type == "inference" for events in by_model.values() for event in events)
    assert by_model["m"][1].timestamp_ms == (T0 + 2) * 1000.0  # decoded as the stream's events are


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not json", "not_json"),
        ('{"request_id": "r", "timestamp": 1790000000}', "missing_field (model)"),
        ('{"request_id": "r", "timestamp": 1790000000, "model": "m", "latency_ms": -1}', "negative (latency_ms)"),
    ],
    ids=["not-json", "missing-model", "negative-latency"],
)
def test_a_malformed_reference_line_is_an_error_naming_the_file_the_line_and_why(tmp_path, bad, reason):
    # Line 2 is blank: the line number counts it, as an editor does.
    path = _write(tmp_path / "reference.jsonl", [json.dumps(_inference(0)), "", json.dumps(_inference(1)), bad])
    with pytest.raises(ReferenceFileError) as raised:
        read_reference_file(path, 10_000)
    assert str(raised.value).startswith(f"{path}, line 4: {reason}")
    with pytest.raises(ReferenceFileError, match="line 4"):
        Pipeline(_file_config(path))  # the daemon refuses to start on it


def test_a_missing_reference_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "absent.jsonl"
    with pytest.raises(ReferenceFileError, match="cannot read") as raised:
        read_reference_file(path, 10_000)
    assert str(path) in str(raised.value)


def test_a_file_reference_is_complete_from_the_models_first_event_with_the_files_events(tmp_path):
    file_events = [_inference(i, c=("web", "app")[i % 2]) for i in range(30)] + [_inference(i, "n") for i in range(5)]
    path = _write(tmp_path / "reference.jsonl", [json.dumps(event) for event in file_events])
    pipeline = Pipeline(_file_config(path))
    assert pipeline.apply(_records([_inference(1000, c="phone")])) == []

    state = pipeline.states["m"]
    assert state.reference.complete and len(state.reference) == 30
    np.testing.assert_array_equal(state.reference.columns()["feature.x"], np.arange(30.0))
    samples = _samples(_metrics(pipeline, pipeline.watermark_ms), "driftwarden_reference_events")
    assert samples == {("driftwarden_reference_events", (("model", "m"),)): 30}  # "n" is not monitored here


def test_after_a_restore_the_reference_file_is_read_again_with_codes_consistent_with_the_window(tmp_path):
    path = tmp_path / "reference.jsonl"
    first = [_inference(i, x=float(i), c=("web", "app")[i % 2]) for i in range(30)]
    _write(path, [json.dumps(event) for event in first])
    original = Pipeline(_file_config(path))
    stream = [_inference(1000 + i, x=0.5 * i, c=("phone", "web")[i % 2]) for i in range(25)]
    _apply_in_batches(original, stream)

    state = original.states["m"]
    reference_codes, window_codes = state.reference.columns()["feature.c"], state.window.view()["feature.c"]
    assert _decoded(state, reference_codes) == [event["features"]["c"] for event in first]
    assert _decoded(state, window_codes) == [event["features"]["c"] for event in stream]
    assert set(reference_codes[::2].tolist()) == set(window_codes[1::2].tolist())  # "web" has one code on both sides

    # Between the checkpoint and the restart, someone replaces the reference (a new category "fax" in it).
    second = [_inference(i, x=100.0 + i, c=("fax", "web", "phone")[i % 3]) for i in range(21)]
    restored = _through_disk(original, tmp_path / "state", lambda: _write(path, [json.dumps(e) for e in second]))

    back = restored.states["m"]
    assert back.reference.complete and len(back.reference) == 21
    np.testing.assert_array_equal(back.reference.columns()["feature.x"], 100.0 + np.arange(21.0))
    assert _decoded(back, back.reference.columns()["feature.c"]) == [event["features"]["c"] for event in second]
    assert _decoded(back, back.window.view()["feature.c"]) == [event["features"]["c"] for event in stream]
    codes = dict(zip(_decoded(back, back.reference.columns()["feature.c"]), back.reference.columns()["feature.c"]))
    assert codes["web"] == reference_codes[0] and codes["phone"] == window_codes[0]  # the window's codes kept
    restored.evaluate(restored.watermark_ms)
    assert restored.evaluations["m"].drift.n_reference == 21


# --- 6. Drift in the pipeline and its metrics ------------------------------------------------------------------

REFERENCE_SIZE = 150
DRIFT_CONFIG = parse_config(
    {
        "windows": {"size": REFERENCE_SIZE, "min_samples": 60, "evaluate_every": "1h"},  # 168 evaluations a week
        "models": [
            {
                "name": "m",
                "reference": {"warmup": REFERENCE_SIZE},
                # Alpha 3.36 / 168 = 0.02, then Bonferroni over the two p-value tests (amount and channel).
                "drift": {
                    "false_alarms_per_week": 3.36,
                    "correction": "bonferroni",
                    "thresholds": {"wasserstein": 0.3},
                },
                "features": [
                    {"name": "amount", "kind": "numeric"},  # auto: ks on a 150-event reference
                    {"name": "wait_s", "kind": "numeric", "method": "wasserstein"},
                    {"name": "channel", "kind": "categorical"},  # auto: chisquare
                ],
            }
        ],
    }
)


def _drift_stream(first: int, last: int, shift: float, seed: int) -> list[dict]:
    """Calls ``first..last-1`` of model ``m``; ``amount`` shifts by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(first, last):
        event = _inference(i)
        event["features"] = {
            "amount": float(rng.normal(10.0 + 2.0 * shift, 2.0)),
            "wait_s": float(rng.normal(5.0, 1.0)),
            "channel": str(rng.choice(CATEGORIES)),
        }
        events.append(event)
    return events


def _drifting_pipeline() -> Pipeline:
    """The first 100 calls of model ``m``: enough to evaluate the window, not yet the 150-event reference."""
    pipeline = Pipeline(DRIFT_CONFIG)
    _apply_in_batches(pipeline, _drift_stream(0, 100, 0.0, seed=1), size=50)
    return pipeline


def _complete_and_shift(pipeline: Pipeline) -> None:
    _apply_in_batches(pipeline, _drift_stream(100, REFERENCE_SIZE, 0.0, seed=2), size=50)
    _apply_in_batches(pipeline, _drift_stream(REFERENCE_SIZE, 2 * REFERENCE_SIZE, 1.5, seed=3), size=50)


def test_drift_is_evaluated_once_the_reference_is_complete_and_flags_only_the_shifted_feature():
    pipeline = _drifting_pipeline()
    early = _metrics(pipeline, pipeline.watermark_ms)
    evaluation = pipeline.evaluations["m"]
    assert evaluation.traffic is not None and evaluation.window_events == 100  # evaluated, but against nothing yet
    assert evaluation.drift is None
    assert _samples(early, "driftwarden_drift_") == {}
    assert _samples(early, "driftwarden_reference_age") == {}
    assert _samples(early, "driftwarden_reference_events")[("driftwarden_reference_events", (("model", "m"),))] == 100

    _complete_and_shift(pipeline)
    late = _metrics(pipeline, pipeline.watermark_ms)
    drift = pipeline.evaluations["m"].drift
    samples = _samples(late, "driftwarden_drift_")

    assert drift is not None and drift.n_reference == REFERENCE_SIZE and drift.n_window == REFERENCE_SIZE
    assert _by_feature(samples, "driftwarden_drift_detected") == {"amount": 1.0, "wait_s": 0.0, "channel": 0.0}
    assert {feature: result.method for feature, result in drift.features.items()} == {
        "amount": "ks",
        "wait_s": "wasserstein",
        "channel": "chisquare",
    }
    assert set(_by_feature(samples, "driftwarden_drift_p_value")) == {"amount", "channel"}  # only the p-value tests
    thresholds = _by_feature(samples, "driftwarden_drift_threshold")
    assert thresholds == {feature: result.threshold for feature, result in drift.features.items()}
    alpha = drift_alpha(DRIFT_CONFIG.models[0].drift, DRIFT_CONFIG.windows)
    assert alpha == pytest.approx(0.02)
    assert thresholds["amount"] == thresholds["channel"] == alpha / 2  # corrected across the two p-value tests
    assert thresholds["wait_s"] == 0.3  # a distance keeps its configured threshold
    assert samples[("driftwarden_drift_share", (("model", "m"),))] == pytest.approx(1 / 3)
    age = _samples(late, "driftwarden_reference_age_seconds")
    assert age == {("driftwarden_reference_age_seconds", (("model", "m"),)): float(REFERENCE_SIZE)}


# --- 7. /report ----------------------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a local test server
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Evidently's imports (numpy.core, litestar)
def test_the_report_endpoint_serves_the_evidently_page_once_drift_was_evaluated():
    pipeline = _drifting_pipeline()
    pipeline.evaluate(pipeline.watermark_ms)  # the reference is still filling
    server = MetricsServer(build_registry(pipeline), port=0, report=DriftReports(pipeline, render=render_page))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}/report"
        status, kind, body = _get(f"{base}?model=m")
        assert (status, kind) == (404, "text/plain; charset=utf-8")
        assert "model 'm' has no drift evaluation yet (its reference may still be filling" in body

        _complete_and_shift(pipeline)
        pipeline.evaluate(pipeline.watermark_ms)
        status, kind, body = _get(f"{base}?model=nobody")
        assert status == 404 and "model 'nobody' has no drift evaluation yet" in body and "evaluated models: m" in body

        status, kind, page = _get(f"{base}?model=m")  # the one Evidently rendering of this file
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert "<html" in page[:1000].lower()
        for feature in ("amount", "wait_s", "channel"):
            assert feature in page  # each tested feature is a column of the report
        assert _get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        server.stop()


def test_without_a_report_callable_the_report_path_is_not_served():
    server = MetricsServer(build_registry(Pipeline(DRIFT_CONFIG)), port=0).start()
    try:
        status, _, body = _get(f"http://127.0.0.1:{server.port}/report?model=m")
    finally:
        server.stop()
    assert status == 404 and "try /metrics" in body


# --- 8. reference_records ----------------------------------------------------------------------------------------


def _reference_stream() -> list[list[Record]]:
    """Two batches mixing models a and b with feedback and invalid lines; a record's offset is its position."""
    values = [
        json.dumps(_inference(0, "a")),
        json.dumps(_inference(1, "b")),
        b"not json",
        json.dumps(_feedback(0, "a")),
        json.dumps(_inference(4, "a")),
        '{"request_id": "r", "timestamp": 1790000005}',  # no model
        json.dumps(_inference(6, "b")),
        json.dumps(_inference(7, "a")),
        json.dumps(_feedback(1, "b")),
        json.dumps(_inference(9, "b")),
        json.dumps(_inference(10, "a")),
    ]
    records = [Record(v if isinstance(v, bytes) else v.encode(), "t", 0, i) for i, v in enumerate(values)]
    return [records[:5], records[5:]]


@pytest.mark.parametrize(
    ("last", "models", "offsets"),
    [
        (False, None, [0, 1, 4, 6]),
        (True, None, [6, 7, 9, 10]),
        (False, {"b"}, [1, 6]),
        (True, {"a"}, [7, 10]),
        (False, {"c"}, []),
    ],
    ids=["first", "last", "first-of-b", "last-of-a", "unknown-model"],
)
def test_reference_records_keep_each_models_first_or_last_valid_inference_events_in_order(last, models, offsets):
    records = reference_records(_reference_stream(), 10_000, size=2, models=models, last=last)
    assert [record.offset for record in records] == offsets


def test_reference_records_keep_everything_when_a_model_has_fewer_events_than_asked():
    records = reference_records(_reference_stream(), 10_000, size=100)
    assert [record.offset for record in records] == [0, 1, 4, 6, 7, 9, 10]


def test_the_reference_command_writes_the_chosen_models_events_as_they_came(tmp_path, capsys):
    events = tmp_path / "events.jsonl"
    lines = [record.value for batch in _reference_stream() for record in batch]
    events.write_bytes(b"\n".join(lines) + b"\n")
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  - name: '*'\n")
    out = tmp_path / "reference.jsonl"

    arguments = ["--config", str(config), str(events), "--out", str(out), "--size", "2", "--model", "b"]
    code = main(["reference", "build", *arguments])

    assert code == 0
    assert out.read_bytes().splitlines() == [lines[1], lines[6]]
    assert f"wrote 2 reference events to {out}" in capsys.readouterr().out
    assert read_reference_file(out, 10_000).keys() == {"b"}

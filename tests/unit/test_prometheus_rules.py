"""The Prometheus rules in ``dashboards/prometheus``: valid, unit-tested, and written over metrics the daemon exports.

``promtool check rules`` and ``promtool test rules`` run as subprocesses (a missing promtool skips locally and
fails in CI). The rest reads the YAML: every alert has a promtool test where it fires and one where it does not,
every recording rule is evaluated by a test, and every metric a rule reads is one that the daemon's exporter
yields, with label names it carries and label values it exports (``monitor.export.collectors.build_registry`` over a
pipeline fed with drift, quality and bias traffic).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.config import parse_config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import ConsumerLagCollector, DaemonCollector, Exports, PipelineCollector
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import CheckpointStore
from monitor.run.checkpointer import Checkpointer
from tests.components import require
from tests.dashboards import PROCESS_SERIES, as_prometheus_sees_it, contract_series, dashboards, queries
from tests.promql import selectors

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "prometheus"
RECORDING = RULES / "recording.yaml"
ALERTS = RULES / "alerts.yaml"
TEST_FILES = sorted((RULES / "tests").glob("*.yaml"))

#: Series that Prometheus makes itself rather than scrapes from driftwarden's spec (and the process collector's,
#: which `driftwarden run` exports beside it, read by the dashboard only).
PROMETHEUS_OWN = {"up", "ALERTS", *PROCESS_SERIES}
#: Labels of Prometheus' ALERTS series: its own, and those of the alerting rules' results.
ALERTS_LABELS = {"alertname", "alertstate", "severity", "model", "feature", "check", "metric", "attribute", "topic"}
#: Target labels Prometheus adds to scraped series (`pod`: the Prometheus Operator's ServiceMonitor).
TARGET_LABELS = {"job", "instance", "pod"}
SEVERITIES = {"critical", "warning", "info"}
#: Alerts about the daemon or Prometheus rather than one model: no `model` label to name.
NOT_PER_MODEL = {"DriftwardenInvalidEvents", "DriftwardenConsumerLag", "DriftwardenDown", "DriftwardenAbsent"}
# --- the rules as data ------------------------------------------------------------------------------------------


def _rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _alerts() -> list[dict]:
    return _rules(ALERTS)


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules(RECORDING)}


def _unit_tests() -> list[tuple[Path, dict]]:
    return [(path, yaml.safe_load(path.read_text())) for path in TEST_FILES]


# --- what the daemon exports -------------------------------------------------------------------------------------

T0 = 1_790_000_000


def _traffic() -> list[Record]:
    """A model whose inputs drift half-way, with labels (each right after its call), scores, and two regions."""
    rng = random.Random(7)
    events = []
    for i in range(240):
        region = ("north", "south")[i % 2]
        prediction = "approve" if rng.random() < (0.7 if region == "north" else 0.4) else "deny"
        score = rng.uniform(0.5, 1.0)
        label = prediction if rng.random() < score else ("deny" if prediction == "approve" else "approve")
        drifted = i >= 140
        call = {
            "request_id": f"r{i}",
            "timestamp": T0 + i,
            "model": "loans",
            "latency_ms": 200.0 + 10 * (i % 7),
            "ttft_ms": 50.0,
            "input_tokens": (400 if drifted else 100) + i % 13,
            "output_tokens": 20,
            "prediction": prediction,
            "score": score,
            "segment": {"region": region, "locale": "de" if drifted else "en"},
            "response": json.dumps({"decision": prediction}) if i % 5 else "",
            "model_version": "rc1" if i % 10 == 0 else "v1",
        }
        if i % 17 == 0:
            call["error"] = "Timeout"
        events.append(call)
        feedback = {"type": "feedback", "request_id": f"r{i}", "timestamp": T0 + i + 0.5, "model": "loans"}
        events.append({**feedback, "label": label, "rating": rng.choice((-1, 1)), "judge_score": rng.random()})
    values = [json.dumps(event).encode() for event in events] + [b"not json"]
    return [Record(value, "llm-events", 0, offset) for offset, value in enumerate(values)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """Every series name the daemon exports, with each label it carries and the values seen in one run."""
    config = parse_config(
        {
            "windows": {"size": 100, "min_samples": 20},
            "models": [
                {
                    "name": "loans",
                    "reference": {"warmup": 100},
                    "features": [
                        {"name": "input_tokens", "kind": "numeric"},
                        {"name": "locale", "kind": "categorical", "path": "segment.locale"},
                        {"name": "response", "kind": "text"},
                    ],
                    "quality": {"positive": "approve", "label_ttl": "1h", "json_response": True},
                    "bias": {
                        "attributes": ["segment.region"],
                        "outcome": {"field": "prediction", "positive": "approve"},
                        "min_group_size": 10,
                    },
                    "slices": {"attributes": ["segment.region"], "min_group_size": 10},
                    "pricing": {"currency": "USD", "input": 0.5, "output": 1.5, "budget": {"amount": 10}},
                    "versions": {"min_samples": 10},  # rc1's 24 calls: comparisons bounded (lower, upper)
                }
            ],
            "alerts": {
                "rules": [
                    {"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.1, "actions": ["retrain"]}
                ]
            },
            "retraining": {"topic": "driftwarden-retraining"},
            "state": {"dir": str(tmp_path_factory.mktemp("state"))},
        }
    )
    pipeline = Pipeline(config)
    records = _traffic()
    for start in range(0, len(records), 7):  # batches as a consumer's polls bring them
        pipeline.apply(records[start : start + 7])
    pipeline.evaluate(pipeline.watermark_ms)
    # `driftwarden run` registers the consumer lag, its own health and the alerts beside the pipeline
    # (monitor/run/daemon.py).
    checkpointer = Checkpointer(CheckpointStore(tmp_path_factory.mktemp("checkpoints")), pipeline.snapshot, "f")
    lag = ConsumerLagCollector(lambda: {("llm-events", 0): 3})
    exports = Exports(PipelineCollector(pipeline), lag, DaemonCollector(checkpointer, lambda: 0))
    alerting = Alerting(config, exports.samples)
    exports.add(AlertsCollector(alerting))
    registry = exports.registry
    alerting.tick(pipeline, pipeline.watermark_ms)

    series: dict[str, dict[str, set[str]]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):  # families without samples count too
            series.setdefault(family.name + suffix, {})
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    # The run fed every kind of figure the rules read (the label values checked below come from it).
    assert {"accuracy", "estimated_accuracy"} <= series["driftwarden_quality"]["metric"]
    assert "estimate_error" in series["driftwarden_cohort_quality"]["metric"]
    assert "disparate_impact_ratio" in series["driftwarden_bias"]["metric"]
    assert series["driftwarden_drift_share"]["model"] == {"loans"}
    assert series["driftwarden_slice_drift_share"]["model"] == {"loans"}
    assert {"input_tokens", "locale", "response.is_refusal"} <= series["driftwarden_drift_detected"]["feature"]
    assert series["driftwarden_data_quality_flagged"]["check"] == {
        "missing", "type_violation", "out_of_range", "unseen_category"
    }  # fmt: skip
    assert series["driftwarden_alerts_firing"]["alertname"] == {"DataDrift"}
    assert series["driftwarden_retraining_jobs_total"]["model"] == {"loans"}
    assert series["driftwarden_version_verdict"]["version"] == {"rc1"}
    assert series["driftwarden_cost_budget_per_second"]["currency"] == {"USD"}
    return series


# --- promtool --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool (Debian package 'prometheus')")
    return path


def _promtool(promtool: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *arguments], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_promtool_checks_both_rule_files(promtool):
    result = _promtool(promtool, "check", "rules", str(RECORDING), str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2, result.stdout


def test_promtool_unit_tests_pass(promtool):
    assert TEST_FILES, "no promtool test files in dashboards/prometheus/tests"
    result = _promtool(promtool, "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


# --- the rule files' shape --------------------------------------------------------------------------------------


def test_each_file_holds_one_group_of_its_kind():
    recording = yaml.safe_load(RECORDING.read_text())["groups"]
    alerting = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [group["name"] for group in recording] == ["driftwarden.recording"]
    assert [group["name"] for group in alerting] == ["driftwarden.alerts"]
    assert all("record" in rule and "alert" not in rule for rule in recording[0]["rules"])
    assert all("alert" in rule and "record" not in rule for rule in alerting[0]["rules"])


def test_recording_rules_are_named_level_metric_operations():
    for name in _recorded():
        assert re.fullmatch(r"[a-z_]+:driftwarden_[a-z0-9_]+:[a-z0-9_]+", name), name
    records = [rule["record"] for rule in _rules(RECORDING)]
    assert len(records) == len(set(records))


def test_every_alert_has_severity_summary_description_and_runbook():
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names))
    for rule in _alerts():
        name, annotations = rule["alert"], rule.get("annotations", {})
        assert name.startswith("Driftwarden"), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert "$value" in annotations["description"], name
        if name not in NOT_PER_MODEL:
            assert "$labels.model" in annotations["summary"] and "$labels.model" in annotations["description"], name


def test_the_brief_alerts_are_all_there():
    assert {rule["alert"] for rule in _alerts()} >= {
        "DriftwardenDataDrift", "DriftwardenFeatureDrift", "DriftwardenLatencyP95High", "DriftwardenErrorRatioHigh",
        "DriftwardenQualityDrop", "DriftwardenBias", "DriftwardenLabelsExpiring", "DriftwardenAccuracyEstimateOff",
        "DriftwardenChangeDetected",
        "DriftwardenInvalidEvents", "DriftwardenConsumerLag", "DriftwardenDown", "DriftwardenStale",
        "DriftwardenDataQuality", "DriftwardenCostBurnRate",
    }  # fmt: skip


# --- the unit tests cover the rules -------------------------------------------------------------------------------


def test_unit_tests_load_the_real_rule_files():
    for path, spec in _unit_tests():
        loaded = {(path.parent / name).resolve() for name in spec["rule_files"]}
        assert loaded <= {RECORDING.resolve(), ALERTS.resolve()}, path
        assert RECORDING.resolve() in loaded, f"{path.name}: alerts read recorded series"


def test_every_alert_is_tested_firing_and_quiet():
    firing, quiet = set(), set()
    for _, spec in _unit_tests():
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in _alerts()}
    assert not alerts - firing, f"never tested firing: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"never tested quiet: {sorted(alerts - quiet)}"
    assert not (firing | quiet) - alerts, f"tests of unknown alerts: {sorted((firing | quiet) - alerts)}"


def test_every_recording_rule_is_evaluated_by_a_test():
    evaluated = set()
    for _, spec in _unit_tests():
        for test in spec["tests"]:
            for case in test.get("promql_expr_test", []):
                assert case["exp_samples"] or "!=" in case["expr"] or ">" in case["expr"], case
                evaluated.update(name for name, _ in selectors(case["expr"]))
    assert not _recorded() - evaluated, f"recording rules without a promql_expr_test: {sorted(_recorded() - evaluated)}"


# --- the rules read what the daemon exports ------------------------------------------------------------------------


def _expressions() -> list[tuple[str, str]]:
    """Every expression Prometheus evaluates for driftwarden: the rules, and the dashboards' panel queries."""
    rules = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in _rules(RECORDING) + _alerts()]
    panels = [
        (f"{name}: {panel}", as_prometheus_sees_it(expr))
        for name, dashboard in dashboards().items()
        for panel, expr in queries(dashboard)
    ]
    return rules + panels


def test_the_selector_reader_sees_every_metric():
    """Guard for the tokenizer: each rule reads at least one series, and no rule hides a name it missed."""
    for name, expr in _expressions():
        found = selectors(expr)
        assert found, name
        assert all(re.fullmatch(r"[a-zA-Z_:][\w:]*", metric) for metric, _ in found), (name, found)


def test_rules_read_only_metrics_the_daemon_exports(exported):
    recorded = _recorded()
    for rule, expr in _expressions():
        for metric, matchers in selectors(expr):
            if ":" in metric:
                assert metric in recorded, f"{rule} reads {metric}, which no recording rule records"
                continue
            if metric in PROMETHEUS_OWN:
                continue
            assert metric in exported, f"{rule} reads {metric}, which the daemon does not export"
            labels = exported[metric]
            for label, op, value in matchers:
                assert label in labels or label in TARGET_LABELS, f"{rule}: {metric} has no label {label!r}"
                if label in labels and op in ("=", "=~") and re.fullmatch(r"[\w.]+(\|[\w.]+)*", value):
                    missing = set(value.split("|")) - labels[label]
                    assert not missing, f"{rule}: {metric}{{{label}}} never takes the values {sorted(missing)}"


def test_rules_read_only_series_of_the_metrics_spec():
    """By name and label names, from ``monitor.export.metrics`` alone (the test above checks a real export)."""
    spec = contract_series()
    for rule, expr in _expressions():
        for metric, matchers in selectors(expr):
            if ":" in metric or metric in PROMETHEUS_OWN:
                continue
            assert metric in spec, f"{rule} reads {metric}, which monitor/export/metrics.py does not specify"
            for label, _, _ in matchers:
                assert label in spec[metric] or label in TARGET_LABELS, f"{rule}: {metric} has no label {label!r}"


def test_grouping_labels_are_labels_of_the_series(exported):
    """``by``/``without``/``on``/``ignoring`` name labels that the rule's raw series (or Prometheus) carry."""
    grouping = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
    for rule, expr in _expressions():
        carried = set(TARGET_LABELS)
        for metric, _ in selectors(expr):
            if metric in exported:
                carried |= set(exported[metric])
            elif ":" in metric:
                carried |= _labels_of_recorded(metric, exported)
            elif metric == "ALERTS":
                carried |= ALERTS_LABELS
        for clause in grouping.findall(expr):
            for label in filter(None, (part.strip() for part in clause.split(","))):
                assert label in carried, f"{rule} groups by {label!r}, which none of its series carries"


def _labels_of_recorded(name: str, exported: dict[str, dict[str, set[str]]]) -> set[str]:
    """Every label the raw series behind a recording rule carry (an upper bound of the recorded labels)."""
    rules = {rule["record"]: rule["expr"] for rule in _rules(RECORDING)}
    labels: set[str] = set()
    for metric, _ in selectors(rules[name]):
        if metric in exported:
            labels |= set(exported[metric])
        elif ":" in metric and metric != name:
            labels |= _labels_of_recorded(metric, exported)
    return labels

"""``monitor.export.metrics`` (what alert rules are checked against) is exactly what a daemon exports:
every series a fully configured pipeline, its alerting, the consumer lag and the daemon's checkpoints yield, with
the same labels; and the README's metrics table is the spec's."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.config import parse_config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import ConsumerLagCollector, DaemonCollector, Exports, PipelineCollector, exposition
from monitor.export.metrics import METRICS, SPEC, readme_table
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import CheckpointStore
from monitor.run.checkpointer import Checkpointer
from tests.golden import golden_config, golden_exports, golden_pipeline

CONFIG = {
    "windows": {"size": 50, "min_samples": 5},
    "models": [
        {
            "name": "*",
            "reference": {"warmup": 10},
            "features": [{"name": "x", "kind": "numeric"}],
            "quality": {"positive": "yes"},
            "bias": {"attributes": ["segment.region"], "outcome": {"positive": "yes"}, "min_group_size": 1},
            "slices": {"attributes": ["segment.region"], "min_group_size": 1},
            "versions": {"min_samples": 10},
            "pricing": {"currency": "EUR", "input": 2, "output": 8, "budget": {"amount": 100}},
        }
    ],
    "alerts": {
        "rules": [
            {"name": "Drift", "metric": "drift_share", "op": ">=", "threshold": 0.0, "actions": ["retrain"]},
            {"name": "Canary", "metric": "version_verdict", "op": ">=", "threshold": -1, "actions": ["rollback"]},
        ]
    },
}


def _events() -> list[Record]:
    lines = []
    for i in range(40):
        call = {"request_id": f"r{i}", "timestamp": 1_800_000_000 + i, "model": "bot", "latency_ms": 100 + i,
                "ttft_ms": 10, "features": {"x": i * (3 if i > 20 else 1)}, "prediction": "yes" if i % 3 else "no",
                "score": 0.8, "segment": {"region": "north" if i % 2 else "south"}, "input_tokens": 100 + i,
                "output_tokens": 9, "model_version": "canary" if i % 4 == 0 else "stable"}  # fmt: skip
        lines += [call, {"type": "feedback", "request_id": f"r{i}", "timestamp": 1_800_000_001 + i, "model": "bot",
                         "label": "yes"}]  # fmt: skip
    return [Record(json.dumps(line).encode(), "t", 0, i) for i, line in enumerate(lines)]


def test_the_contract_table_lists_exactly_the_exported_series(tmp_path):
    config = parse_config({**CONFIG, "state": {"dir": str(tmp_path)}})
    pipeline = Pipeline(config)
    pipeline.apply(_events())
    saved = pipeline.snapshot()
    saved["states"]["models"]["bot"]["fingerprint"] = "shaped otherwise"  # restored afresh: a state reset
    pipeline = Pipeline(config)
    pipeline.restore(saved)
    pipeline.apply(_events())
    pipeline.apply([_events()[0]._replace(partition=1)])  # a call on another partition than its model's home
    daemon = DaemonCollector(Checkpointer(CheckpointStore(tmp_path), pipeline.snapshot, "f"), lambda: 0)
    exports = Exports(PipelineCollector(pipeline), ConsumerLagCollector(lambda: {("t", 0): 0}), daemon)
    alerting = Alerting(config, exports.samples)
    exports.add(AlertsCollector(alerting))
    registry = exports.registry
    pipeline.evaluate(pipeline.watermark_ms)
    alerting.tick(pipeline, pipeline.watermark_ms)

    exported, jobs = {}, {}
    for family in text_string_to_metric_families(exposition(registry).decode()):
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                exported.setdefault(sample.name, set(sample.labels))
            if sample.name == "driftwarden_retraining_jobs_total":
                jobs[sample.labels["model"], sample.labels["status"]] = sample.value

    assert set(exported) == set(METRICS)
    assert {name: tuple(sorted(labels)) for name, labels in exported.items()} == {
        name: tuple(sorted(labels)) for name, labels in METRICS.items()
    }
    # One job, queued and not yet published; the statuses it has not reached are there at 0, so increase() will
    # see the first job that reaches them.
    assert jobs == {("bot", "queued"): 1, ("bot", "published"): 0, ("bot", "acknowledged"): 0, ("bot", "failed"): 0}


def test_the_readme_table_is_the_spec():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert readme_table() in readme, "regenerate the README's table with `python3 -m monitor.export.metrics`"


def test_the_spec_names_each_family_once_with_a_help_text():
    names = [spec.name for spec in SPEC]
    assert len(names) == len(set(names))
    assert all(spec.help.endswith(".") for spec in SPEC)
    assert all(spec.name.endswith("_total") == (spec.type == "counter") for spec in SPEC)


def test_the_rules_read_the_values_the_exposition_shows_model_by_model(tmp_path, golden_records):
    """The typed samples the alerting reads and the families Prometheus scrapes come from the same readings."""
    config = golden_config(tmp_path)
    exports = golden_exports(config, golden_pipeline(config, golden_records))
    scraped = {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(exposition(exports.registry).decode())
        for sample in family.samples
        if not sample.name.endswith("_bucket")
    }

    def read(models=None, names=None) -> set:
        return {(s.name, tuple(sorted(s.labels.items())), float(s.value)) for s in exports.samples(models, names)}

    def model_of(sample: tuple) -> str:
        return dict(sample[1]).get("model", "")

    assert read() == scraped
    for model in ("support-bot", "summarizer", ""):
        assert read({model}) == {sample for sample in scraped if model_of(sample) == model}, model
    lag = {"driftwarden_consumer_lag"}
    assert read({""}, lag) == {sample for sample in scraped if sample[0] in lag} != set()

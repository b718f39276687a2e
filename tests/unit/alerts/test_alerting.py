"""The daemon's alerting: per-model ticks, and alerts routed to sinks and the retraining queue."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client.core import GaugeMetricFamily

from monitor.alerting import Alerting
from monitor.config import parse_config

MINUTE = 60_000
RULE = {"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.3, "for": "1m"}


class Exported:
    """What ``Alerting`` reads on each tick: ``driftwarden_drift_share`` per model, set by the test."""

    def __init__(self, **shares: float):
        self.shares = shares

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("driftwarden_drift_share", "drift share", labels=["model"])
        for model, share in self.shares.items():
            family.add_metric([model], share)
        return [family]


def evaluations(*models: str) -> SimpleNamespace:
    """A pipeline whose ``evaluations`` hold a small window (no drift details) for each model."""
    return SimpleNamespace(
        evaluations={model: SimpleNamespace(window_events=10, drift=None, evaluated_at_ms=0) for model in models}
    )


def make_config(tmp_path, **alerts) -> object:
    rules = alerts.pop("rules", [RULE])
    return parse_config(
        {
            "state": {"dir": str(tmp_path / "state")},
            "alerts": {"rules": rules, **alerts},
            "retraining": {"topic": None, "cooldown": "1h"},
        },
        environ={},
    )


@pytest.fixture
def exported() -> Exported:
    return Exported(a=0.5, b=0.5)


def test_a_tick_for_some_models_evaluates_and_retrains_only_those_on_their_own_clock(tmp_path, exported):
    config = make_config(tmp_path, rules=[{**RULE, "actions": ["log", "retrain"]}])
    alerting = Alerting(config, exported.collect)
    pipeline = evaluations("a", "b")

    assert alerting.tick(pipeline, 0, models={"a"}) == []
    assert alerting.tick(pipeline, 30 * MINUTE, models={"b"}) == []
    [fired] = alerting.tick(pipeline, MINUTE, models={"a"})  # a's clock: for 1m has passed
    assert (fired.labels["model"], fired.starts_at_ms) == ("a", MINUTE)
    assert alerting.tick(pipeline, 30 * MINUTE + 30_000, models={"b"}) == []  # b's clock: 30 s on
    assert alerting.evaluated_models == {"a", "b"}

    [job] = alerting.retraining.jobs()
    assert (job.model, job.created_ms) == ("a", MINUTE)  # requested at a's time, for a only
    [fired] = alerting.tick(pipeline, 31 * MINUTE, models={"b"})
    assert fired.labels["model"] == "b"
    assert [(job.model, job.created_ms) for job in alerting.retraining.jobs()] == [("b", 31 * MINUTE), ("a", MINUTE)]
    # a's cooldown runs on a's clock: an hour after its first job, a gets another; b's later clock is not a's.
    assert len(alerting.tick(pipeline, 30 * MINUTE, models={"a"})) == 1
    assert len(alerting.retraining.jobs("a")) == 1
    alerting.tick(pipeline, 62 * MINUTE, models={"a"})
    assert [job.created_ms for job in alerting.retraining.jobs("a")] == [62 * MINUTE, MINUTE]


def test_a_tick_for_some_models_leaves_the_context_of_the_others_out(tmp_path, exported):
    rule = {**RULE, "for": 0, "annotations": {"summary": "{model} {window_events}"}}
    alerting = Alerting(make_config(tmp_path, rules=[rule]), exported.collect, deliver=False)

    alerts = alerting.tick(evaluations("a"), 0, models={"a", "b"})

    assert [alert.annotations["summary"] for alert in alerts] == ["a 10", "b "]
    assert alerting.tick(evaluations("a", "b"), 0, models=set()) == []

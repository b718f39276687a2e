"""The Alertmanager sink against a real Alertmanager: delivered, resolved, and retried across an outage."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from types import SimpleNamespace

from alerts.alert import Alert
from alerts.rules import Sample
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.outbox import Outbox
from monitor.config import parse_config
from monitor.export.alerting import Alerting
from monitor.export.collectors import shown

GENERATOR = "http://driftwarden.test:9108/models/support-bot"


def firing(name: str, starts_at_ms: float, value: float = 0.42) -> Alert:
    return Alert(
        fingerprint=f"{name}-fp",
        labels={"alertname": name, "model": "support-bot", "severity": "warning"},
        annotations={"summary": f"drift share {value}", "runbook_url": "https://runbooks.test/drift"},
        state="firing",
        value=value,
        starts_at_ms=starts_at_ms,
        ends_at_ms=None,
        actions=("alertmanager",),
    )


def resolved(alert: Alert, ends_at_ms: float) -> Alert:
    return dataclasses.replace(alert, state="resolved", value=0.1, ends_at_ms=ends_at_ms)


def named(alertmanager, name: str) -> list[dict]:
    return alertmanager.alerts(filter=f'alertname="{name}"')


def ms(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000


def test_firing_alert_appears_then_resolves(start_alertmanager, tmp_path):
    alertmanager = start_alertmanager()
    outbox = Outbox(tmp_path / "outbox.db")
    sink = AlertmanagerSink(alertmanager.url, outbox, timeout_s=2.0, generator_url=GENERATOR)
    now_ms = time.time() * 1000
    alert = firing("DataDrift", starts_at_ms=now_ms - 60_000)

    sink.add([alert])
    assert sink.deliver(now_ms) == 1
    assert len(outbox) == 0

    [received] = named(alertmanager, "DataDrift")
    assert received["labels"] == alert.labels
    assert received["annotations"] == alert.annotations
    assert received["generatorURL"] == GENERATOR
    assert abs(ms(received["startsAt"]) - alert.starts_at_ms) < 1
    # No endsAt sent: Alertmanager keeps it active for resolve_timeout (5 min here) after it last heard of it.
    assert ms(received["endsAt"]) > now_ms + 4 * 60_000
    assert received["status"]["state"] in ("active", "unprocessed")

    sink.add([resolved(alert, ends_at_ms=now_ms - 1_000)])
    assert sink.deliver(now_ms) == 0  # held: Alertmanager has had the firing alert for less than its group_wait
    assert len(named(alertmanager, "DataDrift")) == 1
    assert sink.deliver(now_ms + 35_000) == 1
    assert named(alertmanager, "DataDrift") == []
    assert len(outbox) == 0


def test_outage_keeps_alerts_until_alertmanager_is_back(start_alertmanager, tmp_path):
    alertmanager = start_alertmanager()
    outbox = Outbox(tmp_path / "outbox.db")
    sink = AlertmanagerSink(alertmanager.url, outbox, timeout_s=2.0)
    now_ms = time.time() * 1000
    alertmanager.stop()

    first = firing("LatencyRegression", starts_at_ms=now_ms - 30_000)
    sink.add([first])
    assert sink.deliver(now_ms) == 0  # connection refused
    [entry] = outbox.due("alertmanager", now_ms + 1_000, limit=10)
    assert entry.attempts == 1 and entry.next_attempt_ms == int(now_ms) + 1_000
    assert sink.deliver(now_ms + 500) == 0  # backing off: not even tried
    assert outbox.due("alertmanager", now_ms + 1_000, limit=10)[0].attempts == 1
    assert sink.deliver(now_ms + 1_000) == 0  # tried again, refused again
    assert outbox.due("alertmanager", now_ms + 3_000, limit=10)[0].attempts == 2

    # The next tick re-sends it (replacing the queued copy) and adds another; both wait behind the backoff.
    # An alert that fired and resolved during the outage is queued in that order and must end up resolved.
    second = firing("BiasDetected", starts_at_ms=now_ms - 10_000)
    brief = firing("ErrorRatio", starts_at_ms=now_ms - 20_000)
    sink.add([first, second, brief])
    sink.add([first, second, resolved(brief, ends_at_ms=now_ms - 5_000)])
    assert len(outbox) == 4
    assert sink.deliver(now_ms + 2_000) == 0

    alertmanager.start()  # same port, same data directory
    # ErrorRatio fired and resolved during the outage: Alertmanager gets it firing first, so that its
    # route notifies it, and the resolve once it has had it for the hold (group_wait and a little more).
    assert sink.deliver(now_ms + 3_000) == 3
    assert len(named(alertmanager, "ErrorRatio")) == 1
    assert sink.deliver(now_ms + 3_000 + 34_999) == 0
    assert sink.deliver(now_ms + 3_000 + 35_000) == 1
    assert len(outbox) == 0
    assert sorted(received["labels"]["alertname"] for received in alertmanager.alerts()) == [
        "BiasDetected",
        "LatencyRegression",
    ]
    [received] = named(alertmanager, "LatencyRegression")
    assert abs(ms(received["startsAt"]) - first.starts_at_ms) < 1


def test_label_values_reach_alertmanager_as_the_exposition_shows_them(start_alertmanager, tmp_path):
    # Alerts carry the names producers sent; a version "" would be dropped by Alertmanager (an empty value is no
    # label) and meet the model's own alert, so the daemon's sink shows values as /metrics does.
    alertmanager = start_alertmanager()
    sink = AlertmanagerSink(alertmanager.url, Outbox(tmp_path / "outbox.db"), timeout_s=2.0, label_value=shown)
    now_ms = time.time() * 1000
    canary, model_wide = (
        dataclasses.replace(firing("CanaryWorse", now_ms), fingerprint=f"fp-{version}",
                            labels={"alertname": "CanaryWorse", "model": "(empty)", **version})
        for version in ({"version": ""}, {})
    )  # fmt: skip
    sink.add([canary, model_wide])
    assert sink.deliver(now_ms) == 2
    assert sorted(tuple(sorted(alert["labels"].items())) for alert in named(alertmanager, "CanaryWorse")) == [
        (("alertname", "CanaryWorse"), ("model", "((empty))")),
        (("alertname", "CanaryWorse"), ("model", "((empty))"), ("version", "(empty)")),
    ]


def _daemon_alerting(alertmanager, tmp_path, models: list[str]) -> Alerting:
    """The daemon's alerting (its Alertmanager sink as ``driftwarden run`` wires it), one drift share per model."""
    config = parse_config({"state": {"dir": str(tmp_path / "state")}, "alerts": {
        "sinks": {"alertmanager": {"url": alertmanager.url, "timeout": "2s"}},
        "rules": [{"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.3,
                   "actions": ["alertmanager"]}]}}, environ={})  # fmt: skip
    shares = [Sample("driftwarden_drift_share", {"model": model}, 0.5) for model in models]
    alerting = Alerting(config, lambda wanted, names: shares, jobs=False)
    now_ms = time.time() * 1000
    alerting.tick(SimpleNamespace(evaluations={}), now_ms)
    assert alerting.deliver() == {"log": 0, "alertmanager": len(models)}
    return alerting


def test_hostile_model_names_reach_alertmanager_each_as_its_own_alert_shown_as_metrics_shows_it(
    start_alertmanager, tmp_path
):
    # Names producers may send: each must be one alert of its own in Alertmanager (shown() is injective), as the
    # exposition shows it; none dropped for being empty, none merged with another.
    alertmanager = start_alertmanager()
    models = ["", "(empty)", "((empty))", "(empty", "__other__", "bot\nseverity=critical", "模型 \u202e", "m" * 4096]
    _daemon_alerting(alertmanager, tmp_path, models)
    received = sorted(alert["labels"]["model"] for alert in named(alertmanager, "DataDrift"))
    assert received == sorted(shown(model) for model in models) and len(set(received)) == len(models)

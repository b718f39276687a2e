"""Every dashboard panel and every Prometheus rule, evaluated by a real Prometheus that scrapes the daemon.

The demo's traffic (:class:`monitor.demo.scenario.Traffic`: four models, support-bot's latency regression, errors and
drift, loan-approver's bias, labels, ratings and judge scores, malformed messages) goes through the session
broker to ``driftwarden run`` with the demo's config, whose alert rules queue retraining jobs. A real
Prometheus, loaded with ``dashboards/prometheus/recording.yaml`` and ``alerts.yaml``, scrapes the daemon
every second. Once Prometheus holds what the regression brings (a drifted feature, a firing rule, a
retraining job, a detected change, a flagged data-quality check), every query is evaluated through
Prometheus' HTTP API, as Grafana would send it on "All" jobs and models, and must parse and return data:

- every target of every panel of every dashboard in ``dashboards/grafana``, and every variable's values;
- every recording rule's expression, and the series it records;
- every alerting rule's expression with its comparisons made ``bool`` (``x > 0.3`` -> ``x > bool 0.3``),
  which returns the compared series whether or not the alert's condition holds; and since the scenario
  breaks the model, the alerts about it are pending or firing in Prometheus itself.

Two alerting rules cannot return data here, by construction: ``DriftwardenAbsent`` (``absent()`` is empty
while a target is scraped; its selector must return data instead) and ``DriftwardenLatencyP95Regression``
(it compares with a day ago: its operand without the ``offset`` must return data). promtool's unit tests
(``tests/unit/test_prometheus_rules.py``) show both firing.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from functools import partial
from pathlib import Path

import pytest
import yaml

from monitor.demo.broker import free_port
from monitor.demo.scenario import RETRAINING_TOPIC, ROLLBACK_TOPIC, Traffic, demo_config
from monitor.export.metrics import SPEC
from monitor.ingest.kafka import create_topics
from tests.components import DaemonProcess, Prometheus, http_get, wait_for
from tests.dashboards import as_prometheus_sees_it, dashboards, data_panels, queries, variable_queries

RULES = Path(__file__).resolve().parents[2] / "dashboards" / "prometheus"
RULE_FILES = [RULES / "recording.yaml", RULES / "alerts.yaml"]
RATE = 300.0  # calls a second
#: After every model's warm-up reference (500 calls) and support-bot's change detectors (30 blocks of 50) have filled.
REGRESS_AT_S = 15.0
#: What the regression brings, once Prometheus holds all of it.
REGRESSED = {
    "a drifted feature": "driftwarden_drift_detected == 1",
    "a firing rule of the daemon": "driftwarden_alerts_firing > 0",
    "a queued retraining job": 'driftwarden_retraining_jobs_total{status="queued"} > 0',
    "a detected change": "driftwarden_changes_total > 0",
    "the four-fifths rule broken": 'driftwarden_bias{metric="disparate_impact_ratio"} < 0.8',
    "an invalid event": "driftwarden_events_invalid_total > 0",
    "a flagged data-quality check": 'driftwarden_data_quality_flagged{model="summarizer",feature="locale"} == 1',
    "a canary judged worse": 'driftwarden_version_verdict{model="support-bot"} == -1',
}
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)")


def _rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def prometheus(kafka_broker, tmp_path_factory):
    """Prometheus scraping a daemon that has consumed the demo's traffic through the regression."""
    directory = tmp_path_factory.mktemp("dashboards")
    topic = f"dashboards-{uuid.uuid4().hex[:8]}"
    topics = {topic: 3, f"{topic}-dlq": 1, RETRAINING_TOPIC: 1, ROLLBACK_TOPIC: 1}
    create_topics({"bootstrap_servers": kafka_broker.bootstrap_servers}, topics)
    config = demo_config(kafka_broker.bootstrap_servers, free_port(), str(directory / "state"))
    config["kafka"].update(topics=[topic], group_id=f"{topic}-group", dead_letter_topic=f"{topic}-dlq")
    config["windows"]["evaluate_every"] = "1s"
    for part in ("daemon", "prometheus"):
        (directory / part).mkdir()
    daemon = DaemonProcess(config, directory / "daemon")
    traffic = server = None
    try:
        daemon.start()
        server = Prometheus(
            [f"127.0.0.1:{daemon.port}"], directory / "prometheus", RULE_FILES, features=("exemplar-storage",)
        )
        traffic = Traffic(kafka_broker.bootstrap_servers, RATE, REGRESS_AT_S, topic=topic).start()
        for what, expression in REGRESSED.items():
            wait_for(partial(server.query, expression), 120, f"Prometheus to hold {what} ({expression})", every_s=1)
        # Two more scrapes: a series born in the last one needs a second sample for rate() and increase().
        scraped_at = _last_scrape_s(server)
        wait_for(lambda: _last_scrape_s(server) >= scraped_at + 2, 10, "two more scrapes", every_s=0.5)
        yield server
    finally:
        if traffic is not None:
            traffic.stop()
        if server is not None:
            server.stop()
        daemon.close()
        assert "Traceback" not in daemon.log(), daemon.log()


def _last_scrape_s(prometheus: Prometheus) -> float:
    [sample] = prometheus.query("timestamp(up)")
    return float(sample["value"][1])


PANELS = [(name, panel, expr) for name, dashboard in dashboards().items() for panel, expr in queries(dashboard)]


@pytest.mark.parametrize(("dashboard", "panel", "expr"), PANELS, ids=[f"{n}: {p}" for n, p, _ in PANELS])
def test_every_panel_query_returns_data(prometheus, dashboard, panel, expr):
    assert prometheus.query(as_prometheus_sees_it(expr)), f"{dashboard}, panel {panel!r} would be empty: {expr}"


EXEMPLARS = [
    (name, f"{panel['title']} [{target['refId']}]", target["expr"])
    for name, dashboard in dashboards().items()
    for panel in data_panels(dashboard)
    for target in panel["targets"]
    if target.get("exemplar")
]


@pytest.mark.parametrize(("dashboard", "panel", "expr"), EXEMPLARS, ids=[f"{n}: {p}" for n, p, _ in EXEMPLARS])
def test_every_panel_that_shows_exemplars_finds_traces(prometheus, dashboard, panel, expr):
    """The demo's serving code sends trace ids: Prometheus scraped OpenMetrics and stored the buckets' exemplars."""
    series = prometheus.exemplars(as_prometheus_sees_it(expr))
    trace_ids = [exemplar["labels"]["trace_id"] for one in series for exemplar in one["exemplars"]]
    assert trace_ids and all(re.fullmatch("[0-9a-f]{32}", trace_id) for trace_id in trace_ids), f"{dashboard}, {panel}"


def test_the_latency_panels_show_exemplars():
    assert {panel for _, panel, _ in EXEMPLARS} == {"Latency p50, p95, p99 [C]", "Time to first token p50, p95 [A]"}


def test_what_prometheus_scraped_is_the_metrics_spec(prometheus):
    """Each driftwarden family in Prometheus' metadata has the spec's type and help (OpenMetrics drops ``_total``)."""
    status, body = http_get(f"{prometheus.url}/api/v1/metadata")
    assert status == 200
    scraped = {name: entries for name, entries in json.loads(body)["data"].items() if name.startswith("driftwarden_")}
    spec = {family.name.removesuffix("_total"): family for family in SPEC}
    assert len(scraped) >= 25, sorted(scraped)  # the demo's run exports most families
    for name, entries in scraped.items():
        family = spec.get(name.removesuffix("_total"))
        assert family is not None, f"Prometheus scraped {name}, which monitor/export/metrics.py does not specify"
        assert {(entry["type"], entry["help"]) for entry in entries} == {(family.type, family.help)}, name


def test_every_variable_has_values(prometheus):
    for name, dashboard in dashboards().items():
        for variable, selector, label in variable_queries(dashboard):
            match = urllib.parse.urlencode({"match[]": as_prometheus_sees_it(selector)})
            status, body = http_get(f"{prometheus.url}/api/v1/label/{label}/values?{match}")
            values = json.loads(body)["data"]
            assert status == 200 and values, f"{name}: ${variable} has no values ({selector})"


@pytest.mark.parametrize("rule", _rules(RULE_FILES[0]), ids=lambda rule: rule["record"])
def test_every_recording_rule_returns_data(prometheus, rule):
    assert prometheus.query(rule["expr"]), f"{rule['record']}: {rule['expr']} is empty"
    assert prometheus.query(rule["record"]), f"Prometheus recorded nothing as {rule['record']}"


NEVER_HERE = {
    "DriftwardenAbsent": lambda expr: expr.removeprefix("absent(").removesuffix(")"),
    "DriftwardenLatencyP95Regression": lambda expr: re.sub(r"\s*offset 1d", "", expr),
}


@pytest.mark.parametrize("rule", _rules(RULE_FILES[1]), ids=lambda rule: rule["alert"])
def test_every_alerting_rule_returns_data(prometheus, rule):
    expr = rule["expr"].strip()
    if rule["alert"] in NEVER_HERE:
        assert not prometheus.query(expr), f"{rule['alert']} holds while the daemon is scraped"
        expr = NEVER_HERE[rule["alert"]](expr)
    compared = _COMPARISON.sub(r"\1 bool", expr)
    assert prometheus.query(compared), f"{rule['alert']}: {compared} is empty"


def test_the_alerts_about_the_broken_models_are_active_in_prometheus(prometheus):
    """Pending or firing: Prometheus evaluates the rules a moment after each scrape."""
    expected = {"DriftwardenFeatureDrift", "DriftwardenBias", "DriftwardenChangeDetected", "DriftwardenDataQuality"}

    def active() -> set[str]:
        return {sample["metric"]["alertname"] for sample in prometheus.query('ALERTS{alertname=~"Driftwarden.*"}')}

    wait_for(lambda: expected <= active(), 30, f"{sorted(expected)} among the active alerts", every_s=1)


def test_prometheus_holds_the_missing_locale_flagged_and_nothing_else_outside_support_bot(prometheus):
    """The demo's summarizer loses its locale on 60% of its calls (its other locales keep their mix): scraped by a
    real Prometheus, that check is flagged, with the share it measured, and no other of the unbroken models is."""
    flagged = prometheus.query('driftwarden_data_quality_flagged{model!="support-bot"} == 1')
    assert [
        (sample["metric"]["model"], sample["metric"]["feature"], sample["metric"]["check"]) for sample in flagged
    ] == [("summarizer", "locale", "missing")]
    [share] = prometheus.query('driftwarden_data_quality_share{model="summarizer",feature="locale",check="missing"}')
    assert 0.0 < float(share["value"][1]) <= 0.75
    assert not prometheus.query('driftwarden_drift_detected{model="summarizer",feature="locale"} == 1')

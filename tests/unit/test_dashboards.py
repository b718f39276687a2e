"""The Grafana dashboards in ``dashboards/grafana``: provisioning-ready, each panel described and filtered by variables.

What each panel's queries return is checked end to end, against a real Prometheus scraping the daemon
(``tests/e2e/test_dashboards.py``); that they read only series the daemon exports or the rules record is checked
with the rules (``test_prometheus_rules.py``).
"""

from __future__ import annotations

import itertools

import pytest

from tests.dashboards import (
    PROCESS_SERIES,
    as_prometheus_sees_it,
    contract_series,
    dashboards,
    data_panels,
    queries,
    variable_queries,
)
from tests.promql import selectors

#: Grafana 10.0 writes schema 38, Grafana 11 39 to 41.
SCHEMA_VERSIONS = range(38, 42)
#: Grafana unit ids the panels use ("suffix:" units are Grafana's custom units).
UNITS = {"reqps", "cps", "short", "none", "sci", "s", "percentunit", "bool_yes_no", "bytes"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Series that Prometheus makes itself: not filtered by job (an absent target has none).
PROMETHEUS_OWN = {"ALERTS"}
SERIES = contract_series()

DASHBOARDS = dashboards()
each_dashboard = pytest.mark.parametrize("name", sorted(DASHBOARDS))


def _has_model_label(metric: str) -> bool:
    """Raw series by the contract, recorded ones by their level (``model_type:...`` keeps ``model``)."""
    if ":" in metric:
        return "model" in metric.split(":")[0].split("_")
    return "model" in SERIES.get(metric, ())


@each_dashboard
def test_panels_read_only_series_of_the_metrics_spec_by_their_labels(name):
    for panel, expr in queries(DASHBOARDS[name]):
        for metric, matchers in selectors(expr):
            if metric in {*PROMETHEUS_OWN, *PROCESS_SERIES, "up"} or ":" in metric:  # recorded: with the rules
                continue
            assert metric in SERIES, f"{panel}: {metric} is not in monitor/export/metrics.py"
            for label, _, _ in matchers:
                assert label in SERIES[metric] or label == "job", f"{panel}: {metric} has no label {label!r}"


def test_there_is_an_overview():
    assert "driftwarden-overview.json" in DASHBOARDS
    assert DASHBOARDS["driftwarden-overview.json"]["uid"] == "driftwarden-overview"


@each_dashboard
def test_provisioning_ready(name):
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] in SCHEMA_VERSIONS
    assert "__inputs" not in dashboard and "__requires" not in dashboard, "an export for sharing, not provisioning"
    assert dashboard.get("id") is None, "a provisioned dashboard gets its id from Grafana"
    assert dashboard["uid"] and dashboard["title"] and dashboard["description"]


@each_dashboard
def test_datasource_job_and_model_variables(name):
    variables = {variable["name"]: variable for variable in DASHBOARDS[name]["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for variable in ("job", "model"):
        assert variables[variable]["type"] == "query"
        assert variables[variable]["datasource"] == DATASOURCE
        assert variables[variable]["multi"] and variables[variable]["includeAll"]
        assert variables[variable]["allValue"] == ".+"
    assert {name for name, _, _ in variable_queries(DASHBOARDS[name])} == {"job", "model"}


@each_dashboard
def test_every_panel_has_a_title_unit_description_and_the_datasource_variable(name):
    panels = list(data_panels(DASHBOARDS[name]))
    assert panels
    for panel in panels:
        title = panel.get("title")
        assert title, panel
        assert len(panel.get("description", "")) >= 40, f"{title}: describe what it shows and where it comes from"
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        assert unit in UNITS or unit.startswith("suffix:"), f"{title}: unit {unit!r}"
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
    titles = [panel["title"] for panel in panels]
    assert len(titles) == len(set(titles)), "two panels with one title"


@each_dashboard
def test_panels_have_unique_ids_and_do_not_overlap(name):
    panels = DASHBOARDS[name]["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]


@each_dashboard
def test_every_query_is_filtered_by_the_job_and_model_variables(name):
    for panel, expr in queries(DASHBOARDS[name]):
        as_prometheus_sees_it(expr)  # only variables Grafana knows
        for metric, matchers in selectors(expr):
            if metric in PROMETHEUS_OWN:
                continue
            filters = {(label, op, value) for label, op, value in matchers}
            assert ("job", "=~", "$job") in filters, f"{panel}: {metric} not filtered by $job"
            if _has_model_label(metric):
                assert ("model", "=~", "$model") in filters, f"{panel}: {metric} not filtered by $model"


def test_the_overview_shows_what_the_issue_asks():
    name = "driftwarden-overview.json"
    read = {metric for _, expr in queries(DASHBOARDS[name]) for metric, _ in selectors(expr)}
    assert read >= {
        "model_type:driftwarden_events:rate5m", "driftwarden_error_ratio",  # traffic and errors
        "model:driftwarden_request_latency_seconds:p50_5m", "model:driftwarden_request_latency_seconds:p95_5m",
        "driftwarden_request_latency_seconds_bucket",  # p99 from the buckets, which hold the exemplars
        "model:driftwarden_time_to_first_token_seconds:p95_5m",
        "model_direction:driftwarden_tokens:rate5m",  # tokens
        "model_currency:driftwarden_cost:rate5m", "driftwarden_cost_total", "driftwarden_window_cost_per_call",  # cost
        "model_currency:driftwarden_cost_burn:ratio_rate1h", "model_currency:driftwarden_cost_burn:ratio_rate5m",
        "driftwarden_drift_share", "driftwarden_drift_detected", "driftwarden_drift_score", "driftwarden_drift_p_value",
        "driftwarden_data_quality_share", "driftwarden_data_quality_flagged",  # missing, wrong types, out of range
        "driftwarden_quality",  # quality proxies and label coverage
        "driftwarden_bias", "driftwarden_segment_outcome_ratio",  # bias per attribute and group
        "driftwarden_slice_drift_share", "driftwarden_slice_quality",  # drift and quality per slice group
        "driftwarden_alerts_firing", "ALERTS", "driftwarden_retraining_jobs_total",
        "topic:driftwarden_consumer_lag:sum", "reason:driftwarden_events_invalid:rate5m",
    }  # fmt: skip
    label_coverage = [expr for _, expr in queries(DASHBOARDS[name]) if 'metric="label_coverage"' in expr]
    assert label_coverage

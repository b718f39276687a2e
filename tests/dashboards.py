"""Reading the Grafana dashboards in tests: their panels, the PromQL of each, with Grafana's variables filled in.

>>> query = 'rate(x{job=~"$job"}[$__rate_interval])'
>>> as_prometheus_sees_it(query)
'rate(x{job=~".+"}[30s])'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from monitor.export.metrics import SPEC

__all__ = [
    "DASHBOARDS",
    "as_prometheus_sees_it",
    "contract_series",
    "dashboards",
    "data_panels",
    "queries",
    "variable_queries",
]

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards" / "grafana"

#: What Grafana puts in place of its variables when a user opens a dashboard on "All" models and jobs
#: (the variables' ``allValue``), with a range and a rate interval that fit a test's few minutes of scrapes.
GRAFANA_VALUES = {"job": ".+", "model": ".+", "__rate_interval": "30s", "__interval": "15s", "__range": "10m"}
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def dashboards() -> dict[str, dict]:
    """Every dashboard JSON file by its file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def data_panels(dashboard: dict) -> Iterator[dict]:
    """The panels that show data: every panel but rows, including those inside collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(panel title and target refId, PromQL as written) of every panel target."""
    for panel in data_panels(dashboard):
        for target in panel["targets"]:
            yield f"{panel['title']} [{target['refId']}]", target["expr"]


def variable_queries(dashboard: dict) -> Iterator[tuple[str, str, str]]:
    """(variable name, series selector, label) of every ``label_values(selector, label)`` variable."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert found, f"{variable['name']}: not a label_values() query"
            yield variable["name"], found[1], found[2]


#: The process collector's standard series, which ``driftwarden run`` exports beside the spec's.
PROCESS_SERIES = frozenset(("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"))


def contract_series() -> dict[str, tuple[str, ...]]:
    """Every series name of the metrics spec a query can read, with its label names (a histogram's ``_bucket``
    with ``le``, ``_count`` and ``_sum``).

    >>> contract_series()["driftwarden_request_latency_seconds_bucket"]
    ('model', 'le')
    """
    series: dict[str, tuple[str, ...]] = {}
    for spec in SPEC:
        if spec.type == "histogram":
            series[f"{spec.name}_bucket"] = (*spec.labels, "le")
        series.update(dict.fromkeys(spec.sample_names, spec.labels))
    return series


def as_prometheus_sees_it(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (an unknown variable is an error)."""
    return _VARIABLE.sub(lambda match: GRAFANA_VALUES[match[1]], expr)

"""The metrics contract, pinned: a fixed event file's /metrics, served over HTTP, byte for byte.

The scenario (``tests/golden.py``) gives every family of the metrics spec a series, and a test keeps it
so: a new metric fails here until the golden file shows it. Regenerate the golden file after a deliberate
contract change with
``DRIFTWARDEN_UPDATE_GOLDEN=1 pytest tests/e2e/test_exposition.py`` and review the diff.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.export.collectors import MetricsServer
from monitor.export.metrics import SPEC
from tests.golden import GOLDEN, golden_config, golden_exports, golden_pipeline


@pytest.fixture
def served(golden_records, tmp_path):
    config = golden_config(tmp_path)
    registry = golden_exports(config, golden_pipeline(config, golden_records)).registry
    ready: dict[str, str | None] = {"value": "restoring"}
    server = MetricsServer(registry, ready=lambda: ready["value"]).start()
    yield server, ready
    server.stop()


def _get(server: MetricsServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_metrics_match_the_golden_exposition_byte_for_byte(served):
    server, _ = served
    status, body = _get(server, "/metrics")
    assert status == 200
    if os.environ.get("DRIFTWARDEN_UPDATE_GOLDEN"):
        GOLDEN.write_bytes(body)
    assert body.decode() == GOLDEN.read_text()


def test_the_golden_exposition_shows_every_family_of_the_spec_with_a_series():
    families = {family.name: family for family in text_string_to_metric_families(GOLDEN.read_text())}
    shown = {name: (family.type, family.documentation, len(family.samples)) for name, family in families.items()}
    spec = {family.name.removesuffix("_total"): family for family in SPEC}
    assert set(shown) == set(spec)
    for name, (kind, documentation, n_samples) in shown.items():
        assert (kind, documentation) == (spec[name].type, spec[name].help), name
        assert n_samples > 0, f"{name} has no series in golden.prom: extend the scenario in tests/golden.py"


def test_metrics_parse_with_prometheus_clients_own_parser(served):
    server, _ = served
    _, body = _get(server, "/metrics")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["driftwarden_events"].type == "counter"
    assert families["driftwarden_request_latency_seconds"].type == "histogram"
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert samples[("driftwarden_events_total", (("model", "support-bot"), ("type", "inference")))] == 4
    assert samples[("driftwarden_events_total", (("model", "support-bot"), ("type", "feedback")))] == 1
    assert samples[("driftwarden_events_invalid_total", (("reason", "not_json"),))] == 1
    assert samples[("driftwarden_events_invalid_total", (("reason", "not_object"),))] == 1
    assert samples[("driftwarden_events_invalid_total", (("reason", "negative"),))] == 1
    assert samples[("driftwarden_events_invalid_total", (("reason", "non_scalar_feature"),))] == 1
    # The OpenTelemetry-named event counts as the summarizer's, its TTFT converted from seconds.
    assert samples[("driftwarden_tokens_total", (("direction", "input"), ("model", "summarizer")))] == 10048
    assert samples[("driftwarden_time_to_first_token_seconds_sum", (("model", "summarizer"),))] == 12.35
    # A window of size 4 keeps support-bot's last four calls: 420.5, 1310, 95, 780 ms.
    assert samples[("driftwarden_window_events", (("model", "support-bot"),))] == 4
    assert samples[("driftwarden_error_ratio", (("model", "support-bot"),))] == 0.25
    median = samples[("driftwarden_window_latency_seconds", (("model", "support-bot"), ("quantile", "0.5")))]
    assert median == pytest.approx((420.5 + 780) / 2 / 1000)


def test_health_and_readiness_endpoints_answer(served):
    server, ready = served
    assert _get(server, "/healthz") == (200, b"ok\n")
    assert _get(server, "/readyz") == (503, b"not ready: restoring\n")
    ready["value"] = None
    assert _get(server, "/readyz") == (200, b"ready\n")
    assert _get(server, "/nope")[0] == 404

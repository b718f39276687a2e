"""The drift report: event values are inert in the page, each page carries a policy for its own scripts,
and /report draws a page at most once per model and evaluation, one at a time, off the consumer's interpreter."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import html
import json
import re
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from monitor.config import parse_config
from monitor.export.collectors import MetricsServer, build_registry
from monitor.export.report import (
    DriftReports,
    ReportBusy,
    ReportFailed,
    ReportPage,
    ReportUnavailable,
    drift_report_html,
    render_page,
    report_input,
)
from monitor.ingest import Record
from monitor.pipeline import Pipeline

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")  # Evidently's

#: What a producer to the topic can put in a category: script that ends Evidently's data block, an
#: element with a handler, both quotes, a line separator (ends a line in old JavaScript), a link, an entity.
PAYLOADS = (
    "</script><script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "\"'quoted'\"",
    "line\u2028separator",
    "<a href='https://evil.example'>click</a>",
    "fish &amp; chips",
)
T0 = 1_767_225_600


def _pipeline(method: str = "chisquare") -> Pipeline:
    """One model whose category feature ``c`` starts as web/app and then takes the payloads as values."""
    config = parse_config(
        {
            "windows": {"size": 300, "min_samples": 20},
            "models": [
                {
                    "name": "m",
                    "reference": {"warmup": 120},
                    "features": [
                        {"name": "c", "kind": "categorical", "method": method},
                        {"name": "x", "kind": "numeric"},
                    ],
                }
            ],
        }
    )
    pipeline = Pipeline(config)
    records = []
    for i in range(360):
        category = ("web", "app")[i % 2] if i < 120 else PAYLOADS[i % len(PAYLOADS)]
        event = {"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", "latency_ms": 10,
                 "features": {"c": category, "x": i % 7}}  # fmt: skip
        records.append(Record(json.dumps(event).encode(), "t", 0, i))
    pipeline.apply(records)
    pipeline.evaluate((T0 + 360) * 1000)
    return pipeline


class _Tags(HTMLParser):
    """The elements a browser would build, and the text of each script (HTMLParser splits script as browsers do)."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script" and not dict(attrs).get("src"):
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parsed(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    return tags


def _data(page: str) -> str:
    """The JSON of Evidently's data line, as the script would read it."""
    match = re.search(r"^    var metric_[0-9a-f]{32} = (.*);$", page, re.MULTILINE)
    return match[1]


def test_category_values_from_events_cannot_add_elements_or_scripts_to_the_page():
    page = drift_report_html(_pipeline(), "m")

    tags = _parsed(page)
    assert tags.tags.count("script") == 4  # Evidently's data, `global`, its library, the draw call
    assert "img" not in tags.tags and "a" not in tags.tags
    for payload in PAYLOADS:
        assert payload not in page
    assert "<" not in _data(page) and "\u2028" not in page
    # The values are all there for the charts: JSON-escaped, and HTML-escaped for Plotly's labels.
    decoded = json.dumps(json.loads(_data(page)), ensure_ascii=False)
    for payload in PAYLOADS:
        assert json.dumps(html.escape(payload, quote=False), ensure_ascii=False) in decoded


def _policy_hashes(policy: str) -> set[str]:
    return set(re.findall(r"'sha256-([^']+)'", policy))


def _sha256(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def test_a_served_page_loads_the_library_from_the_server_and_its_policy_allows_exactly_its_own_scripts():
    page = render_page(report_input(_pipeline(), "m"), "report/evidently.js")

    tags = _parsed(page.html)
    assert '<script src="report/evidently.js"></script>' in page.html
    assert len(page.html) < 1_000_000  # the 3.5 MB library is not in every cached page
    directives = dict(part.strip().split(" ", 1) for part in page.content_security_policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]
    assert directives["script-src"].startswith("'self' ")
    assert _policy_hashes(page.content_security_policy) == {_sha256(script) for script in tags.scripts}
    assert len(tags.scripts) == 3


def test_a_standalone_page_carries_its_policy_in_a_meta_tag():
    page = drift_report_html(_pipeline(), "m")

    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)[1]
    assert _policy_hashes(policy) == {_sha256(script) for script in _parsed(page).scripts}
    assert page.index("Content-Security-Policy") < page.index("<script")


def test_a_categorical_feature_tested_with_a_distance_is_drawn_as_categories():
    # `auto` picks jensenshannon for a categorical feature with a large reference: the page used to crash.
    page = drift_report_html(_pipeline(method="jensenshannon"), "m")
    assert '"column_type": "cat"' in page


# --- DriftReports: at most one drawing per model and evaluation, one at a time -------------------------------------


class _Render:
    """Stands in for the render process: counts pages, can be held until released, checks the lock is free."""

    def __init__(self, pipeline: Pipeline, fail: bool = False):
        self.pipeline = pipeline
        self.fail = fail
        self.n_pages = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.lock_was_free = []

    def __call__(self, data, library_url):
        self.n_pages += 1
        self.started.set()
        self.lock_was_free.append(not self.pipeline.lock.locked())
        self.release.wait(10)
        if self.fail:
            raise ValueError("Evidently did not like it")
        return ReportPage(f"<p>page {self.n_pages} of {sorted(data.current)}</p>", "default-src 'none'")


def test_a_page_is_drawn_once_per_evaluation_and_again_after_the_next():
    pipeline = _pipeline()
    render = _Render(pipeline)
    reports = DriftReports(pipeline, render=render)

    first = reports.page("m")
    assert reports.page("m") is first and render.n_pages == 1
    pipeline.evaluate(pipeline.evaluations["m"].evaluated_at_ms + 1_000)
    assert reports.page("m") is not first and render.n_pages == 2
    assert render.lock_was_free == [True, True]  # drawn without the pipeline's lock
    with pytest.raises(ReportUnavailable, match="model 'nobody' has no drift evaluation yet"):
        reports.page("nobody")


def test_while_a_page_is_drawn_every_other_request_is_told_to_come_back():
    pipeline = _pipeline()
    render = _Render(pipeline)
    render.release.clear()
    reports = DriftReports(pipeline, render=render)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        drawing = pool.submit(reports.page, "m")
        assert render.started.wait(5)
        with pytest.raises(ReportBusy, match="the report of 'm' is being drawn") as busy:
            reports.page("m")
        assert busy.value.retry_after_s >= 1
        render.release.set()
        page = drawing.result(10)
    assert reports.page("m") is page and render.n_pages == 1


def test_a_drawing_that_fails_is_reported_and_not_tried_again_for_the_same_evaluation():
    pipeline = _pipeline()
    render = _Render(pipeline, fail=True)
    reports = DriftReports(pipeline, render=render)
    for _ in range(3):
        with pytest.raises(ReportFailed, match="ValueError: Evidently did not like it"):
            reports.page("m")
    assert render.n_pages == 1


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_eight_concurrent_requests_cost_one_drawing_in_a_child_process_and_little_cpu_here():
    pipeline = _pipeline()
    server = MetricsServer(build_registry(pipeline), report=DriftReports(pipeline)).start()
    url = f"http://127.0.0.1:{server.port}/report?model=m"
    try:
        cpu_s = time.process_time()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(_get, [url] * 8))
        statuses = sorted(status for status, _, _ in answers)
        assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}
        for status, headers, body in answers:
            assert headers["X-Content-Type-Options"] == "nosniff"
            if status == 503:
                assert int(headers["Retry-After"]) >= 1 and b"is being drawn" in body
            else:
                assert headers["Content-Type"] == "text/html; charset=utf-8"
                assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        status, headers, page = _get(url)  # the kept page
        assert status == 200 and b'<script src="report/evidently-' in page
        library_url = re.search(rb'<script src="(report/evidently-[^"]+)"', page)[1].decode()
        status, headers, library = _get(f"http://127.0.0.1:{server.port}/{library_url}")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript") and len(library) > 1_000_000
        assert time.process_time() - cpu_s < 1.5  # drawing in this interpreter costs seconds per page
    finally:
        server.stop()

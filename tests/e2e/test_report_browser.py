"""The /report page in a real browser: it draws under its Content-Security-Policy, and event values stay text.

Headless Chromium (Debian's ``chromium-headless-shell``) loads the page from
the server as an on-call engineer's browser would, with the policy header,
and prints the DOM once the page has run. ``.ci/run`` installs the browser; elsewhere the test is skipped
without it (and fails in CI); the markup checks of ``tests/unit/monitor/test_report.py`` run everywhere.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from monitor.export.collectors import MetricsServer, build_registry
from monitor.export.report import DriftReports, render_page
from tests.components import require
from tests.unit.monitor.test_report import _pipeline

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")
def test_the_page_draws_under_its_policy_and_no_event_value_runs():
    require(BROWSER is not None, "headless Chromium (Debian package chromium-headless-shell)")
    pipeline = _pipeline()
    server = MetricsServer(build_registry(pipeline), report=DriftReports(pipeline, render=render_page)).start()
    try:
        command = [BROWSER, "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr",
                   "--v=0", "--dump-dom", f"http://127.0.0.1:{server.port}/report?model=m"]  # fmt: skip
        browser = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    drawn = browser.stdout.split('<div id="root_', 1)[1].split("<script", 1)[0]  # what the scripts built
    console = [line for line in browser.stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]
    assert "Dataset Drift" in drawn and "MuiCard" in drawn  # Evidently's script ran and drew the dashboard
    assert console == []  # nothing refused by the policy, no script error
    assert "<img" not in drawn and "<a " not in drawn

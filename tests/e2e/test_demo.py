"""``driftwarden demo`` as a new user runs it: it starts, serves /metrics, sees the regression, and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.components import http_get, wait_for

DRIFTED = re.compile(r"support-bot +drifted from its reference: (.*)")
VERDICT = re.compile(r"verdict: support-bot 2026-12-rc1 is (\w+) than 2026-11 after \d+ of its calls .*: (.*)")
ROLLBACK = re.compile(r"published rollback request \w+ for support-bot 2026-12-rc1 \(driftwarden-rollback\): Canary")
MISSING = re.compile(r"summarizer +data quality: locale missing \d+% \(reference 0%\)")


def test_demo_serves_metrics_sees_the_regression_and_stops_on_ctrl_c(tmp_path):
    log_path = tmp_path / "demo.log"
    command = [sys.executable, "-m", "monitor.cli", "demo", "--port", "0", "--rate", "200", "--regress-at", "15"]
    with log_path.open("wb") as log:
        demo = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = wait_for(lambda: re.search(r"metrics at (\S+)", log_path.read_text()), 30, "the /metrics URL").group(1)
        wait_for(lambda: "<- p95" in log_path.read_text(), 60, "the demo to point out support-bot's slower p95")
        wait_for(lambda: DRIFTED.search(log_path.read_text()), 30, "the demo to point out support-bot's drift")
        wait_for(lambda: "biased by segment.region" in log_path.read_text(), 45, "the demo to point out the bias")
        wait_for(lambda: MISSING.search(log_path.read_text()), 30, "the demo to point out summarizer's missing locale")
        wait_for(lambda: "queued retraining job" in log_path.read_text(), 30, "the demo to queue a retraining job")
        wait_for(lambda: VERDICT.search(log_path.read_text()), 30, "the demo to judge support-bot's canary")
        wait_for(lambda: ROLLBACK.search(log_path.read_text()), 30, "the demo to request the canary's rollback")
        status, body = http_get(url)
        assert status == 200
        samples = {
            (sample.name, sample.labels.get("model"), sample.labels.get("type")): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }
        for model in ("support-bot", "summarizer", "code-assistant", "loan-approver"):
            assert samples[("driftwarden_events_total", model, "inference")] > 0
        started = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the broker and the consumer process get it too
        assert demo.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = log_path.read_text()
    assert re.search(r"support-bot .*<- p95 \d\.\dx its first window", output)
    flagged = {feature for line in DRIFTED.findall(output) for feature in line.split(", ")}
    assert flagged and all(feature in ("topic", "input_tokens") or feature.startswith("prompt.") for feature in flagged)
    assert not re.search(r"(summarizer|code-assistant) +drifted", output)  # one false alarm a week, not per minute
    checks = set(re.findall(r"([\w-]+) +data quality: (\S+) (\w+) ", output))
    assert {check for check in checks if check[0] != "support-bot"} == {("summarizer", "locale", "missing")}
    biased = r"loan-approver +biased by segment\.region: disparate impact 0\.\d+ < 0\.8 \(approval .*south"
    assert re.search(biased, output)
    assert re.search(r"loan-approver +accuracy 0\.\d\d on \d+% labelled, estimated 0\.\d\d", output)
    jobs = re.findall(r"queued retraining job \w+ for ([\w-]+) \(driftwarden-retraining\): (\w+)", output)
    assert ("support-bot", "DataDrift") in jobs and len(jobs) == len(set(jobs))  # each job is told once
    [(verdict, metrics)] = VERDICT.findall(output)  # told once
    assert len(ROLLBACK.findall(output)) == 1  # one request, told once
    assert verdict == "worse" and "latency x1." in metrics  # 1.3 times slower (and judged worse, less often decided)
    # its own output price (12 for 15) makes it cheaper per call, which is shown and decides nothing
    assert re.search(r"beside it, cost per call -0\.000\d+ USD \(not a verdict metric\)$", metrics)
    assert re.search(r"\] consuming\n", output)  # the status line says so once it is ready
    assert "Traceback" not in output
    assert "stopped:" in output
    assert http_get(url)[0] == 0  # nothing serves any more: broker, daemon and server are gone

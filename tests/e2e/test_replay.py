"""`driftwarden replay` end to end: the installed command on the bundled example stream."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import load_config
from monitor.export.collectors import build_registry, exposition
from monitor.run.replay import replay
from tests.conftest import DATA

EXAMPLES = DATA.parents[1] / "examples"
CONFIG = EXAMPLES / "config.yaml"
EVENTS = EXAMPLES / "events.jsonl"


def _samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_replay_command_writes_metrics_and_dead_letters(tmp_path):
    metrics, dead = tmp_path / "out.prom", tmp_path / "dead.jsonl"
    command = [sys.executable, "-m", "monitor.cli", "replay", "--config", str(CONFIG), str(EVENTS),
               "--metrics-file", str(metrics), "--dead-letter-file", str(dead)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "3 events rejected" in finished.stdout
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(letter["reason"], letter["offset"]) for letter in letters] == [
        ("not_json", 101),
        ("negative", 901),
        ("bad_timestamp", 2001),
    ]
    lines = EVENTS.read_text().splitlines()
    assert [letter["value"] for letter in letters] == [lines[100], lines[900], lines[2000]]
    samples = _samples(metrics.read_text())
    assert samples[("driftwarden_events_invalid_total", (("reason", "negative"),))] == 1
    valid = [json.loads(line) for line in lines if _is_valid(line)]
    for model in ("support-bot", "summarizer"):
        inference = [event for event in valid if event["model"] == model and event.get("type") != "feedback"]
        assert samples[("driftwarden_events_total", (("model", model), ("type", "inference")))] == len(inference)


def _is_valid(line: str) -> bool:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(event.get("timestamp"), int) and (event.get("latency_ms") or 0) >= 0


def test_final_window_statistics_equal_numpy_over_the_files_last_window():
    config = load_config(CONFIG)
    result = replay(config, EVENTS)
    events = [json.loads(line) for line in EVENTS.read_text().splitlines() if _is_valid(line)]
    calls = [event for event in events if event["model"] == "support-bot" and event.get("type") != "feedback"]
    last = calls[-config.windows.size :]
    latencies = np.array([event["latency_ms"] for event in last])
    traffic = result.pipeline.evaluations["support-bot"].traffic
    assert [value for _, value in traffic.latency_quantiles_ms] == pytest.approx(
        np.quantile(latencies, [0.5, 0.9, 0.95, 0.99]), rel=1e-12
    )
    assert traffic.error_ratio == np.mean([event["error"] is not None for event in last])


def test_ticks_fall_on_event_time_and_the_result_does_not_depend_on_batch_size():
    config = load_config(CONFIG)
    results = [replay(config, EVENTS, batch_size=size) for size in (1, 7, 500, 100_000)]
    # One hour of events of two models, each evaluated once a minute of its own event time (60 crossings but
    # the first), plus the final evaluation.
    assert {result.n_ticks for result in results} == {2 * 60}
    expositions = {exposition(build_registry(result.pipeline)) for result in results}
    assert len(expositions) == 1


def test_replay_on_a_missing_file_exits_1(tmp_path, capsys):
    from monitor.cli import main

    assert main(["replay", "--config", str(CONFIG), str(tmp_path / "absent.jsonl")]) == 1
    assert "absent.jsonl" in capsys.readouterr().err

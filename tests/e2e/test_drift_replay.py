"""Drift end to end through the installed command: a stream whose features drift part-way.

The stream is one model's calls, one a second. At ``CHANGE`` some features
change distribution (a numeric mean, a numeric spread, a category mix, the
length of responses, an embedding's mean) and the others stay as they were.
Replaying the file up to the change flags nothing; replaying all of it flags
exactly the features that changed (for the text, exactly the descriptors that
measure length), against a warm-up reference and against a reference file
built with ``driftwarden reference build``. ``driftwarden report`` draws the
Evidently page of the same window, and ``check-config`` states the
false-alarm policy in alerts a week.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

N_EVENTS = 4_000
CHANGE = 2_500  # the first event after the change
T0 = 1_790_000_000
WORDS = np.array(["tariff", "invoice", "refund", "parcel", "account", "delivery", "order", "help"])
EMBEDDING_DIM = 8

DRIFTING = {
    "amount",  # mean x 1.6
    "wait_s",  # spread x 2
    "channel",  # category mix
    "response.length_chars",  # responses twice as long
    "response.length_words",
    "response.tokens",
    "embedding",  # mean shift in two dimensions
}
STABLE = {"items", "age", "locale", "prompt.length_chars", "prompt.length_words"}

CONFIG = {
    "windows": {"size": 1_000, "evaluate_every": "5m", "min_samples": 200},
    "models": [
        {
            "name": "shop",
            "reference": {"warmup": 1_000},
            "drift": {"alpha": 0.01, "correction": "bh"},
            "features": [
                {"name": "amount", "kind": "numeric"},
                {"name": "wait_s", "kind": "numeric"},
                {"name": "items", "kind": "numeric"},
                {"name": "age", "kind": "numeric"},
                {"name": "channel", "kind": "categorical"},
                {"name": "locale", "kind": "categorical", "path": "segment.locale"},
                {"name": "prompt", "kind": "text"},
                {"name": "response", "kind": "text"},
                {"name": "embedding", "kind": "embedding", "dim": EMBEDDING_DIM},
            ],
        }
    ],
}


def _events(seed: int = 5) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(N_EVENTS):
        after = i >= CHANGE
        embedding = rng.normal(size=EMBEDDING_DIM)
        if after:
            embedding[:2] += 1.0
        event = {
            "request_id": f"r{i}",
            "timestamp": T0 + i,
            "model": "shop",
            "latency_ms": float(rng.gamma(4.0, 100.0)),
            "prompt": " ".join(rng.choice(WORDS, size=rng.poisson(12) + 1)),
            "response": " ".join(rng.choice(WORDS, size=rng.poisson(60 if after else 30) + 1)),
            "embedding": embedding.round(5).tolist(),
            "segment": {"locale": str(rng.choice(["de", "en", "fr"], p=[0.3, 0.5, 0.2]))},
            "features": {
                "amount": float(rng.lognormal(3.0, 0.5) * (1.6 if after else 1.0)),
                "wait_s": float(rng.normal(30.0, 10.0 if after else 5.0)),
                "items": int(rng.poisson(3.0)),
                "age": float(rng.normal(40.0, 12.0)),
                "channel": str(rng.choice(["web", "app", "phone"], p=[0.2, 0.3, 0.5] if after else [0.5, 0.3, 0.2])),
            },
        }
        lines.append(json.dumps(event))
    return lines


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("drift")
    lines = _events()
    paths = {"all": directory / "all.jsonl", "before": directory / "before.jsonl", "config": directory / "config.yaml"}
    paths["all"].write_text("\n".join(lines) + "\n")
    paths["before"].write_text("\n".join(lines[:CHANGE]) + "\n")
    paths["config"].write_text(yaml.safe_dump(CONFIG))
    return paths


def _driftwarden(*arguments: str) -> subprocess.CompletedProcess:
    finished = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *arguments], capture_output=True, text=True, timeout=180
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def _replayed(config: Path, events: Path, out: Path) -> dict[tuple[str, tuple], float]:
    _driftwarden("replay", "--config", str(config), str(events), "--metrics-file", str(out))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(out.read_text())
        for sample in family.samples
    }


def _detected(samples: dict) -> dict[str, float]:
    detected = {labels: value for (name, labels), value in samples.items() if name == "driftwarden_drift_detected"}
    return {dict(labels)["feature"]: value for labels, value in detected.items()}


def test_nothing_is_flagged_before_the_change(stream, tmp_path):
    detected = _detected(_replayed(stream["config"], stream["before"], tmp_path / "before.prom"))

    assert DRIFTING | STABLE <= set(detected)  # every feature was tested
    assert {feature for feature, value in detected.items() if value} == set()


def test_exactly_the_changed_features_are_flagged_after_the_change(stream, tmp_path):
    samples = _replayed(stream["config"], stream["all"], tmp_path / "all.prom")
    detected = _detected(samples)

    assert {feature for feature, value in detected.items() if value} == DRIFTING
    assert samples[("driftwarden_reference_events", (("model", "shop"),))] == 1_000
    tested = len(detected)
    assert samples[("driftwarden_drift_share", (("model", "shop"),))] == pytest.approx(len(DRIFTING) / tested)
    # The reference is the first 1,000 events; the last evaluation is at the last event.
    assert samples[("driftwarden_reference_age_seconds", (("model", "shop"),))] == N_EVENTS - 1_000
    methods = {dict(labels)["method"] for (name, labels) in samples if name == "driftwarden_drift_score"}
    assert methods == {"ks", "chisquare", "classifier"}  # auto picks ks/chisquare for a 1,000-event reference


def test_a_reference_file_built_from_a_replay_gives_the_same_verdicts(stream, tmp_path):
    reference = tmp_path / "reference.jsonl"
    finished = _driftwarden("reference", "build", "--config", str(stream["config"]), str(stream["before"]),
                            "--size", "1000", "--out", str(reference))  # fmt: skip
    assert "wrote 1000 reference events" in finished.stdout
    assert reference.read_text().splitlines() == stream["before"].read_text().splitlines()[:1_000]
    config = yaml.safe_load(stream["config"].read_text())
    config["models"][0]["reference"] = {"file": str(reference)}
    config_path = tmp_path / "with-file.yaml"
    config_path.write_text(yaml.safe_dump(config))

    samples = _replayed(config_path, stream["all"], tmp_path / "file.prom")

    assert {feature for feature, value in _detected(samples).items() if value} == DRIFTING
    assert samples[("driftwarden_reference_events", (("model", "shop"),))] == 1_000


def test_the_report_command_draws_the_evidently_page(stream, tmp_path):
    page = tmp_path / "report.html"

    finished = _driftwarden("report", "--config", str(stream["config"]), str(stream["all"]),
                            "--model", "shop", "--out", str(page))  # fmt: skip

    assert "wrote the drift report of 'shop'" in finished.stdout
    html = page.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    for feature in ("amount", "channel", "response.length_chars"):
        assert feature in html


def test_check_config_states_the_false_alarm_policy(stream):
    finished = _driftwarden("check-config", str(stream["config"]))

    # 5-minute evaluations: 2016 a week; at alpha 0.01 after BH, at most 20.2 false alerts a week.
    assert "alpha 0.01 after bh correction, 2016 evaluations a week: at most 20.2 false drift alerts" in (
        finished.stdout
    )

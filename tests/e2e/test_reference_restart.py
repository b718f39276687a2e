"""A warm-up reference outlives a restart under a config that changes the window but not the reference.

Everything is real: the Tansu broker, ``driftwarden run`` as a child process stopped with SIGTERM, its
checkpoint on disk, and ``/metrics`` as Prometheus would scrape it. The example's models learn their
references from the first events; the second daemon runs with another ``windows.size`` and must export the
same ``driftwarden_reference_info`` (id and source) as the first, test the next events against those
references at once, and say in its log what it kept.
"""

from __future__ import annotations

import copy

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.components import daemon_config, wait_for
from tests.e2e.test_restart import EXAMPLES, LINES, n_counted, produce

FIRST = 3_200  # events before the restart: both models' references complete


def _config(bootstrap_servers: str, state_dir, topic: str, window_size: int) -> dict:
    example = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    models = copy.deepcopy(example["models"])
    models[1]["reference"] = {"warmup": 500}  # the catch-all's summarizer has 1066 calls before the restart
    return daemon_config(
        bootstrap_servers,
        state_dir,
        topic,
        windows={"size": window_size},
        limits=example["limits"],
        models=models,
    )


def _series(text: str, family_name: str) -> list[dict[str, str]]:
    families = text_string_to_metric_families(text)
    return sorted(
        (sample.labels for family in families if family.name == family_name for sample in family.samples),
        key=lambda labels: sorted(labels.items()),
    )


def test_a_restart_with_another_window_size_keeps_every_warm_up_reference(
    kafka_broker, new_topic, tmp_path, start_daemon
):
    topic = new_topic(partitions=1)
    bootstrap = kafka_broker.bootstrap_servers
    state_dir = tmp_path / "state"

    produce(bootstrap, topic, LINES[:FIRST])
    first = start_daemon(_config(bootstrap, state_dir, topic, window_size=500))
    wait_for(lambda: n_counted(first.metrics().decode()) == FIRST, 30, "the first events counted")
    before = _series(first.metrics().decode(), "driftwarden_reference_info")
    assert [labels["model"] for labels in before] == ["summarizer", "support-bot"], before
    assert {labels["source"] for labels in before} == {"warmup"}
    assert first.stop() == 0, first.log()

    second = start_daemon(_config(bootstrap, state_dir, topic, window_size=700))
    produce(bootstrap, topic, LINES[FIRST:])
    # the references are whole, and tested against, from the restart on (learned again, neither could be yet)
    after = wait_for(
        lambda: len(_series(text := second.metrics().decode(), "driftwarden_drift_share")) == 2 and text,
        30,
        "both models evaluated against their references",
    )

    assert isinstance(after, str)
    assert _series(after, "driftwarden_reference_info") == before
    assert _series(after, "driftwarden_state_reset") == [
        {"model": "summarizer", "reason": "config_changed"},
        {"model": "support-bot", "reason": "config_changed"},
    ]
    for labels in before:
        kept = f"model {labels['model']}: its config changed how its window is shaped; kept: its warm-up reference"
        assert f"{kept} {labels['reference_id']}" in second.log()
    assert second.stop() == 0

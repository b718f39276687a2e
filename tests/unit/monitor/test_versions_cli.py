"""``driftwarden versions list|show`` and the version column of ``jobs list``, on a state directory written as the
daemon writes it: a real pipeline's checkpoints (the model's state in its partition's) and the job ledgers."""

from __future__ import annotations

import json

import pytest
import yaml

from monitor.cli import main
from monitor.run.checkpoint import CheckpointStore, PartitionCheckpoints, config_fingerprint
from monitor.run.checkpointer import Checkpointer
from monitor.run.store import open_store
from tests.unit.alerts.test_alerting import Broker
from tests.unit.alerts.test_rollback import RETRAIN, ROLLBACK, Daemon, calls, config_for, settings
from tests.unit.monitor.test_feedback import _apply

PARTITION = ("llm-events", 0)


@pytest.fixture
def state(tmp_path):
    """A daemon's state directory after a worse canary's rollback request was published, and its config file."""
    config = config_for(tmp_path / "state", rules=[ROLLBACK, RETRAIN])
    daemon = Daemon(config, Broker())
    _apply(daemon.pipeline, calls(), batch=250)  # the records of PARTITION: the model is at home there
    daemon.tick()
    daemon.alerting.deliver()
    pipeline, alerting = daemon.pipeline, daemon.alerting
    checkpointer = Checkpointer(
        CheckpointStore(config.state.dir),
        lambda: {**pipeline.snapshot(homed_models=False), "alerts": alerting.snapshot([""])},
        config_fingerprint(config),
        partitions=PartitionCheckpoints(open_store(config.state), config.kafka.group_id),
        snapshot_home=lambda partition: {
            **pipeline.snapshot_home(partition),
            "alerts": alerting.snapshot_models(pipeline.snapshot_home(partition)["models"]),
        },
    )
    assert checkpointer.checkpoint({PARTITION: 2_000}, lambda offsets: None) is not None
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path / "state", rules=[ROLLBACK, RETRAIN])))
    return path, daemon


def test_versions_list_shows_live_versions_verdicts_sample_sizes_and_rollback_requests(state, capsys):
    path, daemon = state
    assert main(["versions", "list", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    live = daemon.pipeline.states["m"].versions.live  # in the order they came
    assert sorted(live) == ["v1", "v2", "v3", "v4"]
    assert lines[0] == f"model m: baseline v1; live {', '.join(live)}"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(rows) == ["v2", "v3", "v4"]
    requests = {job.version: job for job in daemon.alerting.rollback.jobs()}
    for version, comparison in daemon.pipeline.evaluations["m"].versions.comparisons.items():
        errors = comparison.metrics["error_ratio"]
        verdict = {-1: "worse", 0: "undecided", 1: "better"}[comparison.verdict]
        assert rows[version][1:4] == [verdict, str(errors.n_baseline), str(errors.n_candidate)]
        job = requests.get(version)
        assert rows[version][5:] == ([job.status, job.id] if job else ["-"])
    assert rows["v2"][5] == "published" and rows["v4"][1] == "undecided"


def test_versions_show_prints_the_evidence_and_the_requests_as_json(state, capsys):
    path, daemon = state
    assert main(["versions", "show", "--config", str(path), "m", "v2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [job] = [job for job in daemon.alerting.rollback.jobs() if job.version == "v2"]
    assert shown["comparison"] == daemon.pipeline.states["m"].versions.comparisons["v2"].latest
    assert (shown["model"], shown["version"], shown["live"], shown["baseline"]) == ("m", "v2", True, "v1")
    [request] = shown["rollback_requests"]
    assert (request["id"], request["status"], request["evidence"]) == (job.id, "published", job.evidence)
    assert main(["versions", "show", "--config", str(path), "m", "v4"]) == 0
    assert json.loads(capsys.readouterr().out)["rollback_requests"] == []
    assert main(["versions", "show", "--config", str(path), "m", "v9"]) == 1
    assert "no version 'v9' of model 'm'" in capsys.readouterr().err


def test_jobs_list_shows_the_version_a_job_was_queued_against(state, capsys):
    path, daemon = state
    assert main(["jobs", "list", "--config", str(path)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["id", "model", "version", "status"]
    assert row.split()[:4] == [daemon.alerting.retraining.jobs()[0].id, "m", "v1", "published"]


def test_versions_without_a_checkpoint_exits_1_naming_the_file(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path / "state")))
    assert main(["versions", "list", "--config", str(path)]) == 1
    assert f"{tmp_path / 'state' / 'checkpoint.msgpack'}: no checkpoint" in capsys.readouterr().err

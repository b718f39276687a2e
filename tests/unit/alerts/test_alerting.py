"""The daemon's alerting: per-model ticks, and alerts routed to sinks and the retraining queue."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest

from alerts.rules import Sample
from monitor.config import parse_config
from monitor.export.alerting import Alerting, AlertsCollector
from tests.receiver import Receiver

MINUTE = 60_000
RULE = {"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.3, "for": "1m"}


class Exported:
    """What ``Alerting`` reads on each tick: ``driftwarden_drift_share`` per model, set by the test."""

    def __init__(self, **shares: float):
        self.shares = shares
        self.asked: list[tuple] = []  # (models, names) of each read

    def samples(self, models: Collection[str] | None, names: Collection[str]) -> list[Sample]:
        self.asked.append((models, set(names)))
        return [Sample("driftwarden_drift_share", {"model": model}, share) for model, share in self.shares.items()]


def evaluations(*models: str) -> SimpleNamespace:
    """A pipeline whose ``evaluations`` hold a small window (no drift details) for each model."""
    return SimpleNamespace(
        evaluations={
            model: SimpleNamespace(window_events=10, drift=None, evaluated_at_ms=0, versions=None) for model in models
        }
    )


def make_config(tmp_path, retraining_topic: str | None = None, **alerts) -> object:
    rules = alerts.pop("rules", [RULE])
    return parse_config(
        {
            "state": {"dir": str(tmp_path / "state")},
            "alerts": {"rules": rules, **alerts},
            "retraining": {"topic": retraining_topic, "cooldown": "1h"},
        },
        environ={},
    )


@pytest.fixture
def exported() -> Exported:
    return Exported(a=0.5, b=0.5)


def test_a_tick_for_some_models_evaluates_and_retrains_only_those_on_their_own_clock(tmp_path, exported):
    config = make_config(tmp_path, rules=[{**RULE, "actions": ["log", "retrain"]}])
    alerting = Alerting(config, exported.samples)
    pipeline = evaluations("a", "b")

    assert alerting.tick(pipeline, 0, models={"a"}) == []
    assert alerting.tick(pipeline, 30 * MINUTE, models={"b"}) == []
    [fired] = alerting.tick(pipeline, MINUTE, models={"a"})  # a's clock: for 1m has passed
    assert (fired.labels["model"], fired.starts_at_ms) == ("a", MINUTE)
    assert alerting.tick(pipeline, 30 * MINUTE + 30_000, models={"b"}) == []  # b's clock: 30 s on
    assert alerting.evaluated_models == {"a", "b"}

    [job] = alerting.retraining.jobs()
    assert (job.model, job.created_ms) == ("a", MINUTE)  # requested at a's time, for a only
    [fired] = alerting.tick(pipeline, 31 * MINUTE, models={"b"})
    assert fired.labels["model"] == "b"
    assert [(job.model, job.created_ms) for job in alerting.retraining.jobs()] == [("b", 31 * MINUTE), ("a", MINUTE)]
    # a's cooldown runs on a's clock: an hour after its first job, a gets another; b's later clock is not a's.
    assert len(alerting.tick(pipeline, 30 * MINUTE, models={"a"})) == 1
    assert len(alerting.retraining.jobs("a")) == 1
    alerting.tick(pipeline, 62 * MINUTE, models={"a"})
    assert [job.created_ms for job in alerting.retraining.jobs("a")] == [62 * MINUTE, MINUTE]


def test_a_tick_for_some_models_leaves_the_context_of_the_others_out(tmp_path, exported):
    rule = {**RULE, "for": 0, "annotations": {"summary": "{model} {window_events}"}}
    alerting = Alerting(make_config(tmp_path, rules=[rule]), exported.samples, deliver=False)

    alerts = alerting.tick(evaluations("a"), 0, models={"a", "b"})

    assert [alert.annotations["summary"] for alert in alerts] == ["a 10", "b "]
    assert alerting.tick(evaluations("a", "b"), 0, models=set()) == []


def test_a_tick_reads_the_samples_of_its_models_and_of_the_rules_metrics_only(tmp_path, exported):
    other = {"name": "Lag", "metric": "consumer_lag", "op": ">", "threshold": 1000}
    alerting = Alerting(make_config(tmp_path, rules=[RULE, other]), exported.samples, deliver=False)
    alerting.tick(evaluations("a", "b"), 0, models={"a"})
    assert exported.asked == [({"a"}, {"driftwarden_drift_share", "driftwarden_consumer_lag"})]
    # A rule that sets the model label moves series to that model: it reads every model's.
    moved = {**other, "labels": {"model": "a"}}
    alerting = Alerting(make_config(tmp_path, rules=[RULE, moved]), exported.samples, deliver=False)
    alerting.tick(evaluations("a", "b"), 0, models={"a"})
    assert exported.asked[-1][0] is None


def test_the_report_url_of_a_model_is_read_back_as_that_model_by_the_report_endpoint(tmp_path):
    # Alerts carry the model names producers sent; /report reads its ?model= with parse_qs, so the link must quote
    # the name (a "+" would read as a space, "&" and "#" would cut it).
    names = ["gpt-4o+tools", "a&model=b", "c#d", "50% e"]
    rule = {**RULE, "for": 0, "annotations": {"report": "{report_url}"}}
    config = make_config(tmp_path, rules=[rule], external_url="http://driftwarden.test:9108")
    alerting = Alerting(config, Exported(**dict.fromkeys(names, 0.5)).samples, deliver=False)
    alerts = alerting.tick(evaluations(*names), 0)
    links = {alert.labels["model"]: urlsplit(alert.annotations["report"]) for alert in alerts}
    assert {model: (link.path, parse_qs(link.query)["model"]) for model, link in links.items()} == {
        model: ("/report", [model]) for model in names
    }


# -- nothing lost to a full disk ---------------------------------------------------------------------------------


@contextlib.contextmanager
def full_disk(state_dir: str, how: str):
    """While inside, writes under ``state_dir`` fail as on a full disk; space returns on the way out.

    ``tmpfs``: ``state_dir`` is a small tmpfs, filled up (ENOSPC, SQLite's "database or disk is full").
    ``fsize``: a file size limit of 0 for the whole process (EFBIG, SQLite's "disk I/O error"), so for a
    child process only.
    """
    if how == "tmpfs":
        filler = os.open(Path(state_dir) / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        try:
            yield
        finally:
            os.unlink(Path(state_dir) / "filler")
        return
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _disk_full_child(state_dir: str, receiver_url: str, how: str) -> None:
    """In a child process: ticks while the state disk is full, then after space returns; prints what it saw."""
    config = parse_config(
        {
            "state": {"dir": state_dir},
            "alerts": {
                "sinks": {
                    "webhook": {"url": f"{receiver_url}/hook"},
                    "alertmanager": {"url": receiver_url, "resolve_hold": 0},
                },
                "rules": [{**RULE, "for": 0, "actions": ["webhook", "alertmanager", "log", "retrain"]}],
            },
            "retraining": {"topic": None, "cooldown": "1h"},
        },
        environ={},
    )
    exported = Exported(bot=0.5)
    alerting = Alerting(config, exported.samples)
    pipeline = evaluations("bot")
    seen = {}
    with full_disk(state_dir, how):
        seen["fired"] = [alert.state for alert in alerting.tick(pipeline, MINUTE)]  # the outbox refuses it
        with pytest.raises(OSError):
            (Path(state_dir) / "probe").write_bytes(b"x")  # the disk is full indeed
        alerting.tick(pipeline, 2 * MINUTE)
        seen["checkpoint"] = alerting.snapshot()
        alerting.deliver()
    seen["jobs_while_full"] = len(alerting.retraining.jobs())
    alerting.tick(pipeline, 3 * MINUTE)  # space is back: the refused alerts are taken, once
    alerting.deliver()
    exported.shares = {"bot": 0.1}
    with full_disk(state_dir, how):
        seen["resolved"] = [alert.state for alert in alerting.tick(pipeline, 4 * MINUTE)]
        alerting.tick(pipeline, 5 * MINUTE)
        alerting.deliver()
    alerting.tick(pipeline, 6 * MINUTE)
    for _ in range(3):
        alerting.deliver()
    seen["outbox"] = len(alerting.sinks["webhook"].outbox)
    seen["jobs"] = [(job.model, job.created_ms) for job in alerting.retraining.jobs()]
    print(json.dumps(seen))


@pytest.fixture(params=["fsize", "tmpfs"])
def state_disk(request, tmp_path) -> tuple[str, str]:
    """A state directory and how the child fills its disk; the tmpfs needs ``mount`` (root), else it skips."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    if request.param == "tmpfs":
        mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state_dir)]
        mounted = subprocess.run(mount, capture_output=True) if os.geteuid() == 0 and shutil.which("mount") else None
        if mounted is None or mounted.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root); the file size limit stands in for a full disk")
        request.addfinalizer(lambda: subprocess.run(["umount", str(state_dir)], check=True))
    return str(state_dir), request.param


def test_an_alert_refused_by_a_full_disk_is_delivered_once_space_returns(state_disk):
    state_dir, how = state_disk
    receiver = Receiver()
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.unit.alerts.test_alerting import _disk_full_child as run; "
                f"run({state_dir!r}, {receiver.url!r}, {how!r})",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    finally:
        receiver.close()
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)

    assert seen["fired"] == ["firing"] and seen["resolved"] == ["resolved"]
    full = "database or disk is full" if how == "tmpfs" else "disk I/O error"
    assert f"webhook could not take 1 alert(s) (OperationalError: {full})" in child.stderr
    assert "alertmanager could not take 1 alert(s)" in child.stderr
    assert "retrain could not take 1 alert(s)" in child.stderr
    webhook = [alert for path, body in receiver.posts if path == "/hook" for alert in body["alerts"]]
    assert [(alert["state"], alert["labels"]["model"]) for alert in webhook] == [("firing", "bot"), ("resolved", "bot")]
    alertmanager = [alert for path, body in receiver.posts if path == "/api/v2/alerts" for alert in body]
    assert [alert["endsAt"] for alert in alertmanager if "endsAt" in alert] == ["1970-01-01T00:04:00.000Z"]
    assert {alert["startsAt"] for alert in alertmanager} == {"1970-01-01T00:01:00.000Z"}
    assert seen["outbox"] == 0
    # The retraining request of the first tick was made at that tick's event time once the ledger could take it.
    assert seen["jobs_while_full"] == 0 and seen["jobs"] == [["bot", MINUTE]]
    # A checkpoint taken meanwhile holds the refused alerts: a restart would offer them again.
    assert set(seen["checkpoint"]["refused"]) == {"webhook", "alertmanager", "retrain"}


class Refusing:
    """A sink that raises as a full outbox would while ``full`` is set, and records what it took."""

    def __init__(self, full: bool):
        self.full = full
        self.taken: list = []
        self.delivered = 0

    def add(self, alerts) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self.taken.extend((alert.state, alert.labels["model"]) for alert in alerts)

    def deliver(self, now_ms: float) -> int:
        if self.full:
            raise OSError(28, "No space left on device")
        self.delivered += 1
        return 0


class FullLedger:
    """A retraining ledger on a full disk: every request raises."""

    def request(self, *args) -> None:
        raise OSError(28, "No space left on device")


def test_a_checkpoint_holds_what_a_sink_refused_and_a_restart_offers_it_again(tmp_path, exported):
    config = make_config(tmp_path, rules=[{**RULE, "for": 0, "actions": ["log"]}])
    before = Alerting(config, exported.samples)
    before.sinks["log"] = Refusing(full=True)
    [fired] = before.tick(evaluations("a", "b"), 0, models={"a"})
    checkpoint = msgspec.msgpack.decode(msgspec.msgpack.encode(before.snapshot()))  # as the checkpoint stores it

    after = Alerting(config, exported.samples)
    after.sinks["log"] = sink = Refusing(full=False)
    after.restore(checkpoint)
    after.tick(evaluations("a", "b"), MINUTE, models={"b"})  # any tick offers it: a's clock does not matter
    after.tick(evaluations("a", "b"), 2 * MINUTE, models={"a", "b"})

    assert fired.state == "firing"
    assert sink.taken == [("firing", "a"), ("firing", "b")]  # a once (still firing is no transition), then b
    assert after.snapshot()["refused"] == {}


def test_a_checkpoint_of_the_engine_alone_still_restores(tmp_path, exported):
    config = make_config(tmp_path, rules=[{**RULE, "for": 0}])
    before = Alerting(config, exported.samples, deliver=False)
    before.tick(evaluations("a"), 0)
    after = Alerting(config, exported.samples, deliver=False)

    after.restore(before.snapshot()["series"])  # the form checkpoints had before refused alerts were kept

    assert after.engine.firing() == 2 and after.snapshot() == before.snapshot()


def test_a_restored_checkpoint_exports_the_retraining_counters_of_every_model_of_the_ledger(tmp_path, exported):
    config = make_config(tmp_path, rules=[{**RULE, "for": 0, "actions": ["retrain"]}])
    before = Alerting(config, exported.samples)
    before.tick(evaluations("a", "b"), 0, models={"a"})
    checkpoint = before.snapshot()
    before.retraining.close()

    after = Alerting(config, exported.samples)
    after.restore(checkpoint)  # one replica: every model of its ledger is its own, before any tick

    counters = {reading.labels: reading.value for reading in AlertsCollector(after).readings()}
    assert counters == {
        ("DataDrift", "a", "warning"): 1,
        ("a", "queued"): 1,
        ("a", "published"): 0,
        ("a", "acknowledged"): 0,
        ("a", "failed"): 0,
    }


def test_one_sink_failing_to_deliver_holds_up_neither_the_others_nor_the_caller(tmp_path, exported, caplog):
    alerting = Alerting(make_config(tmp_path), exported.samples)
    alerting.sinks = {"first": Refusing(full=True), "second": Refusing(full=False)}

    alerting.deliver()

    assert alerting.sinks["second"].delivered == 1
    assert "first: delivery failed (OSError: [Errno 28] No space left on device)" in caplog.text


# -- a model's alert state and jobs moving to another replica ----------------------------------------------------


class Broker:
    """The daemon's publish callable for jobs, faked: records the ids it took (and where), refuses while ``down``."""

    def __init__(self):
        self.down = False
        self.ids: list[str] = []
        self.messages: list[tuple[str, str, dict]] = []  # (topic, key, document)

    def __call__(self, *, topic: str, key: str, value: bytes) -> None:
        if self.down:
            raise ConnectionError("broker unavailable")
        self.ids.append(json.loads(value)["id"])
        self.messages.append((topic, key, json.loads(value)))


class Notifications:
    """A sink that records every alert it is given (shared by the replicas: notifications in total)."""

    def __init__(self):
        self.alerts: list = []

    def add(self, alerts) -> None:
        self.alerts.extend(alerts)

    def deliver(self, now_ms: float) -> int:
        return 0


def replica(tmp_path, name: str, exported: Exported, broker: Broker, rule: dict, **alerts) -> Alerting:
    """One daemon's alerting with its own state directory and ledger, retraining published to ``broker``."""
    config = make_config(tmp_path / name, retraining_topic="retraining", rules=[rule], **alerts)
    return Alerting(config, exported.samples, publish=broker)


def moved(source: Alerting, target: Alerting, models: set[str]) -> dict:
    """``models`` handed from ``source`` to ``target`` as a partition's document carries them (msgpack)."""
    snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(source.snapshot_models(models)))
    target.restore_models(snapshot)
    source.forget_models(models)
    return snapshot


def test_a_moved_model_keeps_its_cooldown_and_gets_the_job_ids_and_deliveries_of_one_replica(tmp_path):
    """Ticks 0, 1 m, 30 m on replica A, then 45 m, 90 m, 100 m on replica B, against one replica on them all."""
    rule = {**RULE, "actions": ["log", "retrain"]}
    ticks = [0, MINUTE, 30 * MINUTE, 45 * MINUTE, 90 * MINUTE, 100 * MINUTE]
    pipeline = evaluations("bot")

    alone_broker = Broker()
    alone = replica(tmp_path, "alone", Exported(bot=0.5), alone_broker, rule)
    for now_ms in ticks:
        alone.tick(pipeline, now_ms)
        alone.deliver()

    broker = Broker()
    broker.down = True  # A cannot publish its job before the model moves: B must, once
    a = replica(tmp_path, "a", Exported(bot=0.5), broker, rule)
    b = replica(tmp_path, "b", Exported(bot=0.5), broker, rule)
    for now_ms in ticks[:3]:
        a.tick(pipeline, now_ms)
        a.deliver()
    snapshot = moved(a, b, {"bot"})
    broker.down = False
    a.deliver()  # A no longer delivers the job it handed over
    assert broker.ids == []
    for now_ms in ticks[3:]:
        assert [alert.starts_at_ms for alert in b.tick(pipeline, now_ms)] == [MINUTE]  # the same firing
        b.deliver()
        a.deliver()

    expected = [(job.id, job.created_ms, job.status) for job in alone.retraining.jobs()]
    assert [job.created_ms for job in alone.retraining.jobs()] == [90 * MINUTE, MINUTE]  # one job per cooldown
    assert [(job.id, job.created_ms, job.status) for job in b.retraining.jobs()] == expected
    assert broker.ids == alone_broker.ids == [job_id for job_id, _, _ in reversed(expected)]
    [handed] = a.retraining.jobs()
    assert (handed.id, handed.status) == (expected[1][0], "handed_over")
    assert [entry["id"] for entry in snapshot["jobs"]] == [handed.id]
    assert a.snapshot() == {"labels": "raw", "series": {}, "refused": {}} and a.evaluated_models == set()
    # Only the owner exports the model's alert and job series; the counters follow the jobs it holds.
    assert AlertsCollector(a).readings() == []
    readings = {(reading.labels, reading.value) for reading in AlertsCollector(b).readings()}
    assert {(("bot", "queued"), 2), (("bot", "published"), 2), (("DataDrift", "bot", "warning"), 1)} <= readings


def test_an_alert_firing_on_one_replica_and_resolving_on_another_notifies_once_each(tmp_path):
    rule = {**RULE, "actions": ["log", "alertmanager"]}
    log_sink, alertmanager = Notifications(), Notifications()
    a_exported, b_exported = Exported(bot=0.5), Exported(bot=0.5)
    sinks = {"alertmanager": {"url": "http://127.0.0.1:9"}}  # replaced below by the recording sink
    a = replica(tmp_path, "a", a_exported, Broker(), rule, sinks=sinks)
    b = replica(tmp_path, "b", b_exported, Broker(), rule, sinks=sinks)
    for alerting in (a, b):
        alerting.sinks = {"log": log_sink, "alertmanager": alertmanager}
    pipeline = evaluations("bot")

    a.tick(pipeline, 0)
    a.tick(pipeline, MINUTE)  # fires on A
    a.tick(pipeline, 2 * MINUTE)
    moved(a, b, {"bot"})
    a_exported.shares = {}  # A forgot the model: no more samples of it there, and no resolve either
    a.tick(pipeline, 3 * MINUTE)
    b.tick(pipeline, 3 * MINUTE)  # still firing on B: no new transition
    b_exported.shares = {"bot": 0.1}
    b.tick(pipeline, 4 * MINUTE)  # resolves on B
    b.tick(pipeline, 5 * MINUTE)

    assert [(alert.state, alert.starts_at_ms, alert.ends_at_ms) for alert in log_sink.alerts] == [
        ("firing", MINUTE, None),
        ("resolved", MINUTE, 4 * MINUTE),
    ]
    # Alertmanager hears the firing alert on every tick, from A then from B: one alert, one start, then its end.
    copies = [(alert.fingerprint, alert.state, alert.starts_at_ms) for alert in alertmanager.alerts]
    assert copies == [copies[0]] * 3 + [(copies[0][0], "resolved", MINUTE)]


def test_only_the_moved_models_series_and_refused_alerts_move_and_process_wide_series_stay(tmp_path):
    lag = {"name": "Lag", "metric": "consumer_lag", "op": ">", "threshold": 1000, "for": 0, "actions": ["log"]}
    rules = [{**RULE, "for": 0, "actions": ["log", "retrain"]}, lag]
    config = make_config(tmp_path / "a", rules=rules)
    exported = Exported(a=0.5, b=0.5)

    def samples(models, names) -> list[Sample]:
        return [*exported.samples(models, names), Sample("driftwarden_consumer_lag", {}, 5e3)]

    source = Alerting(config, samples)
    source.sinks["log"] = Refusing(full=True)
    ledger, source.retraining = source.retraining, FullLedger()  # the job requests wait with the alerts
    source.tick(evaluations("a", "b"), 0)
    source.retraining = ledger
    assert {name: len(items) for name, items in source.snapshot()["refused"].items()} == {"log": 3, "retrain": 2}

    snapshot = source.snapshot_models({"a", ""})  # "" is not a model: process-wide series never move
    target = Alerting(make_config(tmp_path / "b", rules=rules), samples)
    target.sinks["log"] = sink = Refusing(full=False)
    target.restore_models(snapshot)
    target.restore_models(snapshot)  # twice: harmless
    source.forget_models({"a", ""})

    assert snapshot["models"] == ["a"]
    assert [labels["model"] for labels, *_ in snapshot["series"].values()] == ["a"]
    assert [alert[1]["model"] for alert in snapshot["refused"]["log"]] == ["a"]
    assert target.snapshot() == {"labels": "raw", "series": snapshot["series"], "refused": snapshot["refused"]}
    left = source.snapshot()
    assert sorted(labels.get("model", "") for labels, *_ in left["series"].values()) == ["", "b"]
    assert [alert[1].get("model", "") for alert in left["refused"]["log"]] == ["b", ""]
    assert source.engine.firing_by() == {("DataDrift", "b", "warning"): 1, ("Lag", "", "warning"): 1}

    target.tick(evaluations("a"), MINUTE, models={"a"})
    assert sink.taken == [("firing", "a")]  # the refused alert, offered again by its new owner
    assert [(job.model, job.created_ms) for job in target.retraining.jobs()] == [("a", 0)]  # as first asked for
    assert target.snapshot()["refused"] == {}

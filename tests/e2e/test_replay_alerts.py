"""`driftwarden replay --deliver-alerts`: a replay's alerts reach a real Alertmanager (0.25) only when asked.

The events are tests/e2e/test_alerts.py's: one model whose reference is its
first ``WARMUP`` calls, then a drift that fires ``DataDrift`` (actions
``alertmanager``, ``retrain``, ``log``), hours ago in event time. The replay
runs as an operator runs it (``python -m monitor.cli replay``), with the
daemon's config. It delivers through an outbox of its own (a temporary
directory), asks for no retraining job, and drains the outbox before it exits:
within ``--deliver-timeout`` plus Alertmanager's ``resolve_hold``, or exit 1
naming where the alerts were going. A daemon running on the same config and
state directory keeps its outbox and its ledger to itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from alerts.sinks.outbox import Outbox
from tests.components import Alertmanager, wait_for
from tests.e2e.test_alerts import LABELS, MODEL, RULE, T0, WARMUP, epoch_s, events, make_config, notifications, paged
from tests.integration.kafka_helpers import JOIN_S, produce
from tests.receiver import Receiver

NO_BROKER = SimpleNamespace(bootstrap_servers="127.0.0.1:9")  # a file replay never connects
#: The reference, then a drift that fires the rule and lasts to the end.
DRIFTED_CALLS = events(0, WARMUP, False, 1) + events(WARMUP, WARMUP, True, 2)


def write_events(path: Path, messages: list[tuple[int, bytes]], shift_s: int = 0) -> Path:
    """The messages as a JSONL file, their event times moved by ``shift_s``."""
    lines = []
    for _, value in messages:
        event = json.loads(value)
        event["timestamp"] += shift_s
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    return path


def config_file(directory: Path, config: dict) -> Path:
    path = directory / "driftwarden.yaml"
    path.write_text(json.dumps(config))  # YAML is a superset of JSON
    return path


def replay(config: Path, events_file: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monitor.cli", "replay", "--config", str(config), str(events_file), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_only_a_replay_that_asks_delivers_its_alert_with_its_event_time(tmp_path, start_alertmanager):
    alertmanager = start_alertmanager()
    state = tmp_path / "state"
    config = config_file(tmp_path, make_config(NO_BROKER, state, "events", alertmanager, "jobs"))
    drifting = write_events(tmp_path / "events.jsonl", DRIFTED_CALLS)

    plain = replay(config, drifting)
    assert plain.returncode == 0, plain.stderr
    assert "alert firing at" in plain.stdout and "delivered" not in plain.stdout
    assert paged(alertmanager) == []  # the replay has exited: nothing is on its way

    delivering = replay(config, drifting, "--deliver-alerts")
    assert delivering.returncode == 0, delivering.stderr
    [alert] = paged(alertmanager)
    assert alert["labels"] == LABELS
    assert T0 + WARMUP <= epoch_s(alert["startsAt"]) <= T0 + 2 * WARMUP  # event time, hours ago: accepted
    assert alert["status"]["state"] in ("active", "unprocessed")
    assert "delivered alerts: 1 transitions logged" in delivering.stdout
    assert f"alertmanager at {alertmanager.url}: 1 delivered, 0 undelivered" in delivering.stdout
    assert "alert firing DataDrift" in delivering.stderr  # the log sink
    assert not state.exists()  # no outbox, and no retraining job, in the daemon's state directory


def test_two_episodes_reach_the_webhook_each_and_alertmanager_the_latest_which_pages_and_resolves(tmp_path):
    notified, hook = Receiver(), Receiver()  # Alertmanager's receiver, and the webhook sink's
    alertmanager = Alertmanager(tmp_path, webhook_url=notified.url)
    try:
        config = make_config(NO_BROKER, tmp_path / "state", "events", alertmanager, "jobs")
        config["alerts"]["sinks"]["webhook"] = {"url": f"{hook.url}/hook"}
        config["alerts"]["rules"] = [{**RULE, "actions": [*RULE["actions"], "webhook"]}]
        calm = WARMUP + 50  # refills the window: the alert resolves
        story = DRIFTED_CALLS + events(2 * WARMUP, calm, False, 3)
        story += events(3 * WARMUP + 50, WARMUP, True, 4) + events(4 * WARMUP + 50, calm, False, 5)
        events_file = write_events(tmp_path / "events.jsonl", story)
        finished = replay(config_file(tmp_path, config), events_file, "--deliver-alerts")

        assert finished.returncode == 0, finished.stderr
        printed = [line.split()[:3] for line in finished.stdout.splitlines() if line.startswith("  alert ")]
        assert [state for _, state, _ in printed] == ["firing", "resolved", "firing", "resolved"]
        assert finished.stderr.count("alert firing DataDrift") == finished.stderr.count("alert resolved DataDrift") == 2
        # Every transition to the webhook, in order, with its event time.
        told = [alert for body in hook.bodies() for alert in body["alerts"]]
        assert [alert["state"] for alert in told] == ["firing", "resolved", "firing", "resolved"]
        second_start = epoch_s(told[2]["starts_at"])
        assert T0 + 3 * WARMUP + 50 <= second_start <= T0 + 4 * WARMUP + 50
        assert T0 + 4 * WARMUP + 50 <= epoch_s(told[3]["ends_at"]) <= T0 + 5 * WARMUP + 100
        assert "4 transitions logged" in finished.stdout and f"webhook at {hook.url}: 4 delivered" in finished.stdout
        # Alertmanager: the latest episode's firing copy, then its resolve, held back by resolve_hold (2 s) so
        # that it notifies both.
        assert f"alertmanager at {alertmanager.url}: 2 delivered, 0 undelivered" in finished.stdout
        wait_for(lambda: notifications(notified) == {(MODEL, "firing"): 1, (MODEL, "resolved"): 1}, 20, "notices")
        sent = [alert for body in notified.bodies() for alert in body["alerts"]]
        assert [epoch_s(alert["startsAt"]) for alert in sent] == [second_start, second_start]
        assert paged(alertmanager) == []
    finally:
        alertmanager.stop()
        notified.close()
        hook.close()


def test_an_alertmanager_that_is_down_makes_the_replay_exit_1_within_the_bound(tmp_path, start_alertmanager):
    alertmanager = start_alertmanager()
    alertmanager.stop()
    config = make_config(NO_BROKER, tmp_path / "state", "events", alertmanager, "jobs")
    config["alerts"]["sinks"]["alertmanager"]["url"] += "/s3cret"  # a path is often the credential
    path = config_file(tmp_path, config)
    drifting = write_events(tmp_path / "events.jsonl", DRIFTED_CALLS)

    started = time.monotonic()
    finished = replay(path, drifting, "--deliver-alerts", "--deliver-timeout", "3")
    delivering_s = time.monotonic() - started

    assert finished.returncode == 1, finished.stderr
    assert f"alertmanager at http://127.0.0.1:{alertmanager.port}: 0 delivered, 1 undelivered" in finished.stdout
    message = f"1 alert(s) not delivered to alertmanager at http://127.0.0.1:{alertmanager.port} within"
    assert message in finished.stderr
    assert "s3cret" not in finished.stdout + finished.stderr
    # It waits out 3 s and the 2 s resolve hold, then gives up: it cannot be done sooner; and it does give up (the
    # upper bound is loose: the replay itself takes several seconds on a loaded machine).
    assert 5 <= delivering_s <= 40, delivering_s


def test_alerts_a_full_outbox_dropped_make_the_replay_exit_1(tmp_path, start_alertmanager):
    alertmanager, hook = start_alertmanager(), Receiver()
    try:
        config = make_config(NO_BROKER, tmp_path / "state", "events", alertmanager, "jobs")
        config["alerts"] |= {"outbox_size": 1, "sinks": {**config["alerts"]["sinks"], "webhook": {"url": hook.url}}}
        config["alerts"]["rules"] = [{**RULE, "actions": [*RULE["actions"], "webhook"]}]
        finished = replay(config_file(tmp_path, config), write_events(tmp_path / "events.jsonl", DRIFTED_CALLS),
                          "--deliver-alerts")  # fmt: skip

        assert finished.returncode == 1, finished.stderr
        # Each sink's alert (Alertmanager's is queued again on every tick) pushed the other's out.
        assert re.search(r"the outbox was full \(alerts.outbox_size\): it dropped [1-9]\d* queued", finished.stderr)
        assert len(paged(alertmanager)) + len(hook.requests) == 1  # the one the outbox kept
    finally:
        hook.close()


def test_a_running_daemons_outbox_and_ledger_are_not_the_replays(
    kafka_broker, new_topic, tmp_path, start_daemon, start_alertmanager
):
    alertmanager = start_alertmanager()
    alertmanager.stop()  # the daemon's alert waits in its outbox
    topic, jobs_topic = new_topic(), new_topic()
    config = make_config(kafka_broker, tmp_path / "state", topic, alertmanager, jobs_topic)
    daemon = start_daemon(config)
    produce(kafka_broker, topic, DRIFTED_CALLS)
    wait_for(lambda: "alertmanager sink: delivering" in daemon.log(), JOIN_S, "the daemon failing to deliver")
    jobs = ["jobs", "list", "--config", str(daemon.config_path)]
    listed = subprocess.run([sys.executable, "-m", "monitor.cli", *jobs], capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 2  # a header and the daemon's job

    day_before = write_events(tmp_path / "events.jsonl", DRIFTED_CALLS, shift_s=-86_400)
    finished = replay(daemon.config_path, day_before, "--deliver-alerts", "--deliver-timeout", "1")
    assert finished.returncode == 1  # Alertmanager is down for the replay too

    with Outbox(tmp_path / "state" / "outbox.sqlite") as outbox:  # the daemon's, as it holds it now
        queued = [json.loads(entry.payload) for entry in outbox.due("alertmanager", float("inf"), 100)]
    assert [alert["labels"] for alert in queued] == [LABELS]
    assert T0 + WARMUP <= epoch_s(queued[0]["startsAt"]) <= T0 + 2 * WARMUP  # the daemon's alert, not the replay's
    assert subprocess.run([sys.executable, "-m", "monitor.cli", *jobs], capture_output=True, text=True).stdout == listed

    alertmanager.start()
    [alert] = wait_for(lambda: paged(alertmanager), 30, "the daemon's alert once Alertmanager is back")
    assert T0 + WARMUP <= epoch_s(alert["startsAt"]) <= T0 + 2 * WARMUP
    assert daemon.stop() == 0

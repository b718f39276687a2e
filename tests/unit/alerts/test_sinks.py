"""Sinks without Alertmanager: the outbox, the webhook against a real loopback HTTP server, the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading

import pytest

from alerts.alert import Alert
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.log import LogSink
from alerts.sinks.outbox import BACKOFF, Outbox
from alerts.sinks.webhook import DEFAULT_TOLERANCE_S, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, verify
from monitor.demo.broker import free_port
from tests.receiver import Receiver

T0 = 1_700_000_000_000


def make_alert(name: str = "DataDrift", state: str = "firing", starts_at_ms: float = T0, **labels: str) -> Alert:
    return Alert(
        fingerprint=f"{name}-{sorted(labels.items())}",
        labels={"alertname": name, "severity": "warning", **labels},
        annotations={"summary": f"{name} on {labels.get('model', 'bot')}"},
        state=state,
        value=0.42,
        starts_at_ms=starts_at_ms,
        ends_at_ms=starts_at_ms + 60_000 if state == "resolved" else None,
        actions=("webhook",),
    )


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def outbox(tmp_path):
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


# Outbox


def test_outbox_survives_reopen(tmp_path):
    path = tmp_path / "state" / "outbox.db"
    with Outbox(path) as outbox:
        outbox.put("webhook", "a", b"payload-a", now_ms=T0)
        outbox.put("alertmanager", "b", b"payload-b", now_ms=T0)
        [entry] = outbox.due("webhook", T0, limit=10)
        outbox.retry(entry.id, now_ms=T0)
    with Outbox(path) as reopened:
        assert len(reopened) == 2
        assert reopened.due("webhook", T0 + 999, limit=10) == []
        [entry] = reopened.due("webhook", T0 + 1_000, limit=10)
        assert (entry.key, entry.payload, entry.attempts, entry.created_ms) == ("a", b"payload-a", 1, T0)
        assert [e.payload for e in reopened.due("alertmanager", T0, limit=10)] == [b"payload-b"]
        assert reopened.dropped == 0
    assert outbox.path == path


def test_outbox_same_key_replaces_and_moves_to_the_back(outbox):
    outbox.put("am", "fp1/firing", b"v1", now_ms=T0)
    outbox.put("am", "fp2/firing", b"w1", now_ms=T0)
    [first, _] = outbox.due("am", T0, limit=10)
    outbox.retry(first.id, now_ms=T0)  # fp1 is backing off: the head blocks the queue
    assert outbox.due("am", T0, limit=10) == []

    outbox.put("am", "fp1/firing", b"v2", now_ms=T0 + 500)
    outbox.put("other", "fp1/firing", b"x", now_ms=T0 + 500)  # keys are per sink
    assert len(outbox) == 3
    entries = outbox.due("am", T0 + 1_000, limit=10)
    assert [(e.key, e.payload) for e in entries] == [("fp2/firing", b"w1"), ("fp1/firing", b"v2")]
    assert entries[1].attempts == 1 and entries[1].created_ms == T0  # keeps its retry state and age
    outbox.done(first.id)  # the replaced copy's id: a no-op, the new copy is still queued
    assert len(outbox) == 3


def test_outbox_backoff_doubles_from_one_second_to_five_minutes(outbox):
    outbox.put("am", "k", b"p", now_ms=T0)
    [entry] = outbox.due("am", T0, limit=1)
    now, delays = T0, []
    for _ in range(12):
        next_ms = outbox.retry(entry.id, now_ms=now)
        delays.append(next_ms - now)
        assert outbox.due("am", next_ms - 1, limit=1) == []
        assert [e.id for e in outbox.due("am", next_ms, limit=1)] == [entry.id]
        now = next_ms
    assert delays == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000] + [BACKOFF.max_ms] * 3
    assert [BACKOFF.delay_ms(n) for n in (1, 9, 10, 100)] == [1_000, 256_000, 300_000, 300_000]
    outbox.done(entry.id)
    assert outbox.retry(entry.id, now_ms=now) is None


def test_outbox_is_bounded_and_counts_what_it_drops(outbox, tmp_path):
    with Outbox(tmp_path / "small.db", max_size=3) as small:
        for i in range(5):
            small.put("am", f"k{i}", b"%d" % i, now_ms=T0 + i)
        small.put("am", "k4", b"again", now_ms=T0 + 9)  # a replacement does not grow the queue
        assert len(small) == 3
        assert small.dropped == 2
        assert [e.key for e in small.due("am", T0 + 10, limit=10)] == ["k2", "k3", "k4"]
    with pytest.raises(ValueError):
        Outbox(tmp_path / "zero.db", max_size=0)


def test_outbox_is_thread_safe(outbox):
    n_writers, n_each = 4, 200
    delivered: list[str] = []
    writing = threading.Event()
    errors: list[BaseException] = []

    def write(writer: int):
        try:
            for i in range(n_each):
                outbox.put("am", f"w{writer}-{i}", b"x")
                outbox.put("am", f"w{writer}-{i}", b"y")  # replaced at once
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def deliver():
        try:
            while writing.is_set() or len(outbox):
                for entry in outbox.due("am", float("inf"), limit=50):
                    delivered.append(entry.key)
                    outbox.done(entry.id)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    writing.set()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(n_writers)]
    consumer = threading.Thread(target=deliver)
    for thread in [*writers, consumer]:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    consumer.join(timeout=30)
    assert errors == []
    assert len(outbox) == 0
    # Every key delivered at least once; a key is seen twice only if its "x" went out before "y" replaced it.
    assert {f"w{w}-{i}" for w in range(n_writers) for i in range(n_each)} == set(delivered)
    assert len(delivered) <= 2 * n_writers * n_each


# Webhook


def test_webhook_posts_each_transition_once_signed(receiver, outbox):
    secret = "s3cret"
    sink = WebhookSink(f"{receiver.url}/hooks/drift", outbox, secret=secret, generator_url="http://dw:9108/")
    alert = make_alert(model="bot")
    sink.add([alert])
    sink.add([alert])  # re-sent on the next tick: not a transition
    assert sink.deliver(T0) == 1
    sink.add([alert])
    sink.add([make_alert(model="bot", state="resolved")])
    assert sink.deliver(T0 + 61_999) == 1
    assert sink.deliver(T0) == 0

    assert [path for path, _, _ in receiver.requests] == ["/hooks/drift", "/hooks/drift"]
    for (_, headers, body), sent_s in zip(receiver.requests, [T0 // 1000, T0 // 1000 + 61], strict=True):
        # What a receiver does (README "Alerts and retraining"): HMAC over "<timestamp>.<body>", constant time.
        assert headers[TIMESTAMP_HEADER] == str(sent_s)
        expected = "sha256=" + hmac.new(secret.encode(), f"{sent_s}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert verify(body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], secret, now_s=sent_s + 2)
        assert headers["Content-Type"] == "application/json"
    [fired], [ended] = (body["alerts"] for body in receiver.bodies())
    assert fired == {
        "fingerprint": alert.fingerprint,
        "state": "firing",
        "labels": {"alertname": "DataDrift", "severity": "warning", "model": "bot"},
        "annotations": {"summary": "DataDrift on bot"},
        "value": 0.42,
        "starts_at": "2023-11-14T22:13:20.000Z",
        "ends_at": None,
        "generator_url": "http://dw:9108/",
    }
    assert (ended["state"], ended["ends_at"]) == ("resolved", "2023-11-14T22:14:20.000Z")


def test_a_webhook_receiver_rejects_a_replayed_or_altered_request(receiver, outbox):
    secret = b"k" * 32
    sink = WebhookSink(receiver.url, outbox, secret=secret)
    sink.add([make_alert(model="bot")])
    assert sink.deliver(T0) == 1
    [(_, headers, body)] = receiver.requests
    timestamp, sent = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]

    assert verify(body, timestamp, sent, secret, now_s=T0 / 1000 + DEFAULT_TOLERANCE_S)
    assert not verify(body, timestamp, sent, secret, now_s=T0 / 1000 + DEFAULT_TOLERANCE_S + 1)  # replayed late
    assert not verify(body, str(T0 // 1000 + 600), sent, secret, now_s=T0 / 1000 + 600)  # a fresh timestamp
    assert not verify(body.replace(b"bot", b"b0t"), timestamp, sent, secret, now_s=T0 / 1000)  # an altered body
    assert not verify(body, timestamp, sent, b"other", now_s=T0 / 1000)
    assert not verify(body, None, sent, secret, now_s=T0 / 1000)
    assert not verify(body, "-1e3", sent, secret, now_s=T0 / 1000)


def test_webhook_without_secret_has_no_signature(receiver, outbox):
    sink = WebhookSink(receiver.url, outbox)
    sink.add([make_alert(model="a"), make_alert(model="b")])
    assert sink.deliver(T0) == 2
    [(_, headers, body)] = receiver.requests
    assert SIGNATURE_HEADER not in headers and TIMESTAMP_HEADER not in headers
    assert [a["labels"]["model"] for a in json.loads(body)["alerts"]] == ["a", "b"]


def test_webhook_retries_through_the_outbox(receiver, outbox):
    receiver.statuses = [503, 500]
    sink = WebhookSink(receiver.url, outbox, secret=b"k")
    sink.add([make_alert(model="a")])
    assert sink.deliver(T0) == 0
    assert sink.deliver(T0 + 999) == 0  # backing off: not tried
    sink.add([make_alert(model="b")])  # queued behind the failed one
    assert sink.deliver(T0 + 1_000) == 0
    assert sink.deliver(T0 + 3_000) == 2
    assert len(receiver.requests) == 3 and len(outbox) == 0
    assert [[a["labels"]["model"] for a in body["alerts"]] for body in receiver.bodies()] == [
        ["a"],
        ["a", "b"],
        ["a", "b"],
    ]


def test_webhook_endpoint_down_keeps_alerts(outbox, caplog):
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/", outbox, timeout_s=1.0)
    sink.add([make_alert()])
    with caplog.at_level(logging.WARNING, logger="alerts.sinks.webhook"):
        assert sink.deliver(T0) == 0
    assert len(outbox) == 1
    assert "failed" in caplog.text and "next in 1 s" in caplog.text


def test_invalid_payload_answer_is_dropped_not_retried(receiver, outbox, caplog):
    receiver.statuses = [400]
    sink = WebhookSink(receiver.url, outbox)
    sink.add([make_alert()])
    with caplog.at_level(logging.ERROR, logger="alerts.sinks.webhook"):
        assert sink.deliver(T0) == 0
    assert len(outbox) == 0
    assert "invalid" in caplog.text


SINKS = {
    "webhook": lambda url, outbox: WebhookSink(url, outbox, secret="s"),
    "alertmanager": lambda url, outbox: AlertmanagerSink(url, outbox, resolve_hold_s=0),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", SINKS)
def test_a_redirect_is_a_failure_to_retry_not_a_delivery(receiver, outbox, caplog, kind, status):
    receiver.statuses = [status]
    sink = SINKS[kind](receiver.url, outbox)
    sink.add([make_alert(model="bot")])

    with caplog.at_level(logging.WARNING):
        assert sink.deliver(T0) == 0

    assert receiver.gets == []  # not followed: urllib would have turned the POST into a GET and reported its 200
    [entry] = outbox.due(kind, T0 + 1_000, limit=10)
    assert entry.attempts == 1
    assert f"HTTP {status} " in caplog.text and "redirects are not followed" in caplog.text
    assert "moved" not in caplog.text and "token" not in caplog.text  # the Location is not logged
    assert sink.deliver(T0 + 1_000) == 1 and len(outbox) == 0  # retried with backoff: this time a 200
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("kind", SINKS)
def test_a_failed_delivery_logs_the_endpoints_origin_not_its_url(receiver, outbox, caplog, kind):
    url = f"{receiver.url}/services/T0123/B0456/s3cretT0ken?token=also-secret"
    receiver.statuses = [503, 400]
    sink = SINKS[kind](url, outbox)
    sink.add([make_alert(model="bot")])

    with caplog.at_level(logging.WARNING):
        sink.deliver(T0)
        sink.deliver(T0 + 1_000)  # 400: dropped as invalid, logged at ERROR

    assert [record.levelname for record in caplog.records] == ["WARNING", "ERROR"]
    origin = f"http://127.0.0.1:{receiver.server.server_address[1]}"
    assert f"to {origin} failed (HTTP 503 Service Unavailable)" in caplog.records[0].getMessage()
    assert f"{origin} rejected 1 alerts as invalid (HTTP 400 Bad Request)" in caplog.records[1].getMessage()
    assert "s3cret" not in caplog.text and "services" not in caplog.text and "token" not in caplog.text


class FullDisk(Outbox):
    """An outbox whose writes fail as SQLite's do when the disk is full, while ``full`` is set.

    The real full disk (a file size limit in a child process) is in ``test_alerting.py``; this one
    shows what a sink remembers of an ``add`` that raised.
    """

    full = False

    def put(self, sink: str, key: str, payload: bytes, now_ms: float | None = None) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        super().put(sink, key, payload, now_ms)


@pytest.mark.parametrize("kind", SINKS)
def test_an_add_that_raised_took_nothing_and_the_same_alerts_pass_again(receiver, tmp_path, kind):
    outbox = FullDisk(tmp_path / "outbox.db")
    sink = SINKS[kind](receiver.url, outbox)
    first, second = make_alert(model="a"), make_alert(model="b")
    sink.add([first])
    outbox.full = True
    with pytest.raises(sqlite3.OperationalError):
        sink.add([second, make_alert(model="a", state="resolved")])
    assert len(outbox) == 1  # the batch left nothing behind

    outbox.full = False
    sink.add([second, make_alert(model="a", state="resolved")])  # offered again: taken now

    assert sink.deliver(T0) == 3
    sent = [body["alerts"] if kind == "webhook" else body for body in receiver.bodies()]
    assert [alert["labels"]["model"] for alerts in sent for alert in alerts] == [
        "a",
        "b",
        "a",
    ]


# Alertmanager payloads (the real Alertmanager is in tests/integration/test_alertmanager_sink.py)


def test_alertmanager_sink_sends_every_firing_copy_and_sets_ends_at_on_delivery(receiver, outbox):
    sink = AlertmanagerSink(receiver.url + "/", outbox, resolve_after_s=120, resolve_hold_s=5)
    alert = make_alert(model="bot")
    sink.add([alert])
    sink.add([alert])  # the same alert on the next tick: one queued copy
    assert len(outbox) == 1
    assert sink.deliver(T0 + 5_000) == 1
    sink.add([alert, make_alert(model="bot", state="resolved")])
    assert sink.deliver(T0 + 10_000) == 2

    assert [path for path, _, _ in receiver.requests] == ["/api/v2/alerts"] * 2
    [first], [again, ended] = receiver.bodies()
    assert first == {
        "labels": {"alertname": "DataDrift", "severity": "warning", "model": "bot"},
        "annotations": {"summary": "DataDrift on bot"},
        "startsAt": "2023-11-14T22:13:20.000Z",
        "endsAt": "2023-11-14T22:15:25.000Z",  # delivery time + 120 s, not add time
    }
    assert again["endsAt"] == "2023-11-14T22:15:30.000Z"
    assert ended["endsAt"] == "2023-11-14T22:14:20.000Z"  # the resolve's own end time


def test_a_resolve_reaches_alertmanager_only_after_its_firing_copy_was_there_for_the_hold(receiver, outbox):
    # After an outage: a firing alert and its resolve, and another alert behind them, all queued.
    sink = AlertmanagerSink(receiver.url, outbox, resolve_hold_s=35)
    brief, other = make_alert(model="brief"), make_alert(model="other")
    sink.add([brief])
    sink.add([make_alert(model="brief", state="resolved"), other])

    assert sink.deliver(T0) == 1  # the firing copy only: in one request, Alertmanager would page no one
    assert sink.deliver(T0 + 34_999) == 0  # the resolve waits at the head of the queue
    assert sink.deliver(T0 + 35_000) == 2
    assert [[alert.get("endsAt") for alert in body] for body in receiver.bodies()] == [
        [None],
        ["2023-11-14T22:14:20.000Z", None],
    ]

    # Firing for long: its resolve goes at once, also when re-sent firing copies travel in the same request.
    sink.add([other])
    assert sink.deliver(T0 + 100_000) == 1
    sink.add([other, make_alert(model="other", state="resolved")])
    assert sink.deliver(T0 + 101_000) == 2
    assert len(outbox) == 0


def test_alertmanager_sink_omits_ends_at_of_firing_alerts_by_default(receiver, outbox):
    sink = AlertmanagerSink(receiver.url, outbox, generator_url="http://dw/")
    sink.add([make_alert(model="bot", extra="")])
    assert sink.deliver(T0) == 1
    [[sent]] = receiver.bodies()
    assert "endsAt" not in sent
    assert sent["generatorURL"] == "http://dw/"
    assert "extra" not in sent["labels"]  # empty label values are no labels, as in Alertmanager


# Log


def test_log_sink_writes_one_line_per_transition(caplog):
    logger = logging.getLogger("driftwarden.test.alerts")
    sink = LogSink(logger)
    alert = make_alert(model="bot")
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(3):
            sink.add([alert])  # firing, re-sent on every tick
        sink.add([make_alert(model="bot", state="resolved")])
        sink.add([make_alert(model="bot", state="resolved")])  # the same resolve again
        sink.add([make_alert(model="bot", starts_at_ms=T0 + 600_000)])  # fires again: a new episode
    assert sink.deliver(T0) == 0
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert lines == [
        ("WARNING", 'alert firing DataDrift {model="bot", severity="warning"} value=0.42: DataDrift on bot'),
        ("INFO", 'alert resolved DataDrift {model="bot", severity="warning"} value=0.42: DataDrift on bot'),
        ("WARNING", 'alert firing DataDrift {model="bot", severity="warning"} value=0.42: DataDrift on bot'),
    ]


def test_log_sink_quotes_label_values_so_that_none_forges_another_label(caplog):
    # Alerts carry label values as producers sent them; a quote must not close the value and open a label of its
    # own. Values are quoted as the exposition quotes them (backslash, double quote, line feed), then escaped.
    logger = logging.getLogger("driftwarden.test.alerts")
    forged, plain = (make_alert(model=model) for model in ('bot", severity="critical', 'bot\\", severity=\\"critical'))
    with caplog.at_level(logging.INFO, logger=logger.name):
        LogSink(logger).add([forged, plain])
    assert [record.getMessage().split(" value=")[0] for record in caplog.records] == [
        'alert firing DataDrift {model="bot\\", severity=\\"critical", severity="warning"}',
        'alert firing DataDrift {model="bot\\\\\\", severity=\\\\\\"critical", severity="warning"}',
    ]


def test_sinks_import_no_third_party_http():
    import subprocess
    import sys

    code = (
        "import sys, alerts.sinks.alertmanager, alerts.sinks.webhook, alerts.sinks.log, alerts.sinks.outbox\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('monitor', 'requests', 'httpx', 'urllib3', 'aiohttp', 'numpy', 'prometheus_client', 'kafka')]\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

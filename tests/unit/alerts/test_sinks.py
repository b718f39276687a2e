"""Sinks without Alertmanager: the outbox, the webhook against a real loopback HTTP server, the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.alert import Alert
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.log import LogSink
from alerts.sinks.outbox import BACKOFF_MAX_MS, Outbox, retry_delay_ms
from alerts.sinks.webhook import SIGNATURE_HEADER, WebhookSink
from monitor.sources.embedded_broker import free_port

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


class Receiver:
    """A real HTTP server on loopback recording each POST; answers with queued statuses, then 200."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
    assert delays == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000] + [BACKOFF_MAX_MS] * 3
    assert [retry_delay_ms(n) for n in (1, 9, 10, 100)] == [1_000, 256_000, 300_000, 300_000]
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
    assert sink.deliver(T0) == 1
    assert sink.deliver(T0) == 0

    assert [path for path, _, _ in receiver.requests] == ["/hooks/drift", "/hooks/drift"]
    for _, headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
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


def test_webhook_without_secret_has_no_signature(receiver, outbox):
    sink = WebhookSink(receiver.url, outbox)
    sink.add([make_alert(model="a"), make_alert(model="b")])
    assert sink.deliver(T0) == 2
    [(_, headers, body)] = receiver.requests
    assert SIGNATURE_HEADER not in headers
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


# Alertmanager payloads (the real Alertmanager is in tests/integration/test_alertmanager_sink.py)


def test_alertmanager_sink_sends_every_firing_copy_and_sets_ends_at_on_delivery(receiver, outbox):
    sink = AlertmanagerSink(receiver.url + "/", outbox, resolve_after_s=120)
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

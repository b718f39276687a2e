"""Alert transitions POSTed as JSON to any HTTP endpoint, signed with HMAC-SHA256, queued in the outbox.

The signature covers a timestamp and the body, as Stripe's does: each
request carries ``X-Driftwarden-Timestamp`` (Unix seconds, the time of that
delivery attempt) and ``X-Driftwarden-Signature: sha256=<hex>``, the
HMAC-SHA256 with the shared secret of ``f"{timestamp}.".encode() + body``. A
receiver recomputes it over the raw bytes it got, compares in constant time
and refuses a timestamp outside its tolerance (:func:`verify` does all three),
so that a captured request cannot be replayed later; within the tolerance it
deduplicates on ``(fingerprint, state, starts_at)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable

from alerts.alert import Alert
from alerts.sinks import OutboxSink, TransitionFilter, rfc3339
from alerts.sinks.outbox import Delivery, Outbox

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSink", "signature", "verify", "webhook_alert"]

SIGNATURE_HEADER = "X-Driftwarden-Signature"
TIMESTAMP_HEADER = "X-Driftwarden-Timestamp"
#: How far a request's timestamp may be from the receiver's clock for :func:`verify` to accept it.
DEFAULT_TOLERANCE_S = 300


def webhook_alert(alert: Alert, generator_url: str | None = None) -> dict:
    """One alert in the webhook body: the Alertmanager fields in snake_case, plus state, value, fingerprint.

    ``ends_at`` is null while the alert fires; a value that is not finite is null.

    Examples
    --------
    >>> alert = Alert("fp", {"alertname": "DataDrift"}, {}, "resolved", 0.1, 1_700_000_000_000,
    ...               1_700_000_060_000, ())
    >>> webhook_alert(alert)["ends_at"]
    '2023-11-14T22:14:20.000Z'
    """
    return {
        "fingerprint": alert.fingerprint,
        "state": alert.state,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": alert.value if math.isfinite(alert.value) else None,  # JSON has no NaN
        "starts_at": rfc3339(alert.starts_at_ms),
        "ends_at": rfc3339(alert.ends_at_ms) if alert.ends_at_ms is not None else None,
        "generator_url": generator_url,
    }


def signature(body: bytes, timestamp: int, secret: str | bytes) -> str:
    """The ``X-Driftwarden-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"``.

    Examples
    --------
    >>> signature(b'{"alerts":[]}', 1_700_000_000, "s3cret")[:15]
    'sha256=7a2d8306'
    """
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    timestamp: str | None,
    signature_header: str | None,
    secret: str | bytes,
    now_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver checks: the signature matches ``timestamp`` and ``body``, and the timestamp is recent.

    ``timestamp`` and ``signature_header`` are the raw header values (None
    when missing). A request older (or newer) than ``tolerance_s`` is refused
    even with a valid signature: that is what stops a replay.

    Examples
    --------
    >>> body = b'{"alerts":[]}'
    >>> header = signature(body, 1_700_000_000, "s3cret")
    >>> verify(body, "1700000000", header, "s3cret", now_s=1_700_000_030)
    True
    >>> verify(body, "1700000000", header, "s3cret", now_s=1_700_000_000 + 3600)  # replayed an hour later
    False
    >>> verify(body + b" ", "1700000000", header, "s3cret", now_s=1_700_000_030)  # tampered
    False
    """
    if timestamp is None or signature_header is None or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(body, int(timestamp), secret), signature_header)


class WebhookSink(OutboxSink):
    """POSTs ``{"alerts": [...]}`` to ``url`` on each transition: once when an alert fires, once when it resolves.

    Unlike Alertmanager, a webhook receiver is told about changes, not the
    current state on every tick: re-sent firing copies are filtered out
    (per fingerprint and firing episode, in memory, so a restarted daemon
    sends a still-firing alert once more). Entries are keyed by
    ``fingerprint/state/starts_at_ms``, so a transition queued twice (a replay
    after a crash) is sent once; receivers that must not see duplicates at
    all can deduplicate on ``(fingerprint, state, starts_at)``. With a
    ``secret`` every request is signed over its timestamp and body (see the
    module docstring and :func:`verify`). A failed delivery is logged with the
    endpoint's ``scheme://host:port`` only: the URL is often the credential.

    Parameters
    ----------
    url : str
        The endpoint, POSTed to as it is.
    outbox : Outbox
        Where alerts wait for delivery.
    secret : str or bytes, optional
        The HMAC key.
    timeout_s : float
        Per-request timeout.
    generator_url : str, optional
        Put in each alert's ``generator_url``.
    name : str
        The sink's name in the outbox (distinct per webhook sink).
    """

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        secret: str | bytes | None = None,
        timeout_s: float = 5.0,
        generator_url: str | None = None,
        name: str = "webhook",
    ):
        super().__init__(url, outbox, name, timeout_s)
        self.secret = secret
        self.generator_url = generator_url
        self._transitions = TransitionFilter()

    def add(self, alerts: Iterable[Alert]) -> None:
        """Queue each new transition among ``alerts``; durable on return, nothing taken if it raises."""
        fresh = self._transitions.fresh(alerts)
        with self.outbox.batch():
            for alert in fresh:
                payload = json.dumps(webhook_alert(alert, self.generator_url), separators=(",", ":"))
                key = f"{alert.fingerprint}/{alert.state}/{alert.starts_at_ms:.0f}"
                self.outbox.put(self.name, key, payload.encode())
        self._transitions.remember(fresh)

    def _request(self, entries: list[Delivery], now_ms: float) -> tuple[bytes, dict[str, str]]:
        body = b'{"alerts":[' + b",".join(entry.payload for entry in entries) + b"]}"
        headers = {"Content-Type": "application/json", "User-Agent": "driftwarden"}
        if self.secret is not None:
            timestamp = int(now_ms // 1000)
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = signature(body, timestamp, self.secret)
        return body, headers

"""Alert transitions POSTed as JSON to any HTTP endpoint, signed with HMAC-SHA256, queued in the outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable

from alerts.alert import Alert
from alerts.sinks import OutboxSink, TransitionFilter, rfc3339
from alerts.sinks.outbox import Delivery, Outbox

__all__ = ["WebhookSink", "webhook_alert", "signature", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "X-Driftwarden-Signature"


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


def signature(body: bytes, secret: str | bytes) -> str:
    """The ``X-Driftwarden-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the exact body.

    Examples
    --------
    >>> signature(b'{"alerts":[]}', "s3cret")[:15]
    'sha256=ebee03b5'
    """
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class WebhookSink(OutboxSink):
    """POSTs ``{"alerts": [...]}`` to ``url`` on each transition: once when an alert fires, once when it resolves.

    Unlike Alertmanager, a webhook receiver is told about changes, not the
    current state on every tick: re-sent firing copies are filtered out
    (per fingerprint and firing episode, in memory, so a restarted daemon
    sends a still-firing alert once more). Entries are keyed by
    ``fingerprint/state/starts_at_ms``, so a transition queued twice (a replay
    after a crash) is sent once; receivers that must not see duplicates at
    all can deduplicate on ``(fingerprint, state, starts_at)``. With a
    ``secret`` every request carries ``X-Driftwarden-Signature: sha256=<hex>``,
    the HMAC-SHA256 of the raw body; receivers should compare it in constant
    time (``hmac.compare_digest``).

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
        super().__init__(url, outbox, name, url, timeout_s)
        self.secret = secret
        self.generator_url = generator_url
        self._transitions = TransitionFilter()

    def add(self, alerts: Iterable[Alert]) -> None:
        """Queue each new transition among ``alerts``; durable on return."""
        with self.outbox.batch():
            for alert in alerts:
                if not self._transitions.passes(alert):
                    continue
                payload = json.dumps(webhook_alert(alert, self.generator_url), separators=(",", ":"))
                key = f"{alert.fingerprint}/{alert.state}/{alert.starts_at_ms:.0f}"
                self.outbox.put(self.name, key, payload.encode())

    def _request(self, entries: list[Delivery], now_ms: float) -> tuple[bytes, dict[str, str]]:
        body = b'{"alerts":[' + b",".join(entry.payload for entry in entries) + b"]}"
        headers = {"Content-Type": "application/json", "User-Agent": "driftwarden"}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(body, self.secret)
        return body, headers

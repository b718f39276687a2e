"""Alert sinks: Alertmanager (API v2), a signed webhook and the log, behind a persistent outbox.

Every sink has two verbs. ``add(alerts)`` takes what the rule engine produced
on one evaluation tick and makes it durable: the HTTP sinks put one entry per
alert in the :class:`~alerts.sinks.outbox.Outbox` (SQLite, committed before
``add`` returns), so a checkpoint taken after ``add`` never loses an alert; an
exception from ``add`` aborts the checkpoint (STYLE rule 11). ``deliver(now_ms)``
sends what is due and schedules retries with backoff; it never raises for an
unreachable endpoint, so a receiver that is down for minutes holds up neither
the pipeline nor the checkpoint, and gets every alert once it is back.

Sinks deliver what they are given: routing an alert to the sinks named in its
``actions`` is the caller's job. This module holds only what the sinks share.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from alerts.sinks.outbox import Delivery, Outbox, retry_delay_ms

if TYPE_CHECKING:
    from collections.abc import Iterable

    from alerts.alert import Alert

__all__ = ["Sink", "OutboxSink", "TransitionFilter", "rfc3339"]

# Answers after which sending the same bytes again cannot succeed: the receiver judged the payload invalid
# (Alertmanager answers 400 when some alerts fail validation, having stored the valid ones).
PERMANENT_STATUSES = frozenset({400, 422})


class Sink(Protocol):
    """What the daemon calls: ``add`` on every tick's alerts, ``deliver`` on its delivery schedule."""

    def add(self, alerts: Iterable[Alert]) -> None: ...

    def deliver(self, now_ms: float) -> int: ...


def rfc3339(ms: float) -> str:
    """Epoch milliseconds as an RFC 3339 UTC timestamp with millisecond precision.

    Examples
    --------
    >>> rfc3339(1_700_000_000_123)
    '2023-11-14T22:13:20.123Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TransitionFilter:
    """Lets each transition of an alert through once: firing when it starts, resolved when it ends.

    The rule engine re-sends every firing alert on every tick; a sink that
    reports transitions (the log, the webhook) keeps the last state it let
    through per fingerprint. A new firing episode of the same series has a new
    ``starts_at_ms`` and passes again.

    Examples
    --------
    >>> from alerts.alert import Alert
    >>> firing = Alert("fp", {"alertname": "Drift"}, {}, "firing", 0.4, 1000.0, None, ())
    >>> resolved = Alert("fp", {"alertname": "Drift"}, {}, "resolved", 0.1, 1000.0, 9000.0, ())
    >>> gate = TransitionFilter()
    >>> [gate.passes(alert) for alert in (firing, firing, resolved, resolved)]
    [True, False, True, False]
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, float]] = {}

    def passes(self, alert: Alert) -> bool:
        seen = (alert.state, alert.starts_at_ms)
        if self._last.get(alert.fingerprint) == seen:
            return False
        self._last[alert.fingerprint] = seen
        return True


class OutboxSink:
    """The delivery loop the HTTP sinks share: due entries in queue order, one POST per batch, retry on failure.

    Subclasses define ``_request(entries, now_ms) -> (body, headers)``. An
    entry is done on a 2xx answer, dropped (with an error in the log) on an
    answer that says the payload itself is invalid (400, 422), and retried with
    backoff otherwise: connection refused, timeout, 5xx, any other status.
    ``deliver`` stops at the first failed batch, and the outbox hands entries
    out in queue order, so a receiver sees them in the order they were added.
    """

    #: alerts per POST
    batch_size = 100

    def __init__(self, url: str, outbox: Outbox, name: str, endpoint: str, timeout_s: float):
        self.url = url.rstrip("/")
        self.outbox = outbox
        self.name = name
        self.timeout_s = timeout_s
        self._endpoint = endpoint
        self._log = logging.getLogger(type(self).__module__)

    def _request(self, entries: list[Delivery], now_ms: float) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def deliver(self, now_ms: float) -> int:
        """POST every due entry; returns how many were delivered (2xx)."""
        delivered = 0
        while True:
            entries = self.outbox.due(self.name, now_ms, self.batch_size)
            if not entries:
                return delivered
            body, headers = self._request(entries, now_ms)
            status, error = _post(self._endpoint, body, headers, self.timeout_s)
            ok, invalid = 200 <= status < 300, status in PERMANENT_STATUSES
            with self.outbox.batch():
                for entry in entries:
                    if ok or invalid:
                        self.outbox.done(entry.id)
                    else:
                        self.outbox.retry(entry.id, now_ms)
            if invalid:
                message = "%s sink: %s rejected %d alerts as invalid (%s); dropped them"
                self._log.error(message, self.name, self._endpoint, len(entries), error)
            elif not ok:
                attempts = entries[0].attempts + 1
                message = "%s sink: delivering %d alerts to %s failed (%s); attempt %d, next in %g s"
                wait_s = retry_delay_ms(attempts) / 1000
                self._log.warning(message, self.name, len(entries), self._endpoint, error, attempts, wait_s)
                return delivered
            delivered += len(entries) if ok else 0
            if len(entries) < self.batch_size:
                return delivered


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """POST ``body``; the status (0 when no answer came) and a short reason for the log."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status, ""
    except urllib.error.HTTPError as error:
        detail = error.read(300).decode("utf-8", "replace").strip()
        return error.code, f"HTTP {error.code} {detail}".strip()
    except urllib.error.URLError as error:
        return 0, str(error.reason)
    except (OSError, http.client.HTTPException) as error:
        return 0, f"{type(error).__name__}: {error}"

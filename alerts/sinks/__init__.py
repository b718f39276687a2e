"""Alert sinks: Alertmanager (API v2), a signed webhook and the log, behind a persistent outbox.

Every sink has two verbs. ``add(alerts)`` takes what the rule engine produced
on one evaluation tick and makes it durable: the HTTP sinks put one entry per
alert in the :class:`~alerts.sinks.outbox.Outbox` (SQLite, committed before
``add`` returns), so a checkpoint taken after ``add`` never loses an alert. An
``add`` that raises (a full disk) has taken nothing and remembers nothing: the
caller offers the same alerts again (see :class:`monitor.export.alerting.Alerting`).
``deliver(now_ms)`` sends what is due through the one
:class:`~alerts.http.HttpClient` (timeouts, no redirects) and schedules
retries with the outbox's backoff; it never raises for an unreachable or
failing endpoint, so a receiver that is down for minutes holds up neither the
pipeline nor the checkpoint, and gets every alert once it is back.

Sinks deliver what they are given: routing an alert to the sinks named in its
``actions`` is the caller's job. This module holds only what the sinks share.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from alerts.http import HttpClient, origin
from alerts.sinks.outbox import Delivery, Outbox

if TYPE_CHECKING:
    from collections.abc import Iterable

    from alerts.alert import Alert

__all__ = ["Sink", "OutboxSink", "TransitionFilter", "rfc3339"]


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
    ``starts_at_ms`` and passes again. :meth:`fresh` picks the transitions not
    yet let through; the sink calls :meth:`remember` once it has taken them,
    so that alerts a failed ``add`` did not take pass again when offered again.

    Examples
    --------
    >>> from alerts.alert import Alert
    >>> firing = Alert("fp", {"alertname": "Drift"}, {}, "firing", 0.4, 1000.0, None, ())
    >>> resolved = Alert("fp", {"alertname": "Drift"}, {}, "resolved", 0.1, 1000.0, 9000.0, ())
    >>> gate = TransitionFilter()
    >>> [alert.state for alert in gate.fresh([firing, firing])]
    ['firing']
    >>> [alert.state for alert in gate.fresh([firing, resolved])]  # nothing remembered yet
    ['firing', 'resolved']
    >>> gate.remember([firing]); [alert.state for alert in gate.fresh([firing, resolved, resolved])]
    ['resolved']
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, float]] = {}

    def fresh(self, alerts: Iterable[Alert]) -> list[Alert]:
        """The alerts that are transitions not let through yet, each once, in order."""
        last: dict[str, tuple[str, float]] = {}
        fresh = []
        for alert in alerts:
            seen = (alert.state, alert.starts_at_ms)
            if last.get(alert.fingerprint, self._last.get(alert.fingerprint)) != seen:
                last[alert.fingerprint] = seen
                fresh.append(alert)
        return fresh

    def remember(self, alerts: Iterable[Alert]) -> None:
        """Record ``alerts`` as let through."""
        for alert in alerts:
            self._last[alert.fingerprint] = (alert.state, alert.starts_at_ms)


class OutboxSink:
    """The delivery loop the HTTP sinks share: due entries in queue order, one POST per batch, retry on failure.

    Subclasses define ``_request(entries, now_ms) -> (body, headers)``, and
    may hold entries back with ``_sendable``. An entry is done on a 2xx
    answer, dropped (with an error in the log) on an answer that says the
    payload itself is invalid (400, 422), and retried with the outbox's
    backoff otherwise: connection refused, timeout, 5xx, a redirect (3xx: not
    followed), any other status. ``deliver`` stops at the first failed batch,
    and the outbox hands entries out in queue order, so a receiver sees them in
    the order they were added. Log lines name the receiver by its origin
    (``scheme://host:port``) only.
    """

    #: alerts per POST
    batch_size = 100

    def __init__(self, endpoint: str, outbox: Outbox, name: str, timeout_s: float):
        self.endpoint = endpoint
        self.outbox = outbox
        self.name = name
        self.client = HttpClient(timeout_s)
        self._origin = origin(endpoint)
        self._log = logging.getLogger(type(self).__module__)

    def _request(self, entries: list[Delivery], now_ms: float) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def _sendable(self, entries: list[Delivery], now_ms: float) -> list[Delivery]:
        """The head of ``entries`` to send now (all of them unless a subclass holds some back)."""
        return entries

    def _delivered(self, entries: list[Delivery], now_ms: float) -> None:
        """Called with the entries a receiver took (2xx)."""

    def deliver(self, now_ms: float) -> int:
        """POST every due entry; returns how many were delivered (2xx)."""
        delivered = 0
        while True:
            due = self.outbox.due(self.name, now_ms, self.batch_size)
            entries = self._sendable(due, now_ms)
            if not entries:
                return delivered
            body, headers = self._request(entries, now_ms)
            answer = self.client.post(self.endpoint, body, headers)
            with self.outbox.batch():
                for entry in entries:
                    if answer.ok or answer.rejected:
                        self.outbox.done(entry.id)
                    else:
                        self.outbox.retry(entry.id, now_ms)
            if answer.rejected:
                message = "%s sink: %s rejected %d alerts as invalid (%s); dropped them"
                self._log.error(message, self.name, self._origin, len(entries), answer.error)
            elif not answer.ok:
                attempts = entries[0].attempts + 1
                wait_s = self.outbox.backoff.delay_ms(attempts) / 1000
                message = "%s sink: delivering %d alerts to %s failed (%s); attempt %d, next in %g s"
                self._log.warning(message, self.name, len(entries), self._origin, answer.error, attempts, wait_s)
                return delivered
            else:
                delivered += len(entries)
                self._delivered(entries, now_ms)
            if len(entries) < self.batch_size:
                return delivered

"""Alerts to Alertmanager through its API v2 (``POST /api/v2/alerts``), queued in the outbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from alerts.alert import Alert
from alerts.sinks import OutboxSink, rfc3339
from alerts.sinks.outbox import Delivery, Outbox

__all__ = ["AlertmanagerSink", "alertmanager_alert"]


def alertmanager_alert(alert: Alert, generator_url: str | None = None, label_value: Callable[[str], str] = str) -> dict:
    """One alert as Alertmanager's API v2 takes it (``PostableAlert``), each label value as ``label_value`` gives it.

    A firing alert carries no ``endsAt``: Alertmanager then keeps it active
    for its ``resolve_timeout`` (default 5 min) after it last received it, and
    the rule engine re-sends it on every tick. A resolved alert carries the
    time it ended, which is in the past, so Alertmanager resolves it at once.
    Label and annotation values are strings; label values that are empty after ``label_value`` are dropped, as
    Alertmanager does (the daemon passes the exposition's :func:`~monitor.export.collectors.shown`, so an alert
    has the labels of the series it was raised on as Prometheus has them).

    Examples
    --------
    >>> alert = Alert("fp", {"alertname": "DataDrift", "model": "bot"}, {"summary": "drift share 0.4"},
    ...               "firing", 0.4, 1_700_000_000_000, None, ("alertmanager",))
    >>> print(json.dumps(alertmanager_alert(alert, "http://driftwarden:9108/"), indent=1))
    {
     "labels": {
      "alertname": "DataDrift",
      "model": "bot"
     },
     "annotations": {
      "summary": "drift share 0.4"
     },
     "startsAt": "2023-11-14T22:13:20.000Z",
     "generatorURL": "http://driftwarden:9108/"
    }
    """
    payload = {
        "labels": {name: shown for name, value in alert.labels.items() if (shown := label_value(value))},
        "annotations": {str(name): str(value) for name, value in alert.annotations.items()},
        "startsAt": rfc3339(alert.starts_at_ms),
    }
    if alert.state == "resolved":
        payload["endsAt"] = rfc3339(alert.ends_at_ms if alert.ends_at_ms is not None else alert.starts_at_ms)
    if generator_url:
        payload["generatorURL"] = generator_url
    return payload


class AlertmanagerSink(OutboxSink):
    """Sends every alert it is given to Alertmanager, through the outbox, retrying until it answers.

    Alertmanager forgets a firing alert it has not heard of for its
    ``resolve_timeout``, so the rule engine hands over every firing alert on
    every tick and this sink sends each one (the outbox keeps only the latest
    copy per alert while it waits). Entries are keyed by ``fingerprint/state``;
    since the outbox delivers in queue order, a firing alert and its resolve
    reach Alertmanager in that order even after an outage, and Alertmanager
    (which keeps alerts in memory only) gets every pending alert once it is
    back.

    ``resolve_hold_s``: Alertmanager notifies a new group ``group_wait`` after
    its first alert arrived, and never notifies a group whose alerts have all
    resolved by then. After an outage, an alert that fired and resolved
    meanwhile would reach it firing and resolved in one request, and page no
    one. So a resolve is sent no sooner than ``resolve_hold_s`` after the
    firing copy of its alert reached Alertmanager (in this process): it waits
    at the head of the queue, holding back what is behind it. Set it a little
    above the route's ``group_wait``.

    ``endsAt``: omitted for a firing alert (see :func:`alertmanager_alert`).
    An ``endsAt`` computed when the alert is added would be stale by the time
    a queued copy is delivered after an outage, and Alertmanager would take
    the late firing alert for a resolved one. ``resolve_after_s`` instead sets
    it at delivery, to delivery time plus that many seconds, as Prometheus
    does (4 evaluation intervals): use it when ``evaluate_every`` is longer
    than Alertmanager's ``resolve_timeout``, or to have alerts resolve sooner
    when the daemon stops.

    Parameters
    ----------
    url : str
        Alertmanager's base URL, e.g. ``http://alertmanager:9093``.
    outbox : Outbox
        Where alerts wait for delivery.
    timeout_s : float
        Per-request timeout.
    generator_url : str, optional
        The ``generatorURL`` back-link put on every alert (e.g. the daemon's
        or a dashboard's URL).
    resolve_after_s : float, optional
        Set ``endsAt`` of firing alerts to delivery time plus this.
    name : str
        The sink's name in the outbox (distinct per Alertmanager sink).
    resolve_hold_s : float
        Least time between the delivery of a firing alert and of its resolve
        (default 35 s: Alertmanager's default ``group_wait`` is 30 s).
    label_value : callable
        Each label value as Alertmanager gets it (default: as the alert has it).
    """

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        timeout_s: float = 5.0,
        generator_url: str | None = None,
        resolve_after_s: float | None = None,
        name: str = "alertmanager",
        resolve_hold_s: float = 35.0,
        label_value: Callable[[str], str] = str,
    ):
        super().__init__(f"{url.rstrip('/')}/api/v2/alerts", outbox, name, timeout_s)
        self.generator_url = generator_url
        self.resolve_after_s = resolve_after_s
        self.resolve_hold_s = resolve_hold_s
        self.label_value = label_value
        self._fired_ms: dict[str, float] = {}  # fingerprint -> when its firing copy was first delivered

    def add(self, alerts: Iterable[Alert]) -> None:
        """Queue every alert (firing ones replace their previous queued copy); durable on return."""
        with self.outbox.batch():
            for alert in alerts:
                payload = alertmanager_alert(alert, self.generator_url, self.label_value)
                body = json.dumps(payload, separators=(",", ":")).encode()
                self.outbox.put(self.name, f"{alert.fingerprint}/{alert.state}", body)

    def _sendable(self, entries: list[Delivery], now_ms: float) -> list[Delivery]:
        """Up to the first resolve whose firing copy Alertmanager has had for less than the hold, deferred."""
        hold_ms = self.resolve_hold_s * 1000
        firing_now: set[str] = set()
        for index, entry in enumerate(entries):
            fingerprint, state = entry.key.rsplit("/", 1)
            if state == "firing":
                firing_now.add(fingerprint)
                continue
            fired_ms = self._fired_ms.get(fingerprint, now_ms if fingerprint in firing_now else None)
            if fired_ms is not None and now_ms < fired_ms + hold_ms:
                self.outbox.defer(entry.id, fired_ms + hold_ms)
                return entries[:index]
        return entries

    def _delivered(self, entries: list[Delivery], now_ms: float) -> None:
        """Remember when Alertmanager first had each firing alert, until its resolve is delivered."""
        for entry in entries:
            fingerprint, state = entry.key.rsplit("/", 1)
            if state == "firing":
                self._fired_ms.setdefault(fingerprint, now_ms)
            else:
                self._fired_ms.pop(fingerprint, None)

    def _request(self, entries: list[Delivery], now_ms: float) -> tuple[bytes, dict[str, str]]:
        alerts = [json.loads(entry.payload) for entry in entries]
        if self.resolve_after_s is not None:
            ends_at = rfc3339(now_ms + self.resolve_after_s * 1000)
            for alert in alerts:
                alert.setdefault("endsAt", ends_at)
        return json.dumps(alerts, separators=(",", ":")).encode(), {"Content-Type": "application/json"}

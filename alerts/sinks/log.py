"""Alert transitions as log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from alerts.alert import Alert
from alerts.printable import printable
from alerts.sinks import TransitionFilter

__all__ = ["LogSink"]


class LogSink:
    """Writes one line per transition: at WARNING when an alert starts firing, at INFO when it resolves.

    Firing copies the rule engine re-sends on every tick are not logged again
    (per fingerprint and firing episode). The line holds the state, the
    alert name, the other labels, the value and the ``summary`` annotation;
    it is written on ``add`` (logging is its delivery), ``deliver`` has
    nothing left to do. Labels and the summary come from events (a model
    name): label values are quoted as the exposition quotes them and
    characters that are not printable are escaped (see
    :func:`alerts.printable.printable`), so the line stays one line and no
    value reads as another label.

    Examples
    --------
    >>> import logging, sys
    >>> logger = logging.getLogger("doctest.alerts")
    >>> handler = logging.StreamHandler(sys.stdout)
    >>> logger.addHandler(handler); logger.setLevel(logging.INFO); logger.propagate = False
    >>> sink = LogSink(logger)
    >>> alert = Alert("fp", {"alertname": "DataDrift", "model": "bot"}, {"summary": "drift share 0.4"},
    ...               "firing", 0.4, 0.0, None, ("log",))
    >>> sink.add([alert]); sink.add([alert])
    alert firing DataDrift {model="bot"} value=0.4: drift share 0.4
    >>> logger.removeHandler(handler)
    """

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._transitions = TransitionFilter()

    def add(self, alerts: Iterable[Alert]) -> None:
        for alert in self._transitions.fresh(alerts):
            labels = sorted(alert.labels.items())
            series = ", ".join(f"{name}={_quoted(value)}" for name, value in labels if name != "alertname")
            self.logger.log(
                logging.WARNING if alert.state == "firing" else logging.INFO,
                "alert %s %s {%s} value=%g: %s",
                alert.state,
                printable(alert.labels.get("alertname", "")),
                printable(series),
                alert.value,
                printable(alert.annotations.get("summary", "")),
                extra={"rule": alert.labels.get("alertname"), "model": alert.labels.get("model")},
            )
            self._transitions.remember([alert])

    def deliver(self, now_ms: float) -> int:
        return 0


def _quoted(value: str) -> str:
    r"""A label value in double quotes, as the exposition writes it, so that none reads as more labels.

    >>> print(_quoted('bot", severity="critical'), _quoted("a\\b\nc"))
    "bot\", severity=\"critical" "a\\b\nc"
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

"""Log lines on stderr, one format for the daemon and its Kafka consumer process.

kafka-python logs every failed connection attempt; its retries are summed up by
driftwarden's own warnings, so only its errors are shown.

Messages carry names that came from events (models, labels, dead-letter
reasons): :class:`OneLineFormatter` escapes what is not printable in them
(a newline, an ANSI escape), so that a crafted model name can neither forge a
log line nor split one. A traceback, logged with ``exc_info``, keeps its lines.
"""

from __future__ import annotations

import logging

from alerts.printable import printable

__all__ = ["OneLineFormatter", "log_to_stderr"]

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    r"""A formatter whose message is always one line: characters that are not printable are escaped.

    Examples
    --------
    >>> record = logging.makeLogRecord({"msg": "no events from model %s", "args": ("bot\nERROR forged",)})
    >>> print(OneLineFormatter("%(message)s").format(record))
    no events from model bot\nERROR forged
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def log_to_stderr(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("kafka").setLevel(max(level, logging.ERROR))

"""Log lines on stderr, one format for the daemon and its Kafka consumer process: text, or JSON.

kafka-python logs every failed connection attempt; its retries are summed up by
driftwarden's own warnings, so only its errors are shown.

Messages carry names that came from events (models, labels, dead-letter
reasons): :class:`OneLineFormatter` escapes what is not printable in them
(a newline, an ANSI escape), so that a crafted model name can neither forge a
log line nor split one. A traceback, logged with ``exc_info``, keeps its lines.

``--log-format json`` writes each record as one JSON object per line
(:class:`JsonFormatter`): ``time``, ``level``, ``logger``, ``process``,
``message``, the :data:`CONTEXT` a call passes with ``extra=`` (the model,
rule, job, ... it names) in their own fields, and a traceback in
``exception``. JSON escapes every control character, so one record is always
one line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

from alerts.printable import printable

__all__ = [
    "CONTEXT",
    "FORMATS",
    "JsonFormatter",
    "LogFormat",
    "OneLineFormatter",
    "error_line",
    "log_format",
    "log_to_stderr",
]

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
#: The values of ``--log-format``.
FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]
#: Context a log call may pass with ``extra=``: what it names, each a field of its JSON line (the text line says
#: them in its message already).
CONTEXT = ("model", "version", "rule", "job", "topic", "partition", "offset", "reason")


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


class JsonFormatter(logging.Formatter):
    r"""One JSON object per record, on one line: the message as logged, its context in fields, a traceback in one.

    Non-ASCII characters are escaped too, so a line cannot repaint a terminal that shows the raw log.

    Examples
    --------
    >>> record = logging.makeLogRecord({"msg": "model %s: drift", "args": ("bot\n{}",), "name": "monitor.pipeline",
    ...                                 "levelname": "WARNING", "created": 0, "model": "bot\n{}"})
    >>> line = JsonFormatter().format(record)
    >>> "\n" in line, json.loads(line)["message"], json.loads(line)["model"]
    (False, 'model bot\n{}: drift', 'bot\n{}')
    >>> line[:56]
    '{"time": "1970-01-01T00:00:00.000Z", "level": "WARNING",'
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        line = {
            "time": created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        line.update((key, getattr(record, key)) for key in CONTEXT if getattr(record, key, None) is not None)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def log_to_stderr(level: int = logging.INFO, log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else OneLineFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("kafka").setLevel(max(level, logging.ERROR))


def error_line(message: str, log_format: LogFormat) -> str:
    r"""A command's error on stderr: ``driftwarden: message``, or, as ``--log-format json`` asks, one JSON line.

    >>> error_line("bad config: windows.size: must be > 0", "text")
    'driftwarden: bad config: windows.size: must be > 0'
    >>> json.loads(error_line("bad config:\nwindows.size", "json"))["message"]
    'bad config:\nwindows.size'
    """
    if log_format == "text":
        return f"driftwarden: {message}"
    record = {"name": "driftwarden", "levelname": "ERROR", "levelno": logging.ERROR, "msg": message}
    return JsonFormatter().format(logging.makeLogRecord(record))


def log_format() -> LogFormat:
    """The format of the root logger's stderr lines, for a child process to log alike."""
    json_handlers = (isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)
    return "json" if any(json_handlers) else "text"

"""Log lines on stderr, one format for the daemon and its Kafka consumer process.

kafka-python logs every failed connection attempt; its retries are summed up by
driftwarden's own warnings, so only its errors are shown.
"""

from __future__ import annotations

import logging

__all__ = ["log_to_stderr"]

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def log_to_stderr(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger("kafka").setLevel(max(level, logging.ERROR))

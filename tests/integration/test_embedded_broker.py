"""The embedded broker (Tansu) that the demo, the benchmarks and the suite start."""

from __future__ import annotations

import socket
import time

from monitor.demo.broker import STOP_GRACE_S, EmbeddedBroker


def test_stop_is_prompt_while_a_client_still_holds_a_connection():
    """On SIGTERM Tansu waits for its clients' connections to close: 5 s with one open. Its state is in memory,
    so the embedded broker is killed once its grace has passed."""
    broker = EmbeddedBroker().start()
    with socket.create_connection((broker.host, broker.port)):
        started = time.monotonic()
        broker.stop()
        stopped_after_s = time.monotonic() - started
    assert broker._process.returncode is not None
    assert stopped_after_s < STOP_GRACE_S + 2.5  # Tansu alone took 5 s

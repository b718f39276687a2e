"""The producer SDK for serving code: one event per model call, sent without touching the request.

:meth:`EventProducer.inference` and :meth:`EventProducer.feedback` build an
event and put it on a bounded in-memory queue; that is all the request path
pays (a dict and a ``put_nowait``). They never block and never raise: when
the queue is full (the broker is slow or down) the event is dropped and
counted, and the request goes on. A background thread validates each event
with the daemon's own decoder (so the SDK sends nothing the daemon would
reject), and hands it to the Kafka client keyed by model, so that one
consumer owns all of a model's events. Prompt and response text stay out of
the event unless ``send_text=True``.

>>> producer = EventProducer("127.0.0.1:1", connect=False)  # no broker needed to build events
>>> producer.inference(request_id="r1", model="support-bot", latency_ms=840.0, prompt="secret")
True
>>> producer.stats().queued, "prompt" in producer._queue.get_nowait()[1]
(1, False)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec

from monitor.events import Invalid, decode
from monitor.sources.kafka import KafkaError, KafkaSink

__all__ = ["EventProducer", "ProducerStats"]

log = logging.getLogger(__name__)

_TEXT_FIELDS = ("prompt", "response")
_RECONNECT_S = 1.0


@dataclass(frozen=True)
class ProducerStats:
    """What happened to the events given to the producer so far.

    ``sent`` counts events handed to the Kafka client. ``dropped`` counts by
    reason: ``queue_full`` (the buffer was full), ``invalid:<reason>`` (the
    daemon would reject it), ``build_error`` (the arguments could not make an
    event), ``send_failed`` (the client gave up after its retries) and
    ``closed`` (still queued when :meth:`close` gave up).
    """

    queued: int
    sent: int
    dropped: dict[str, int]


class EventProducer:
    """Events to ``topic`` on ``bootstrap_servers`` through a queue of ``buffer_size`` events.

    ``client_settings`` go to kafka-python's producer as they are (TLS, SASL, ``acks``...).
    ``connect=False`` builds and queues events without starting the sender, for tests.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        topic: str = "llm-events",
        *,
        buffer_size: int = 10_000,
        send_text: bool = False,
        max_event_bytes: int = 1_000_000,
        client_settings: dict[str, Any] | None = None,
        connect: bool = True,
    ):
        self.topic = topic
        self.send_text = send_text
        self.max_event_bytes = max_event_bytes
        self._settings = {"bootstrap_servers": bootstrap_servers, "client_id": "driftwarden-producer"}
        self._settings.update(client_settings or {})
        self._queue: queue.Queue[tuple[bytes, dict]] = queue.Queue(maxsize=buffer_size)
        self._counts_lock = threading.Lock()
        self._queued = 0
        self._sent = 0
        self._dropped: Counter[str] = Counter()
        self._closing = threading.Event()
        self._sink = None
        self._thread = threading.Thread(target=self._send_forever, name="driftwarden-producer", daemon=True)
        if connect:
            self._thread.start()

    def inference(self, *, request_id: str, model: str, **fields: Any) -> bool:
        """Queue an inference event; True if queued. ``fields`` are schema v1 names (``latency_ms``...).

        ``timestamp`` defaults to now; ``prompt`` and ``response`` are dropped unless ``send_text``.
        """
        return self._put("inference", request_id, model, fields)

    def feedback(self, *, request_id: str, model: str, **fields: Any) -> bool:
        """Queue a feedback event (``label``, ``rating``, ``judge_score``, ``evaluation_name``); True if queued."""
        return self._put("feedback", request_id, model, fields)

    def stats(self) -> ProducerStats:
        with self._counts_lock:
            return ProducerStats(self._queued, self._sent, dict(self._dropped))

    def close(self, timeout_s: float = 5.0) -> ProducerStats:
        """Send what is queued within ``timeout_s`` (what is left is dropped as ``closed``), then stop."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._drop("closed")
        if self._sink is not None:
            self._sink.close(timeout_s=1.0)
        return self.stats()

    def _put(self, kind: str, request_id: str, model: str, fields: dict[str, Any]) -> bool:
        try:
            event = {"type": kind, "request_id": request_id, "model": model, "timestamp": time.time()}
            event.update((key, value) for key, value in fields.items() if value is not None)
            if not self.send_text:
                for key in _TEXT_FIELDS:
                    event.pop(key, None)
            self._queue.put_nowait((model.encode(), event))
        except queue.Full:
            self._drop("queue_full")
            return False
        except Exception:  # noqa: BLE001 - the request path must never see our failure
            self._drop("build_error")
            return False
        with self._counts_lock:
            self._queued += 1
        return True

    def _drop(self, reason: str, count: int = 1) -> None:
        if count:
            with self._counts_lock:
                self._dropped[reason] += count

    def _send_forever(self) -> None:
        while not (self._closing.is_set() and self._queue.empty()):
            try:
                key, event = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            value = self._encode(event)
            if value is None:
                continue
            if not self._connected():
                self._drop("closed")
                continue
            try:
                self._sink.send(value, key=key)
            except KafkaError as error:  # no metadata within max_block_ms: the broker went away
                log.warning("cannot send to %s: %s", self.topic, error)
                self._drop("send_failed")
                continue
            with self._counts_lock:
                self._sent += 1
        if self._sink is not None:
            self._sink.flush(timeout_s=1.0)

    def _encode(self, event: dict) -> bytes | None:
        try:
            value = msgspec.json.encode(event)
        except (TypeError, msgspec.EncodeError):
            self._drop("build_error")
            return None
        checked = decode(value, self.max_event_bytes)
        if type(checked) is Invalid:
            self._drop(f"invalid:{checked.reason}")
            log.warning("dropped an event the daemon would reject: %s (%s)", checked.reason, checked.detail)
            return None
        return value

    def _connected(self) -> bool:
        """Connect if not yet connected, retrying until it works; False only if closing first."""
        while self._sink is None:
            try:
                failed = lambda _error: self._drop("send_failed")  # noqa: E731
                self._sink = KafkaSink(self._settings, self.topic, failed, max_block_ms=1_000)
            except KafkaError as error:
                if self._closing.is_set():
                    return False
                servers = self._settings["bootstrap_servers"]
                log.warning("cannot reach Kafka at %s (%s); events queue meanwhile", servers, error)
                self._closing.wait(_RECONNECT_S)
        return True

"""The producer SDK for serving code: one event per model call, sent without touching the request.

:meth:`EventProducer.inference` and :meth:`EventProducer.feedback` build an
event, encode it to JSON (a snapshot: the caller may reuse its dicts) and put
it on a bounded in-memory queue; that is all the request path pays, a few
microseconds. They never block and never raise: when the queue is full (the
broker is slow or down) the event is dropped and counted, and the request
goes on. A background thread validates each event with the daemon's own
decoder, so the SDK sends nothing the daemon would reject and nothing the
schema does not name, and hands it to the Kafka client keyed by model, so
that one consumer owns all of a model's events. Prompt and response text
stay out of the event unless ``send_text=True``.

>>> producer = EventProducer("127.0.0.1:1", connect=False)  # no broker needed to build events
>>> producer.inference(request_id="r1", model="support-bot", latency_ms=840.0, prompt="secret")
True
>>> producer.stats().queued, b"secret" in producer._queue.get_nowait()[1]
(1, False)
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET

from monitor.ingest.events import Invalid, decode
from monitor.ingest.kafka import KafkaError, KafkaSink

__all__ = ["EventProducer", "ProducerStats"]

log = logging.getLogger(__name__)

_TEXT_FIELDS = ("prompt", "response")
_RECONNECT_S = 1.0
_BOOTSTRAP_MS = 1_000  # how long one connection attempt waits for the broker
_ENCODE = msgspec.json.encode


@dataclass(frozen=True)
class ProducerStats:
    """What happened to the events given to the producer so far.

    ``queued`` counts events accepted, ``sent`` those the broker acknowledged. ``dropped`` counts by
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
        max_event_bytes: int = 1_048_576,  # the daemon's default limits.max_event_bytes
        client_settings: dict[str, Any] | None = None,
        connect: bool = True,
    ):
        self.topic = topic
        self.send_text = send_text
        self.max_event_bytes = max_event_bytes
        self._settings = {"bootstrap_servers": bootstrap_servers, "client_id": "driftwarden-producer"}
        self._settings.update(client_settings or {})
        self._queue: queue.Queue[tuple[bytes, bytes]] = queue.Queue(maxsize=buffer_size)  # (key, event JSON)
        self._counts_lock = threading.Lock()
        self._queued = 0
        self._sent = 0
        self._dropped: Counter[str] = Counter()
        self._closing = threading.Event()
        self._close_by = float("inf")  # close() sets when to stop trying
        self._sink: KafkaSink | None = None
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
        """Send what is queued within about ``timeout_s`` (the rest is dropped as ``closed``), then stop: at most
        2.5 s later (a connection attempt in flight gives up, as one is while the broker is down; then the
        Kafka client closes)."""
        self._close_by = time.monotonic() + timeout_s
        self._closing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._thread.join(_BOOTSTRAP_MS / 1000 + 0.5)  # a connection attempt in flight gives up by then
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
            event = {"request_id": request_id, "model": model, "timestamp": time.time()}
            event.update((key, value) for key, value in fields.items() if value is not None)
            event["type"] = kind
            if not self.send_text:
                for key in _TEXT_FIELDS:
                    event.pop(key, None)
            value = _ENCODE(event)  # a snapshot: the caller may change its dicts afterwards
            if b"null" in value and _has_non_finite(event):  # JSON has no NaN: msgspec writes null
                self._drop("invalid:non_finite")
                return False
            self._queue.put_nowait((model.encode(), value))
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
        with self._counts_lock:
            self._dropped[reason] += count

    def _delivered(self, _metadata: object) -> None:
        with self._counts_lock:
            self._sent += 1

    def _send_forever(self) -> None:
        while not (self._closing.is_set() and self._queue.empty()):
            try:
                key, value = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._send(key, value)
            except Exception:  # noqa: BLE001 - one bad event must not stop the sender
                log.exception("could not send an event")
                self._drop("send_failed")
        if self._sink is not None:
            self._sink.flush(timeout_s=1.0)

    def _send(self, key: bytes, value: bytes) -> None:
        """Validate with the daemon's decoder and send the event as the schema has it (unknown keys dropped)."""
        event = decode(value, self.max_event_bytes)
        if isinstance(event, Invalid):
            self._drop(f"invalid:{event.reason}")
            log.warning("dropped an event the daemon would reject: %s (%s)", event.reason, event.detail)
            return
        event.timestamp_ms = UNSET  # the decoder's own field, not sent
        if not self._connected():
            self._drop("closed")
            return
        assert self._sink is not None  # _connected() returned True
        try:
            future = self._sink.send(_ENCODE(event), key=key)
        except KafkaError as error:  # no metadata within max_block_ms: the broker went away
            log.warning("cannot send to %s: %s", self.topic, error)
            self._drop("send_failed")
            return
        future.add_callback(self._delivered)
        future.add_errback(lambda _error: self._drop("send_failed"))

    def _connected(self) -> bool:
        """Connect if not yet connected, retrying until it works; False once close() has run out of time."""
        while self._sink is None:
            if self._closing.is_set() and time.monotonic() >= self._close_by:
                return False
            try:
                self._sink = KafkaSink(
                    self._settings, self.topic, max_block_ms=1_000, bootstrap_timeout_ms=_BOOTSTRAP_MS
                )
            except KafkaError as error:
                servers = self._settings["bootstrap_servers"]
                log.warning("cannot reach Kafka at %s (%s); events queue meanwhile", servers, error)
                self._closing.wait(_RECONNECT_S)
        return True


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False

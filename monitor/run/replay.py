"""Replay a file, or a topic's time range (:class:`~monitor.ingest.backfill.TopicRange`), through the pipeline as
fast as it goes, with evaluations on event time.

A file's encoding is given (:data:`FILE_ENCODINGS`: driftwarden's JSON events one a line by default), never taken
from a topic's name: a topic's range is decoded as its topic is configured.

A replay evaluates exactly as ``driftwarden run`` does (see
:class:`~monitor.pipeline.Pipeline`): each model at the multiples of
``windows.evaluate_every`` that its own event time crosses, over the events
that came before. It ends with one evaluation of every model as of its latest
event, so its gauges describe the file's last window whatever the batch size.
Alert rules run after every evaluation; their transitions are returned, and
delivered only when asked (``outbox_dir``, then :func:`drain`): through an
outbox of the replay's own, never a daemon's, and no retraining or rollback
job is requested (a backfill must not act on old data). A replay has no wall
clock: no event is too far in the future, no model goes idle, and nothing is
coalesced as a backlog.

>>> import tempfile, pathlib
>>> from monitor.config import parse_config
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> _ = path.write_text('{"request_id": "a", "timestamp": 1700000001, "model": "bot", "latency_ms": 80}\\n'
...                     '{"request_id": "b", "timestamp": 1700000002, "model": "bot", "latency_ms": 120}\\n'
...                     'not json\\n')
>>> result = replay(parse_config({"windows": {"min_samples": 1}}), path)
>>> result.n_records, result.n_rejected, result.n_ticks
(3, 1, 1)
>>> result.pipeline.evaluations["bot"].traffic.latency_quantiles_ms[0]
(0.5, 100.0)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerts.alert import Alert
from alerts.http import origin
from alerts.sinks import OutboxSink
from alerts.sinks.alertmanager import AlertmanagerSink
from monitor.config import Config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import Exports, PipelineCollector, build_registry
from monitor.ingest import PartitionBatch, partition_batches
from monitor.ingest.file import JsonlDeadLetters, JsonlSource, LengthPrefixedSource
from monitor.ingest.otlp import ENCODINGS
from monitor.pipeline import Pipeline

__all__ = ["FILE_ENCODINGS", "Drained", "ReplayResult", "drain", "replay"]

#: What a replayed file holds: driftwarden's JSON events one a line; OTLP requests as the Collector's file exporter
#: writes them (``otlp_json``: one a line, ``format: json``; ``otlp_proto``: each preceded by its length in 4 bytes,
#: big-endian, ``format: proto``).
FILE_ENCODINGS = ("json", *ENCODINGS)


@dataclass(frozen=True)
class ReplayResult:
    """The pipeline as the file left it, counts, and every alert transition in order (firing, resolved)."""

    pipeline: Pipeline
    n_records: int
    n_rejected: int
    n_ticks: int
    alerts: list[Alert]
    alerting: Alerting

    def registry(self) -> CollectorRegistry:
        """What the daemon would export for the same events (without consumer lag, which a file has not)."""
        return build_registry(self.pipeline, AlertsCollector(self.alerting))


def replay(
    config: Config,
    events: str | os.PathLike[str] | Iterable[list[PartitionBatch]],
    dead_letters: JsonlDeadLetters | None = None,
    batch_size: int = 2_000,
    outbox_dir: Path | None = None,
    encoding: str = "json",
) -> ReplayResult:
    """Feed ``events`` (a file's path, its ``encoding`` one of :data:`FILE_ENCODINGS`; or what a Kafka source's
    polls read, each topic's as configured) through a fresh pipeline; rejected records go to ``dead_letters`` if
    given. With ``outbox_dir`` the alerts go to the configured sinks through an outbox there (the log sink writes at
    once; :func:`drain` delivers the rest), and job ledgers are left out."""
    file_encoding = None
    if isinstance(events, str | os.PathLike):
        if encoding not in FILE_ENCODINGS:
            raise ValueError(f"a file's encoding is one of {', '.join(FILE_ENCODINGS)}, not {encoding!r}")
        source = LengthPrefixedSource if encoding == "otlp_proto" else JsonlSource
        events = (partition_batches(messages) for messages in source(events, batch_size).batches())
        file_encoding = encoding
    pipeline = Pipeline(config)
    samples = Exports(PipelineCollector(pipeline)).samples
    alerting = Alerting(config, samples, deliver=outbox_dir is not None, outbox_dir=outbox_dir, jobs=False)
    transitions: list[Alert] = []

    def rules(models: list[str], now_ms: float) -> None:
        alerts = alerting.tick(pipeline, now_ms, models)
        transitions.extend(a for a in alerts if a.state == "resolved" or a.starts_at_ms == now_ms)

    pipeline.on_evaluate = rules
    n_records = n_rejected = 0
    for batches in events:
        rejected = pipeline.apply_batches(batches, encoding=file_encoding)
        n_records += sum(len(batch.values) for batch in batches)
        n_rejected += sum(letter.n_events for letter in rejected)
        if dead_letters is not None:
            for letter in rejected:
                dead_letters.write(letter.record, letter.invalid.reason, letter.invalid.detail)
    for state in pipeline.states:  # the windows as the file leaves them
        pipeline.evaluate(state.watermark_ms, [state.name])
        rules([state.name], state.watermark_ms)
    if len(pipeline.states):
        rules([""], pipeline.watermark_ms)
    return ReplayResult(pipeline, n_records, n_rejected, pipeline.n_evaluations, transitions, alerting)


@dataclass(frozen=True)
class Drained:
    """What :func:`drain` came to, by HTTP sink: its ``origins`` (``scheme://host:port``, never a path or
    credentials), the alerts it ``delivered`` and ``left`` undelivered; and ``n_dropped`` alerts of any sink that a
    full outbox dropped (``alerts.outbox_size``)."""

    origins: dict[str, str]
    delivered: dict[str, int]
    left: dict[str, int]
    n_dropped: int

    @property
    def complete(self) -> bool:
        """Every alert was delivered."""
        return not self.n_dropped and not any(self.left.values())


def drain(alerting: Alerting, timeout_s: float, every_s: float = 0.1) -> Drained:
    """Deliver a replay's outbox until it is empty or the bound passes: ``timeout_s``, plus the Alertmanager
    sink's ``resolve_hold_s`` (a resolve waits that long after its firing copy reached Alertmanager, so that an
    alert that fired and resolved still pages). Each round sends what is due (failures back off as in the
    daemon); what is left, or was refused by a full disk, is counted per sink."""
    sinks = {name: sink for name, sink in alerting.sinks.items() if isinstance(sink, OutboxSink)}
    holds = [sink.resolve_hold_s for sink in alerting.sinks.values() if isinstance(sink, AlertmanagerSink)]
    deadline = time.monotonic() + timeout_s + max(holds, default=0)
    delivered = dict.fromkeys(sinks, 0)
    while True:
        for name, n in alerting.deliver().items():
            if name in delivered:
                delivered[name] += n
        refused = alerting.snapshot()["refused"]
        left = {name: sink.outbox.count(sink.name) + len(refused.get(name, [])) for name, sink in sinks.items()}
        if not any(left.values()) or time.monotonic() >= deadline:
            break
        time.sleep(min(every_s, max(deadline - time.monotonic(), 0)))
    origins = {name: origin(sink.endpoint) for name, sink in sinks.items()}
    dropped = {sink.outbox.dropped for sink in sinks.values()}  # the sinks share one outbox
    return Drained(origins, delivered, left, max(dropped, default=0))

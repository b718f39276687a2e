"""Replay a JSONL file, or a topic's time range (:class:`~monitor.ingest.backfill.TopicRange`), through the
pipeline as fast as it goes, with evaluations on event time.

A replay evaluates exactly as ``driftwarden run`` does (see
:class:`~monitor.pipeline.Pipeline`): each model at the multiples of
``windows.evaluate_every`` that its own event time crosses, over the events
that came before. It ends with one evaluation of every model as of its latest
event, so its gauges describe the file's last window whatever the batch size.
Alert rules run after every evaluation; their transitions are returned, not
delivered. A replay has no wall clock: no event is too far in the future, no
model goes idle, and nothing is coalesced as a backlog.

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
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from alerts.alert import Alert
from monitor.config import Config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import Exports, PipelineCollector, build_registry
from monitor.ingest import PartitionBatch, partition_batches
from monitor.ingest.file import JsonlDeadLetters, JsonlSource
from monitor.pipeline import Pipeline

__all__ = ["ReplayResult", "replay"]


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
) -> ReplayResult:
    """Feed ``events`` (a JSONL file's path, or what a Kafka source's polls read) through a fresh pipeline;
    rejected records go to ``dead_letters`` if given."""
    if isinstance(events, str | os.PathLike):
        events = (partition_batches(lines) for lines in JsonlSource(events, batch_size).batches())
    pipeline = Pipeline(config)
    alerting = Alerting(config, Exports(PipelineCollector(pipeline)).samples, deliver=False)
    transitions: list[Alert] = []

    def rules(models: list[str], now_ms: float) -> None:
        alerts = alerting.tick(pipeline, now_ms, models)
        transitions.extend(a for a in alerts if a.state == "resolved" or a.starts_at_ms == now_ms)

    pipeline.on_evaluate = rules
    n_records = n_rejected = 0
    for batches in events:
        rejected = pipeline.apply_batches(batches)
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

"""Replay a JSONL file through the pipeline as fast as it goes, with ticks on event time.

Ticks fall on multiples of ``windows.evaluate_every`` in event time: when the
first event at or past a tick arrives, the models are evaluated as of that
tick over the events that came before it. The replay ends with one evaluation over
the windows as they stand at the end of the file, so its gauges describe the
file's last window whatever the batch size. Alert rules run on every tick;
their transitions are returned, not delivered.

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

import math
import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from alerts.alert import Alert
from monitor.alerting import Alerting, AlertsCollector
from monitor.config import Config
from monitor.exporter import PipelineCollector, build_registry
from monitor.pipeline import Pipeline
from monitor.sources.file import JsonlDeadLetters, JsonlSource

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
    events_path: str | os.PathLike[str],
    dead_letters: JsonlDeadLetters | None = None,
    batch_size: int = 2_000,
) -> ReplayResult:
    """Feed ``events_path`` through a fresh pipeline; rejected lines go to ``dead_letters`` if given."""
    pipeline = Pipeline(config)
    alerting = Alerting(config, PipelineCollector(pipeline).collect, deliver=False)
    transitions: list[Alert] = []

    def evaluate(now_ms: float) -> None:
        pipeline.evaluate(now_ms)
        alerts = alerting.tick(pipeline, now_ms)
        transitions.extend(a for a in alerts if a.state == "resolved" or a.starts_at_ms == now_ms)

    every_ms = config.windows.evaluate_every_ms
    next_tick_ms = None
    n_records = n_rejected = n_ticks = 0
    for batch in JsonlSource(events_path, batch_size).batches():
        events, rejected = pipeline.decode(batch)
        n_records += len(batch)
        n_rejected += len(rejected)
        if dead_letters is not None:
            for letter in rejected:
                dead_letters.write(letter.record, letter.invalid.reason, letter.invalid.detail)
        start = 0
        for position, event in enumerate(events):
            event_ms = event["timestamp_ms"]
            if next_tick_ms is None:
                next_tick_ms = _last_tick_before(event_ms, every_ms) + every_ms
            elif event_ms >= next_tick_ms:  # the watermark passes a tick: evaluate what came before
                pipeline.ingest(events[start:position], rejected)
                rejected, start = [], position
                tick_ms = _last_tick_before(event_ms, every_ms)
                evaluate(tick_ms)
                n_ticks += 1
                next_tick_ms = tick_ms + every_ms
        pipeline.ingest(events[start:], rejected)
    if math.isfinite(pipeline.watermark_ms):
        evaluate(pipeline.watermark_ms)
        n_ticks += 1
    return ReplayResult(pipeline, n_records, n_rejected, n_ticks, transitions, alerting)


def _last_tick_before(time_ms: float, every_ms: int) -> float:
    """The latest multiple of ``every_ms`` at or before ``time_ms``."""
    return time_ms // every_ms * every_ms

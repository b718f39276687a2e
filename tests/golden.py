"""The golden exposition's scenario: what ``tests/data/golden.prom`` is the ``/metrics`` of.

The golden events (``tests/data/golden_events.jsonl``) go through a
pipeline whose config gives every family of the metrics spec a series: a
two-event warm-up reference (exported with its id) and a numeric feature (drift), a bias attribute (a slice
attribute too), a rule with a ``retrain`` action (alerts and retraining jobs), two versions of support-bot
and a rule with a ``rollback`` action on their comparison (rollback requests), prices (v2 has its own) and a budget
(the spend, its budget, the window's cost per call, each version's and their comparison's). The
pipeline starts from a checkpoint in which support-bot was saved under an
older config (a state reset), and one more call of summarizer arrives on
another partition than the file's (a producer that does not key by model). A classifier's labels arrive after two
of its calls have left its window (the labelled cohort of the label store). The daemon's own collectors are registered
with fixed values: the consumer lag, checkpoints by outcome, dead letters
that failed. Everything is evaluated at one injected clock, so the exposition
is the same byte for byte on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.config import Config, parse_config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import ConsumerLagCollector, DaemonCollector, Exports, PipelineCollector
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import CheckpointStore
from monitor.run.checkpointer import Checkpointer
from tests.conftest import DATA

__all__ = ["EVALUATED_AT_MS", "GOLDEN", "golden_config", "golden_exports", "golden_pipeline"]

GOLDEN = DATA / "golden.prom"
EVALUATED_AT_MS = 1_772_366_460_000.0  # the injected clock: 2026-03-01T12:01:00Z

CONFIG: dict[str, Any] = {
    "windows": {"size": 4, "min_samples": 1},
    "models": [
        {
            "name": "*",
            "reference": {"warmup": 2},
            "features": [{"name": "input_tokens", "kind": "numeric"}],
            "bias": {"attributes": ["segment.locale"], "outcome": {"field": "finish_reason", "positive": "stop"},
                     "min_group_size": 1},
            "slices": {"attributes": ["segment.locale"], "min_group_size": 1},
            "pricing": {"currency": "USD", "input": 3, "output": 15, "cache_read": 0.3,
                        "versions": {"v2": {"output": 10}}, "budget": {"amount": 100, "per": "1d"}},
        }
    ],
    "alerts": {
        "rules": [{"name": "SlowCalls", "metric": "window_latency_seconds", "selector": {"quantile": "0.5"},
                   "op": ">", "threshold": 1.0, "actions": ["log", "retrain"]},
                  {"name": "CanaryErrors", "metric": "version_comparison",
                   "selector": {"metric": "error_ratio", "stat": "effect"}, "op": ">", "threshold": 0.5,
                   "actions": ["rollback"]}]
    },
}  # fmt: skip
#: What the daemon's own collectors say in the scenario.
LAG = {("llm-events", 0): 7, ("llm-events", 1): 0}
CHECKPOINTS = {"saved": 12, "sink_failed": 1, "save_failed": 0}
DEAD_LETTERS_FAILED = 2
#: The build the scenario reports (a fixed one: the golden file is the same on every Python).
BUILD = ("0.0.0-golden", "3.11.0")
#: A call of summarizer on a partition other than its home (the file's): a split model.
ELSEWHERE = Record(
    b'{"request_id": "g-elsewhere", "timestamp": "2026-03-01T12:00:30Z", "model": "summarizer", "latency_ms": 200}',
    "llm-events",
    1,
    0,
)


#: A classifier's six calls (the window keeps four) and, later, the labels of its first four: two join calls that
#: have left the window (in the label store and its warm-up reference), two join calls still in it.
_CALL = (
    '{"request_id": "c-%d", "timestamp": "2026-03-01T12:00:%02dZ", "model": "classifier", "latency_ms": 300, '
    '"prediction": "%s", "finish_reason": "%s", "score": %s, "segment": {"locale": "%s"}}'
)
_LABEL = (
    '{"type": "feedback", "request_id": "c-%d", "timestamp": "2026-03-01T12:00:50Z", "model": "classifier", '
    '"label": "%s"}'
)
LABELLED = [
    Record((_CALL % (i, 10 + i, predicted, predicted, score, locale)).encode(), "llm-events", 0, 100 + i)
    for i, (predicted, score, locale) in enumerate(
        [("stop", 0.9, "en-US"), ("length", 0.6, "de-DE"), ("stop", 0.8, "de-DE"), ("length", 0.7, "en-US"),
         ("stop", 0.9, "en-US"), ("stop", 0.9, "de-DE")]
    )
] + [
    Record((_LABEL % (i, label)).encode(), "llm-events", 0, 106 + i)
    for i, label in enumerate(["stop", "stop", "length", "length"])
]  # fmt: skip


def golden_config(state_dir: Path) -> Config:
    return parse_config({**CONFIG, "state": {"dir": str(state_dir)}}, environ={})


def golden_pipeline(config: Config, records: list[Record]) -> Pipeline:
    """A pipeline restored from a checkpoint that holds support-bot under an older config, then fed ``records``."""
    pipeline = Pipeline(config)
    saved = pipeline.snapshot()
    saved["states"]["models"]["support-bot"] = {"fingerprint": "shaped by an older config"}
    pipeline.restore(saved)
    pipeline.apply(records)
    pipeline.apply([ELSEWHERE])
    pipeline.apply(LABELLED)
    return pipeline


def golden_exports(config: Config, pipeline: Pipeline) -> Exports:
    """``pipeline`` evaluated at :data:`EVALUATED_AT_MS`, its rules run, in collectors as the daemon builds them."""
    checkpointer = Checkpointer(CheckpointStore(config.state.dir), pipeline.snapshot, "golden")
    checkpointer.n_checkpoints.update(CHECKPOINTS)
    exports = Exports(
        PipelineCollector(pipeline),
        ConsumerLagCollector(lambda: LAG),
        DaemonCollector(checkpointer, lambda: DEAD_LETTERS_FAILED, BUILD),
    )
    alerting = Alerting(config, exports.samples)
    exports.add(AlertsCollector(alerting))
    pipeline.evaluate(now_ms=EVALUATED_AT_MS)
    alerting.tick(pipeline, EVALUATED_AT_MS)
    return exports

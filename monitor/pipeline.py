"""The processing loop's two halves: the per-event hot path and the evaluation tick.

:meth:`Pipeline.apply` decodes a batch of records, groups the valid events by
model, appends them to the models' windows and counters, and returns the
rejected records for the caller to dead-letter (it is :meth:`~Pipeline.decode`
then :meth:`~Pipeline.ingest`, which a replay calls apart to place its ticks
between events). That is all the per-event work there is.

:meth:`Pipeline.evaluate` runs the window statistics on every model at once
and keeps the results the exporter shows until the next tick.

A lock guards the state between the consuming thread, the evaluation tick
and a scrape; it is taken once per batch, never per event.

>>> from monitor.config import parse_config
>>> from monitor.sources import Record
>>> pipeline = Pipeline(parse_config({"windows": {"min_samples": 1}}))
>>> rejected = pipeline.apply([
...     Record(b'{"request_id": "a", "timestamp": 1700000060, "model": "bot", "latency_ms": 900}', "t", 0, 0),
...     Record(b'{"request_id": "b", "timestamp": 1700000061, "model": "bot", "error": "Timeout"}', "t", 0, 1),
...     Record(b'{"request_id": 3, "timestamp": 1700000062, "model": "bot"}', "t", 0, 2)])
>>> [letter.invalid.reason for letter in rejected]
['wrong_type']
>>> pipeline.evaluate(now_ms=pipeline.watermark_ms)
>>> pipeline.evaluations["bot"].traffic.error_ratio
0.5
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from detectors.results import ModelDrift, TrafficResult
from detectors.traffic import TrafficStats
from monitor.config import Config
from monitor.drift import DriftSuite, drift_alpha
from monitor.events import REASONS, Invalid, decode
from monitor.quality import ModelQuality, QualitySuite
from monitor.sources import Record
from monitor.state import ModelState, ModelStates

__all__ = ["DeadLetter", "Evaluation", "Pipeline"]

#: The reference columns the accuracy estimate is calibrated on.
_CALIBRATION = ("score", "label", "prediction")


class DeadLetter(NamedTuple):
    """A rejected record and why."""

    record: Record
    invalid: Invalid


@dataclass(frozen=True)
class Evaluation:
    """One model's latest evaluation.

    ``traffic`` and ``quality`` are None below ``windows.min_samples`` events,
    ``drift`` also until the model's reference is complete.
    """

    evaluated_at_ms: float
    window_events: int
    traffic: TrafficResult | None
    drift: ModelDrift | None = None
    quality: ModelQuality | None = None


class Pipeline:
    """Per-model state fed batch by batch, evaluated on ticks."""

    def __init__(self, config: Config):
        self.config = config
        self.lock = threading.Lock()
        self.states = ModelStates(config)
        self.n_invalid = dict.fromkeys(REASONS, 0)
        self.watermark_ms = float("-inf")
        self.evaluations: dict[str, Evaluation] = {}
        self._traffic_stats = TrafficStats()
        self._drift_suites: dict[str, DriftSuite] = {}
        self._quality_suites: dict[str, QualitySuite] = {}

    def apply(self, records: Iterable[Record]) -> list[DeadLetter]:
        """Decode and ingest a batch; return the rejected records, for the dead-letter queue."""
        events, rejected = self.decode(records)
        self.ingest(events, rejected)
        return rejected

    def decode(
        self, records: Iterable[Record], latest_ms: float = math.inf
    ) -> tuple[list[dict], list[DeadLetter]]:
        """Split a batch into valid events and rejected records; touches no state.

        Events dated after ``latest_ms`` are rejected as ``future_timestamp``: ``run`` passes the wall
        clock plus ``limits.max_clock_skew``, a replay nothing (old events are valid).
        """
        max_bytes = self.config.limits.max_event_bytes
        events = []
        rejected = []
        for record in records:
            event = decode(record.value or b"", max_bytes, latest_ms)  # a Kafka tombstone's value is None
            if type(event) is Invalid:
                rejected.append(DeadLetter(record, event))
            else:
                events.append(event)
        return events, rejected

    def ingest(self, events: list[dict], rejected: Iterable[DeadLetter] = ()) -> None:
        """Append valid events to their models' state and count the rejected ones."""
        by_model: dict[str, list[dict]] = {}
        for event in events:
            group = by_model.get(event["model"])
            if group is None:
                group = by_model[event["model"]] = []
            group.append(event)
        latest_ms = max([event["timestamp_ms"] for event in events], default=self.watermark_ms)
        with self.lock:
            for model, group in by_model.items():
                self.states.ingest(model, group)
            self.watermark_ms = max(self.watermark_ms, latest_ms)
            for letter in rejected:
                self.n_invalid[letter.invalid.reason] += 1

    def snapshot(self) -> dict:
        """Everything a restart needs to carry on as if it never stopped (evaluations are recomputed).

        The arrays are the live ones, not copies: save the snapshot before the next batch is applied.
        """
        with self.lock:
            return {"n_invalid": self.n_invalid, "watermark_ms": self.watermark_ms, "states": self.states.snapshot()}

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot` taken under the same config (see :mod:`monitor.checkpoint`)."""
        with self.lock:
            self.states.restore(snapshot["states"])
            self._drift_suites = {}  # fitted again on the restored references
            self._quality_suites = {}
            self.n_invalid.update((reason, count) for reason, count in snapshot["n_invalid"].items())
            self.watermark_ms = snapshot["watermark_ms"]

    def evaluate(self, now_ms: float) -> None:
        """Compute every model's window statistics as of ``now_ms`` (event time in replay)."""
        windows = self.config.windows
        with self.lock:  # copies of what the tick reads; the statistics run without the lock
            views = {state.name: state.window.view(now_ms, windows.duration_ms) for state in self.states}
            suites = {state.name: self._drift_suite(state) for state in self.states}
            references = {  # a reference, once complete, is fitted once
                state.name: (state.reference.columns(), state.reference.newest_ms)
                for state in self.states
                if state.reference.complete and not suites[state.name].fitted
            }
            labelled = {  # what the accuracy estimate is calibrated on: labels keep arriving
                state.name: state.reference.rows.view(names=_CALIBRATION)
                for state in self.states
                if self._quality_suite(state.name).calibrates
            }
            categories = {
                state.name: {name: list(vocabulary.values) for name, vocabulary in state.categories.items()}
                for state in self.states
            }
        evaluations = {}
        for name, view in views.items():
            n_events = len(view["timestamp_ms"])
            traffic = drift = quality = None
            if n_events >= windows.min_samples:
                traffic = self._traffic_stats.compute(view["latency_ms"], view["failed"])
                suite = suites[name]
                if name in references:
                    suite.fit(*references[name])
                if suite.fitted:
                    drift = suite.score(view, now_ms)
                quality = self._quality_suite(name).evaluate(
                    view, labelled.get(name), categories[name].pop("prediction"), categories[name]
                )
            evaluations[name] = Evaluation(now_ms, n_events, traffic, drift, quality)
        self.evaluations = evaluations

    def _quality_suite(self, name: str) -> QualitySuite:
        suite = self._quality_suites.get(name)
        if suite is None:
            model = self.states[name].model
            suite = self._quality_suites[name] = QualitySuite(model, self.config.windows.min_samples)
        return suite

    def _drift_suite(self, state: ModelState) -> DriftSuite:
        suite = self._drift_suites.get(state.name)
        if suite is None:
            alpha = drift_alpha(state.model.drift, self.config.windows)
            suite = self._drift_suites[state.name] = DriftSuite(state.model, alpha, self.config.windows.min_samples)
        return suite

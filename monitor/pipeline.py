"""The processing loop's two halves: the per-event hot path and the evaluation tick.

:meth:`Pipeline.apply_batches` decodes what a poll read (each partition's
values, :class:`~monitor.ingest.PartitionBatch`), groups the valid events by
model, appends them to the models' windows and counters, and returns the
rejected records for the caller to dead-letter (it is :meth:`~Pipeline.decode`
then :meth:`~Pipeline.ingest`, which a replay calls apart to place its ticks
between events). That is all the per-event work there is.

:meth:`Pipeline.evaluate` runs the window statistics on every model at once
and keeps the results the exporter shows until the next tick.

A lock guards the state between the consuming thread, the evaluation tick
and a scrape; it is taken once per batch, never per event.

>>> from monitor.config import parse_config
>>> from monitor.ingest import Record
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

import logging
import math
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import eq
from typing import NamedTuple

import numpy as np

from detectors.results import ModelDataQuality, ModelDrift, TrafficResult
from detectors.traffic import TrafficStats
from monitor.config import Config
from monitor.evaluate.drift import DriftSuite, drift_alpha
from monitor.evaluate.quality import ModelQuality, QualitySuite
from monitor.evaluate.slices import GroupSlice, SliceSuite
from monitor.evaluate.versions import ModelVersions, evaluate_versions
from monitor.ingest import Partition, PartitionBatch, Record, partition_batches
from monitor.ingest.events import REASONS, Event, Invalid, decode_batch, read_field
from monitor.ingest.otlp import SKIPPED, decode_traces
from monitor.state.columns import COST, FAILED, ID_COLUMNS, LABEL, LATENCY_MS, PREDICTION, SCORE, TIMESTAMP_MS
from monitor.state.model import ModelState, ModelStates
from monitor.state.windows import Window

__all__ = ["CATCH_UP_EVERY", "CATCH_UP_LAG_MS", "DeadLetter", "Evaluation", "Pipeline"]

log = logging.getLogger(__name__)

_FEW_MODELS = 16
#: The reference columns the accuracy estimate is calibrated on.
_CALIBRATION = (SCORE, LABEL, PREDICTION)
#: A model whose boundary is this far behind the wall clock is catching up on a backlog (``run`` only) ...
CATCH_UP_LAG_MS = 3_600_000
#: ... and is then evaluated once per this many boundaries, to bound the cost of reading the backlog.
CATCH_UP_EVERY = 10


class DeadLetter(NamedTuple):
    """A rejected record, why, and how many events it holds (the spans of an OpenTelemetry message rejected for
    one reason share a record: see :mod:`monitor.ingest.otlp`)."""

    record: Record
    invalid: Invalid
    n_events: int = 1


@dataclass(frozen=True)
class Evaluation:
    """One model's latest evaluation.

    ``traffic`` and ``quality`` are None below ``windows.min_samples`` events (``quality`` then holds only the
    labelled cohort's figures, if the cohort has that many calls),
    ``drift`` and ``data_quality`` also until the model's reference is complete, and ``slices`` too, or without
    slice attributes: it holds each slice attribute's groups present in the window (see
    :mod:`monitor.evaluate.slices`). ``versions`` is None until two versions of the model are live.
    """

    evaluated_at_ms: float
    window_events: int
    traffic: TrafficResult | None
    drift: ModelDrift | None = None
    quality: ModelQuality | None = None
    slices: dict[str, dict[str, GroupSlice]] | None = None
    data_quality: ModelDataQuality | None = None
    versions: ModelVersions | None = None


class Pipeline:
    """Per-model state fed batch by batch, each model evaluated as its own event time crosses a boundary.

    ``on_evaluate(models, now_ms)`` runs after each evaluation (the alert rules): with one model's name
    at that model's boundary, and with ``[""]`` (series without a model) when the latest evaluation time
    of all models advances.
    """

    def __init__(self, config: Config, on_evaluate: Callable[[list[str], float], object] | None = None):
        self.config = config
        self.on_evaluate = on_evaluate
        self.lock = threading.Lock()
        self.states = ModelStates(config)
        self.n_invalid = dict.fromkeys(REASONS, 0)
        #: OpenTelemetry spans that were not model calls, by reason (:data:`monitor.ingest.otlp.SKIPPED`).
        self.n_spans_skipped = dict.fromkeys(SKIPPED, 0)
        self._encodings = {topic.name: topic.encoding for topic in config.kafka.topics}
        #: Exceptions caught where a bug could have stopped the daemon, by stage (events for ingest).
        self.n_internal_errors = dict.fromkeys(("ingest", "evaluate", "alerts"), 0)
        self.evaluations: dict[str, Evaluation] = {}
        self.n_evaluations = 0
        self._latest_evaluation_ms = -math.inf  # the clock of series without a model
        self._arrived_ms: dict[str, float] = {}  # wall-clock time of each model's latest event (run only)
        self._settled: set[str] = set()  # idle models evaluated as of their latest event since it arrived
        self._traffic_stats = TrafficStats()
        self._drift_suites: dict[str, DriftSuite] = {}
        self._quality_suites: dict[str, QualitySuite] = {}
        self._slice_suites: dict[str, SliceSuite] = {}

    @property
    def watermark_ms(self) -> float:
        """The latest event time of any model (-inf before the first event)."""
        return max((state.watermark_ms for state in self.states), default=-math.inf)

    def apply(self, records: Iterable[Record], wall_ms: float | None = None) -> list[DeadLetter]:
        """Decode and ingest records (a file's, a test's), grouped by partition: :meth:`apply_batches`."""
        return self.apply_batches(partition_batches(records), wall_ms)

    def apply_batches(
        self, batches: Iterable[PartitionBatch], wall_ms: float | None = None, encoding: str | None = None
    ) -> list[DeadLetter]:
        """Decode and ingest what a poll read; return the rejected records, for the dead-letter queue.

        ``wall_ms`` is the wall clock in ``run``: events dated more than ``limits.max_clock_skew`` after it
        are rejected (``future_timestamp``), and it drives idle models and catch-up (see :meth:`ingest`).
        ``encoding`` is :meth:`decode`'s.
        """
        latest_ms = math.inf if wall_ms is None else wall_ms + self.config.limits.max_clock_skew_ms
        rejected_all = []
        for batch in batches:
            events, rejected, skipped = self.decode(batch, latest_ms, encoding)
            self.ingest(events, rejected, wall_ms, (batch.topic, batch.partition), skipped)
            rejected_all += rejected
        return rejected_all

    def decode(
        self, batch: PartitionBatch, latest_ms: float = math.inf, encoding: str | None = None
    ) -> tuple[list[Event], list[DeadLetter], dict[str, int]]:
        """Split a partition's batch into valid events and rejected records, and count the OpenTelemetry spans
        skipped (by reason; none on a topic of driftwarden's JSON events); touches no state.

        Events dated after ``latest_ms`` are rejected as ``future_timestamp``: ``run`` passes the wall
        clock plus ``limits.max_clock_skew``, a replay nothing (old events are valid). ``encoding`` is the
        batch's (a file's: never looked up by its name); None: its topic's configured one.
        """
        encoding = encoding or self._encodings.get(batch.topic, "json")
        if encoding != "json":
            return self._decode_traces(batch, encoding, latest_ms)
        decoded = decode_batch(batch.values, self.config.limits.max_event_bytes, latest_ms)
        if Invalid not in set(map(type, decoded)):
            return decoded, [], {}  # type: ignore[return-value]  # no Invalid among them
        events = []
        rejected = []
        for index, event in enumerate(decoded):
            if isinstance(event, Invalid):
                rejected.append(DeadLetter(batch.record(index), event))
            else:
                events.append(event)
        return events, rejected, {}

    def _decode_traces(
        self, batch: PartitionBatch, encoding: str, latest_ms: float
    ) -> tuple[list[Event], list[DeadLetter], dict[str, int]]:
        """:meth:`decode` of a topic of OpenTelemetry traces: the spans of a message rejected for one reason are
        dead-lettered together, as a request of their own at their message's offset (see :mod:`monitor.ingest.otlp`)."""
        events: list[Event] = []
        rejected = []
        skipped = dict.fromkeys(SKIPPED, 0)
        for index, raw in enumerate(batch.values):
            decoded = decode_traces(raw or b"", encoding, self.config.limits.max_event_bytes, latest_ms)
            record = batch.record(index)
            if isinstance(decoded, Invalid):
                rejected.append(DeadLetter(record, decoded))
                continue
            events += decoded.events
            rejected += [
                DeadLetter(record._replace(value=letter), invalid, n_spans)
                for letter, invalid, n_spans in decoded.rejected
            ]
            for reason, count in decoded.skipped.items():
                skipped[reason] += count
        return events, rejected, skipped

    def ingest(
        self,
        events: list[Event],
        rejected: Iterable[DeadLetter] = (),
        wall_ms: float | None = None,
        partition: Partition | None = None,
        skipped: dict[str, int] | None = None,
    ) -> None:
        """Append valid events to their models' state, count the rejected ones, and evaluate every model
        whose event time crosses a boundary of ``windows.evaluate_every`` (see :meth:`_ingest_model`).

        ``wall_ms`` is the wall clock in ``run`` (None in a replay): it marks when each model was last heard
        from (:meth:`advance_idle`) and whether a model is catching up (:data:`CATCH_UP_LAG_MS`).
        ``partition`` is where the events came from: a new model's home (see :class:`ModelStates`).
        ``skipped`` counts the OpenTelemetry spans that were not model calls, by reason.
        """
        by_model = _by_model(events)
        with self.lock:
            for letter in rejected:
                self.n_invalid[letter.invalid.reason] += letter.n_events
            for reason, count in (skipped or {}).items():
                self.n_spans_skipped[reason] += count
        for model, group in by_model.items():
            with self.lock:
                state = self.states.state_for(model, len(group), partition)
            if state is not None:
                if wall_ms is not None:
                    self._arrived_ms[state.name] = wall_ms
                    self._settled.discard(state.name)
                self._ingest_model(state, group, wall_ms)

    def _ingest_model(self, state: ModelState, events: list[Event], wall_ms: float | None) -> None:
        """Append one model's events in order; when one carries its event time past a boundary, evaluate
        the model as of that boundary (the last one the event passed) over the events before it."""
        every_ms = self.config.windows.evaluate_every_ms
        timestamps = np.array(read_field(events, "timestamp_ms"), dtype=np.float64)
        watermark_ms = state.watermark_ms
        if math.isinf(watermark_ms):  # the first event starts the clock; there is nothing before it
            watermark_ms = float(timestamps[0])
        if timestamps.max() < _boundary_at_or_before(watermark_ms, every_ms) + every_ms:
            self._append(state, events)
            return
        boundaries = np.maximum.accumulate(np.maximum(timestamps, watermark_ms)) // every_ms * every_ms
        crossings = np.flatnonzero(np.diff(boundaries, prepend=_boundary_at_or_before(watermark_ms, every_ms)))
        start = 0
        for position in crossings.tolist():
            boundary_ms = float(boundaries[position])
            if self._catching_up_skips(state.name, boundary_ms, wall_ms):
                continue
            self._append(state, events[start:position])
            start = position
            self._evaluate_model(state.name, boundary_ms)
        self._append(state, events[start:])

    def _append(self, state: ModelState, events: list[Event]) -> None:
        if not events:
            return
        with self.lock:
            try:
                state.ingest(events)
            except Exception:  # a bug, since the decoder vouched for them: counted and logged, never fatal
                message = "ingesting %d events of %r failed; they are dropped"
                log.exception(message, len(events), state.name, extra={"model": state.name})
                self.n_internal_errors["ingest"] += len(events)

    def _catching_up_skips(self, model: str, boundary_ms: float, wall_ms: float | None) -> bool:
        """While a model's boundary is more than CATCH_UP_LAG_MS behind the wall clock (``run`` reading a
        backlog), it is evaluated only when the boundary enters a new CATCH_UP_EVERY span of evaluations."""
        if wall_ms is None or wall_ms - boundary_ms <= CATCH_UP_LAG_MS:
            return False
        previous = self.evaluations.get(model)
        if previous is None:
            return False
        span_ms = CATCH_UP_EVERY * self.config.windows.evaluate_every_ms
        return boundary_ms // span_ms == previous.evaluated_at_ms // span_ms

    def advance_idle(self, wall_ms: float) -> None:
        """Models that have seen no event for ``windows.idle_after`` of wall-clock time (``run`` only).

        Such a model is first evaluated as of its latest event, as a replay ends: every event it has
        counts. Then, if it is live (its event time within :data:`CATCH_UP_LAG_MS` of the wall clock), its
        event time follows the wall clock, ``wall_ms - idle_after``, evaluated at each boundary that
        crosses: pending alerts complete and a silent model's duration window empties. A backfill keeps
        its own time, as its replay would.
        """
        windows = self.config.windows
        for state in self.states:
            arrived_ms = self._arrived_ms.setdefault(state.name, wall_ms)  # restored models: as if just heard
            if wall_ms - arrived_ms < windows.idle_after_ms or math.isinf(state.watermark_ms):
                continue
            if state.name not in self._settled:
                self._settled.add(state.name)
                self._evaluate_model(state.name, state.watermark_ms)
            idle_ms = wall_ms - windows.idle_after_ms
            if idle_ms <= state.watermark_ms or wall_ms - state.watermark_ms > CATCH_UP_LAG_MS:
                continue
            boundary_ms = _boundary_at_or_before(idle_ms, windows.evaluate_every_ms)
            crossed = boundary_ms > state.watermark_ms
            with self.lock:
                state.watermark_ms = idle_ms
            if crossed:
                self._evaluate_model(state.name, boundary_ms)

    def _evaluate_model(self, model: str, now_ms: float) -> None:
        self.evaluate(now_ms, [model])
        if self.on_evaluate is None:
            return
        scopes = [[model]]
        if now_ms > self._latest_evaluation_ms:
            self._latest_evaluation_ms = now_ms
            scopes.append([""])
        for scope in scopes:
            try:
                self.on_evaluate(scope, now_ms)
            except Exception:
                log.exception("alert rules on %r failed at %s", scope[0], now_ms, extra={"model": scope[0] or None})
                self.n_internal_errors["alerts"] += 1

    def snapshot(self, homed_models: bool = True) -> dict:
        """Everything a restart needs to carry on as if it never stopped (evaluations are recomputed);
        without the models that have a home if not ``homed_models`` (they are saved with their partition,
        :meth:`snapshot_home`).

        The arrays are the live ones, not copies: save the snapshot before the next batch is applied.
        """
        with self.lock:
            return {
                "n_invalid": self.n_invalid,
                "n_spans_skipped": self.n_spans_skipped,
                "states": self.states.snapshot(homed_models),
            }

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot` taken under the same config (see :mod:`monitor.run.checkpoint`)."""
        with self.lock:
            self.states.restore(snapshot["states"])
            self._drift_suites = {}  # fitted again on the restored references
            self._quality_suites = {}
            self._slice_suites = {}
            self.n_invalid.update((reason, count) for reason, count in snapshot["n_invalid"].items())
            self.n_spans_skipped.update(snapshot.get("n_spans_skipped", {}))  # absent before OpenTelemetry topics

    def snapshot_home(self, home: Partition | None) -> dict:
        """The state of the models whose home is ``home``: what moves with that partition to another owner."""
        with self.lock:
            return {"models": self.states.snapshot_home(home)}

    def restore_home(self, snapshot: dict) -> list[str]:
        """Take back a :meth:`snapshot_home` (a partition just assigned); the names of the models restored."""
        with self.lock:
            restored = self.states.restore_models(snapshot["models"])
            self._forget_derived(restored)
            return restored

    def forget(self, homes: Collection[Partition]) -> list[str]:
        """Drop the models at home in ``homes`` (partitions taken away) and all derived from them; their names."""
        with self.lock:
            gone = self.states.forget(homes)
            self._forget_derived(gone)
            self.evaluations = {name: evaluation for name, evaluation in self.evaluations.items() if name not in gone}
            return gone

    def _forget_derived(self, models: Iterable[str]) -> None:
        """Drop what was computed from these models' state (fitted suites, idle bookkeeping)."""
        for name in models:
            self._forget_suites(name)
            self._arrived_ms.pop(name, None)
            self._settled.discard(name)

    def promote_reference(self, model: str, version: str | None, request_id: str) -> bool:
        """Apply a reference promotion asked for (``request_id``) to ``model`` if it is here and has not applied
        it yet (:meth:`ModelState.promote_reference <monitor.state.model.ModelState.promote_reference>`);
        whether the request is done with here (applied, or refused for good)."""
        with self.lock:
            state = next((state for state in self.states if state.name == model), None)
            if state is None:
                return False  # another replica's model, or not seen yet
            if state.promotion_id != request_id:
                state.promotion_id = request_id
                if state.promote_reference(version):
                    self._forget_suites(model)
            return True

    def _forget_suites(self, name: str) -> None:
        """Drop the suites fitted on a model's reference."""
        self._drift_suites.pop(name, None)
        self._quality_suites.pop(name, None)
        self._slice_suites.pop(name, None)

    def evaluate(self, now_ms: float, models: Collection[str] | None = None) -> None:
        """Compute the window statistics of ``models`` (default: all) as of the event time ``now_ms``."""
        windows = self.config.windows
        with self.lock:  # copies of what the tick reads; the statistics run without the lock
            states = [state for state in self.states if models is None or state.name in models]
            views = {  # without the ids, which only the join reads (copying their objects costs the most)
                state.name: state.window.view(now_ms, windows.duration_ms, _evaluated(state.window))
                for state in states
            }
            versions = {}
            for state in states:
                if state.versions.live:
                    reference = state.reference
                    versions[state.name] = state.read_versions(views[state.name])
                    if state.reference is not reference:  # promoted: the suites are fitted on it once complete
                        self._forget_suites(state.name)
            suites = {state.name: self._drift_suite(state) for state in states}
            references = {  # a reference, once complete, is fitted once
                state.name: (state.reference.columns(), state.reference.newest_ms)
                for state in states
                if state.reference.complete and not suites[state.name].fitted
            }
            labelled = {  # what the accuracy estimate is calibrated on: labels keep arriving
                state.name: state.reference.rows.view(names=_CALIBRATION)
                for state in states
                if self._quality_suite(state.name).calibrates
            }
            categories = {
                state.name: {name: list(vocabulary.values) for name, vocabulary in state.categories.items()}
                for state in states
            }
            cohorts = {  # the calls of the last quality.cohort whose labels arrived, wherever their call now is
                state.name: state.labels.cohort(now_ms, state.model.quality.cohort_ms)
                for state in states
                if state.labels is not None
            }
        evaluations = {}
        for name, view in views.items():
            n_events = len(view[TIMESTAMP_MS])
            traffic = drift = quality = slices = data_quality = compared = None
            try:
                if name in versions and len(versions[name].codes) > 1:  # one version: the model's figures are its
                    compared = evaluate_versions(versions[name], view, now_ms)
                if n_events >= windows.min_samples:
                    traffic = self._traffic_stats.compute(view[LATENCY_MS], view[FAILED], view.get(COST))
                    suite, slicing = suites[name], self._slice_suites.get(name)
                    if name in references:
                        suite.fit(*references[name])
                        if slicing is not None:
                            slicing.fit(*references[name], categories[name])
                    classes = categories[name].pop(PREDICTION)
                    if suite.fitted:
                        drift = suite.score(view, now_ms)
                        data_quality = suite.data_quality.score(view)
                    if slicing is not None and slicing.fitted:
                        slices = slicing.score(view, now_ms, classes, cohorts.get(name))
                    quality = self._quality_suite(name).evaluate(
                        view, labelled.get(name), classes, categories[name], cohorts.get(name)
                    )
                elif name in cohorts:  # labels keep joining calls the window no longer holds
                    classes = categories[name].pop(PREDICTION)
                    quality = self._quality_suite(name).evaluate_cohort(cohorts[name], classes, categories[name])
            except Exception:  # a bug for one model's data must not stop the others, nor the daemon
                log.exception("evaluating %r failed; its previous evaluation stands", name, extra={"model": name})
                self.n_internal_errors["evaluate"] += 1
                continue
            evaluations[name] = Evaluation(now_ms, n_events, traffic, drift, quality, slices, data_quality, compared)
        merged = {**self.evaluations, **evaluations}  # in the models' order, whichever was evaluated last
        self.evaluations = {state.name: merged[state.name] for state in self.states if state.name in merged}
        self.n_evaluations += len(evaluations)

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
            if state.model.slices.attributes:  # fitted with it (see evaluate), on the same reference
                self._slice_suites[state.name] = SliceSuite(state.model, alpha, self._quality_suite(state.name))
        return suite


def _evaluated(window: Window) -> tuple[str, ...]:
    """The columns of a window an evaluation reads: all but the calls' ids."""
    return tuple(name for name in window.columns if name not in ID_COLUMNS)


def _by_model(events: list[Event]) -> dict[str, list[Event]]:
    """A batch's events grouped by model, in order: one pass in C per model when they are few."""
    models: list[str] = read_field(events, "model")
    names = dict.fromkeys(models)
    if len(names) == 1:
        return {models[0]: events}
    if len(names) <= _FEW_MODELS:
        return {name: list(compress(events, map(eq, models, repeat(name)))) for name in names}
    by_model: dict[str, list[Event]] = {}
    for model, event in zip(models, events, strict=True):
        group = by_model.get(model)
        if group is None:
            group = by_model[model] = []
        group.append(event)
    return by_model


def _boundary_at_or_before(time_ms: float, every_ms: int) -> float:
    """The latest multiple of ``every_ms`` at or before ``time_ms``."""
    return time_ms // every_ms * every_ms

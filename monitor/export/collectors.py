"""Prometheus exposition of the pipeline, served with ``/metrics``, ``/healthz`` and ``/readyz``.

Every metric is yielded at scrape time by :class:`PipelineCollector` from the
pipeline's own counters and latest evaluations: the hot path never touches a
prometheus-client instrument (it fills numpy histograms a batch at a time),
and the counters are plain numbers a checkpoint can carry across a restart.
Units become Prometheus' own here and only here: milliseconds inside the
code, seconds on the wire. Nothing touches the global registry.

Each collector reads its series once, as :class:`Reading` s of the families
of :mod:`monitor.export.metrics`, and those readings become both the
Prometheus families and the typed samples the alert rules read
(:class:`Exports`): names, help texts and labels come from the spec only.

>>> from monitor.config import parse_config
>>> from monitor.pipeline import Pipeline
>>> registry = build_registry(Pipeline(parse_config({})))
>>> [line for line in exposition(registry).decode().splitlines() if "oversized" in line]
['driftwarden_events_invalid_total{reason="oversized"} 0.0']
"""

from __future__ import annotations

import gzip
import importlib.metadata
import math
import os
import platform
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from alerts.rules import Sample
from detectors.results import QualityResult
from monitor.export import metrics as contract
from monitor.export.metrics import MetricSpec
from monitor.export.report import (
    LIBRARY_FILE,
    DriftReports,
    ReportBusy,
    ReportFailed,
    ReportUnavailable,
    evidently_library,
)
from monitor.export.server import HttpServer, Request, Response
from monitor.export.webconfig import WebConfig
from monitor.pipeline import Pipeline
from monitor.run.checkpointer import Checkpointer
from monitor.state.histogram import Histogram

__all__ = [
    "Buckets",
    "ConsumerLagCollector",
    "DaemonCollector",
    "Exports",
    "MetricsServer",
    "PipelineCollector",
    "Reading",
    "SpecCollector",
    "build_registry",
    "families",
    "samples",
    "exposition",
    "write_exposition",
]


class Buckets(NamedTuple):
    """A histogram's reading: cumulative counts by upper bound (seconds, ``+Inf`` last) and the sum (seconds)."""

    counts: list[tuple[str, float] | tuple[str, float, Exemplar]]  # an exemplar where a traced call fell
    sum: float


class Reading(NamedTuple):
    """One series of the contract as a collector reads it: its family, its label values, its value."""

    metric: MetricSpec
    labels: tuple[str, ...]
    value: float | Buckets


class SpecCollector:
    """A collector of families of the contract: every family of :attr:`metrics`, filled from :meth:`readings`.

    Prometheus gets the families (:meth:`collect`), the alert rules typed
    samples of the same readings (:func:`samples`), so the two cannot
    disagree. ``models`` lets a collector skip other models' series (it may
    yield them anyway: :func:`samples` filters); ``""`` stands for series
    without a ``model`` label.
    """

    metrics: tuple[MetricSpec, ...] = ()

    def readings(self, models: Collection[str] | None = None) -> Iterable[Reading]:
        raise NotImplementedError

    def collect(self) -> list[Metric]:
        return families(self.metrics, self.readings())


_Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
_FAMILIES: dict[str, type[_Family]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
}


def families(metrics: Iterable[MetricSpec], readings: Iterable[Reading]) -> list[Metric]:
    """The Prometheus families of ``metrics`` (each one, with samples or without), filled from ``readings``.

    >>> from monitor.export.metrics import DRIFT_SHARE
    >>> [family] = families([DRIFT_SHARE], [Reading(DRIFT_SHARE, ("bot",), 0.5)])
    >>> family.name, family.documentation == DRIFT_SHARE.help, family.samples[0].value
    ('driftwarden_drift_share', True, 0.5)
    """
    built: dict[MetricSpec, _Family] = {
        spec: _FAMILIES[spec.type](spec.name, spec.help, labels=list(spec.labels)) for spec in metrics
    }
    for metric, values, value in readings:
        family = built[metric]  # a reading outside the collector's families is a bug: KeyError
        labels = _shown(values)
        if isinstance(family, HistogramMetricFamily):
            assert isinstance(value, Buckets), metric.name
            family.add_metric(labels, value.counts, sum_value=value.sum)
        else:
            assert not isinstance(value, Buckets), metric.name
            family.add_metric(labels, value)
    return list(built.values())


def _shown(values: tuple[str, ...]) -> list[str]:
    """Label values as exported (:func:`shown`)."""
    return [value if value and value[-1] != ")" else shown(value) for value in values]


def shown(value: str) -> str:
    """A label value as exported: ``""`` (which Prometheus reads as no label) as
    :data:`~monitor.export.metrics.EMPTY`, and a value already of that form in one more pair of parentheses,
    so that no two values, whatever producers send, meet in one series.

    >>> [shown(value) for value in ("de", "", "(empty)", "((empty))", "(empty")]
    ['de', '(empty)', '((empty))', '(((empty)))', '(empty']
    """
    depth = (len(value) - len("empty")) // 2
    if not value or (depth > 0 and value == "(" * depth + "empty" + ")" * depth):
        return f"({value})" if value else contract.EMPTY
    return value


def unshown(value: str) -> str:
    """The value a label value :func:`shown` was exported from: its inverse (alert state checkpointed before alerts
    carried the values producers sent held them shown).

    >>> [unshown(shown(value)) for value in ("de", "", "(empty)", "((empty))", "(empty")]
    ['de', '', '(empty)', '((empty))', '(empty']
    """
    if value == contract.EMPTY:
        return ""
    depth = (len(value) - len("empty")) // 2
    return value[1:-1] if depth > 1 and value == "(" * depth + "empty" + ")" * depth else value


def samples(readings: Iterable[Reading], models: Collection[str] | None = None) -> Iterator[Sample]:
    """The rules' samples of ``readings`` (a histogram's ``_count`` and ``_sum``) of ``models`` (None: all), with
    the label values producers sent: they are :func:`shown` only where they leave the process as labels (the
    exposition, Alertmanager).

    >>> from monitor.export.metrics import LABEL_DELAY
    >>> list(samples([Reading(LABEL_DELAY, ("bot",), Buckets([("1.0", 2), ("+Inf", 3)], 4.5))], models={"bot"}))
    ... # doctest: +NORMALIZE_WHITESPACE
    [Sample(name='driftwarden_label_delay_seconds_count', labels={'model': 'bot'}, value=3),
     Sample(name='driftwarden_label_delay_seconds_sum', labels={'model': 'bot'}, value=4.5)]
    """
    for metric, values, value in readings:
        if models is not None and dict(zip(metric.labels, values)).get("model", "") not in models:
            continue
        labels = dict(zip(metric.labels, values))
        if isinstance(value, Buckets):
            count, total = metric.sample_names
            yield Sample(count, labels, value.counts[-1][1])
            yield Sample(total, dict(labels), value.sum)
        else:
            yield Sample(metric.name, labels, value)


class PipelineCollector(SpecCollector):
    """The contract's families read from a :class:`~monitor.pipeline.Pipeline`: its counters and evaluations."""

    metrics = contract.PIPELINE + contract.EVALUATION

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def readings(self, models: Collection[str] | None = None) -> list[Reading]:
        """The series of ``models`` (None: all), those without a model label when ``""`` is among them."""
        pipeline = self.pipeline
        with pipeline.lock:  # one consistent snapshot, built before the scrape writes anything
            states = [state for state in pipeline.states if models is None or state.name in models]
            readings = [*_state(states), *_feedback(states)]
            currencies = {state.name: state.spend.currency for state in states if state.spend is not None}
            readings += (
                Reading(contract.SPLIT_MODEL_EVENTS, (state.name,), pipeline.states.n_split_events[state.name])
                for state in states
                if state.name in pipeline.states.n_split_events
            )
            readings += (
                Reading(contract.STATE_RESET, (model, reason), 1)
                for model, reason in pipeline.states.resets.items()
                if models is None or model in models
            )
            if models is None or "" in models:
                readings += _process(pipeline)
        evaluations = pipeline.evaluations
        if models is not None:
            evaluations = {model: evaluation for model, evaluation in evaluations.items() if model in models}
        return readings + [
            *_evaluations(evaluations, currencies), *_drift(evaluations), *_data_quality(evaluations),
            *_quality(evaluations), *_slices(evaluations), *_cohort(evaluations), *_versions(evaluations),
        ]


def _process(pipeline: Pipeline) -> Iterator[Reading]:
    """The pipeline's series without a model label."""
    for reason, count in pipeline.n_invalid.items():
        yield Reading(contract.EVENTS_INVALID, (reason,), count)
    yield Reading(contract.EVENTS_UNMONITORED, (), pipeline.states.n_unmonitored_events)
    for reason, count in pipeline.n_spans_skipped.items():
        yield Reading(contract.SPANS_SKIPPED, (reason,), count)
    yield Reading(contract.LABEL_VALUES_DROPPED, ("*", "model"), pipeline.states.n_folded_events)
    for stage, count in pipeline.n_internal_errors.items():
        yield Reading(contract.INTERNAL_ERRORS, (stage,), count)


def _state(states: list) -> Iterator[Reading]:
    """Each model's counters and histograms."""
    for state in states:
        for kind, count in state.n_events.items():
            yield Reading(contract.EVENTS, (state.name, kind), count)
        for direction, count in state.n_tokens.items():
            yield Reading(contract.TOKENS, (state.name, direction), count)
        spend = state.spend
        if spend is not None:
            yield Reading(contract.COST, (state.name, spend.currency), spend.total)
            if spend.budget_per_second is not None:
                yield Reading(contract.COST_BUDGET, (state.name, spend.currency), spend.budget_per_second)
        reference = state.reference
        yield Reading(contract.REFERENCE_EVENTS, (state.name,), len(reference))
        if reference.id is not None:
            yield Reading(contract.REFERENCE_INFO, (state.name, reference.id, reference.source), 1)
        for signal, count in state.changes.n_changes.items():
            yield Reading(contract.CHANGES, (state.name, signal, state.changes.method), count)
        yield Reading(contract.REQUEST_LATENCY, (state.name,), _buckets(state.latency))
        yield Reading(contract.TIME_TO_FIRST_TOKEN, (state.name,), _buckets(state.ttft))
        yield Reading(contract.LABEL_DELAY, (state.name,), _buckets(state.join.delay))


def _feedback(states: list) -> Iterator[Reading]:
    for state in states:
        join = state.join
        yield Reading(contract.FEEDBACK_PENDING, (state.name,), join.n_pending)
        for result, count in (("joined", join.n_joined), ("expired", join.n_expired), ("dropped", join.n_dropped)):
            yield Reading(contract.FEEDBACK, (state.name, result), count)


def _buckets(histogram: Histogram) -> Buckets:
    """A histogram of milliseconds as Prometheus reads it, in seconds, with its exemplars (OpenMetrics shows them)."""
    bounds = [floatToGoString(bound / 1000.0) for bound in histogram.bounds] + ["+Inf"]
    counts: list[tuple[str, float] | tuple[str, float, Exemplar]] = list(
        zip(bounds, histogram.cumulative_counts().tolist())
    )
    for bucket, (trace_id, value_ms, timestamp_ms) in histogram.exemplars.items():
        counts[bucket] = (
            *counts[bucket],
            Exemplar({"trace_id": trace_id.lower()}, value_ms / 1000.0, timestamp_ms / 1000.0),
        )
    return Buckets(counts, histogram.total / 1000.0)


def _evaluations(evaluations: dict, currencies: dict[str, str]) -> Iterator[Reading]:
    """Window size, traffic and time of each model's latest evaluation (cost in each model's ``currencies``)."""
    for model, evaluation in evaluations.items():
        yield Reading(contract.WINDOW_EVENTS, (model,), evaluation.window_events)
        yield Reading(contract.LAST_EVALUATION, (model,), evaluation.evaluated_at_ms / 1000.0)
        traffic = evaluation.traffic
        if traffic is None:
            continue
        yield Reading(contract.ERROR_RATIO, (model,), traffic.error_ratio)
        for quantile, value_ms in traffic.latency_quantiles_ms:
            yield Reading(contract.WINDOW_LATENCY, (model, str(quantile)), value_ms / 1000.0)
        if model in currencies:
            for quantile, cost in traffic.cost_quantiles:
                yield Reading(contract.WINDOW_COST, (model, currencies[model], str(quantile)), cost)


#: ``driftwarden_quality``'s metrics, from the fields of a QualityResult.
_QUALITY_METRICS = tuple(name for name in QualityResult.__dataclass_fields__ if not name.startswith("n_"))
_BIAS_METRICS = ("demographic_parity_difference", "disparate_impact_ratio", "equalized_odds_difference")


def _quality(evaluations: dict) -> Iterator[Reading]:
    """Quality proxies, the accuracy estimate and fairness of each model's latest window (NaN left out)."""
    for model, evaluation in evaluations.items():
        result = evaluation.quality
        if result is None:
            continue
        figures = _named(result.quality, _QUALITY_METRICS)
        if result.estimate is not None:
            estimate = result.estimate
            figures.update(
                estimated_accuracy=estimate.estimated,
                estimated_accuracy_lower=estimate.lower,
                estimated_accuracy_upper=estimate.upper,
            )
        yield from _figures(contract.QUALITY, (model,), figures)
        for attribute, fairness in result.bias.items():
            for name in _BIAS_METRICS:
                value = getattr(fairness, name)
                if not math.isnan(value):
                    yield Reading(contract.BIAS, (model, attribute, name), value)
            for group, figures in fairness.groups.items():
                yield Reading(contract.SEGMENT_EVENTS, (model, attribute, group), figures.n)
                if figures.sufficient:
                    yield Reading(contract.SEGMENT_OUTCOME_RATIO, (model, attribute, group), figures.outcome_rate)


#: ``driftwarden_slice_quality``'s metrics: the labelled ones of a QualityResult.
_LABELLED_METRICS = ("label_coverage", "accuracy", "precision", "recall", "f1", "mae", "rmse")
#: A labelled cohort's (``driftwarden_cohort_quality``, ``driftwarden_slice_cohort_quality``): the same but
#: the coverage (every call of a cohort has a label).
_COHORT_METRICS = _LABELLED_METRICS[1:]


def _cohort(evaluations: dict) -> Iterator[Reading]:
    """Realized figures of each model's labelled cohort, its span, the estimate beside the truth (NaN left out)."""
    for model, evaluation in evaluations.items():
        cohort = evaluation.quality.cohort if evaluation.quality is not None else None
        if cohort is None:
            continue
        yield Reading(contract.COHORT_CALLS, (model,), cohort.n_labelled)
        yield Reading(contract.COHORT_OLDEST_CALL, (model,), cohort.oldest_ms / 1000.0)
        yield Reading(contract.COHORT_NEWEST_CALL, (model,), cohort.newest_ms / 1000.0)
        figures = _named(cohort.quality, _COHORT_METRICS)
        if cohort.estimate is not None:
            figures.update(
                estimated_accuracy=cohort.estimate.estimated,
                estimated_accuracy_lower=cohort.estimate.lower,
                estimated_accuracy_upper=cohort.estimate.upper,
                scored_accuracy=cohort.scored_accuracy,
                estimate_error=cohort.estimate_error,
            )
        yield from _figures(contract.COHORT_QUALITY, (model,), figures)
        for attribute, fairness in cohort.bias.items():
            if not math.isnan(fairness.equalized_odds_difference):
                labels = (model, attribute, "equalized_odds_difference")
                yield Reading(contract.COHORT_BIAS, labels, fairness.equalized_odds_difference)


def _drift(evaluations: dict) -> Iterator[Reading]:
    """The latest drift evaluation of every model whose reference is complete."""
    for model, evaluation in evaluations.items():
        drift = evaluation.drift
        if drift is None:
            continue
        yield Reading(contract.DRIFT_SHARE, (model,), drift.drift_share)
        yield Reading(contract.REFERENCE_AGE, (model,), drift.reference_age_ms / 1000.0)
        for feature, result in drift.features.items():
            labels = (model, feature, result.method)
            yield Reading(contract.DRIFT_SCORE, labels, result.statistic)
            yield Reading(contract.DRIFT_THRESHOLD, labels, result.threshold)
            if result.p_value is not None:
                yield Reading(contract.DRIFT_P_VALUE, labels, result.p_value)
            yield Reading(contract.DRIFT_DETECTED, (model, feature), float(result.drifted))


def _data_quality(evaluations: dict) -> Iterator[Reading]:
    """The latest data-quality checks of every model whose reference is complete."""
    for model, evaluation in evaluations.items():
        if evaluation.data_quality is None:
            continue
        for feature, checks in evaluation.data_quality.checks.items():
            for check, result in checks.items():
                labels = (model, feature, check)
                yield Reading(contract.DATA_QUALITY_SHARE, labels, result.share)
                yield Reading(contract.DATA_QUALITY_REFERENCE_SHARE, labels, result.reference_share)
                yield Reading(contract.DATA_QUALITY_P_VALUE, labels, result.p_value)
                yield Reading(contract.DATA_QUALITY_THRESHOLD, labels, result.threshold)
                yield Reading(contract.DATA_QUALITY_FLAGGED, labels, float(result.flagged))


def _slices(evaluations: dict) -> Iterator[Reading]:
    """Each slice group's calls, and the drift share, flagged data-quality share and realized quality of those
    large enough; its calls in the labelled cohort and their realized quality (NaN left out)."""
    for model, evaluation in evaluations.items():
        cohort = evaluation.quality is not None and evaluation.quality.cohort is not None
        for attribute, groups in (evaluation.slices or {}).items():
            for group, figures in groups.items():
                labels = (model, attribute, group)
                yield Reading(contract.SLICE_EVENTS, labels, figures.n)
                if figures.drift is not None:
                    yield Reading(contract.SLICE_DRIFT_SHARE, labels, figures.drift.drift_share)
                if figures.data_quality is not None:
                    yield Reading(contract.SLICE_DATA_QUALITY, labels, figures.flagged_share)
                if figures.quality is not None:
                    yield from _figures(contract.SLICE_QUALITY, labels, _named(figures.quality, _LABELLED_METRICS))
                if cohort:
                    yield Reading(contract.SLICE_COHORT_CALLS, labels, figures.n_cohort)
                if figures.cohort is not None:
                    yield from _figures(contract.SLICE_COHORT_QUALITY, labels, _named(figures.cohort, _COHORT_METRICS))


def _versions(evaluations: dict) -> Iterator[Reading]:
    """Each version's figures in the latest window, and each candidate's comparison with the baseline and its
    verdict (a figure without data, or an interval not yet bounded, left out)."""
    for model, evaluation in evaluations.items():
        versions = evaluation.versions
        if versions is None:
            continue
        for version, figures in versions.figures.items():
            labels = (model, version)
            yield Reading(contract.VERSION_CALLS, labels, figures.n_calls)
            yield Reading(contract.VERSION_TRAFFIC_SHARE, labels, figures.traffic_share)
            for quantile, value_ms in figures.traffic.latency_quantiles_ms:
                yield Reading(contract.VERSION_LATENCY, (*labels, str(quantile)), value_ms / 1000.0)
            means = {metric: mean for metric, mean in figures.means.items() if metric != "latency"}  # of logs
            yield from _figures(contract.VERSION_QUALITY, labels, means)
        if versions.baseline is not None:
            yield Reading(contract.VERSION_BASELINE, (model, versions.baseline), 1)
        for version, comparison in versions.comparisons.items():
            compared = (model, version, str(versions.baseline))
            yield Reading(contract.VERSION_VERDICT, compared, comparison.verdict)
            calls = comparison.metrics["error_ratio"]  # every call has it
            yield Reading(contract.VERSION_COMPARISON_CALLS, (*compared, "baseline"), calls.n_baseline)
            yield Reading(contract.VERSION_COMPARISON_CALLS, (*compared, "candidate"), calls.n_candidate)
            for metric, result in comparison.metrics.items():
                if math.isnan(result.effect):  # a side has no value of it
                    continue
                figures = _finite({"effect": result.effect, "lower": result.lower, "upper": result.upper})
                if metric == "latency":  # of log latency: as the ratio of the geometric means (left out past a float)
                    figures = _finite({stat: _exp(value) for stat, value in figures.items()})
                yield from _figures(contract.VERSION_COMPARISON, (*compared, metric), figures)
                yield Reading(contract.VERSION_COMPARISON, (*compared, metric, "p_value"), result.p_value)
            effect, lower, upper = (value / 1000.0 for value in comparison.latency_p95_ms)
            p95 = _finite({"effect": effect, "lower": lower, "upper": upper})  # 1e308 ms calls overflow its bounds
            yield from _figures(contract.VERSION_COMPARISON, (*compared, "latency_p95"), p95)
            slower = {"effect": comparison.latency_slower}
            yield from _figures(contract.VERSION_COMPARISON, (*compared, "latency_slower"), slower)
            for column, distance in comparison.distances.items():
                distance_labels = (*compared, f"{column}_distance")
                yield from _figures(contract.VERSION_COMPARISON, distance_labels, {"effect": distance})


def _finite(figures: dict[str, float]) -> dict[str, float]:
    """The figures with +-inf (an interval not yet bounded on that side) as NaN, which is left out."""
    return {name: value if math.isfinite(value) else math.nan for name, value in figures.items()}


def _exp(value: float) -> float:
    """``exp(value)``, +inf where a float cannot hold it (a log ratio of latencies 1e300 times apart).

    >>> _exp(0.0), _exp(1_000.0), _exp(-math.inf)
    (1.0, inf, 0.0)
    """
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def _named(quality: QualityResult, metrics: tuple[str, ...]) -> dict[str, float]:
    """The fields ``metrics`` of ``quality``, by name."""
    return {name: getattr(quality, name) for name in metrics}


def _figures(spec: MetricSpec, labels: tuple[str, ...], figures: dict[str, float]) -> Iterator[Reading]:
    """One reading of ``spec`` per figure, its name the last label (NaN, a figure without data, left out)."""
    for name, value in figures.items():
        if not math.isnan(value):
            yield Reading(spec, (*labels, name), value)


class ConsumerLagCollector(SpecCollector):
    """``driftwarden_consumer_lag`` from a callable giving messages not yet read per (topic, partition)."""

    metrics = contract.CONSUMER

    def __init__(self, lag: Callable[[], dict[tuple[str, int], int]]):
        self.lag = lag

    def readings(self, models: Collection[str] | None = None) -> Iterator[Reading]:
        for (topic, partition), lag in sorted(self.lag().items()):
            yield Reading(contract.CONSUMER_LAG, (topic, str(partition)), lag)


class DaemonCollector(SpecCollector):
    """The daemon's own health: checkpoints by outcome, dead letters that failed to send, and its build
    (``build``: the driftwarden release and the Python version; this process's by default)."""

    metrics = contract.DAEMON

    def __init__(
        self, checkpointer: Checkpointer, n_dead_letters_failed: Callable[[], int], build: tuple[str, str] | None = None
    ):
        self.checkpointer = checkpointer
        self.n_dead_letters_failed = n_dead_letters_failed
        self.build = build or (importlib.metadata.version("driftwarden"), platform.python_version())

    def readings(self, models: Collection[str] | None = None) -> Iterator[Reading]:
        for result, count in self.checkpointer.n_checkpoints.items():
            yield Reading(contract.CHECKPOINTS, (result,), count)
        yield Reading(contract.DEAD_LETTERS_FAILED, (), self.n_dead_letters_failed())
        yield Reading(contract.BUILD_INFO, self.build, 1)


class Exports:
    """The collectors of one process, read two ways: Prometheus families and typed samples for the rules.

    :attr:`registry` serves ``/metrics``; :meth:`samples` gives the alert
    rules the same readings as :class:`~alerts.rules.Sample`, of the models
    a tick evaluates only, and of the collectors that yield a sample the
    rules read.
    """

    def __init__(self, *collectors: SpecCollector):
        self.registry = CollectorRegistry(auto_describe=False)
        self.collectors: list[SpecCollector] = []
        for collector in collectors:
            self.add(collector)

    def add(self, collector: SpecCollector) -> None:
        self.collectors.append(collector)
        self.registry.register(collector)

    def samples(self, models: Collection[str] | None = None, names: Collection[str] | None = None) -> list[Sample]:
        """The samples of ``models`` (None: all; ``""``: series without a model label) named in ``names``."""
        found = []
        for collector in self.collectors:
            if names is not None and not any(name in names for spec in collector.metrics for name in spec.sample_names):
                continue
            for sample in samples(collector.readings(models), models):
                if names is None or sample.name in names:
                    found.append(sample)
        return found


def build_registry(pipeline: Pipeline, *collectors: SpecCollector) -> CollectorRegistry:
    """A fresh registry holding the pipeline's collector and any others (the daemon adds consumer lag)."""
    return Exports(PipelineCollector(pipeline), *collectors).registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``, as ``/metrics`` serves it."""
    return generate_latest(registry)


class MetricsServer:
    """HTTP endpoints for Prometheus and Kubernetes, served in a thread by :class:`~monitor.export.server.HttpServer`.

    ``/metrics`` is the exposition (gzipped or OpenMetrics when the scraper
    asks); ``/healthz`` answers 200 while the process serves; ``/readyz``
    answers 200 when ``ready()`` returns None, else 503 with the reason it returned. With ``report`` (a
    :class:`~monitor.export.report.DriftReports`), ``/report?model=NAME`` answers the
    model's drift report with its Content-Security-Policy, 404 with the
    reason when there is none, 503 with ``Retry-After`` while a page is being
    drawn; ``/report/evidently-VERSION.js`` is the script the pages load.
    ``web`` brings TLS and basic authentication; the probes, which show
    nothing, are open to Kubernetes without a password.
    ``port=0`` picks a free port, readable from :attr:`port` at once.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Callable[[], str | None] = lambda: None,
        report: DriftReports | None = None,
        web: WebConfig | None = None,
        timeout_s: float = 5.0,
        max_connections: int = 64,
    ):
        self.registry = registry
        self.ready = ready
        self.report = report
        self._server = HttpServer(
            self._respond,
            host,
            port,
            web=web,
            timeout_s=timeout_s,
            max_connections=max_connections,
            public_paths=_PROBES,
        )
        self.port = self._server.port

    def start(self) -> MetricsServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self.report is not None:
            self.report.close()

    def _respond(self, request: Request) -> Response:
        path = request.path
        if path == "/metrics":
            return self._metrics(request)
        if path == "/healthz":
            return Response.text(200, "ok\n")
        if path == "/readyz":
            unready = self.ready()
            return Response.text(200, "ready\n") if unready is None else Response.text(503, f"not ready: {unready}\n")
        if path == "/report" and self.report is not None:
            return _report(self.report, request.query.get("model", [""])[0])
        if path == f"/report/{LIBRARY_FILE}" and self.report is not None:
            return Response(200, evidently_library(), "text/javascript; charset=utf-8", _LIBRARY_HEADERS)
        return Response.text(404, "try /metrics, /healthz, /readyz or /report?model=NAME\n")

    def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(self.registry)
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            return Response(200, gzip.compress(body, compresslevel=6), content_type, (("Content-Encoding", "gzip"),))
        return Response(200, body, content_type)


def _report(reports: DriftReports, model: str) -> Response:
    try:
        page = reports.page(model)
    except ReportUnavailable as error:
        return Response.text(404, f"{error.args[0]}\n")
    except ReportBusy as error:
        retry = f"{error.retry_after_s}"
        return Response.text(503, f"{error.args[0]}; try again in {retry} s\n", ("Retry-After", retry))
    except ReportFailed as error:
        return Response.text(500, f"{error.args[0]}\n")
    headers = (("Content-Security-Policy", page.content_security_policy), *_PAGE_HEADERS)
    return Response(200, page.html.encode(), "text/html; charset=utf-8", headers)


_PROBES = frozenset({"/healthz", "/readyz"})
_PAGE_HEADERS = (("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"))
#: Named by version: a browser keeps it (privately: it may have needed a password).
_LIBRARY_HEADERS = (("Cache-Control", "private, max-age=86400, immutable"),)


def write_exposition(registry: CollectorRegistry, path: str | os.PathLike[str]) -> None:
    """Write the exposition to ``path`` atomically (temp file, fsync, rename).

    The file suits node_exporter's textfile collector as well as a person.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(exposition(registry))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)

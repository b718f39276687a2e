"""Prometheus exposition of the pipeline, served with ``/metrics``, ``/healthz`` and ``/readyz``.

Every metric is yielded at scrape time by :class:`PipelineCollector` from the
pipeline's own counters and latest evaluations: the hot path never touches a
prometheus-client instrument (it fills numpy histograms a batch at a time),
and the counters are plain numbers a checkpoint can carry across a restart.
Units become Prometheus' own here and only here: milliseconds inside the
code, seconds on the wire. Nothing touches the global registry.

>>> from monitor.config import parse_config
>>> from monitor.pipeline import Pipeline
>>> registry = build_registry(Pipeline(parse_config({})))
>>> [line for line in exposition(registry).decode().splitlines() if "oversized" in line]
['driftwarden_events_invalid_total{reason="oversized"} 0.0']
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from detectors.results import QualityResult
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
from monitor.state.vocabulary import OTHER

__all__ = [
    "ConsumerLagCollector",
    "DaemonCollector",
    "MetricsServer",
    "PipelineCollector",
    "build_registry",
    "exposition",
    "write_exposition",
]


class PipelineCollector:
    """Yields the metrics contract's families from a :class:`~monitor.pipeline.Pipeline`."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def collect(self) -> list[Metric]:
        pipeline = self.pipeline
        with pipeline.lock:  # one consistent snapshot, built before the scrape writes anything
            states = list(pipeline.states)
            families = [
                *self._counters(states),
                _histogram(
                    "driftwarden_request_latency_seconds",
                    "End-to-end latency of model calls.",
                    ((state.name, state.latency) for state in states),
                ),
                _histogram(
                    "driftwarden_time_to_first_token_seconds",
                    "Time to the first token of streamed model calls.",
                    ((state.name, state.ttft) for state in states),
                ),
                _histogram(
                    "driftwarden_label_delay_seconds",
                    "Time from a model call to its feedback (0 when the feedback came first), observed at the join.",
                    ((state.name, state.join.delay) for state in states),
                ),
                *_feedback(states),
            ]
        evaluations = pipeline.evaluations
        return families + [*self._evaluations(evaluations), *_drift(evaluations), *_quality(evaluations)]

    def _counters(self, states: list) -> Iterator[Metric]:
        pipeline = self.pipeline
        events = CounterMetricFamily(
            "driftwarden_events", "Valid events consumed, by model and type.", labels=["model", "type"]
        )
        tokens = CounterMetricFamily("driftwarden_tokens", "Tokens used by model calls.", labels=["model", "direction"])
        for state in states:
            for kind, count in state.n_events.items():
                events.add_metric([state.name, kind], count)
            for direction, count in state.n_tokens.items():
                tokens.add_metric([state.name, direction], count)
        invalid = CounterMetricFamily(
            "driftwarden_events_invalid", "Events rejected and dead-lettered, by reason.", labels=["reason"]
        )
        for reason, count in pipeline.n_invalid.items():
            invalid.add_metric([reason], count)
        unmonitored = CounterMetricFamily(
            "driftwarden_events_unmonitored", "Valid events of models that no config entry monitors."
        )
        unmonitored.add_metric([], pipeline.states.n_unmonitored_events)
        dropped = CounterMetricFamily(
            "driftwarden_label_values_dropped",
            f"Observations whose label value was folded into {OTHER} by a cardinality cap "
            "(metric '*' is every per-model metric).",
            labels=["metric", "label"],
        )
        dropped.add_metric(["*", "model"], pipeline.states.n_folded_events)
        changes = CounterMetricFamily(
            "driftwarden_changes",
            "Changes found by the online change detector in a window summary (latency_p50, latency_p95, "
            "error_ratio), one per detection: alert on increase().",
            labels=["model", "metric", "method"],
        )
        reference_events = GaugeMetricFamily(
            "driftwarden_reference_events",
            "Events in the model's drift reference (a warm-up reference is complete at its configured size).",
            labels=["model"],
        )
        for state in states:
            reference_events.add_metric([state.name], len(state.reference))
            for signal, count in state.changes.n_changes.items():
                changes.add_metric([state.name, signal, state.changes.method], count)
        internal = CounterMetricFamily(
            "driftwarden_internal_errors",
            "Exceptions caught where a bug would have stopped the daemon, by stage (ingest counts the events "
            "dropped, evaluate and alerts the model evaluations or rule runs that failed); the log has the trace.",
            labels=["stage"],
        )
        for stage, count in pipeline.n_internal_errors.items():
            internal.add_metric([stage], count)
        resets = GaugeMetricFamily(
            "driftwarden_state_reset",
            "1 for a model whose saved state was not restored at this start, by reason: config_changed (its "
            "config shapes its state differently now) or unreadable (the saved state did not fit).",
            labels=["model", "reason"],
        )
        for model, reason in pipeline.states.resets.items():
            resets.add_metric([model, reason], 1)
        yield from (events, invalid, unmonitored, tokens, dropped, changes, reference_events, internal, resets)

    def _evaluations(self, evaluations: dict) -> Iterator[Metric]:
        window_events = GaugeMetricFamily(
            "driftwarden_window_events", "Inference events in the latest evaluated window.", labels=["model"]
        )
        quantiles = GaugeMetricFamily(
            "driftwarden_window_latency_seconds",
            "Latency quantiles over the latest evaluated window.",
            labels=["model", "quantile"],
        )
        error_ratio = GaugeMetricFamily(
            "driftwarden_error_ratio", "Share of failed calls in the latest evaluated window.", labels=["model"]
        )
        evaluated_at = GaugeMetricFamily(
            "driftwarden_last_evaluation_timestamp_seconds",
            "When each model was last evaluated (event time in replay).",
            labels=["model"],
        )
        for model, evaluation in evaluations.items():
            window_events.add_metric([model], evaluation.window_events)
            evaluated_at.add_metric([model], evaluation.evaluated_at_ms / 1000.0)
            traffic = evaluation.traffic
            if traffic is None:
                continue
            error_ratio.add_metric([model], traffic.error_ratio)
            for quantile, value_ms in traffic.latency_quantiles_ms:
                quantiles.add_metric([model, str(quantile)], value_ms / 1000.0)
        yield from (window_events, quantiles, error_ratio, evaluated_at)


def _feedback(states: list) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "driftwarden_feedback_pending", "Feedback events waiting for their model call.", labels=["model"]
    )
    outcomes = CounterMetricFamily(
        "driftwarden_feedback",
        "Feedback events by what became of them: joined to their call, expired after label_ttl, "
        "or dropped from a full pending table.",
        labels=["model", "result"],
    )
    for state in states:
        join = state.join
        pending.add_metric([state.name], join.n_pending)
        for result, count in (("joined", join.n_joined), ("expired", join.n_expired), ("dropped", join.n_dropped)):
            outcomes.add_metric([state.name, result], count)
    yield from (pending, outcomes)


#: ``driftwarden_quality``'s metrics, from the fields of a QualityResult.
_QUALITY_METRICS = tuple(name for name in QualityResult.__dataclass_fields__ if not name.startswith("n_"))
_BIAS_METRICS = ("demographic_parity_difference", "disparate_impact_ratio", "equalized_odds_difference")


def _quality(evaluations: dict) -> Iterator[Metric]:
    """Quality proxies, the accuracy estimate and fairness of each model's latest window (NaN left out)."""
    quality = GaugeMetricFamily(
        "driftwarden_quality",
        "Quality of the latest window: labelled metrics (with label_coverage), label-free proxies, "
        "and estimated_accuracy with its band.",
        labels=["model", "metric"],
    )
    bias = GaugeMetricFamily(
        "driftwarden_bias",
        "Disparities of the outcome between an attribute's groups.",
        labels=["model", "attribute", "metric"],
    )
    ratio = GaugeMetricFamily(
        "driftwarden_segment_outcome_ratio",
        "Share of a group's calls with the positive outcome (groups with enough calls only).",
        labels=["model", "attribute", "group"],
    )
    group_events = GaugeMetricFamily(
        "driftwarden_segment_events",
        "Calls per group in the latest window; groups below bias.min_group_size are insufficient.",
        labels=["model", "attribute", "group"],
    )
    for model, evaluation in evaluations.items():
        result = evaluation.quality
        if result is None:
            continue
        figures = {name: getattr(result.quality, name) for name in _QUALITY_METRICS}
        if result.estimate is not None:
            estimate = result.estimate
            figures.update(
                estimated_accuracy=estimate.estimated,
                estimated_accuracy_lower=estimate.lower,
                estimated_accuracy_upper=estimate.upper,
            )
        for name, value in figures.items():
            if not math.isnan(value):
                quality.add_metric([model, name], value)
        for attribute, fairness in result.bias.items():
            for name in _BIAS_METRICS:
                value = getattr(fairness, name)
                if not math.isnan(value):
                    bias.add_metric([model, attribute, name], value)
            for group, figures in fairness.groups.items():
                group_events.add_metric([model, attribute, group], figures.n)
                if figures.sufficient:
                    ratio.add_metric([model, attribute, group], figures.outcome_rate)
    yield from (quality, bias, ratio, group_events)


def _drift(evaluations: dict) -> Iterator[Metric]:
    """The latest drift evaluation of every model whose reference is complete."""
    per_test = ["model", "feature", "method"]
    score = GaugeMetricFamily(
        "driftwarden_drift_score", "Drift statistic of a feature's window against its reference.", labels=per_test
    )
    p_value = GaugeMetricFamily(
        "driftwarden_drift_p_value", "P-value of a feature's drift test (tests that have one).", labels=per_test
    )
    threshold = GaugeMetricFamily(
        "driftwarden_drift_threshold",
        "What the test is held to: the corrected p-value a feature must reach, or the distance it must reach.",
        labels=per_test,
    )
    detected = GaugeMetricFamily(
        "driftwarden_drift_detected",
        "1 when the feature drifted at the latest evaluation.",
        labels=["model", "feature"],
    )
    share = GaugeMetricFamily(
        "driftwarden_drift_share", "Share of the model's tested features that drifted.", labels=["model"]
    )
    age = GaugeMetricFamily(
        "driftwarden_reference_age_seconds",
        "Event time from the reference's newest event to the latest evaluation.",
        labels=["model"],
    )
    for model, evaluation in evaluations.items():
        drift = evaluation.drift
        if drift is None:
            continue
        share.add_metric([model], drift.drift_share)
        age.add_metric([model], drift.reference_age_ms / 1000.0)
        for feature, result in drift.features.items():
            labels = [model, feature, result.method]
            score.add_metric(labels, result.statistic)
            threshold.add_metric(labels, result.threshold)
            if result.p_value is not None:
                p_value.add_metric(labels, result.p_value)
            detected.add_metric([model, feature], float(result.drifted))
    yield from (score, p_value, threshold, detected, share, age)


def _histogram(name: str, documentation: str, series: Iterable[tuple[str, Histogram]]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["model"])
    for model, histogram in series:
        bounds = [floatToGoString(bound / 1000.0) for bound in histogram.bounds] + ["+Inf"]
        counts = histogram.cumulative_counts().tolist()
        family.add_metric([model], list(zip(bounds, counts)), sum_value=histogram.total / 1000.0)
    return family


class ConsumerLagCollector:
    """``driftwarden_consumer_lag`` from a callable giving messages not yet read per (topic, partition)."""

    def __init__(self, lag: Callable[[], dict[tuple[str, int], int]]):
        self.lag = lag

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily(
            "driftwarden_consumer_lag", "Messages not yet consumed, per partition.", labels=["topic", "partition"]
        )
        for (topic, partition), lag in sorted(self.lag().items()):
            family.add_metric([topic, str(partition)], lag)
        return [family]


class DaemonCollector:
    """The daemon's own health: checkpoints by outcome and dead letters that failed to send."""

    def __init__(self, checkpointer: Checkpointer, n_dead_letters_failed: Callable[[], int]):
        self.checkpointer = checkpointer
        self.n_dead_letters_failed = n_dead_letters_failed

    def collect(self) -> list[Metric]:
        checkpoints = CounterMetricFamily(
            "driftwarden_checkpoints",
            "Checkpoints by outcome: saved (and committed), or aborted because a sink had undelivered "
            "messages (sink_failed) or the state could not be written (save_failed).",
            labels=["result"],
        )
        for result, count in self.checkpointer.n_checkpoints.items():
            checkpoints.add_metric([result], count)
        failed = CounterMetricFamily(
            "driftwarden_dead_letters_failed",
            "Dead-letter deliveries that failed; each is sent again, and no offset is committed past it meanwhile.",
        )
        failed.add_metric([], self.n_dead_letters_failed())
        return [checkpoints, failed]


def build_registry(pipeline: Pipeline, *collectors: Collector) -> CollectorRegistry:
    """A fresh registry holding the pipeline's collector and any others (the daemon adds consumer lag)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (PipelineCollector(pipeline), *collectors):
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``, as ``/metrics`` serves it."""
    return generate_latest(registry)


class MetricsServer:
    """HTTP endpoints for Prometheus and Kubernetes, served in a thread by :class:`~monitor.export.server.HttpServer`.

    ``/metrics`` is the exposition (gzipped or OpenMetrics when the scraper
    asks); ``/healthz`` answers 200 while the process serves; ``/readyz``
    answers 200 when ``ready()`` returns true, else 503. With ``report`` (a
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
        ready: Callable[[], bool] = lambda: True,
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
            return Response.text(200, "ready\n") if self.ready() else Response.text(503, "not ready\n")
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

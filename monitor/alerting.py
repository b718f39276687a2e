"""The daemon's alerting: rules evaluated on the exported samples after each tick, alerts routed to sinks.

:class:`Alerting` reads the same series a scrape does (any exported metric
can carry a rule), runs :class:`alerts.rules.RuleEngine` at the tick's event
time, and hands each alert to the sinks its rule names (Alertmanager,
webhook, log: through a persistent outbox, delivered and retried by a
scheduler job) and, for ``retrain``, asks the retraining queue for a job
with the model's window and reference summaries. Annotations get per-model
context: the drifted features (with statistic and method), window and
reference sizes, drift share and the link to the HTML report. In a replay
nothing is delivered: the alerts are returned for the command to print.

``driftwarden_alerts_firing`` and ``driftwarden_retraining_jobs_total`` are
yielded by :class:`AlertsCollector`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from alerts.alert import Alert
from alerts.retraining import RetrainingQueue
from alerts.rules import RuleEngine, Sample
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.log import LogSink
from alerts.sinks.outbox import Outbox
from alerts.sinks.webhook import WebhookSink
from monitor.config import Config
from monitor.pipeline import Pipeline

__all__ = ["AlertsCollector", "Alerting"]

log = logging.getLogger("driftwarden.alerts")


class Alerting:
    """Rules, sinks and the retraining queue of one daemon (or, with ``deliver=False``, of a replay)."""

    def __init__(
        self,
        config: Config,
        collect: Callable[[], Iterable[Metric]],
        deliver: bool = True,
        publish: Callable[..., None] | None = None,
    ):
        self.config = config
        self.collect = collect
        self.engine = RuleEngine(rule.rule() for rule in config.alerts.rules)
        self.lock = threading.Lock()
        self.sinks: dict[str, object] = {}
        self.retraining: RetrainingQueue | None = None
        self.evaluated_models: set[str] = set()  # their retraining counters start at 0, so increase() sees a first job
        if deliver:
            self._open(publish)

    def _open(self, publish: Callable[..., None] | None) -> None:
        state_dir = Path(self.config.state.dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        alerts = self.config.alerts
        self.sinks["log"] = LogSink(log)
        outbox = Outbox(state_dir / "outbox.sqlite", alerts.outbox_size)
        if alerts.sinks.alertmanager is not None:
            target = alerts.sinks.alertmanager
            self.sinks["alertmanager"] = AlertmanagerSink(
                target.url, outbox, target.timeout_ms / 1000, generator_url=alerts.external_url
            )
        if alerts.sinks.webhook is not None:
            target = alerts.sinks.webhook
            secret = target.secret.get_secret_value() if target.secret else None
            self.sinks["webhook"] = WebhookSink(target.url, outbox, secret, target.timeout_ms / 1000)
        if any("retrain" in rule.actions for rule in alerts.rules):
            retraining = self.config.retraining
            self.retraining = RetrainingQueue(
                state_dir / "jobs.sqlite",
                retraining.cooldown_ms,
                publish=publish if retraining.topic else None,
                trigger_url=retraining.trigger_url,
            )

    def tick(self, pipeline: Pipeline, now_ms: float, models: Collection[str] | None = None) -> list[Alert]:
        """Evaluate the rules on what is exported now; route the alerts; return them.

        ``models`` limits the tick to those models' series, their context and
        their retraining requests (see :meth:`alerts.rules.RuleEngine.evaluate`;
        ``""`` stands for series without a model label), so that each model
        keeps its own clock: ``for`` and the retraining cooldown are measured
        on the ``now_ms`` passed for that model. None evaluates every model.
        """
        if not self.engine.rules:  # nothing to evaluate: spare the tick a scrape's worth of samples
            return []
        wanted = None if models is None else set(models)
        samples = [Sample(s.name, s.labels, s.value) for family in self.collect() for s in family.samples]
        context = {
            model: self._context(model, evaluation)
            for model, evaluation in pipeline.evaluations.items()
            if wanted is None or model in wanted
        }
        with self.lock:
            alerts = self.engine.evaluate(samples, now_ms, context, wanted)
        transitions = [alert for alert in alerts if alert.state == "resolved" or alert.starts_at_ms == now_ms]
        for name, sink in self.sinks.items():
            # Alertmanager forgets alerts not re-sent; the log and the webhook hear of each change once,
            # also across a restart (the engine's state is checkpointed, a sink's memory is not).
            offered = alerts if name == "alertmanager" else transitions
            routed = [alert for alert in offered if name in alert.actions]
            if routed:
                sink.add(routed)
        if self.retraining is not None:
            self._retrain(alerts, pipeline, now_ms, context.keys())
        return alerts

    def deliver(self) -> None:
        """Send what the outbox and the retraining ledger hold and is due (the scheduler calls this)."""
        now_ms = time.time() * 1000
        for sink in self.sinks.values():
            sink.deliver(now_ms)
        if self.retraining is not None:
            self.retraining.deliver(now_ms)

    def snapshot(self) -> dict:
        with self.lock:
            return self.engine.snapshot()

    def restore(self, snapshot: dict) -> None:
        with self.lock:
            self.engine.restore(snapshot)

    def _retrain(self, alerts: list[Alert], pipeline: Pipeline, now_ms: float, evaluated: Iterable[str]) -> None:
        with self.lock:
            self.evaluated_models.update(evaluated)
        firing: dict[str, list[Alert]] = {}
        for alert in alerts:
            if alert.state == "firing" and "retrain" in alert.actions:
                firing.setdefault(alert.labels.get("model", ""), []).append(alert)
        for model, model_alerts in firing.items():
            evaluation = pipeline.evaluations.get(model)
            window, reference = _summaries(evaluation)
            job = self.retraining.request(model, model_alerts, window, reference, now_ms)
            if job is not None:
                log.info("queued retraining job %s for %s: %s", job.id, model, job.reason)

    def _context(self, model: str, evaluation) -> dict[str, str]:
        context = {"window_events": str(evaluation.window_events)}
        if self.config.alerts.external_url:
            context["report_url"] = f"{self.config.alerts.external_url.rstrip('/')}/report?model={model}"
        drift = evaluation.drift
        if drift is not None:
            context["reference_events"] = str(drift.n_reference)
            context["drift_share"] = f"{drift.drift_share:.2f}"
            context["drifted_features"] = (
                ", ".join(
                    f"{label} ({result.method} {result.statistic:.3g}"
                    + (f", p={result.p_value:.2g})" if result.p_value is not None else ")")
                    for label, result in drift.features.items()
                    if result.drifted
                )
                or "none"
            )
        return context


def _summaries(evaluation) -> tuple[dict, dict]:
    """What a retraining job says about the window and the reference it was judged against."""
    if evaluation is None:
        return {}, {}
    window = {"events": evaluation.window_events, "evaluated_at_ms": evaluation.evaluated_at_ms}
    reference = {}
    if evaluation.drift is not None:
        drift = evaluation.drift
        window.update(drift_share=drift.drift_share, drifted_features=drift.drifted)
        reference = {"events": drift.n_reference, "age_ms": drift.reference_age_ms}
    return window, reference


class AlertsCollector:
    """``driftwarden_alerts_firing`` from the rule engine and ``driftwarden_retraining_jobs_total`` from the ledger.

    Every status of every evaluated model is yielded, 0 until a job reaches it: a counter born at 1
    would hide its first job from ``increase()``.
    """

    def __init__(self, alerting: Alerting):
        self.alerting = alerting

    def collect(self) -> list[Metric]:
        firing = GaugeMetricFamily(
            "driftwarden_alerts_firing", "Alerts firing now, by rule.", labels=["alertname", "model", "severity"]
        )
        with self.alerting.lock:
            counts = self.alerting.engine.firing_by()
        for labels, count in sorted(counts.items()):
            firing.add_metric(list(labels), count)
        jobs = CounterMetricFamily(
            "driftwarden_retraining_jobs",
            "Retraining jobs that reached each status (queued counts every job; published includes acknowledged).",
            labels=["model", "status"],
        )
        if self.alerting.retraining is not None:
            reached = _reached(self.alerting.retraining.counts())
            with self.alerting.lock:
                models = self.alerting.evaluated_models | {model for model, _ in reached}
            for model in sorted(models):
                for status in _REACHED:
                    jobs.add_metric([model, status], reached.get((model, status), 0))
        return [firing, jobs]


def _reached(current: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Jobs by the statuses they reached, from jobs by current status: counts that only grow, as a
    counter's must (a job moves queued -> published -> acknowledged, or ends failed)."""
    reached: dict[tuple[str, str], int] = {}
    for (model, status), count in current.items():
        for step in _REACHED[status]:
            reached[model, step] = reached.get((model, step), 0) + count
    return reached


#: The statuses a job in a given status has passed through, itself included.
_REACHED = {
    "queued": ("queued",),
    "published": ("queued", "published"),
    "acknowledged": ("queued", "published", "acknowledged"),
    "failed": ("queued", "failed"),
}

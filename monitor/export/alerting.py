"""The daemon's alerting: rules evaluated on the exported samples after each tick, alerts routed to sinks.

:class:`Alerting` reads the same series a scrape does (any exported metric
can carry a rule), as typed samples read straight from the collectors
(:meth:`monitor.export.collectors.Exports.samples`: the evaluated models'
series only, of the metrics the rules name), runs :class:`alerts.rules.RuleEngine` at the tick's event
time, and hands each alert to the sinks its rule names (Alertmanager,
webhook, log: through a persistent outbox, delivered and retried by a
scheduler job) and, for ``retrain``, asks the retraining queue for a job
with the model's window and reference summaries. Annotations get per-model
context: the drifted features (with statistic and method), window and
reference sizes, drift share and the link to the HTML report. In a replay
nothing is delivered: the alerts are returned for the command to print.

No transition is lost to a sink that cannot take it (a full disk under the
outbox or the retraining ledger): the engine moves on, and what a sink's
``add`` (or the ledger's ``request``) refused is *offered again*, first, on
every following tick until it is taken. Until then it is part of
:meth:`Alerting.snapshot`, so a checkpoint holds it and a restart offers it
again. The engine's step and the hand-over happen under one lock, so a
snapshot never sees the one without the other. A sink that took an alert
delivers it once (the outbox is keyed per alert and transition).

What must not happen twice moves with a model between replicas:
:meth:`Alerting.snapshot_models` gives, as plain data, the rule engine's
series of some models, what the sinks refused of theirs, and their retraining
ledger entries that still matter (the cooldown, undelivered jobs);
:meth:`Alerting.restore_models` takes them in on the new owner and
:meth:`Alerting.forget_models` lets go of them on the old one. Series
without a model (process-wide rules) stay with their replica.

``driftwarden_alerts_firing`` and ``driftwarden_retraining_jobs_total`` are
yielded by :class:`AlertsCollector`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from alerts.alert import Alert
from alerts.retraining import RetrainingQueue
from alerts.rules import RuleEngine, Sample
from alerts.sinks import Sink
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.log import LogSink
from alerts.sinks.outbox import Outbox
from alerts.sinks.webhook import WebhookSink
from monitor.config import Config
from monitor.export import metrics as contract
from monitor.export.collectors import Reading, SpecCollector
from monitor.pipeline import Pipeline

__all__ = ["AlertsCollector", "Alerting", "ReadSamples"]

#: Where the rules' samples come from: ``(models, names)`` -> the samples of those models (None: all; ``""``:
#: series without a model label) with those sample names (:meth:`~monitor.export.collectors.Exports.samples`).
ReadSamples = Callable[[Collection[str] | None, Collection[str]], Iterable[Sample]]

log = logging.getLogger("driftwarden.alerts")


class Alerting:
    """Rules, sinks and the retraining queue of one daemon (or, with ``deliver=False``, of a replay)."""

    def __init__(
        self,
        config: Config,
        samples: ReadSamples,
        deliver: bool = True,
        publish: Callable[..., None] | None = None,
    ):
        self.config = config
        self.samples = samples
        self.engine = RuleEngine(rule.rule() for rule in config.alerts.rules)
        self._read = {rule.metric for rule in self.engine.rules}  # the only samples a tick needs
        # A rule that sets a series' model label moves it to that model: such a rule reads every model's series.
        self._relabels = any("model" in rule.labels for rule in self.engine.rules)
        self.lock = threading.Lock()
        self.sinks: dict[str, Sink] = {}
        self.retraining: RetrainingQueue | None = None
        # The models whose retraining counters this replica exports (evaluated or restored here, not forgotten since):
        # they start at 0, so increase() sees a first job.
        self.evaluated_models: set[str] = set()
        self._refused: dict[str, list] = {}  # sink name or "retrain" -> alerts (job requests) it has not taken yet
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
                target.url,
                outbox,
                target.timeout_ms / 1000,
                generator_url=alerts.external_url,
                resolve_hold_s=target.resolve_hold_ms / 1000,
            )
        if alerts.sinks.webhook is not None:
            hook = alerts.sinks.webhook
            secret = hook.secret.get_secret_value() if hook.secret else None
            self.sinks["webhook"] = WebhookSink(hook.url, outbox, secret, hook.timeout_ms / 1000)
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
        if not self.engine.rules:  # nothing to evaluate: spare the tick the samples
            return []
        wanted = None if models is None else set(models)
        samples = list(self.samples(None if self._relabels else wanted, self._read))
        context = {
            model: self._context(model, evaluation)
            for model, evaluation in pipeline.evaluations.items()
            if wanted is None or model in wanted
        }
        with self.lock:  # the engine's step and the hand-over of its alerts, as one for snapshot()
            alerts = self.engine.evaluate(samples, now_ms, context, wanted)
            transitions = [alert for alert in alerts if alert.state == "resolved" or alert.starts_at_ms == now_ms]
            for name, sink in self.sinks.items():
                # Alertmanager forgets alerts not re-sent; the log and the webhook hear of each change once,
                # also across a restart (the engine's state is checkpointed, a sink's memory is not).
                offered = alerts if name == "alertmanager" else transitions
                self._offer(name, sink.add, [alert for alert in offered if name in alert.actions], _last_copies)
            if self.retraining is not None:
                self.evaluated_models.update(context)
                self._offer("retrain", self._request_jobs, _job_requests(alerts, pipeline, now_ms), _first_requests)
        return alerts

    def _offer(self, name: str, add: Callable[[list], None], items: list, keep: Callable[[list], list]) -> None:
        """Hand ``add`` what it refused before, then ``items``; if it raises, ``keep`` what to offer again."""
        batch = [*self._refused.pop(name, []), *items]
        if not batch:
            return
        try:
            add(batch)
        except Exception as error:
            self._refused[name] = keep(batch)
            log.error(
                "%s could not take %d alert(s) (%s: %s); offering them again on the next evaluation",
                name,
                len(batch),
                type(error).__name__,
                error,
            )

    def _request_jobs(self, requests: list[_JobRequest]) -> None:
        assert self.retraining is not None  # offered only when retraining is configured
        for request in requests:
            model, now_ms, alerts, window, reference = request
            job = self.retraining.request(model, alerts, window, reference, now_ms)
            if job is not None:
                self.evaluated_models.add(model)  # a rule may name a model that is not evaluated
                log.info("queued retraining job %s for %s: %s", job.id, model, job.reason)

    def deliver(self) -> None:
        """Send what the outbox and the retraining ledger hold and is due (the scheduler calls this).

        A sink whose delivery fails for want of its outbox (a full disk) is
        logged and left for the next round; the other sinks still deliver.
        """
        now_ms = time.time() * 1000
        destinations: dict[str, Any] = dict(self.sinks)
        if self.retraining is not None:
            destinations["retrain"] = self.retraining
        for name, destination in destinations.items():
            try:
                destination.deliver(now_ms)
            except Exception as error:
                message = "%s: delivery failed (%s: %s); trying again in the next round"
                log.error(message, name, type(error).__name__, error)

    def snapshot(self, models: Collection[str] | None = None) -> dict:
        """The rule engine's series and what sinks have not taken yet, as plain data for the checkpoint: of every
        model (None), or of ``models`` only (``""``: the series without a model), for :meth:`restore`."""
        with self.lock:
            return self._alert_state(None if models is None else set(models))

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot` (or the bare series of a checkpoint from before the refused alerts)."""
        with self.lock:
            self._take(snapshot["series"] if "series" in snapshot else snapshot, snapshot.get("refused", {}), None)
            if self.retraining is not None:  # one replica: every model of its ledger is its own
                self.evaluated_models.update(model for model, _ in self.retraining.counts())

    def snapshot_models(self, models: Collection[str]) -> dict:
        """What must not happen twice for ``models``, as plain data for their new owner's :meth:`restore_models`.

        ``models``: the rule engine's series of those models (pending or
        firing, since when, last value), the alerts and job requests sinks
        refused of them, and their retraining ledger entries that still matter
        (:meth:`alerts.retraining.RetrainingQueue.entries`: the cooldown of
        the newest job and every job not yet delivered). This replica keeps
        them until :meth:`forget_models`. ``""`` (series without a model)
        never moves.
        """
        wanted = set(models) - {""}
        with self.lock:
            state = self._alert_state(wanted)
        jobs = self.retraining.entries(wanted) if self.retraining is not None else []
        return {"models": sorted(wanted), **state, "jobs": jobs}

    def restore_models(self, snapshot: dict) -> None:
        """Take in a :meth:`snapshot_models` of another replica (or of this one): its models are this one's now.

        Their series replace this replica's series of those models; the
        refused items are offered again on the next tick; the ledger entries
        are merged (a job already held is kept, so restoring twice is
        harmless) before the series, so that the first tick sees the cooldown.
        """
        models = set(snapshot["models"])
        if self.retraining is not None:
            self.retraining.merge(snapshot["jobs"])
        with self.lock:
            self._take(snapshot["series"], snapshot["refused"], models)
            self.evaluated_models |= models

    def forget_models(self, models: Collection[str]) -> None:
        """Let go of ``models`` (another replica owns them now): their series, refused items and undelivered jobs.

        Their series no longer advance, fire or resolve here and their
        counters are no longer exported; their undelivered retraining jobs
        become ``handed_over`` in this ledger (kept as history, never
        delivered here: the new owner delivers them). Call it once their
        :meth:`snapshot_models` is saved: a job delivered in between is
        delivered again by the new owner, with the same id.
        """
        wanted = set(models) - {""}
        with self.lock:
            self.engine.forget(wanted)
            self._refused = _select(self._refused, lambda model: model not in wanted)
            self.evaluated_models -= wanted
        if self.retraining is not None:
            handed = self.retraining.hand_over(wanted, time.time() * 1000)
            if handed:
                log.info("handed %d undelivered retraining job(s) over with their models", handed)

    def _alert_state(self, models: set[str] | None) -> dict:
        """The series and refused items of ``models`` (None: all), under the lock."""
        refused = _select(self._refused, lambda model: models is None or model in models)
        return {
            "series": self.engine.snapshot(models),
            "refused": {name: [_encode(item) for item in items] for name, items in refused.items()},
        }

    def _take(self, series: dict, refused: dict[str, list], models: set[str] | None) -> None:
        """Restore ``series`` and ``refused`` in place of all (None) or of those of ``models``, under the lock."""
        self.engine.restore(series, models)
        destinations = {*self.sinks, *(("retrain",) if self.retraining is not None else ())}
        taken = {name: [_decode(document) for document in documents] for name, documents in refused.items()}
        taken = _select(taken, lambda model: models is None or model in models)
        kept = {} if models is None else _select(self._refused, lambda model: model not in models)
        for name, items in taken.items():
            if name in destinations:
                kept[name] = [*kept.get(name, []), *items]
        self._refused = kept

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


class _JobRequest(NamedTuple):
    """A retraining job asked for at ``now_ms`` (its model's event time), with the summaries of that tick."""

    model: str
    now_ms: float
    alerts: tuple[Alert, ...]
    window: dict
    reference: dict


def _job_requests(alerts: list[Alert], pipeline: Pipeline, now_ms: float) -> list[_JobRequest]:
    """One request per model with firing ``retrain`` alerts (the ledger's cooldown and ids say if it is new)."""
    firing: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.state == "firing" and "retrain" in alert.actions:
            firing.setdefault(alert.labels.get("model", ""), []).append(alert)
    return [
        _JobRequest(model, now_ms, tuple(model_alerts), *_summaries(pipeline.evaluations.get(model)))
        for model, model_alerts in firing.items()
    ]


def _summaries(evaluation) -> tuple[dict, dict]:
    """What a retraining job says about the window and the reference it was judged against (plain data)."""
    if evaluation is None:
        return {}, {}
    window: dict[str, Any] = {
        "events": int(evaluation.window_events),
        "evaluated_at_ms": float(evaluation.evaluated_at_ms),
    }
    reference: dict[str, Any] = {}
    if evaluation.drift is not None:
        drift = evaluation.drift
        window.update(drift_share=float(drift.drift_share), drifted_features=list(drift.drifted))
        reference = {"events": int(drift.n_reference), "age_ms": float(drift.reference_age_ms)}
    return window, reference


def _last_copies(alerts: list[Alert]) -> list[Alert]:
    """One copy per transition (a firing alert is re-sent on every tick): the latest, in the order of the latest.

    >>> a1, b, a2 = (Alert(fp, {}, {}, "firing", value, 0.0, None, ()) for fp, value in [("a", 1), ("b", 2), ("a", 3)])
    >>> [alert.value for alert in _last_copies([a1, b, a2])]
    [2, 3]
    """
    kept: dict[tuple, Alert] = {}
    for alert in alerts:
        key = (alert.fingerprint, alert.state, alert.starts_at_ms)
        kept.pop(key, None)
        kept[key] = alert
    return list(kept.values())


def _first_requests(requests: list[_JobRequest]) -> list[_JobRequest]:
    """A model's first refused request: the job as it was first asked for (later ones fall in its cooldown)."""
    kept: dict[str, _JobRequest] = {}
    for request in requests:
        kept.setdefault(request.model, request)
    return list(kept.values())


def _model(item: Alert | _JobRequest) -> str:
    """The model of a refused alert (its ``model`` label, ``""`` without one) or job request."""
    return item.labels.get("model", "") if isinstance(item, Alert) else item.model


def _select(refused: dict[str, list], keep: Callable[[str], bool]) -> dict[str, list]:
    """The refused items whose model ``keep`` keeps, per sink (sinks left with nothing dropped)."""
    kept = {name: [item for item in items if keep(_model(item))] for name, items in refused.items()}
    return {name: items for name, items in kept.items() if items}


def _encode(item: Alert | _JobRequest) -> list | dict:
    """An alert (a list of its fields) or a job request (a mapping) as checkpoint data."""
    if isinstance(item, Alert):
        return list(dataclasses.astuple(item))
    return {**item._asdict(), "alerts": [_encode(alert) for alert in item.alerts]}


def _decode(document: list | dict) -> Alert | _JobRequest:
    if isinstance(document, list):
        fingerprint, labels, annotations, state, value, starts_at_ms, ends_at_ms, actions = document
        return Alert(fingerprint, labels, annotations, state, value, starts_at_ms, ends_at_ms, tuple(actions))
    return _JobRequest(**{**document, "alerts": tuple(_decode(alert) for alert in document["alerts"])})


class AlertsCollector(SpecCollector):
    """``driftwarden_alerts_firing`` from the rule engine and ``driftwarden_retraining_jobs_total`` from the ledger.

    Every status of every evaluated model is yielded, 0 until a job reaches it: a counter born at 1
    would hide its first job from ``increase()``.
    """

    metrics = contract.ALERTING

    def __init__(self, alerting: Alerting):
        self.alerting = alerting

    def readings(self, models: Collection[str] | None = None) -> list[Reading]:
        with self.alerting.lock:
            counts = self.alerting.engine.firing_by()
        readings = [Reading(contract.ALERTS_FIRING, labels, count) for labels, count in sorted(counts.items())]
        if self.alerting.retraining is not None:
            reached = _reached(self.alerting.retraining.counts())
            with self.alerting.lock:
                evaluated = set(self.alerting.evaluated_models)
            readings += (
                Reading(contract.RETRAINING_JOBS, (model, status), reached.get((model, status), 0))
                for model in sorted(evaluated)
                for status in _REACHED
            )
        return readings


def _reached(current: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Jobs by the statuses they reached, from jobs by current status: counts that only grow, as a
    counter's must (a job moves queued -> published -> acknowledged, or ends failed). A job ``handed_over`` with
    its model counts on its new owner."""
    reached: dict[tuple[str, str], int] = {}
    for (model, status), count in current.items():
        for step in _REACHED.get(status, ()):
            reached[model, step] = reached.get((model, step), 0) + count
    return reached


#: The statuses a job in a given status has passed through, itself included.
_REACHED = {
    "queued": ("queued",),
    "published": ("queued", "published"),
    "acknowledged": ("queued", "published", "acknowledged"),
    "failed": ("queued", "failed"),
}

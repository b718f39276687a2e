"""The daemon's alerting: rules evaluated on the exported samples after each tick, alerts routed to sinks.

:class:`Alerting` reads the same series a scrape does (any exported metric
can carry a rule), as typed samples read straight from the collectors
(:meth:`monitor.export.collectors.Exports.samples`: the evaluated models'
series only, of the metrics the rules name), runs :class:`alerts.rules.RuleEngine` at the tick's event
time, and hands each alert to the sinks its rule names (Alertmanager,
webhook, log: through a persistent outbox, delivered and retried by a
scheduler job) and, for ``retrain``, asks the retraining queue for a job
with the model's window and reference summaries and its baseline version;
for ``rollback``, asks the rollback ledger for a request per (model, version)
of the firing series, with the evidence of that version's comparison with
the baseline (:func:`monitor.evaluate.versions.evidence`: effects, intervals,
p-values, the calls each side made, the span). Annotations get per-model
context: the drifted features (with statistic and method), window and
reference sizes, drift share and the link to the HTML report. In a replay
nothing is delivered (the alerts are returned for the command to print)
unless it asks: then through an outbox of its own, and no job is requested.

No transition is lost to a sink that cannot take it (a full disk under the
outbox or a ledger): the engine moves on, and what a sink's
``add`` (or the ledger's ``request``) refused is *offered again*, first, on
every following tick until it is taken. Until then it is part of
:meth:`Alerting.snapshot`, so a checkpoint holds it and a restart offers it
again. The engine's step and the hand-over happen under one lock, so a
snapshot never sees the one without the other. A sink that took an alert
delivers it once (the outbox is keyed per alert and transition).

What must not happen twice moves with a model between replicas:
:meth:`Alerting.snapshot_models` gives, as plain data, the rule engine's
series of some models, what the sinks refused of theirs, and their retraining
and rollback ledger entries that still matter (the cooldown, undelivered jobs);
:meth:`Alerting.restore_models` takes them in on the new owner and
:meth:`Alerting.forget_models` lets go of them on the old one. Series
without a model (process-wide rules) stay with their replica.

``driftwarden_alerts_firing``, ``driftwarden_retraining_jobs_total`` and
``driftwarden_rollback_requests_total`` are yielded by :class:`AlertsCollector`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from alerts.alert import Alert
from alerts.retraining import RetrainingQueue
from alerts.rules import RuleEngine, Sample
from alerts.sinks import Sink
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.log import LogSink
from alerts.sinks.outbox import Outbox
from alerts.sinks.webhook import WebhookSink
from monitor.config import Config, RetrainingConfig, RollbackConfig
from monitor.evaluate.versions import evidence
from monitor.export import metrics as contract
from monitor.export.collectors import Reading, SpecCollector, shown, unshown
from monitor.pipeline import Evaluation, Pipeline
from monitor.state.vocabulary import OTHER

__all__ = ["RETRAINING_LEDGER", "ROLLBACK_LEDGER", "AlertsCollector", "Alerting", "ReadSamples"]

#: Where the rules' samples come from: ``(models, names)`` -> the samples of those models (None: all; ``""``:
#: series without a model label) with those sample names (:meth:`~monitor.export.collectors.Exports.samples`).
ReadSamples = Callable[[Collection[str] | None, Collection[str]], Iterable[Sample]]

log = logging.getLogger("driftwarden.alerts")

#: The ledgers' files in ``state.dir``.
RETRAINING_LEDGER = "jobs.sqlite"
ROLLBACK_LEDGER = "rollback.sqlite"


class Alerting:
    """Rules, sinks and the job ledgers of one daemon (or, with ``deliver=False``, of a replay).

    ``publish(topic=, key=, value=)`` sends a retraining job or a rollback request to its topic and returns once
    the broker has it (the daemon's producer). ``outbox_dir``: where the sinks' outbox lives (default
    ``state.dir``); ``jobs=False`` opens no job ledger, so that the ``retrain`` and ``rollback`` actions ask for
    nothing. A replay that delivers takes both, to keep off a daemon's state directory.
    """

    def __init__(
        self,
        config: Config,
        samples: ReadSamples,
        deliver: bool = True,
        publish: Callable[..., None] | None = None,
        outbox_dir: Path | None = None,
        jobs: bool = True,
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
        self.rollback: RetrainingQueue | None = None
        # The models whose job counters this replica exports (evaluated or restored here, not forgotten since):
        # they start at 0, so increase() sees a first job.
        self.evaluated_models: set[str] = set()
        # sink name, "retrain" or "rollback" -> alerts (job requests) it has not taken yet
        self._refused: dict[str, list] = {}
        if deliver:
            self._open(publish, outbox_dir, jobs)

    def _open(self, publish: Callable[..., None] | None, outbox_dir: Path | None, jobs: bool) -> None:
        state_dir = Path(self.config.state.dir)  # the outbox and the ledgers create their directory
        alerts = self.config.alerts
        self.sinks["log"] = LogSink(log)
        outbox = Outbox((state_dir if outbox_dir is None else outbox_dir) / "outbox.sqlite", alerts.outbox_size)
        if alerts.sinks.alertmanager is not None:
            target = alerts.sinks.alertmanager
            self.sinks["alertmanager"] = AlertmanagerSink(
                target.url,
                outbox,
                target.timeout_ms / 1000,
                generator_url=alerts.external_url,
                resolve_hold_s=target.resolve_hold_ms / 1000,
                label_value=shown,
            )
        if alerts.sinks.webhook is not None:
            hook = alerts.sinks.webhook
            secret = hook.secret.get_secret_value() if hook.secret else None
            self.sinks["webhook"] = WebhookSink(hook.url, outbox, secret, hook.timeout_ms / 1000)
        actions = {action for rule in alerts.rules for action in rule.actions} if jobs else set()
        if "retrain" in actions:
            self.retraining = _ledger(state_dir / RETRAINING_LEDGER, self.config.retraining, publish, "retraining")
        if "rollback" in actions:
            self.rollback = _ledger(state_dir / ROLLBACK_LEDGER, self.config.rollback, publish, "rollback")

    def ledgers(self) -> dict[str, RetrainingQueue]:
        """The job ledgers of the actions the rules name, by action (``retrain``, ``rollback``)."""
        ledgers = {"retrain": self.retraining, "rollback": self.rollback}
        return {action: ledger for action, ledger in ledgers.items() if ledger is not None}

    def tick(self, pipeline: Pipeline, now_ms: float, models: Collection[str] | None = None) -> list[Alert]:
        """Evaluate the rules on what is exported now; route the alerts; return them.

        ``models`` limits the tick to those models' series, their context and
        their job requests (see :meth:`alerts.rules.RuleEngine.evaluate`;
        ``""`` stands for series without a model label), so that each model
        keeps its own clock: ``for`` and the ledgers' cooldowns are measured
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
            for action, ledger in self.ledgers().items():
                self.evaluated_models.update(context)
                requests = _job_requests(action, alerts, pipeline, now_ms)
                self._offer(action, functools.partial(self._request_jobs, ledger), requests, _first_requests)
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

    def _request_jobs(self, ledger: RetrainingQueue, requests: list[_JobRequest]) -> None:
        for request in requests:
            model, now_ms, alerts, window, reference, version, evidence = request
            job = ledger.request(model, alerts, window, reference, now_ms, version=version, evidence=evidence)
            if job is not None:
                self.evaluated_models.add(model)  # a rule may name a model that is not evaluated

    def deliver(self) -> dict[str, int]:
        """Send what the outbox and the job ledgers hold and is due (the scheduler calls this); returns how many
        alerts each sink delivered.

        A sink whose delivery fails for want of its outbox (a full disk) is
        logged and left for the next round; the other sinks still deliver.
        """
        now_ms = time.time() * 1000
        destinations: dict[str, Any] = {**self.sinks, **self.ledgers()}
        delivered = dict.fromkeys(self.sinks, 0)
        for name, destination in destinations.items():
            try:
                sent = destination.deliver(now_ms)
            except Exception as error:
                message = "%s: delivery failed (%s: %s); trying again in the next round"
                log.error(message, name, type(error).__name__, error)
            else:
                if name in delivered:  # a ledger returns its jobs
                    delivered[name] = sent
        return delivered

    def snapshot(self, models: Collection[str] | None = None) -> dict:
        """The rule engine's series and what sinks have not taken yet, as plain data for the checkpoint: of every
        model (None), or of ``models`` only (``""``: the series without a model), for :meth:`restore`."""
        with self.lock:
            return self._alert_state(None if models is None else set(models))

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot` (or the bare series of a checkpoint from before the refused alerts)."""
        with self.lock:
            series = snapshot["series"] if "series" in snapshot else snapshot
            self._take(series, snapshot.get("refused", {}), None, _label_value(snapshot))
            for ledger in self.ledgers().values():  # one replica: every model of its ledgers is its own
                self.evaluated_models.update(model for model, _ in ledger.counts())

    def snapshot_models(self, models: Collection[str]) -> dict:
        """What must not happen twice for ``models``, as plain data for their new owner's :meth:`restore_models`.

        ``models``: the rule engine's series of those models (pending or
        firing, since when, last value), the alerts and job requests sinks
        refused of them, and their retraining (``jobs``) and rollback
        (``rollbacks``) ledger entries that still matter
        (:meth:`alerts.retraining.RetrainingQueue.entries`: the cooldown of
        the newest job and every job not yet delivered). This replica keeps
        them until :meth:`forget_models`. ``""`` (series without a model)
        never moves.
        """
        wanted = set(models) - {""}
        with self.lock:
            state = self._alert_state(wanted)
        entries = {key: [] if ledger is None else ledger.entries(wanted) for key, ledger in self._entries().items()}
        return {"models": sorted(wanted), **state, **entries}

    def _entries(self) -> dict[str, RetrainingQueue | None]:
        """The ledgers by the key of their entries in :meth:`snapshot_models`."""
        return {"jobs": self.retraining, "rollbacks": self.rollback}

    def restore_models(self, snapshot: dict) -> None:
        """Take in a :meth:`snapshot_models` of another replica (or of this one): its models are this one's now.

        Their series replace this replica's series of those models; the
        refused items are offered again on the next tick; the ledger entries
        are merged (a job already held is kept, so restoring twice is
        harmless) before the series, so that the first tick sees the cooldown.
        """
        models = set(snapshot["models"])
        for key, ledger in self._entries().items():
            if ledger is not None:
                ledger.merge(snapshot.get(key, []))  # no rollbacks in a snapshot from before them
        with self.lock:
            self._take(snapshot["series"], snapshot["refused"], models, _label_value(snapshot))
            self.evaluated_models |= models

    def forget_models(self, models: Collection[str]) -> None:
        """Let go of ``models`` (another replica owns them now): their series, refused items and undelivered jobs.

        Their series no longer advance, fire or resolve here and their
        counters are no longer exported; their undelivered jobs (retraining,
        rollback) become ``handed_over`` in their ledger (kept as history, never
        delivered here: the new owner delivers them). Call it once their
        :meth:`snapshot_models` is saved: a job delivered in between is
        delivered again by the new owner, with the same id.
        """
        wanted = set(models) - {""}
        with self.lock:
            self.engine.forget(wanted)
            self._refused = _select(self._refused, lambda model: model not in wanted)
            self.evaluated_models -= wanted
        for action, ledger in self.ledgers().items():
            handed = ledger.hand_over(wanted, time.time() * 1000)
            if handed:
                log.info("handed %d undelivered %s job(s) over with their models", handed, action)

    def _alert_state(self, models: set[str] | None) -> dict:
        """The series and refused items of ``models`` (None: all), under the lock."""
        refused = _select(self._refused, lambda model: models is None or model in models)
        return {
            "labels": "raw",
            "series": self.engine.snapshot(models),
            "refused": {name: [_encode(item) for item in items] for name, items in refused.items()},
        }

    def _take(
        self, series: dict, refused: dict[str, list], models: set[str] | None, label_value: Callable[[str], str] | None
    ) -> None:
        """Restore ``series`` and ``refused`` in place of all (None) or of those of ``models``, under the lock."""
        self.engine.restore(series, models, label_value)
        destinations = {*self.sinks, *self.ledgers()}
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
            context["report_url"] = (
                f"{self.config.alerts.external_url.rstrip('/')}/report?model={quote(model, safe='')}"
            )
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
    """A job asked for at ``now_ms`` (its model's event time), with the summaries of that tick: a retraining job
    (``version``: the model's baseline then) or a rollback request (of ``version``, with the ``evidence`` of its
    comparison with the baseline; None when the version is not a candidate)."""

    model: str
    now_ms: float
    alerts: tuple[Alert, ...]
    window: dict
    reference: dict
    version: str | None = None  # absent from the refused requests of checkpoints from before versions
    evidence: dict | None = None


def _label_value(snapshot: dict) -> Callable[[str], str] | None:
    """How to read the series' label values of an alert state snapshot: as they are, or, from a checkpoint written
    before alerts carried the values producers sent (no ``labels`` mark), as :func:`unshown` reads them back."""
    return None if snapshot.get("labels") == "raw" else unshown


def _job_requests(action: str, alerts: list[Alert], pipeline: Pipeline, now_ms: float) -> list[_JobRequest]:
    """One request per model (``rollback``: per model and version) with firing alerts of ``action`` (the ledger's
    cooldown and ids say if it is new)."""
    firing: dict[tuple[str, str | None], list[Alert]] = {}
    for alert in alerts:
        if alert.state == "firing" and action in alert.actions:
            version = alert.labels.get("version") if action == "rollback" else None
            firing.setdefault((alert.labels.get("model", ""), version), []).append(alert)
    requests = []
    for (model, version), model_alerts in firing.items():
        evaluation = pipeline.evaluations.get(model)
        window, reference = _summaries(evaluation)
        if action == "retrain":
            requests.append(_JobRequest(model, now_ms, tuple(model_alerts), window, reference, _baseline(evaluation)))
        elif version is not None and OTHER not in (model, version):  # a fold (of models, of versions): no rollback
            found = _evidence(evaluation, version)
            requests.append(_JobRequest(model, now_ms, tuple(model_alerts), window, reference, version, found))
    return requests


def _baseline(evaluation: Evaluation | None) -> str | None:
    """The version a model's others are compared with (None: the model has no versions)."""
    return None if evaluation is None or evaluation.versions is None else evaluation.versions.baseline


def _evidence(evaluation: Evaluation | None, version: str) -> dict | None:
    """The latest comparison of ``version`` with the baseline as plain data; None if it is not a candidate."""
    if evaluation is None or evaluation.versions is None or version not in evaluation.versions.comparisons:
        return None
    versions = evaluation.versions
    return evidence(versions.comparisons[version], versions.baseline, evaluation.evaluated_at_ms)


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
    """The first refused request of each model and version: the job as it was first asked for (later ones fall in
    its cooldown)."""
    kept: dict[tuple[str, str | None], _JobRequest] = {}
    for request in requests:
        kept.setdefault((request.model, request.version), request)
    return list(kept.values())


def _ledger(
    path: Path, settings: RetrainingConfig | RollbackConfig, publish: Callable[..., None] | None, kind: str
) -> RetrainingQueue:
    """The ledger of one action (``kind``), publishing to its topic (if it has one) and POSTing to its trigger."""
    to_topic = functools.partial(publish, topic=settings.topic) if publish is not None and settings.topic else None
    return RetrainingQueue(path, settings.cooldown_ms, publish=to_topic, trigger_url=settings.trigger_url, kind=kind)


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
    """``driftwarden_alerts_firing`` from the rule engine, ``driftwarden_retraining_jobs_total`` and
    ``driftwarden_rollback_requests_total`` from the ledgers.

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
        with self.alerting.lock:
            evaluated = sorted(self.alerting.evaluated_models)
        for action, ledger in self.alerting.ledgers().items():
            reached = _reached(ledger.counts())
            readings += (
                Reading(_COUNTERS[action], (model, status), reached.get((model, status), 0))
                for model in evaluated
                for status in _REACHED
            )
        return readings


#: The counter of each ledger's jobs, by action.
_COUNTERS = {"retrain": contract.RETRAINING_JOBS, "rollback": contract.ROLLBACK_REQUESTS}


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

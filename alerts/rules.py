"""The rule engine: metric samples in, alerts out, with ``for`` durations and hysteresis.

A rule is data (from the config): a metric, a label selector, a comparison
and threshold, an optional resolve threshold, a ``for`` duration, a severity,
extra labels, annotation templates and actions. On every evaluation tick the
engine takes the samples the daemon exports, and for each rule and each
matching series (its label set) moves a small state machine:

* inactive -> pending when the condition holds;
* pending -> firing once it has held for ``for`` (event time); pending ->
  inactive if it stops holding before that (a flap never fires);
* firing stays firing while the *resolve* condition does not hold: the value
  must cross ``resolve_threshold`` (default: the threshold) the other way,
  so a value hovering at the threshold does not page on and off;
* firing -> resolved, reported once with its end time; a series that
  disappears resolves too.

Every firing alert is returned on every tick (Alertmanager forgets alerts
that are not re-sent), each resolved one once. Annotations are templates
with ``{name}`` fields only (no attribute access, no code), filled from the
series' labels, ``value``, ``threshold`` and the per-model context the daemon
passes (drifted features, window and reference sizes, the report link).
The state is checkpointed, so a restart neither re-pages nor forgets; the
series of some models alone can be snapshotted, restored and forgotten, so
that a model's alert state moves with it to another replica.

>>> rule = Rule(name="DataDrift", metric="driftwarden_drift_share", op=">", threshold=0.3, for_ms=60_000,
...             annotations={"summary": "{model}: {value:.0%} of features drifted"})
>>> engine = RuleEngine([rule])
>>> sample = Sample("driftwarden_drift_share", {"model": "bot"}, 0.5)
>>> [alert.state for alert in engine.evaluate([sample], now_ms=0)]  # pending: nothing to send yet
[]
>>> [(alert.state, alert.annotations["summary"]) for alert in engine.evaluate([sample], now_ms=60_000)]
[('firing', 'bot: 50% of features drifted')]
>>> [alert.state for alert in engine.evaluate([sample._replace(value=0.1)], now_ms=90_000)]
['resolved']
"""

from __future__ import annotations

import hashlib
import operator
import string
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from alerts.alert import Alert

__all__ = ["OPERATORS", "TEMPLATE_FIELDS", "Rule", "RuleEngine", "Sample", "check_template"]

#: The comparisons a rule may use.
OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
#: Fields every template may use besides the series' labels and the per-model context.
TEMPLATE_FIELDS = ("alertname", "severity", "metric", "value", "threshold")


class Sample(NamedTuple):
    """One exported series' value: the metric family's sample name, its labels, the value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Rule:
    """An alerting rule; see the module docstring for its semantics."""

    name: str
    metric: str
    op: str
    threshold: float
    selector: dict[str, str] = field(default_factory=dict)
    resolve_threshold: float | None = None
    for_ms: float = 0.0
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    actions: tuple[str, ...] = ("log",)

    def matches(self, sample: Sample) -> bool:
        return sample.name == self.metric and all(sample.labels.get(k) == v for k, v in self.selector.items())

    def holds(self, value: float) -> bool:
        """The firing condition."""
        return OPERATORS[self.op](value, self.threshold)

    def still_holds(self, value: float) -> bool:
        """While firing: the condition against the resolve threshold (hysteresis)."""
        threshold = self.threshold if self.resolve_threshold is None else self.resolve_threshold
        return OPERATORS[self.op](value, threshold)


def check_template(template: str) -> None:
    """Raise ``ValueError`` unless every field of ``template`` is a plain name (format specs allowed)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"bad template {template!r}: {error}") from None
    for _, name, _, conversion in parsed:
        if name is not None and (not name.isidentifier() or conversion):
            raise ValueError(f"template field {{{name}}} must be a plain name such as {{model}} or {{value}}")


class _Blank(dict):
    """Template values; a field the series does not have renders empty instead of failing."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass
class _Series:
    """The engine's memory of one rule on one series."""

    labels: dict[str, str]
    state: str  # "pending" or "firing"
    active_since_ms: float
    starts_at_ms: float | None = None
    value: float = 0.0

    @property
    def model(self) -> str:
        """The series' model (its ``model`` label, a rule's own included); ``""`` for a process-wide series."""
        return self.labels.get("model", "")


class RuleEngine:
    """Evaluates rules tick by tick; :meth:`evaluate` returns the alerts to deliver."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        self._series: dict[str, _Series] = {}  # fingerprint -> state of a pending or firing series

    def firing(self) -> int:
        """How many series are firing."""
        return sum(series.state == "firing" for series in self._series.values())

    def firing_by(self) -> dict[tuple[str, str, str], int]:
        """Firing series counted by (alertname, model, severity), for ``driftwarden_alerts_firing``."""
        counts: dict[tuple[str, str, str], int] = {}
        for series in self._series.values():
            if series.state == "firing":
                key = (series.labels["alertname"], series.labels.get("model", ""), series.labels["severity"])
                counts[key] = counts.get(key, 0) + 1
        return counts

    def evaluate(
        self,
        samples: Iterable[Sample],
        now_ms: float,
        context: dict[str, dict[str, str]] | None = None,
        models: Collection[str] | None = None,
    ) -> list[Alert]:
        """Advance every rule by one tick at ``now_ms``; return the alerts to deliver.

        ``context`` maps a model to extra template values. ``models`` limits
        the tick to the series of those models, so that each model can be
        evaluated on its own clock: a series' model is its ``model`` label
        (``""`` for a series without one; a rule's own ``model`` label counts
        as the series'), samples of other models are ignored, and series of
        other models neither advance nor disappear. ``for`` is measured on the
        ``now_ms`` of the ticks of the series' own model. None (the default)
        evaluates every series.

        >>> engine = RuleEngine([Rule("Drift", "driftwarden_drift_share", ">", 0.3, for_ms=60_000)])
        >>> both = [Sample("driftwarden_drift_share", {"model": m}, 0.5) for m in ("a", "b")]
        >>> engine.evaluate(both, now_ms=0), engine.evaluate(both, now_ms=10_000, models={"b"})
        ([], [])
        >>> [alert.labels["model"] for alert in engine.evaluate(both, now_ms=60_000, models={"a"})]
        ['a']
        >>> engine.evaluate([], now_ms=65_000, models={"b"}), engine.firing()  # b: pending since 0, gone
        ([], 1)
        """
        samples = list(samples)
        context = context or {}
        wanted = None if models is None else set(models)
        alerts = []
        seen = set()
        for rule in self.rules:
            for sample in samples:
                if not rule.matches(sample):
                    continue
                labels = {**sample.labels, **rule.labels, "alertname": rule.name, "severity": rule.severity}
                if wanted is not None and labels.get("model", "") not in wanted:
                    continue
                fingerprint = _fingerprint(labels)
                seen.add(fingerprint)
                alert = self._step(rule, fingerprint, labels, sample.value, now_ms, context)
                if alert is not None:
                    alerts.append(alert)
        gone = [
            fingerprint
            for fingerprint, series in self._series.items()
            if fingerprint not in seen and (wanted is None or series.model in wanted)
        ]
        for fingerprint in gone:
            series = self._series.pop(fingerprint)
            if series.state == "firing":
                rule = self._rule(series.labels["alertname"])
                alerts.append(self._alert(rule, fingerprint, series, "resolved", now_ms, context))
        return alerts

    def _step(
        self, rule: Rule, fingerprint: str, labels: dict, value: float, now_ms: float, context: dict
    ) -> Alert | None:
        series = self._series.get(fingerprint)
        if series is None:
            if not rule.holds(value):
                return None
            series = self._series[fingerprint] = _Series(labels, "pending", now_ms)
        series.value = value
        if series.state == "pending":
            if not rule.holds(value):
                del self._series[fingerprint]
                return None
            if now_ms - series.active_since_ms < rule.for_ms:
                return None
            series.state, series.starts_at_ms = "firing", now_ms
        elif not rule.still_holds(value):
            del self._series[fingerprint]
            return self._alert(rule, fingerprint, series, "resolved", now_ms, context)
        return self._alert(rule, fingerprint, series, "firing", now_ms, context)

    def _alert(self, rule: Rule, fingerprint: str, series: _Series, state: str, now_ms: float, context: dict) -> Alert:
        values = _Blank(series.labels)
        values.update(context.get(series.labels.get("model", ""), {}))
        values.update(metric=rule.metric, value=series.value, threshold=rule.threshold)
        annotations = {name: template.format_map(values) for name, template in rule.annotations.items()}
        assert series.starts_at_ms is not None, "only firing series, or firing ones that resolve, become alerts"
        return Alert(
            fingerprint=fingerprint,
            labels=dict(series.labels),
            annotations=annotations,
            state=state,
            value=series.value,
            starts_at_ms=series.starts_at_ms,
            ends_at_ms=now_ms if state == "resolved" else None,
            actions=rule.actions,
        )

    def _rule(self, name: str) -> Rule:
        return next(rule for rule in self.rules if rule.name == name)

    def snapshot(self, models: Collection[str] | None = None) -> dict:
        """The series of ``models`` (None: every series; ``""`` stands for those without a model) as plain data."""
        return {
            fingerprint: [series.labels, series.state, series.active_since_ms, series.starts_at_ms, series.value]
            for fingerprint, series in self._series.items()
            if models is None or series.model in models
        }

    def restore(
        self, snapshot: dict, models: Collection[str] | None = None, label_value: Callable[[str], str] | None = None
    ) -> None:
        """Take back a :meth:`snapshot`: in place of every series (None), or of the series of ``models`` only.

        Series of rules no longer configured are dropped, and so are, when
        ``models`` is given, series of other models. ``label_value``: how to read the values of the labels a
        series took from its sample (not its rule's), for a snapshot that holds them in another form; the series
        then get the fingerprints of the values read.

        >>> engine = RuleEngine([Rule("Drift", "driftwarden_drift_share", ">", 0.3)])
        >>> engine.evaluate([Sample("driftwarden_drift_share", {"model": m}, 0.5) for m in "ab"], now_ms=0)[0].state
        'firing'
        >>> moved = engine.snapshot({"a"}); engine.forget({"a"}); engine.firing()
        1
        >>> other = RuleEngine(engine.rules); other.restore(moved, {"a"}); other.restore(moved, {"a"}); other.firing()
        1
        """
        rules = {rule.name: rule for rule in self.rules}
        restored = {}
        for fingerprint, (labels, state, active_since_ms, starts_at_ms, value) in snapshot.items():
            rule = rules.get(labels["alertname"])
            if rule is None:
                continue
            if label_value is not None:
                own = {*rule.labels, "alertname", "severity"}
                labels = {name: text if name in own else label_value(text) for name, text in labels.items()}
                fingerprint = _fingerprint(labels)
            restored[fingerprint] = _Series(dict(labels), state, active_since_ms, starts_at_ms, value)
        if models is None:
            self._series = restored
            return
        self.forget(models)
        self._series.update((fingerprint, series) for fingerprint, series in restored.items() if series.model in models)

    def forget(self, models: Collection[str]) -> None:
        """Drop the series of ``models``: they neither advance nor resolve here any more."""
        self._series = {key: series for key, series in self._series.items() if series.model not in models}


_ESCAPED = str.maketrans({"\\": "\\\\", "\0": "\\0"})


def _fingerprint(labels: dict[str, str]) -> str:
    """A series' identity: its labels as ``name=value`` pairs joined by NUL, a value's backslashes and NULs
    escaped (names are Prometheus label names), so that no two label sets meet; a value without either is as
    it was before values were escaped, so a checkpoint's series keep their fingerprints."""
    pairs = (f"{key}={value.translate(_ESCAPED)}" for key, value in sorted(labels.items()))
    return hashlib.sha256("\x00".join(pairs).encode()).hexdigest()[:16]

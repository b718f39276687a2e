"""The rule engine's state machine: ``for``, hysteresis, flapping, selectors, templates, restarts;
and rules in the config rejected with a message that names the key and the reason."""

from __future__ import annotations

import pytest

from alerts.rules import Rule, RuleEngine, Sample, _fingerprint
from monitor.config import ConfigError, parse_config

MINUTE = 60_000


def _share(value: float, model: str = "bot") -> Sample:
    return Sample("driftwarden_drift_share", {"model": model}, value)


def _run(engine: RuleEngine, values: list[float], every_ms: float = MINUTE) -> list[list[str]]:
    """The alert states returned at each tick for one series fed ``values``."""
    return [[alert.state for alert in engine.evaluate([_share(v)], i * every_ms)] for i, v in enumerate(values)]


def test_for_delays_firing_and_a_short_excursion_never_fires():
    engine = RuleEngine([Rule("DataDrift", "driftwarden_drift_share", ">", 0.3, for_ms=2 * MINUTE)])

    states = _run(engine, [0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.5])

    assert states == [[], [], [], [], [], ["firing"], ["firing"]]  # pending at 3, fires 2 minutes later


def test_without_for_a_rule_fires_at_once_and_resends_every_tick_until_it_resolves_once():
    engine = RuleEngine([Rule("DataDrift", "driftwarden_drift_share", ">", 0.3)])

    assert _run(engine, [0.5, 0.6, 0.2, 0.2]) == [["firing"], ["firing"], ["resolved"], []]


def test_hysteresis_keeps_a_value_hovering_at_the_threshold_from_flapping():
    plain = RuleEngine([Rule("D", "driftwarden_drift_share", ">", 0.3)])
    hysteresis = RuleEngine([Rule("D", "driftwarden_drift_share", ">", 0.3, resolve_threshold=0.2)])
    hovering = [0.35, 0.28, 0.33, 0.29, 0.31, 0.15]

    assert _run(plain, hovering) == [["firing"], ["resolved"], ["firing"], ["resolved"], ["firing"], ["resolved"]]
    assert _run(hysteresis, hovering) == [["firing"]] * 5 + [["resolved"]]


def test_selectors_pick_series_and_each_series_is_its_own_alert():
    rule = Rule("FeatureDrift", "driftwarden_drift_detected", "==", 1.0, selector={"model": "bot"})
    engine = RuleEngine([rule])
    samples = [
        Sample("driftwarden_drift_detected", {"model": "bot", "feature": "topic"}, 1.0),
        Sample("driftwarden_drift_detected", {"model": "bot", "feature": "locale"}, 0.0),
        Sample("driftwarden_drift_detected", {"model": "other", "feature": "topic"}, 1.0),
        Sample("driftwarden_drift_share", {"model": "bot"}, 1.0),
    ]

    alerts = engine.evaluate(samples, 0)

    assert [(a.labels["model"], a.labels["feature"]) for a in alerts] == [("bot", "topic")]
    assert alerts[0].labels == {"model": "bot", "feature": "topic", "alertname": "FeatureDrift", "severity": "warning"}


def test_a_series_that_disappears_resolves():
    engine = RuleEngine([Rule("D", "driftwarden_drift_share", ">", 0.3)])
    engine.evaluate([_share(0.5)], 0)

    alerts = engine.evaluate([], MINUTE)

    assert [(a.state, a.starts_at_ms, a.ends_at_ms) for a in alerts] == [("resolved", 0, MINUTE)]
    assert engine.evaluate([], 2 * MINUTE) == []


def test_annotations_fill_from_labels_value_threshold_and_the_models_context():
    rule = Rule(
        "D",
        "driftwarden_drift_share",
        ">",
        0.3,
        labels={"team": "ml"},
        annotations={"summary": "{model}: {value:.0%} > {threshold} ({drifted_features}); {missing}."},
    )

    (alert,) = RuleEngine([rule]).evaluate([_share(0.5)], 0, {"bot": {"drifted_features": "topic (ks 0.4)"}})

    assert alert.annotations == {"summary": "bot: 50% > 0.3 (topic (ks 0.4)); ."}
    assert alert.labels["team"] == "ml"


def test_state_survives_a_snapshot_so_a_restart_neither_repages_nor_forgets():
    rule = Rule("D", "driftwarden_drift_share", ">", 0.3, for_ms=MINUTE)
    original = RuleEngine([rule])
    original.evaluate([_share(0.5)], 0)
    original.evaluate([_share(0.5)], MINUTE)  # firing since MINUTE
    restored = RuleEngine([rule])

    restored.restore(original.snapshot())

    (alert,) = restored.evaluate([_share(0.5)], 2 * MINUTE)
    assert (alert.state, alert.starts_at_ms) == ("firing", MINUTE)  # the same alert, not a new page
    assert [a.state for a in restored.evaluate([_share(0.1)], 3 * MINUTE)] == ["resolved"]
    without_the_rule = RuleEngine([Rule("Other", "driftwarden_drift_share", ">", 0.9)])
    without_the_rule.restore(original.snapshot())
    assert without_the_rule.firing() == 0  # a rule gone from the config takes its alerts with it


def test_the_series_of_some_models_move_to_another_engine_and_process_wide_series_stay():
    rules = [
        Rule("D", "driftwarden_drift_share", ">", 0.3, for_ms=MINUTE),
        Rule("Lag", "driftwarden_consumer_lag", ">", 1000),
    ]
    samples = [_share(0.5, "a"), _share(0.5, "b"), Sample("driftwarden_consumer_lag", {}, 5000)]
    source, target = RuleEngine(rules), RuleEngine(rules)
    source.evaluate(samples, 0)
    source.evaluate(samples, MINUTE)  # a and b firing since MINUTE, the lag since 0
    target.evaluate([_share(0.5, "a"), _share(0.5, "c")], 0)  # stale pending series of a here, and c's own

    moved = source.snapshot({"a"})
    target.restore({**moved, **source.snapshot({"b"})}, {"a"})  # only a's series are taken
    source.forget({"a"})

    assert [labels["model"] for labels, *_ in moved.values()] == ["a"]
    assert target.firing_by() == {("D", "a", "warning"): 1}
    assert sorted(labels.get("model", "") for labels, *_ in target.snapshot().values()) == ["a", "c"]
    (alert,) = target.evaluate([_share(0.5, "a")], 2 * MINUTE, models={"a"})
    assert (alert.state, alert.starts_at_ms) == ("firing", MINUTE)  # the same alert as on the source
    assert source.firing_by() == {("D", "b", "warning"): 1, ("Lag", "", "warning"): 1}
    assert source.evaluate([], 2 * MINUTE, models={"a"}) == []  # nothing of a left here to resolve


def test_firing_by_counts_for_the_firing_gauge():
    engine = RuleEngine([Rule("D", "driftwarden_drift_share", ">", 0.3, severity="critical")])
    engine.evaluate([_share(0.5, "a"), _share(0.6, "b"), _share(0.1, "c")], 0)

    assert engine.firing_by() == {("D", "a", "critical"): 1, ("D", "b", "critical"): 1}


def test_models_limit_a_tick_to_their_series_each_on_its_own_clock():
    engine = RuleEngine([Rule("D", "driftwarden_drift_share", ">", 0.3, for_ms=2 * MINUTE)])
    unlabelled = Sample("driftwarden_drift_share", {}, 0.5)
    everything = [_share(0.5, "a"), _share(0.5, "b"), unlabelled]

    assert engine.evaluate(everything, 0, models={"a"}) == []  # a pending since 0
    assert engine.evaluate(everything, 10 * MINUTE, models={"b", ""}) == []  # b and "" pending since 10 min
    fired = engine.evaluate(everything, 2 * MINUTE, models={"a"})  # a's clock: 2 minutes on
    assert [(alert.labels["model"], alert.starts_at_ms) for alert in fired] == [("a", 2 * MINUTE)]
    assert engine.evaluate(everything, 11 * MINUTE, models={"b", ""}) == []  # b's clock: 1 minute on

    # A tick of b (pending for 1.5 of its 2 minutes) neither advances nor resolves a, whose sample it lacks.
    assert engine.evaluate([_share(0.5, "b")], 11.5 * MINUTE, models={"b"}) == []
    assert engine.firing_by() == {("D", "a", "warning"): 1}
    # A tick of "" only: the series without a model label fires; b, missing from it, is left alone.
    [alert] = engine.evaluate([unlabelled], 12 * MINUTE, models={""})
    assert (alert.labels.get("model"), alert.state, alert.starts_at_ms) == (None, "firing", 12 * MINUTE)
    # a's series disappears on a's own tick, and resolves at a's time.
    [alert] = engine.evaluate([_share(0.5, "b")], 3 * MINUTE, models={"a"})
    assert (alert.labels["model"], alert.state, alert.ends_at_ms) == ("a", "resolved", 3 * MINUTE)
    # Without models every series is evaluated: b (still pending) and "" disappear.
    assert [(a.labels.get("model"), a.state) for a in engine.evaluate([], 13 * MINUTE)] == [(None, "resolved")]
    assert engine.snapshot() == {}


def _rule(**fields) -> dict:
    return {"alerts": {"rules": [{"name": "D", "metric": "drift_share", "op": ">", "threshold": 0.3, **fields}]}}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"metric": "drift_shar"},
            "alerts.rules[0].metric: 'driftwarden_drift_shar' is not a metric the daemon "
            "exports (did you mean 'driftwarden_drift_share'?)",
        ),
        ({"op": "=>"}, "alerts.rules[0].op: must be one of '>', '>=', '<', '<=', '==' or '!=' (got '=>')"),
        ({"selector": {"feature": "x"}}, "alerts.rules[0]: selector label(s) feature not on driftwarden_drift_share"),
        ({"resolve_threshold": 0.5}, "alerts.rules[0]: resolve_threshold (0.5) must lie on the resolved side"),
        ({"for": "soon"}, "alerts.rules[0].for: must be a positive duration"),
        ({"actions": ["page"]}, "alerts.rules[0].actions[0]: must be one of"),
        ({"actions": ["alertmanager"]}, "alerts: rules[0].actions: 'alertmanager' needs alerts.sinks.alertmanager"),
        ({"annotations": {"x": "{model.__class__}"}}, "alerts.rules[0].annotations: template field"),
        ({"name": "data drift"}, "alerts.rules[0].name: must match"),
    ],
    ids=["metric", "op", "selector", "hysteresis", "for", "action", "sink", "template", "name"],
)
def test_bad_rules_are_rejected_naming_the_key_and_the_reason(fields, message):
    with pytest.raises(ConfigError) as raised:
        parse_config(_rule(**fields), environ={})

    assert str(raised.value).startswith(message)


def test_rules_with_duplicate_names_are_rejected():
    config = _rule()
    config["alerts"]["rules"] *= 2

    with pytest.raises(ConfigError, match="rule names must be unique"):
        parse_config(config, environ={})


def test_two_series_whose_label_values_hold_separators_are_two_alerts():
    engine = RuleEngine([Rule("CanaryWorse", "driftwarden_version_verdict", "<", 0)])
    series = [("a", "x\0severity=warning\0version=y"), ("a\0severity=warning\0version=x", "y")]
    samples = [Sample("driftwarden_version_verdict", {"model": m, "version": v}, -1) for m, v in series]
    alerts = engine.evaluate(samples, now_ms=0)
    assert sorted((alert.labels["model"], alert.labels["version"]) for alert in alerts) == sorted(series)
    assert len({alert.fingerprint for alert in alerts}) == 2


def test_a_series_without_a_backslash_or_nul_keeps_the_fingerprint_checkpoints_hold():
    # Escaping the values must not change the fingerprints of existing series: a restored checkpoint's firing
    # alerts would otherwise resolve and fire again on upgrade. The value is what the code before the escaping gave.
    labels = {"alertname": "DataDrift", "model": "support-bot", "severity": "warning", "team": "ml=platform"}
    assert _fingerprint(labels) == "5750654bf9c9fe8e"

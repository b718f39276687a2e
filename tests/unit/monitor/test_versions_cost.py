"""Each version's cost per call, and a candidate's cost against its baseline's, against an oracle.

The oracle is :mod:`tests.unit.monitor.test_spend`'s: each call's cost in :class:`~decimal.Decimal` from the event
the test sent, at the prices of the version it named; a version's mean over its calls that report tokens, exact then
rounded once. The comparison's effect is numpy's difference of means of those costs over the calls both versions
made since it began; its interval and p-value are those of :class:`~detectors.sequential.AnytimeTTest` fed the
oracle's samples at the same ticks, and savvi's anytime-valid regression on them at a single tick. Every figure goes
through a real :class:`~monitor.pipeline.Pipeline`, its exposition, its checkpoint and its rollback requests.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal, localcontext

import numpy as np
import pytest
from savvi.linear_regression import LinearRegression

from detectors.sequential import AnytimeTTest, Moments
from monitor.config import ConfigError, parse_config
from monitor.evaluate.versions import evidence
from monitor.pipeline import Pipeline
from tests.unit.alerts.test_alerting import Broker
from tests.unit.alerts.test_rollback import ROLLBACK, Daemon
from tests.unit.monitor.test_spend import PRICING as SPEND_PRICING
from tests.unit.monitor.test_spend import T0, _apply, _oracle, _samples, _through_disk

#: test_spend's prices as an operator writes them; v1 is the baseline, "cheap" pays a third of its output price and
#: less for input, "pricey" three times its output.
PRICING = {**SPEND_PRICING, "versions": {"cheap": {"input": "0.25", "output": 5}, "pricey": {"output": 45}}}
SHARES = {"v1": 0.6, "cheap": 0.2, "pricey": 0.2}
#: The default verdict metrics (cost is not one of them): each is tested at alpha over their number.
N_DEFAULT_VERDICT_METRICS = 7
MIN_SAMPLES = 20


def _config(pricing: dict | None = PRICING, size: int = 300, **versions: object):
    """Model m, whose versions are compared with v1; evaluated when a test says only (the calls, a second apart
    from an hour's start, span less than an hour)."""
    model: dict = {"name": "m", "versions": {"baseline": "v1", "min_samples": MIN_SAMPLES, **versions}}
    if pricing is not None:
        model["pricing"] = pricing
    return parse_config({"windows": {"size": size, "min_samples": 1, "evaluate_every": "1h"}, "models": [model]})


def _calls(n: int, seed: int = 3, first: int = 0) -> list[dict]:
    """Calls of v1, cheap and pricey, alike but for their prices: a sixth report no token count at all, the others
    each count with a chance of 0.8 (a count left out is none)."""
    rng = random.Random(seed)
    calls = []
    for i in range(first, first + n):
        version = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
        call = {"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", "model_version": version,
                "latency_ms": rng.lognormvariate(5.0, 0.3)}  # fmt: skip
        if rng.random() >= 1 / 6:
            for field, high in (("input_tokens", 8_000), ("output_tokens", 2_000), ("cache_read_input_tokens", 3_000)):
                if rng.random() < 0.8:
                    call[field] = rng.randrange(high)
        calls.append(call)
    return calls


def _costs(calls: list[dict], version: str, pricing: dict = PRICING) -> list[Decimal]:
    """The exact costs of ``version``'s calls among ``calls`` that report tokens."""
    return [cost for call in calls if call["model_version"] == version and (cost := _oracle(call, pricing)) is not None]


def _mean(costs: list[Decimal]) -> float:
    """The exact mean of ``costs``, rounded once."""
    with localcontext() as context:
        context.prec = 200
        return float(sum(costs, Decimal(0)) / len(costs))


def _floats(costs: list[Decimal]) -> np.ndarray:
    return np.array([float(cost) for cost in costs])


def _evaluated(pipeline: Pipeline):
    pipeline.evaluate(pipeline.watermark_ms)
    return pipeline.evaluations["m"].versions


# --- Each version's cost per call -----------------------------------------------------------------------------------


def test_each_versions_cost_per_call_is_the_mean_of_its_calls_that_report_tokens_at_its_own_prices():
    calls = _calls(1_000)
    pipeline = Pipeline(_config())
    rng = random.Random(4)
    sizes = [rng.randrange(1, 60) for _ in range(len(calls))]  # batches as polls bring them
    _apply(pipeline, calls, sizes)
    versions = _evaluated(pipeline)
    held = calls[-300:]
    exported = _samples(pipeline, "driftwarden_version_quality")
    for version in SHARES:
        costs = _costs(held, version)
        expected = _mean(costs)
        assert versions.figures[version].means["cost"] == pytest.approx(expected, rel=1e-12), version
        labels = (("metric", "cost"), ("model", "m"), ("version", version))
        assert exported[labels] == pytest.approx(expected, rel=1e-12), version
        # the calls that report no token count are left out, not counted as free
        assert len(costs) < sum(call["model_version"] == version for call in held)
    # each at its own prices: cheap is cheaper than the baseline, pricey dearer
    means = {version: versions.figures[version].means["cost"] for version in SHARES}
    assert means["cheap"] < means["v1"] < means["pricey"]


def test_a_model_without_pricing_has_no_cost_per_version_nor_a_cost_comparison():
    calls = _calls(400)
    pipeline = Pipeline(_config(None))
    _apply(pipeline, calls)
    versions = _evaluated(pipeline)
    assert all("cost" not in figures.means for figures in versions.figures.values())
    assert all("cost" not in comparison.metrics for comparison in versions.comparisons.values())
    for name in ("driftwarden_version_quality", "driftwarden_version_comparison"):
        metrics = {dict(labels)["metric"] for labels in _samples(pipeline, name)}
        assert "output_tokens" in metrics and "cost" not in metrics, name
    latest = pipeline.states["m"].versions.comparisons["pricey"].latest
    assert "output_tokens" in latest["metrics"] and "cost" not in latest["metrics"]


def test_versions_whose_calls_report_no_tokens_export_no_cost_rather_than_a_free_one():
    calls = [{key: value for key, value in call.items() if not key.endswith("_tokens")} for call in _calls(400)]
    pipeline = Pipeline(_config())
    _apply(pipeline, calls)
    versions = _evaluated(pipeline)
    assert all(math.isnan(figures.means["cost"]) for figures in versions.figures.values())
    result = versions.comparisons["pricey"].metrics["cost"]
    assert (result.n_baseline, result.n_candidate) == (0, 0) and math.isnan(result.effect)
    for name in ("driftwarden_version_quality", "driftwarden_version_comparison"):
        metrics = {dict(labels)["metric"] for labels in _samples(pipeline, name)}
        assert "error_ratio" in metrics and "cost" not in metrics, name
    assert pipeline.states["m"].versions.comparisons["pricey"].latest["metrics"]["cost"]["effect"] is None


# --- The comparison -------------------------------------------------------------------------------------------------


def test_the_cost_comparison_is_the_anytime_valid_test_of_the_calls_since_it_began_at_every_tick():
    calls = _calls(1_500, seed=5)
    pipeline = Pipeline(_config())
    alpha = 0.05 / N_DEFAULT_VERDICT_METRICS
    oracles = {version: AnytimeTTest(alpha=alpha, phi=1.0, min_samples=MIN_SAMPLES) for version in ("cheap", "pricey")}
    _apply(pipeline, calls[:60])  # every version is live: the comparisons begin at the first evaluation
    assert pipeline.evaluations == {}  # the test's ticks are the only ones
    sent = 60
    for size in [60, 140, 37, 200, 90, 313, 150, 250, 200]:  # the window (300) overwritten in between
        versions = _evaluated(pipeline)
        for version, oracle in oracles.items():
            start = pipeline.states["m"].versions.comparisons[version].start_row
            since = calls[start:sent]
            baseline, candidate = _costs(since, "v1"), _costs(since, version)
            expected = oracle.update(Moments.of(_floats(baseline)), Moments.of(_floats(candidate)))
            result = versions.comparisons[version].metrics["cost"]
            assert (result.n_baseline, result.n_candidate) == (len(baseline), len(candidate))
            assert result.effect == pytest.approx(_floats(candidate).mean() - _floats(baseline).mean(), rel=1e-9)
            assert result.effect == pytest.approx(_mean(candidate) - _mean(baseline), rel=1e-9)
            assert (result.lower, result.upper, result.p_value) == pytest.approx(
                (expected.lower, expected.upper, expected.p_value), rel=1e-9
            ), (version, sent)
            assert result.tested == expected.tested
        _apply(pipeline, calls[sent : sent + size])
        sent += size
    assert sent == len(calls)
    exported = _samples(pipeline, "driftwarden_version_comparison")
    result = versions.comparisons["pricey"].metrics["cost"]
    assert result.significant and result.lower > 0  # found dearer, with its sign
    for stat in ("effect", "lower", "upper", "p_value"):
        labels = (("baseline", "v1"), ("metric", "cost"), ("model", "m"), ("stat", stat), ("version", "pricey"))
        assert exported[labels] == getattr(result, stat)


def test_the_cost_p_value_and_interval_are_savvis_on_the_calls_both_versions_made():
    calls = _calls(800, seed=6)
    pipeline = Pipeline(_config(size=2_000))
    _apply(pipeline, calls)
    result = _evaluated(pipeline).comparisons["pricey"].metrics["cost"]  # one tick: its p-value is this tick's
    start = pipeline.states["m"].versions.comparisons["pricey"].start_row
    oracle = LinearRegression(alpha=0.05 / N_DEFAULT_VERDICT_METRICS, p=2)
    per_mille = 1_000  # savvi's least squares start from a prior of 1e6, far above costs of cents: fed in mills
    with np.errstate(divide="ignore", invalid="ignore"):  # savvi's own early observations
        for call in calls[start:]:
            cost = _oracle(call, PRICING)
            if call["model_version"] in ("v1", "pricey") and cost is not None:
                oracle.update(np.array([float(cost * per_mille), 1.0, float(call["model_version"] == "pricey")]))
    assert result.p_value == pytest.approx(min(1.0, float(oracle.calculate_p_value()[1])), rel=1e-5)
    lower, upper = oracle.calculate_conf_int()[1] / per_mille
    assert (result.lower, result.upper) == pytest.approx((lower, upper), rel=1e-5)


def test_a_currency_change_begins_the_cost_comparison_again_and_never_mixes_currencies(tmp_path):
    calls = _calls(900, seed=7)
    pipeline = Pipeline(_config())
    _apply(pipeline, calls[:600], [50] * 12)
    _evaluated(pipeline)
    yen = {**PRICING, "currency": "JPY", "input": 450, "output": 2250, "cache_read": 45, "versions": {}}
    restored = _through_disk(pipeline, tmp_path, _config(yen))
    comparison = restored.states["m"].versions.comparisons["pricey"]
    assert "cost" not in comparison.latest["metrics"] and "error_ratio" in comparison.latest["metrics"]
    _apply(restored, calls[600:], [50] * 6)
    versions = _evaluated(restored)
    result = versions.comparisons["pricey"].metrics["cost"]
    later = calls[600:]  # the cost is compared on the calls priced in yen only
    baseline, candidate = _costs(later, "v1", yen), _costs(later, "pricey", yen)
    assert (result.n_baseline, result.n_candidate) == (len(baseline), len(candidate))
    assert result.effect == pytest.approx(_mean(candidate) - _mean(baseline), rel=1e-9)
    # the other metrics carry on over every call since the comparison began
    since = calls[comparison.start_row :]
    errors = versions.comparisons["pricey"].metrics["error_ratio"]
    assert errors.n_candidate == sum(call["model_version"] == "pricey" for call in since) > len(candidate)
    # and each version's figure is of the window's calls priced in yen
    assert versions.figures["v1"].means["cost"] == pytest.approx(_mean(_costs(calls[-300:], "v1", yen)), rel=1e-12)


def test_a_price_change_in_the_same_currency_carries_the_cost_comparison_on(tmp_path):
    calls = _calls(900, seed=7)
    pipeline = Pipeline(_config())
    _apply(pipeline, calls[:600], [50] * 12)
    _evaluated(pipeline)
    cheaper = {**PRICING, "output": 10}
    restored = _through_disk(pipeline, tmp_path, _config(cheaper))
    _apply(restored, calls[600:], [50] * 6)
    result = _evaluated(restored).comparisons["pricey"].metrics["cost"]
    since = calls[restored.states["m"].versions.comparisons["pricey"].start_row :]
    before, after = [call for call in since if call["timestamp"] < T0 + 600], calls[600:]
    baseline = _costs(before, "v1") + _costs(after, "v1", cheaper)  # each call at the price it was billed at
    candidate = _costs(before, "pricey") + _costs(after, "pricey", cheaper)
    assert (result.n_baseline, result.n_candidate) == (len(baseline), len(candidate))
    assert result.effect == pytest.approx(_mean(candidate) - _mean(baseline), rel=1e-9)


# --- Verdicts and rollback evidence ---------------------------------------------------------------------------------


def test_cost_is_compared_but_decides_no_verdict_unless_the_config_names_it(tmp_path):
    calls = _calls(2_000, seed=8)
    default = Pipeline(_config(size=5_000))
    _apply(default, calls, [250] * 8)
    comparisons = _evaluated(default).comparisons
    assert comparisons["pricey"].metrics["cost"].lower > 0 and comparisons["cheap"].metrics["cost"].upper < 0
    assert {version: comparison.verdict for version, comparison in comparisons.items()} == {"cheap": 0, "pricey": 0}

    metrics = [*default.config.models[0].versions.verdict_metrics, "cost"]
    settings = {"state": {"dir": str(tmp_path / "state")}, "windows": {"size": 5_000, "min_samples": 1},
                "models": [{"name": "m", "pricing": PRICING, "versions": {"baseline": "v1", "min_samples": MIN_SAMPLES,
                                                                        "verdict_metrics": metrics}}],
                "alerts": {"rules": [ROLLBACK]}, "rollback": {"topic": "rollbacks"}}  # fmt: skip
    daemon = Daemon(parse_config(settings, environ={}), Broker())
    _apply(daemon.pipeline, calls, [250] * 8)
    now_ms = daemon.tick()
    comparisons = daemon.pipeline.evaluations["m"].versions.comparisons
    assert {version: comparison.verdict for version, comparison in comparisons.items()} == {"cheap": 1, "pricey": -1}
    [job] = daemon.alerting.rollback.jobs()  # the dearer one only: higher is worse
    assert job.version == "pricey" and job.evidence == evidence(comparisons["pricey"], "v1", now_ms)
    cost = job.evidence["metrics"]["cost"]
    since = calls[daemon.pipeline.states["m"].versions.comparisons["pricey"].start_row :]
    baseline, candidate = _costs(since, "v1"), _costs(since, "pricey")
    assert (cost["n_baseline"], cost["n_candidate"]) == (len(baseline), len(candidate))
    assert cost["effect"] == pytest.approx(_mean(candidate) - _mean(baseline), rel=1e-9)
    result = comparisons["pricey"].metrics["cost"]
    assert (cost["lower"], cost["upper"], cost["p_value"]) == (result.lower, result.upper, result.p_value)
    assert cost["significant"] and cost["tested"]
    # named, cost shares alpha with the other verdict metrics
    assert math.isclose(daemon.pipeline.states["m"].versions.comparisons["pricey"].tests["cost"].alpha, 0.05 / 8)


def test_the_default_verdict_metrics_leave_cost_out():
    versions = _config().models[0].versions
    assert "cost" not in versions.verdict_metrics and len(versions.verdict_metrics) == N_DEFAULT_VERDICT_METRICS


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ({"versions": {"verdict_metrics": ["latency", "cost"]}},
         "versions.verdict_metrics names cost, which only a model with a pricing section has"),
        ({"versions": {"verdict_metrics": ["output_tokens"]}},
         "'output_tokens' is compared but never a verdict metric; valid: latency, error_ratio, "
         "feedback_positive_ratio, judge_score, accuracy, absolute_error, content_filter_ratio, cost "
         "(cost: named only, by a model with pricing; higher is worse)"),
        ({"versions": {"verdict_metrics": ["price"]}}, "'price' is no verdict metric; valid: latency, "),
    ],
)  # fmt: skip
def test_a_verdict_metric_the_model_cannot_have_is_refused_with_the_valid_ones(model, error):
    with pytest.raises(ConfigError) as raised:
        parse_config({"models": [{"name": "m", **model}]})
    assert error in str(raised.value)

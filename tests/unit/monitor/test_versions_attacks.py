"""Attacks on a model's versions: what a hostile producer, a wrong clock, a restart or a config change can do to
the codes, the comparisons, their verdicts, the exports and the rollback requests.

Each test sends events through a real :class:`~monitor.pipeline.Pipeline` (or :class:`~monitor.state.model.
ModelState` and :func:`~monitor.evaluate.versions.evaluate_versions`, as the pipeline calls them) and checks what
comes out against the test's own record of the calls it sent. The tests marked ``xfail`` document defects whose fix
is a design decision (see their reasons).
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import ConfigError, VersionsConfig, parse_config
from monitor.evaluate.versions import evaluate_versions, evidence
from monitor.ingest.events import Event
from monitor.pipeline import Pipeline
from monitor.state.columns import TIMESTAMP_MS, VERSION
from monitor.state.model import ModelState
from monitor.state.versions import Versions
from monitor.state.vocabulary import OTHER
from monitor.state.windows import Column, Window
from tests.unit.alerts.test_alerting import Broker
from tests.unit.alerts.test_rollback import Daemon, calls, config_for, settings
from tests.unit.monitor.test_feedback import _apply, _metrics, _sample, _through_disk
from tests.unit.monitor.test_versions import _call, _pipeline, _promoting, _rollout, _versions

# --- Restarts ---------------------------------------------------------------------------------------------------


def test_a_checkpoint_from_before_versions_restores_and_versions_begin_with_the_next_calls():
    pipeline = _pipeline(size=50)
    _apply(pipeline, [_call(i, None) for i in range(30)])
    snapshot = pipeline.snapshot()
    saved = snapshot["states"]["models"]["m"]
    del saved["versions"]  # as a checkpoint written before versions were kept: no versions, no version column
    saved["window"]["columns"] = {name: data for name, data in saved["window"]["columns"].items() if name != "version"}
    restored = Pipeline(pipeline.config)
    restored.restore(snapshot)
    assert restored.states.resets == {}
    _apply(restored, [_call(30 + i, "b" if i % 3 == 0 else "a") for i in range(30)])
    versions = _versions(restored)
    assert {name: figures.n_calls for name, figures in versions.figures.items()} == {"a": 20, "b": 10}
    errors = versions.comparisons["b"].metrics["error_ratio"]
    assert (versions.baseline, errors.n_baseline, errors.n_candidate) == ("a", 20, 9)  # from a's first call, call 31


# --- Hostile version names ----------------------------------------------------------------------------------------


def test_a_version_named_other_folds_into_other_and_is_never_a_candidate():
    # A producer that names a version "__other__" must not make a second series of that name, nor a comparison whose
    # candidate group is the fold's (evaluate_versions finds a group by name: the two would be one).
    pipeline = _pipeline(max_live=3)
    names = ["a", OTHER, "b", "c", "d"]  # d: past max_live (a, b and c are live)
    _apply(pipeline, [_call(i, names[i % 5]) for i in range(50)])
    versions = _versions(pipeline)
    assert OTHER not in pipeline.states["m"].versions.live
    assert OTHER not in versions.comparisons
    sent = {name: names.count(name) * 10 for name in names}
    assert {name: figures.n_calls for name, figures in versions.figures.items()} == {
        "a": sent["a"], "b": sent["b"], "c": sent["c"], OTHER: sent[OTHER] + sent["d"]
    }  # fmt: skip


def test_other_cannot_be_configured_as_the_baseline():
    with pytest.raises(ConfigError, match="versions.baseline"):
        parse_config({"models": [{"name": "m", "versions": {"baseline": OTHER}}]})


def test_a_rollback_request_names_the_version_the_producer_sent_not_its_exported_label(tmp_path):
    # "" is exported as "(empty)" and "(empty)" as "((empty))": the rules see those, the ledger must not.
    renamed = {"v2": "", "v3": "(empty)"}
    sent = [{**call, "model_version": renamed.get(call["model_version"], call["model_version"])} for call in calls()]
    daemon = Daemon(config_for(tmp_path / "state"), Broker())
    _apply(daemon.pipeline, sent, batch=250)
    now_ms = daemon.tick()
    comparisons = daemon.pipeline.evaluations["m"].versions.comparisons
    assert (comparisons[""].verdict, comparisons["(empty)"].verdict) == (-1, -1)  # both worse (v2 and v3)
    requests = {job.version: job for job in daemon.alerting.rollback.jobs()}
    assert sorted(requests) == ["", "(empty)"]
    for version, job in requests.items():  # each with its own comparison's evidence
        assert job.evidence == evidence(comparisons[version], "v1", now_ms)
    assert requests[""].evidence["metrics"]["error_ratio"]["significant"]  # v2 fails more
    assert requests["(empty)"].evidence["metrics"]["latency"]["significant"]  # v3 is slower


def test_the_configured_baseline_is_not_retired_for_a_new_version_while_it_is_silent():
    # stable, the configured baseline, is quiet for a while (a night, a deploy); a new canary must not take its place
    # for good: once back, stable would fold into OTHER for as long as the canaries keep sending, and no version
    # would be compared with anything.
    pipeline = _pipeline(max_live=2, retire_after="1m", baseline="stable")
    _apply(pipeline, [_call(i, "stable" if i % 2 else "canary-a") for i in range(40)])
    _apply(pipeline, [_call(100 + i, "canary-a" if i % 2 else "canary-b", at_s=100 + i) for i in range(40)])
    _apply(pipeline, [_call(200 + i, ["stable", "canary-a", "canary-b"][i % 3], at_s=150 + i) for i in range(60)])
    versions = _versions(pipeline)
    assert pipeline.states["m"].versions.live == ["canary-a", "stable"]
    assert versions.baseline == "stable" and list(versions.comparisons) == ["canary-a"]


def test_choosing_the_baseline_takes_memory_by_the_window_not_by_the_versions_ever_admitted():
    # A version per call, a minute apart (retire_after's floor): each call retires the least recently seen and
    # takes a new code, so codes keep growing; the baseline's choice counts the window's 100 calls, whatever the
    # codes given so far.
    versions = Versions(VersionsConfig(max_live=2, retire_after="1m"))
    window = Window(100, {TIMESTAMP_MS: Column(np.float64), VERSION: Column(np.int32, missing=0)})
    for start in range(0, 200_000, 1_000):
        times_ms = np.arange(start, start + 1_000, dtype=float) * 60_001.0
        names = [f"v{i}" for i in range(start, start + 1_000)]
        window.append({TIMESTAMP_MS: times_ms, VERSION: versions.encode(names, times_ms, window.n_appended)})
    assert versions.code("v199999") == 200_000  # every call was admitted
    codes = window.view()[VERSION]
    tracemalloc.start()
    try:
        versions.choose_baseline(codes, window.n_appended - len(window))
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert versions.baseline in ("v199998", "v199999")
    assert peak_bytes < 50_000  # not a count for each of the 200,000 codes ever given (1.6 MB)


def test_retire_after_has_a_floor_so_that_version_codes_never_run_out():
    # Codes are never given twice and the window holds them as int32: a version per call retiring the last one
    # each time would overflow them after 2**31 admissions. At one admission a minute for each of 50 live
    # versions that takes 80 years.
    with pytest.raises(ConfigError, match=r"versions.retire_after: must be >= 60000"):
        _pipeline(max_live=2, retire_after="1ms")


# --- Verdicts ------------------------------------------------------------------------------------------------------


def test_a_canary_found_worse_is_never_called_better_because_its_running_mean_crossed_zero():
    # A canary twice as slow for its first 150 calls, then 0.6 times as fast: the cumulative difference of log
    # latencies falls through zero while the test's interval (the intersection of every tick's) still lies above it.
    # A verdict says on which side of zero the interval is, not where the noisy point estimate happens to be.
    rng = np.random.default_rng(3)
    pipeline = _pipeline(size=500, min_samples=100)
    verdicts = []
    for tick in range(12):
        canary = (rng.random(100) < 0.3).tolist()
        factor = [(2.0 if tick < 5 else 0.6) if is_canary else 1.0 for is_canary in canary]
        latency_ms = rng.lognormal(5.0, 0.3, 100) * factor
        _apply(pipeline, [
            _call(100 * tick + k, "canary" if canary[k] else "stable", float(latency_ms[k])) for k in range(100)
        ])  # fmt: skip
        comparison = _versions(pipeline).comparisons["canary"]
        latency = comparison.metrics["latency"]
        verdicts.append(comparison.verdict)
        if latency.significant:  # an interval that excludes zero: worse when above it (latency: higher is worse)
            assert latency.lower > 0 and comparison.verdict == -1, (tick, latency)
    assert verdicts[-1] == -1 and 1 not in verdicts and -1 in verdicts


@pytest.mark.parametrize("latency_ms", [37.0, 100.0, 123.0, 250.0, 1_000.0])
def test_identical_constant_latencies_get_no_verdict(latency_ms):
    # A stub, a cache or a coarse clock answers every call in the same time, in both versions: the arms' log
    # latencies are the same number, so nothing may be significant (rounding in their means is no difference).
    pipeline = _pipeline(size=300)
    _apply(pipeline, [_call(i, "c" if i % 4 == 0 else "s", latency_ms=latency_ms) for i in range(300)], batch=50)
    comparison = _versions(pipeline).comparisons["c"]
    latency = comparison.metrics["latency"]
    assert (latency.n_baseline, latency.n_candidate) == (225, 74)  # from s's first call, the second
    assert (latency.effect, latency.significant, comparison.verdict) == (0.0, False, 0)


def test_a_candidate_without_calls_in_the_window_is_not_compared_with_the_calls_that_name_no_version():
    # The canary falls silent (not long enough to retire) while the window fills with stable calls and calls that
    # name no version, ten times slower: its window figures (p95 difference, probability of being slower) have no
    # calls to rest on, and must not be taken from those.
    pipeline = _pipeline(size=200)
    _apply(pipeline, [_call(i, "canary" if i % 4 == 0 else "stable") for i in range(200)])
    _versions(pipeline)
    later = [_call(200 + i, "stable" if i % 2 else None, latency_ms=100.0 if i % 2 else 1_000.0) for i in range(200)]
    _apply(pipeline, later)
    versions = _versions(pipeline)
    assert "canary" not in versions.figures  # none of its calls is in the window
    comparison = versions.comparisons["canary"]
    assert comparison.metrics["latency"].n_candidate == 49  # its calls since the comparison began, settled
    assert math.isnan(comparison.latency_slower)
    assert all(math.isnan(value) for value in comparison.latency_p95_ms)


# --- Exports ----------------------------------------------------------------------------------------------------


def _exposed(pipeline) -> list[tuple[str, dict, float]]:
    """The samples of ``/metrics`` as (name, labels, value)."""
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(_metrics(pipeline).decode())
        for sample in family.samples
    ]


def test_latencies_too_far_apart_for_their_ratio_leave_it_out_of_the_scrape():
    # The latency effect is a difference of logs; its exp overflows a float when the candidate's calls are 1e300
    # times slower. The scrape must still answer, every other series in it, and that ratio left out.
    pipeline = _pipeline(size=1_000)
    slow = [i % 3 == 0 for i in range(600)]
    sent = [
        _call(i, "b" if slow[i] else "a", latency_ms=1e300 if slow[i] else 1e-300 * (1 + i % 7)) for i in range(600)
    ]
    _apply(pipeline, sent, batch=100)
    versions = _versions(pipeline)
    assert versions.comparisons["b"].metrics["latency"].effect > math.log(1e300)
    samples = _exposed(pipeline)
    assert all(math.isfinite(value) for name, _, value in samples if name.startswith("driftwarden_version"))
    compared = {(labels["metric"], labels["stat"]): value for name, labels, value in samples
                if name == "driftwarden_version_comparison"}  # fmt: skip
    assert ("latency", "effect") not in compared and compared[("latency", "p_value")] < 1e-9
    assert compared[("error_ratio", "effect")] == 0.0  # the rest of the comparison is there


def test_a_p95_interval_too_wide_for_a_float_is_left_out_not_exported_infinite():
    # The candidate's p95 sits on 1.7e308 ms calls and its order-statistic interval reaches down to the fast ones:
    # effect plus radius overflows to +inf, which must be left out like an unbounded interval of the t-test.
    pipeline = _pipeline(size=1_000)
    huge = [i % 34 == 1 for i in range(600)]  # 6% of b's calls
    sent = [_call(i, "b" if i % 2 else "a", latency_ms=1.7e308 if huge[i] else 100.0 + i % 9) for i in range(600)]
    _apply(pipeline, sent, batch=100)
    _versions(pipeline)
    samples = _exposed(pipeline)
    assert all(math.isfinite(value) for name, _, value in samples if name.startswith("driftwarden_version"))


def test_no_rollback_is_requested_for_the_fold_of_the_models_past_the_limit(tmp_path):
    # Past limits.max_models, every new model's calls fold into one state, "__other__": its versions mix the versions
    # of many models (each one's v2 is one version there), so no rollback of one can be asked for.
    configured = settings(tmp_path / "state")
    configured["models"] = [{"name": "*", "reference": {"warmup": 1}, "versions": {"min_samples": 20}}]
    configured["limits"] = {"max_models": 1}
    daemon = Daemon(parse_config(configured, environ={}), Broker())
    _apply(daemon.pipeline, [{**call, "model": "first"} for call in calls(200, seed=1)])
    _apply(daemon.pipeline, [{**call, "model": "second"} for call in calls()], batch=250)  # folded
    daemon.tick()
    assert daemon.pipeline.evaluations[OTHER].versions.comparisons["v2"].verdict == -1
    assert {job.model for job in daemon.alerting.rollback.jobs()} == {"first"}


# --- A reference promoted from a new baseline -------------------------------------------------------------------


def test_a_promoted_reference_kept_through_a_config_change_is_still_said_to_be_promoted(tmp_path):
    pipeline = _promoting(promote=True)
    _apply(pipeline, _rollout(), batch=10)
    promoted = pipeline.states["m"].reference
    assert promoted.source == "promoted" and promoted.complete
    changed = pipeline.config.model_copy(update={"windows": pipeline.config.windows.model_copy(update={"size": 60})})
    pipeline.config = changed  # the window's size changed: only the reference (and vocabularies) is kept
    restarted = _through_disk(pipeline, tmp_path)
    assert restarted.states.resets == {"m": "config_changed"}
    reference = restarted.states["m"].reference
    assert (reference.id, reference.source) == (promoted.id, "promoted")
    assert _sample(restarted, "driftwarden_reference_info", model="m", source="promoted", reference_id=promoted.id)


def test_a_baseline_flapping_at_half_the_traffic_does_not_relearn_the_reference_on_every_flip():
    pipeline = _promoting(promote=True)
    _apply(pipeline, [{**_call(i, "v1"), "features": {"x": 0.0}} for i in range(60)], batch=10)  # v1's warm-up
    warmup = pipeline.states["m"].reference.id
    rng = np.random.default_rng(1)
    ids, complete = {warmup}, []
    for tick in range(60):  # then v1 and v2 at 50/50, evaluated after every batch of 25
        _apply(pipeline, [
            {**_call(i, "v2" if rng.random() < 0.5 else "v1"), "features": {"x": 1.0}}
            for i in range(60 + 25 * tick, 60 + 25 * (tick + 1))
        ])  # fmt: skip
        pipeline.evaluate(pipeline.watermark_ms)
        reference = pipeline.states["m"].reference
        ids.add(reference.id)
        complete.append(reference.complete)
    assert len(ids - {None}) <= 2  # the warm-up's and at most one promoted reference
    assert np.mean(complete) > 0.9


# --- Statistics through the real plumbing -----------------------------------------------------------------------


def _a_a_stream(seed: int, canary_share: float, n_ticks: int = 200, batch: int = 100, alpha: float = 0.1) -> bool:
    """Whether an A/A stream (two versions, identical lognormal latencies) ever gets a verdict: a model state of a
    200-call window (so settle runs on every batch) evaluated after each batch, as the pipeline does."""
    config = parse_config({"windows": {"size": 200, "min_samples": 1}, "models": [{
        "name": "m", "reference": {"warmup": 1}, "drift": {"change_detector": None},
        "versions": {"min_samples": 10, "alpha": alpha, "verdict_metrics": ["latency"]},
    }]})  # fmt: skip
    state = ModelState("m", config.models[0], config)
    rng = np.random.default_rng(seed)
    for tick in range(n_ticks):
        canary = (rng.random(batch) < canary_share).tolist()
        latency_ms = rng.lognormal(5.0, 0.5, batch).tolist()
        at_ms = 1.8e12 + 1_000.0 * tick * batch
        state.ingest([
            Event(type="inference", request_id=f"r{tick}-{k}", timestamp_ms=at_ms + k, model="m",
                  model_version="canary" if canary[k] else "stable", latency_ms=latency_ms[k])
            for k in range(batch)
        ])  # fmt: skip
        view = state.window.view()
        versions = evaluate_versions(state.read_versions(view), view, at_ms + batch)
        if any(comparison.verdict for comparison in versions.comparisons.values()):
            return True
    return False


#: Streams per A/A check, and the most that may get a verdict: P(Binomial(30, 0.1) >= 7) = 2.6%.
_N_STREAMS, _MOST_VERDICTS = 30, 6


@pytest.mark.statistical
def test_an_a_a_canary_gets_a_verdict_in_at_most_alpha_of_streams():
    verdicts = sum(_a_a_stream(seed, canary_share=0.1) for seed in range(_N_STREAMS))
    assert verdicts <= _MOST_VERDICTS


@pytest.mark.statistical
def test_an_a_a_test_at_half_the_traffic_gets_a_verdict_in_at_most_alpha_of_streams():
    verdicts = sum(_a_a_stream(seed, canary_share=0.5) for seed in range(_N_STREAMS))
    assert verdicts <= _MOST_VERDICTS

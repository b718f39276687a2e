"""A model's versions: admitted and folded within bounds, a baseline chosen, and each candidate compared with it on
every call both made since the comparison began, counted once, across window overwrites and restarts.

The comparisons are checked against a brute-force record of every call the test sent (numpy over the test's own
events), and their latency p-value against savvi's anytime-valid t-test on the same calls.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from savvi.linear_regression import LinearRegression
from scipy.spatial.distance import jensenshannon

from monitor.cli import main
from monitor.config import VersionsConfig, parse_config
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import PartitionCheckpoints
from monitor.run.store import DirectoryStore
from monitor.state.versions import Versions
from monitor.state.vocabulary import OTHER
from tests.unit.monitor.test_feedback import _apply, _sample, _through_disk

T0 = 1_800_000_000


def _pipeline(size: int = 100, duration: str | None = None, **versions: object) -> Pipeline:
    model = {"name": "m", "reference": {"warmup": 1}, "versions": {"min_samples": 10, **versions}}
    windows = {"size": size, "min_samples": 1, "duration": duration}
    return Pipeline(parse_config({"windows": windows, "models": [model]}))


def _call(i: int, version: str | None, latency_ms: float = 100.0, failed: bool = False, at_s: float | None = None):
    call = {"request_id": f"m-{i}", "timestamp": T0 + (i if at_s is None else at_s), "model": "m",
            "latency_ms": latency_ms, "error": "Timeout" if failed else None, "output_tokens": i % 7}  # fmt: skip
    if version is not None:
        call["model_version"] = version
    return call


def _written(directory: Path, config) -> str:
    """``config`` as a YAML file in ``directory``; its path."""
    path = directory / "driftwarden.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True, exclude_defaults=True)))
    return str(path)


def _versions(pipeline: Pipeline):
    pipeline.evaluate(pipeline.watermark_ms)
    return pipeline.evaluations["m"].versions


# --- Which versions are live ------------------------------------------------------------------------------------


def test_versions_past_the_limit_fold_into_other_until_a_live_one_has_been_silent_long_enough():
    pipeline = _pipeline(max_live=2, retire_after="1m")
    _apply(pipeline, [_call(i, version) for i, version in enumerate(["a", "b", "c", "a", "b", "c"])])
    versions = _versions(pipeline)
    assert {name: figures.n_calls for name, figures in versions.figures.items()} == {"a": 2, "b": 2, OTHER: 2}
    # b is silent for a minute and more: d takes its place; b's calls still in the window count as OTHER now
    _apply(pipeline, [_call(10 + i, "a", at_s=70 + i) for i in range(3)] + [_call(20, "d", at_s=80)])
    versions = _versions(pipeline)
    assert pipeline.states["m"].versions.live == ["a", "d"]
    assert {name: figures.n_calls for name, figures in versions.figures.items()} == {"a": 5, "d": 1, OTHER: 4}


def test_a_producer_that_names_a_new_version_per_call_makes_a_bounded_number_of_series():
    pipeline = _pipeline(max_live=3, retire_after="1h")
    _apply(pipeline, [_call(i, f"v{i}") for i in range(500)], batch=50)
    versions = _versions(pipeline)
    assert pipeline.states["m"].versions.live == ["v0", "v1", "v2"]  # the first three, none silent for an hour
    assert {name: figures.n_calls for name, figures in versions.figures.items()} == {OTHER: 100}
    assert versions.baseline is None and versions.comparisons == {}  # no live version is in the window
    assert _sample(pipeline, "driftwarden_version_calls", model="m", version=OTHER) == 100


def _admitted(batches: list[list[tuple[str | None, float]]], max_live: int, retire_ms: float) -> list[list[int]]:
    """The codes the admission rule gives, one call at a time in plain Python: a batch's live versions are seen
    first; then each new name, in the order it first comes, takes a code if there is room or the least recently
    seen live version has been silent for ``retire_ms`` before the name's latest call in the batch."""
    live: dict[str, int] = {}
    last: dict[str, float] = {}
    next_code, coded = 1, []
    for batch in batches:
        for name, at in batch:
            if name in live:
                last[name] = max(last[name], at)
        new: dict[str, int] = {}
        for name, _ in batch:
            if name is not None and name not in live and name not in new:
                latest = max(at for other, at in batch if other == name)
                if len(live) >= max_live:
                    victim = min(last, key=last.__getitem__)
                    if last[victim] > latest - retire_ms:
                        new[name] = -1
                        continue
                    del live[victim], last[victim]
                live[name], last[name], new[name] = next_code, latest, next_code
                next_code += 1
        coded.append([0 if name is None else live.get(name, new.get(name, -1)) for name, _ in batch])
    return coded


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", None]), st.integers(0, 50)), max_size=30),
             max_size=8),
    st.integers(1, 3),
)  # fmt: skip
def test_versions_are_coded_as_the_admission_rule_says(batches, max_live):
    timed = []
    for number, batch in enumerate(batches):  # each batch 100 s after the last: some versions fall silent
        timed.append([(name, 100_000.0 * number + 1_000.0 * at) for name, at in batch])
    versions = Versions(VersionsConfig(max_live=max_live, retire_after="150s"))
    coded = [
        versions.encode([name for name, _ in batch], np.array([at for _, at in batch]), 0).tolist()
        for batch in timed
        if batch
    ]
    assert coded == _admitted([batch for batch in timed if batch], max_live, 150_000)


def test_calls_without_a_version_are_in_no_version_and_make_no_comparison():
    pipeline = _pipeline()
    _apply(pipeline, [_call(i, None) for i in range(20)])
    pipeline.evaluate(pipeline.watermark_ms)
    assert pipeline.evaluations["m"].versions is None
    _apply(pipeline, [_call(20 + i, "v1") for i in range(5)])
    assert _versions(pipeline) is None  # one version: the model's own figures are its
    assert pipeline.states["m"].versions.baseline == "v1"  # (kept track of, for when another comes)
    _apply(pipeline, [_call(25 + i, "v2") for i in range(2)])
    versions = _versions(pipeline)
    assert versions.baseline == "v1" and list(versions.comparisons) == ["v2"]
    assert versions.figures["v1"].n_calls == 5 and versions.figures["v1"].traffic_share == 5 / 27


def test_the_configured_baseline_is_kept_however_little_traffic_it_has():
    pipeline = _pipeline(baseline="old")
    _apply(pipeline, [_call(i, "old" if i % 10 == 0 else "new") for i in range(100)])
    versions = _versions(pipeline)
    assert versions.baseline == "old" and list(versions.comparisons) == ["new"]


def test_a_baseline_that_takes_over_carries_the_comparison_of_the_two_on_turned_around():
    def version(i: int) -> str:  # b is rolled out from call 200 on: a quarter of the calls, then three quarters
        return ("a" if i % 4 else "b") if i < 200 else ("b" if i % 4 else "a")

    pipeline = _pipeline(size=50)
    _apply(pipeline, [_call(i, version(i), failed=version(i) == "b" and i % 8 == 0) for i in range(200)], batch=20)
    before = _versions(pipeline).comparisons["b"].metrics["error_ratio"]
    start = pipeline.states["m"].versions.comparisons["b"].start_row
    _apply(pipeline, [_call(i, version(i)) for i in range(200, 300)], batch=20)
    versions = _versions(pipeline)
    assert versions.baseline == "b" and list(versions.comparisons) == ["a"]
    assert pipeline.states["m"].versions.comparisons["a"].start_row == start  # the same comparison, not a new one
    after = versions.comparisons["a"].metrics["error_ratio"]
    since = [version(i) for i in range(start, 300)]  # every call since it began, settled or in the window
    assert (after.n_baseline, after.n_candidate) == (since.count("b"), since.count("a"))
    assert after.n_candidate > before.n_baseline and after.effect < 0  # a fails less than b did: turned around


def test_at_half_the_traffic_the_baseline_stays_until_another_has_twice_its_calls():
    pipeline = _pipeline(size=100)
    _apply(pipeline, [_call(i, "a" if i < 10 or i % 2 else "b") for i in range(200)], batch=10)
    assert _versions(pipeline).baseline == "a"  # 50/50 and b ahead now and then: a stays
    _apply(pipeline, [_call(200 + i, "b" if i % 4 else "a") for i in range(100)], batch=10)
    assert _versions(pipeline).baseline == "b"  # three quarters of the window: b took over


# --- What the comparisons count ---------------------------------------------------------------------------------


_METRICS_OF_CALLS = {
    "latency": lambda call: math.log(call["latency_ms"]),
    "error_ratio": lambda call: float(call["error"] is not None),
    "output_tokens": lambda call: float(call["output_tokens"]),
    "judge_score": lambda call: call.get("judge_score", math.nan),
}


def _stream(
    draw_sizes: list[int], canary_every: int, seed: int, slower: float = 1.0
) -> tuple[list[list[dict]], list[dict]]:
    """Batches of calls of "stable" and "canary" (``slower`` times slower; judge scores for some, as feedback in the
    same batch) and the calls in order, each with the judge score its feedback gave."""
    rng = np.random.default_rng(seed)
    batches, calls = [], []
    for size in draw_sizes:
        batch, feedback = [], []
        for _ in range(size):
            i = len(calls)
            version = "canary" if i % canary_every == 0 else "stable"
            latency_ms = float(rng.lognormal(5, 0.5)) * (slower if version == "canary" else 1.0)
            call = _call(i, version, latency_ms, bool(rng.random() < 0.1))
            batch.append(call)
            calls.append(dict(call))
        for call in calls[-min(size, 25) :]:  # (calls the window still holds as the feedback joins)
            if rng.random() < 0.5:
                call["judge_score"] = float(rng.random())
                feedback.append({"type": "feedback", "request_id": call["request_id"], "timestamp": call["timestamp"],
                                 "model": "m", "judge_score": call["judge_score"]})  # fmt: skip
        batches.append(batch + feedback)
    return batches, calls


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 80), min_size=3, max_size=12),
    canary_every=st.integers(2, 5),
    restarts=st.sets(st.integers(0, 11), max_size=3),
    ticks=st.sets(st.integers(0, 11), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    duration=st.sampled_from([None, "15s"]),
)
def test_a_comparison_counts_every_call_since_it_began_once(sizes, canary_every, restarts, ticks, seed, duration):
    batches, calls = _stream(sizes, canary_every, seed)
    pipeline = _pipeline(size=25, duration=duration)  # a duration: the evaluated window is cut, not the comparison
    with TemporaryDirectory() as directory:
        for number, batch in enumerate(batches):
            _apply(pipeline, batch)
            if number in restarts:
                pipeline = _through_disk(pipeline, Path(directory))
            if number in ticks:
                pipeline.evaluate(pipeline.watermark_ms)
    versions = _versions(pipeline)
    comparison = pipeline.states["m"].versions.comparisons.get("canary")
    if versions.baseline != "stable" or comparison is None:
        return  # the canary never ran beside the stable version at an evaluation
    since = calls[comparison.start_row :]
    held = calls[-25:]  # the figures are of the evaluated window: the calls held, within the duration if any
    evaluated = [call for call in held if duration is None or call["timestamp"] > calls[-1]["timestamp"] - 15]
    for version in ("stable", "canary"):
        mine = [call for call in evaluated if call["model_version"] == version]
        figures = versions.figures.get(version)
        assert (figures.n_calls if figures else 0) == len(mine)
        if mine:
            expected = np.mean([call["error"] is not None for call in mine])
            assert figures.means["error_ratio"] == pytest.approx(expected)
    for metric, value_of in _METRICS_OF_CALLS.items():
        result = versions.comparisons["canary"].metrics[metric]
        sides = [np.array([value_of(c) for c in since if c["model_version"] == v]) for v in ("stable", "canary")]
        baseline, candidate = (values[~np.isnan(values)] for values in sides)
        assert (result.n_baseline, result.n_candidate) == (len(baseline), len(candidate)), metric
        if len(baseline) and len(candidate):
            assert result.effect == pytest.approx(candidate.mean() - baseline.mean(), abs=1e-9), metric


def test_the_latency_p_value_is_savvis_on_the_calls_both_versions_made():
    batches, calls = _stream([60] * 20, canary_every=4, seed=7, slower=1.1)
    pipeline = _pipeline(size=400)
    for batch in batches:
        _apply(pipeline, batch)
    pipeline.evaluate(pipeline.watermark_ms)  # the comparison begins: one tick, so its p-value is this tick's
    result = pipeline.evaluations["m"].versions.comparisons["canary"].metrics["latency"]
    start = pipeline.states["m"].versions.comparisons["canary"].start_row
    oracle = LinearRegression(alpha=0.05, p=2)
    for call in calls[start:]:
        oracle.update(np.array([math.log(call["latency_ms"]), 1.0, float(call["model_version"] == "canary")]))
    assert result.p_value == pytest.approx(min(1.0, float(oracle.calculate_p_value()[1])), rel=1e-3)


# --- A reference promoted from a new baseline -------------------------------------------------------------------


def _promoting(promote: bool) -> Pipeline:
    model = {"name": "m", "reference": {"warmup": 20}, "features": [{"name": "x", "kind": "numeric"}],
             "versions": {"min_samples": 10, "promote_reference": promote}}  # fmt: skip
    return Pipeline(parse_config({"windows": {"size": 50, "min_samples": 1}, "models": [model]}))


def _rollout() -> list[dict]:
    """v1 alone for 60 calls, then v2 for 60 (x shifted by 3), then v2 and a few v1."""
    calls = [{**_call(i, "v1"), "features": {"x": i / 10}} for i in range(60)]
    calls += [{**_call(i, "v2"), "features": {"x": 3 + i / 10}} for i in range(60, 120)]
    return calls + [{**_call(i, "v2" if i % 5 else "v1"), "features": {"x": 3 + i / 10}} for i in range(120, 150)]


def test_a_baseline_that_takes_over_promotes_the_reference_from_its_calls_and_a_restart_keeps_it(tmp_path):
    pipeline = _promoting(promote=True)
    calls = _rollout()
    _apply(pipeline, calls[:60], batch=10)
    warmup_id = pipeline.states["m"].reference.id
    assert pipeline.states["m"].reference.source == "warmup" and warmup_id is not None
    _apply(pipeline, calls[60:], batch=10)
    pipeline = _through_disk(pipeline, tmp_path)
    reference = pipeline.states["m"].reference
    assert reference.source == "promoted" and reference.complete and reference.id != warmup_id
    # it took the new baseline's calls that came after the evaluation at which it took over, and nothing else
    taken = reference.columns()["feature.x"]
    v2_x = [call["features"]["x"] for call in calls if call["model_version"] == "v2"]
    first = v2_x.index(taken[0])
    assert taken.tolist() == v2_x[first : first + 20]
    assert _sample(pipeline, "driftwarden_reference_info", model="m", source="promoted", reference_id=reference.id)


def test_labels_join_the_calls_a_promoted_reference_took():
    pipeline = _promoting(promote=True)
    calls = _rollout()
    _apply(pipeline, calls, batch=10)
    reference = pipeline.states["m"].reference
    taken = reference.columns()["feature.x"].tolist()
    call = next(call for call in calls if call["features"]["x"] == taken[3] and call["model_version"] == "v2")
    _apply(pipeline, [{"type": "feedback", "request_id": call["request_id"], "timestamp": T0 + 200, "model": "m",
                       "judge_score": 0.25}])  # fmt: skip
    assert reference.columns()["judge_score"][3] == 0.25


def test_without_promotion_the_reference_stays_what_it_was():
    pipeline = _promoting(promote=False)
    calls = _rollout()
    _apply(pipeline, calls[:60], batch=10)
    warmup_id = pipeline.states["m"].reference.id
    _apply(pipeline, calls[60:], batch=10)
    assert _versions(pipeline).baseline == "v2"
    assert (pipeline.states["m"].reference.source, pipeline.states["m"].reference.id) == ("warmup", warmup_id)


def test_the_output_distributions_of_a_classifiers_versions_are_compared_by_their_categories():
    model = {"name": "m", "reference": {"warmup": 1}, "versions": {"min_samples": 10}}
    pipeline = Pipeline(parse_config({"windows": {"size": 500, "min_samples": 1}, "models": [model]}))
    rng = np.random.default_rng(8)
    calls = []
    for i in range(400):
        canary = i % 4 == 0
        call = _call(i, "rc" if canary else "v1")
        call["prediction"] = str(rng.choice(["yes", "no", "maybe"], p=[0.2, 0.6, 0.2] if canary else [0.5, 0.4, 0.1]))
        call["finish_reason"] = str(rng.choice(["stop", "length"], p=[0.7, 0.3] if canary else [0.95, 0.05]))
        calls.append(call)
    _apply(pipeline, calls)
    comparison = _versions(pipeline).comparisons["rc"]
    since = calls[pipeline.states["m"].versions.comparisons["rc"].start_row :]
    for field in ("prediction", "finish_reason"):
        counted = [Counter(call[field] for call in since if call["model_version"] == v) for v in ("v1", "rc")]
        categories = sorted(set(counted[0]) | set(counted[1]))
        shares = [[count[category] / sum(count.values()) for category in categories] for count in counted]
        assert comparison.distances[field] == pytest.approx(jensenshannon(*shares, base=2), rel=1e-9), field


def test_a_promotion_asked_for_through_the_store_is_applied_once_by_the_replica_that_holds_the_model(tmp_path):
    pipeline = _promoting(promote=False)
    calls = _rollout()
    _apply(pipeline, calls[:100], batch=10)  # v1 is the baseline, v2 live
    config = parse_config({"state": {"dir": str(tmp_path)}})
    written = _written(tmp_path, config)
    assert main(["reference", "promote", "--config", written, "--model", "m", "--version", "v2"]) == 0
    partitions = PartitionCheckpoints(DirectoryStore(tmp_path), config.kafka.group_id)
    [(model, request)] = partitions.promotions().items()
    assert (model, request["version"]) == ("m", "v2")

    assert pipeline.promote_reference("m", request["version"], request["id"])  # what the daemon does at a checkpoint
    assert not pipeline.promote_reference("elsewhere", None, "another")  # another replica's model: left for it
    reference = pipeline.states["m"].reference
    assert reference.source == "promoted" and len(reference) == 0
    assert pipeline.promote_reference("m", request["version"], request["id"])  # done with it, but not again:
    assert pipeline.states["m"].reference is reference
    partitions.promoted({"m": request["id"]})
    assert partitions.promotions() == {}
    _apply(pipeline, calls[100:], batch=10)
    v2_x = [call["features"]["x"] for call in calls[100:] if call["model_version"] == "v2"]
    assert reference.columns()["feature.x"].tolist() == v2_x[:20]  # v2's next calls, though v1 is the baseline


def test_a_promotion_of_a_version_that_is_not_live_changes_nothing():
    pipeline = _promoting(promote=False)
    _apply(pipeline, _rollout()[:60], batch=10)
    reference = pipeline.states["m"].reference
    assert pipeline.promote_reference("m", "v9", "request-1")  # refused for good: logged, not asked again
    assert pipeline.states["m"].reference is reference and reference.source == "warmup"


def test_a_numeric_models_versions_are_compared_on_their_absolute_errors():
    model = {"name": "m", "reference": {"warmup": 1}, "quality": {"numeric": True}, "versions": {"min_samples": 10}}
    pipeline = Pipeline(parse_config({"windows": {"size": 500, "min_samples": 1}, "models": [model]}))
    rng = np.random.default_rng(9)
    events, errors = [], {"v1": [], "rc": []}
    for i in range(300):
        version = "rc" if i % 3 == 0 else "v1"
        prediction, label = float(rng.normal(10, 2)), float(rng.normal(10, 2))
        events.append({**_call(i, version), "prediction": prediction})
        events.append({"type": "feedback", "request_id": f"m-{i}", "timestamp": T0 + i, "model": "m", "label": label})
        errors[version].append((i, abs(label - prediction)))
    _apply(pipeline, events)
    result = _versions(pipeline).comparisons["rc"].metrics["absolute_error"]
    start = pipeline.states["m"].versions.comparisons["rc"].start_row
    baseline, candidate = ([error for i, error in errors[v] if i >= start] for v in ("v1", "rc"))
    assert (result.n_baseline, result.n_candidate) == (len(baseline), len(candidate))
    assert result.effect == pytest.approx(np.mean(candidate) - np.mean(baseline), rel=1e-9)

"""Slices wired into the daemon: events in, ``/metrics`` out, each group's figures against oracles.

A group's drift share must be what the model's own drift suite says when it sees only that group's calls (a
pipeline fed those calls alone, warm-up and window sized to hold exactly the group's share), its p-values
scipy's on the group's values, its realized accuracy scikit-learn's on its labelled calls. The expected
figures come from the generated calls, never from the daemon's columns.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import fisher_exact, ks_2samp
from sklearn.metrics import accuracy_score
from statsmodels.stats.proportion import proportion_confint

from detectors.quality import QualityStats
from monitor.cli import main
from monitor.config import ConfigError, parse_config
from monitor.evaluate.quality import QualitySuite
from monitor.evaluate.slices import OTHER, GroupedQuality, Groups, SliceSuite, max_series
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.state.columns import Columns
from monitor.state.vocabulary import MISSING
from tests.oracles import classification_figures

T0 = 1_790_000_000  # epoch seconds of the first call
WARMUP, WINDOW = 3_000, 2_000
LOCALES = {"de": 0.5, "en": 0.3, "fr": 0.2}
TOPICS = ("billing", "login", "other")
SLICE_FAMILIES = (
    "driftwarden_slice_events",
    "driftwarden_slice_drift_share",
    "driftwarden_slice_data_quality_flagged_share",
    "driftwarden_slice_quality",
    "driftwarden_slice_cohort_calls",
    "driftwarden_slice_cohort_quality",
)


def _model(**fields: object) -> dict:
    return {
        "name": "m",
        "reference": {"warmup": WARMUP},
        "features": [
            {"name": "x", "kind": "numeric", "method": "ks"},
            {"name": "topic", "kind": "categorical"},
        ],
        "quality": {"positive": "approve"},
        **fields,
    }


def _config(size: int, min_samples: int, **fields: object) -> dict:
    return {"windows": {"size": size, "min_samples": min_samples}, "models": [_model(**fields)]}


def _calls(seed: int) -> list[dict]:
    """Calls of three locales; after the warm-up, fr's x shifts and its topics change, de and en stay."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(WARMUP + WINDOW):
        locale = str(rng.choice(list(LOCALES), p=list(LOCALES.values())))
        drifted = i >= WARMUP and locale == "fr"
        prediction = str(rng.choice(["approve", "deny"]))
        right = rng.random() < {"de": 0.9, "en": 0.75, "fr": 0.6}[locale]
        calls.append(
            {
                "i": i,
                "locale": locale,
                "x": float(rng.normal(1.0 if locale == "en" else 0.0) + (0.4 if drifted else 0.0)),
                "topic": str(rng.choice(TOPICS, p=[0.2, 0.3, 0.5] if drifted else [0.4, 0.3, 0.3])),
                "prediction": prediction,
                "label": (prediction if right else ("deny" if prediction == "approve" else "approve"))
                if rng.random() < 0.4
                else None,
            }
        )
    return calls


def _events(calls: list[dict]) -> list[dict]:
    """Each call, with its label right after it (feedback joins its call in the window)."""
    events = []
    for call in calls:
        timestamp = T0 + call["i"]
        events.append(
            {
                "request_id": f"r{call['i']}",
                "timestamp": timestamp,
                "model": "m",
                "latency_ms": 100.0,
                "prediction": call["prediction"],
                "features": {"x": call["x"], "topic": call["topic"]},
                "segment": {"locale": call["locale"]},
            }
        )
        if call["label"] is not None:
            events.append(
                {"type": "feedback", "request_id": f"r{call['i']}", "timestamp": timestamp, "model": "m",
                 "label": call["label"]}  # fmt: skip
            )
    return events


def _fed(config: dict, events: list[dict]) -> Pipeline:
    pipeline = Pipeline(parse_config(config))
    records = [Record(json.dumps(event).encode(), "llm-events", 0, n) for n, event in enumerate(events)]
    for start in range(0, len(records), 997):
        assert pipeline.apply(records[start : start + 997]) == []
    pipeline.evaluate(pipeline.watermark_ms)
    return pipeline


def _samples(pipeline: Pipeline, name: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name``, by their label values other than model and slice."""
    found = {}
    for family in text_string_to_metric_families(exposition(build_registry(pipeline)).decode()):
        for sample in family.samples:
            if sample.name == name:
                labels = {key: value for key, value in sample.labels.items() if key not in ("model", "slice")}
                found[tuple(labels[key] for key in sorted(labels))] = sample.value
    return found


@pytest.fixture(scope="module")
def sliced():
    calls = _calls(seed=11)
    config = _config(WINDOW, 50, slices={"attributes": ["segment.locale"], "min_group_size": 50})
    return calls, _fed(config, _events(calls))


def test_a_groups_drift_is_the_models_drift_suite_run_on_the_groups_calls_alone(sliced):
    calls, pipeline = sliced
    slices = pipeline.evaluations["m"].slices["segment.locale"]
    exported = _samples(pipeline, "driftwarden_slice_drift_share")
    assert set(slices) == set(LOCALES)  # every locale is large in the reference: no pool
    group_alpha = pipeline._slice_suites["m"].group_alpha
    assert group_alpha == 0.05 / 4  # the model's alpha shared among its groups: 3 locales and the pool
    for locale in LOCALES:
        mine = [call for call in calls if call["locale"] == locale]
        n_reference = sum(call["i"] < WARMUP for call in mine)
        alone = _fed(
            _config(len(mine) - n_reference, 50, reference={"warmup": n_reference}, drift={"alpha": group_alpha}),
            _events(mine),
        )
        expected = alone.evaluations["m"].drift
        got = slices[locale].drift
        assert got.features == expected.features, locale  # every statistic, p-value, threshold and verdict
        assert (got.n_window, got.n_reference) == (expected.n_window, expected.n_reference) == (
            len(mine) - n_reference, n_reference
        )
        assert exported[(locale,)] == expected.drift_share == _samples(alone, "driftwarden_drift_share")[()]
    assert slices["fr"].drift.drifted == ["x", "topic"]
    assert slices["de"].drift.drifted == slices["en"].drift.drifted == []


def test_a_groups_p_values_are_scipys_on_the_groups_values_and_its_accuracy_scikit_learns(sliced):
    calls, pipeline = sliced
    slices = pipeline.evaluations["m"].slices["segment.locale"]
    quality = _samples(pipeline, "driftwarden_slice_quality")  # by (group, metric)
    for locale in LOCALES:
        reference = [call["x"] for call in calls[:WARMUP] if call["locale"] == locale]
        window = [call for call in calls[WARMUP:] if call["locale"] == locale]
        result = slices[locale].drift.features["x"]
        assert math.isclose(
            result.p_value, ks_2samp(reference, [call["x"] for call in window], method="asymp").pvalue, rel_tol=1e-9
        )
        labelled = [call for call in window if call["label"] is not None]
        expected = accuracy_score([call["label"] for call in labelled], [call["prediction"] for call in labelled])
        assert math.isclose(quality[locale, "accuracy"], expected, rel_tol=1e-12)
        assert math.isclose(quality[locale, "label_coverage"], len(labelled) / len(window), rel_tol=1e-12)
        assert _samples(pipeline, "driftwarden_slice_events")[(locale,)] == len(window)


def test_groups_are_capped_as_bias_groups_are_and_the_series_stay_within_the_stated_bound():
    rng = np.random.default_rng(5)
    sizes = {f"loc{k:02d}": 10 * (30 - k) for k in range(30)}  # loc00: 300 calls ... loc29: 10 calls
    locales = [name for name, size in sizes.items() for _ in range(size)]
    warmup = len(locales)
    order = rng.permutation(warmup)
    calls = [
        {"i": i, "locale": locales[order[i]], "x": float(rng.normal()), "topic": "login", "prediction": "approve",
         "label": "approve"}
        for i in range(warmup)
    ] + [  # the window: the warm-up's locales again, and one the reference never saw
        {"i": warmup + i, "locale": "new" if i % 10 == 0 else locales[order[i]], "x": float(rng.normal()),
         "topic": "login", "prediction": "approve", "label": "approve"}
        for i in range(WINDOW)
    ]  # fmt: skip
    slices = {"attributes": ["segment.locale", "segment.tier"], "max_groups": 5, "min_group_size": 20}
    pipeline = _fed(_config(WINDOW, 50, reference={"warmup": warmup}, slices=slices), _events(calls))

    groups = pipeline.evaluations["m"].slices["segment.locale"]
    assert list(groups) == ["loc00", "loc01", "loc02", "loc03", "loc04", OTHER]
    window = [call["locale"] for call in calls[warmup:]]
    assert groups[OTHER].n == sum(locale not in groups for locale in window)
    assert pipeline.evaluations["m"].slices["segment.tier"] == {}  # no call has a tier: no group
    n_series = sum(
        len(_samples(pipeline, name))
        for name in SLICE_FAMILIES
    )
    assert n_series <= (5 + 1) * 13 * len(slices["attributes"]) == max_series(pipeline.config.models[0].slices)


def test_groups_split_any_window_by_the_groups_picked_on_a_sample():
    names = [OTHER, "a", "b", "c", "d"]
    groups = Groups.choose(np.array([1, 1, 2, 2, 3, 4, 4, 4, 0, 0, 0, -1]), names, min_group_size=2, max_groups=2)
    assert groups.names == ("d", "a", OTHER)  # the largest two (a and b tie: by name); OTHER's code is pooled
    codes = np.array([5, 2, -1, 4, 1, 3, 0, 4])  # code 5 came after the choice
    split = {name: rows.rows.tolist() for name, rows in groups.split({"t": np.arange(8)}, codes)}
    assert split == {"d": [3, 7], "a": [4], OTHER: [0, 1, 5, 6]}  # row 2 has no value


def test_slices_survive_a_checkpoint_with_the_same_figures(sliced):
    _, pipeline = sliced
    restored = Pipeline(pipeline.config)
    restored.restore(pipeline.snapshot())
    restored.evaluate(pipeline.watermark_ms)
    assert restored.evaluations["m"].slices == pipeline.evaluations["m"].slices


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        ({"attributes": ["segment.tier", "segment.tier"]}, "slice attribute names must be unique"),
        ({"attributes": ["tier"]}, "path 'tier' must be 'features.<key>', 'segment.<key>'"),
        ({"attributes": [f"segment.a{k}" for k in range(11)]}, "at most 10 items"),
        ({"max_groups": 101}, "must be <= 100"),
        ({"min_group_size": 0}, "must be >= 1"),
        ({"groups": 3}, "unknown key"),
    ],
)
def test_a_bad_slice_setting_is_an_error_at_its_key(slices, message):
    with pytest.raises(ConfigError, match="models.0..slices") as error:
        parse_config({"models": [{"name": "m", "slices": slices}]})
    assert message in str(error.value)


def test_check_config_states_the_slices_and_their_series_bound(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(
        "models:\n  - name: bot\n    features: [{name: x, kind: numeric}]\n"
        "    slices: {attributes: [segment.locale, segment.tier], max_groups: 10}\n"
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "    slices: segment.locale, segment.tier, at most 11 groups each (10 by name and __other__): " in out
    assert "at most 286 series" in out  # (10 + 1) x 13 x 2
    assert "each group's tests at alpha 0.05 / groups (0.00227 with 22) after bh correction: at most " in out


def test_slicing_by_a_bias_attribute_keeps_the_saved_state_and_a_new_attribute_resets_it():
    bias = {"attributes": ["segment.region"], "outcome": {"positive": "approve"}}

    def fingerprint(**slices: object) -> str:
        config = parse_config({"models": [{"name": "m", "bias": bias, **({"slices": slices} if slices else {})}]})
        return Pipeline(config).states.state_for("m", 1).fingerprint

    assert fingerprint(attributes=["segment.region"]) == fingerprint()  # the bias column serves both
    assert fingerprint(attributes=["segment.tier"]) != fingerprint()  # a column more: restored afresh


def _alone(calls: list[dict], group_alpha: float, **fields: object) -> Pipeline:
    """A pipeline fed one group's calls alone, its warm-up and window sized to them, its drift tests (and so its
    data-quality checks) at the level of each group's."""
    n_reference = sum(call["i"] < WARMUP for call in calls)
    config = _config(
        len(calls) - n_reference, 50, reference={"warmup": n_reference}, drift={"alpha": group_alpha}, **fields
    )
    return _fed(config, _events(calls))


def test_a_groups_data_quality_is_the_models_checks_on_its_calls_alone_and_scipys_fisher_test():
    calls = _calls(seed=12)
    rng = np.random.default_rng(4)
    gone = [call["i"] for call in calls[WARMUP:] if call["locale"] == "de" and rng.random() < 0.6]
    for i in gone:
        calls[i]["x"] = None  # de's x goes 60% missing after the warm-up; its other values keep their distribution
    slices_config = {"attributes": ["segment.locale"], "min_group_size": 50}
    pipeline = _fed(_config(WINDOW, 50, slices=slices_config), _events(calls))
    slices = pipeline.evaluations["m"].slices["segment.locale"]
    group_alpha = pipeline._slice_suites["m"].group_alpha
    exported = _samples(pipeline, "driftwarden_slice_data_quality_flagged_share")
    for locale in LOCALES:
        alone = _alone([call for call in calls if call["locale"] == locale], group_alpha)
        assert slices[locale].data_quality == alone.evaluations["m"].data_quality, locale
    assert slices["de"].data_quality.flagged == [("x", "missing")]
    assert slices["en"].data_quality.flagged == slices["fr"].data_quality.flagged == []
    assert exported == {("de",): 1 / 6, ("en",): 0.0, ("fr",): 0.0}  # of 6 checks: 3 of x, 3 of topic
    n_window = sum(call["locale"] == "de" for call in calls[WARMUP:])
    n_reference = sum(call["locale"] == "de" for call in calls[:WARMUP])
    missing = slices["de"].data_quality.checks["x"]["missing"]
    table = [[len(gone), n_window - len(gone)], [0, n_reference]]
    assert missing.p_value == pytest.approx(fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
    assert missing.share == len(gone) / n_window


def test_a_groups_realized_figures_on_the_labelled_cohort_are_scikit_learns_on_its_late_labelled_calls():
    calls = _calls(seed=13)
    events = _events([{**call, "label": None} for call in calls])
    late = T0 + len(calls) + 3_600  # an hour after the last call: most calls left the window long before
    events += [
        {"type": "feedback", "request_id": f"r{call['i']}", "timestamp": late, "model": "m", "label": call["label"]}
        for call in calls
        if call["label"] is not None
    ]
    slices = {"attributes": ["segment.locale"], "min_group_size": 50}
    pipeline = _fed(_config(WINDOW, 50, slices=slices, quality={"positive": "approve", "cohort": "1d"}), events)
    groups = pipeline.evaluations["m"].slices["segment.locale"]
    cohort_quality = _samples(pipeline, "driftwarden_slice_cohort_quality")
    cohort_calls = _samples(pipeline, "driftwarden_slice_cohort_calls")
    for locale in LOCALES:
        labelled = [call for call in calls if call["locale"] == locale and call["label"] is not None]
        true, predicted = [call["label"] for call in labelled], [call["prediction"] for call in labelled]
        assert groups[locale].n_cohort == cohort_calls[(locale,)] == len(labelled)
        for metric, value in classification_figures(true, predicted, "approve").items():
            assert math.isclose(cohort_quality[locale, metric], value, rel_tol=1e-12), (locale, metric)
    assert pipeline.evaluations["m"].quality.cohort.n_labelled == sum(call["label"] is not None for call in calls)


def test_slice_verdicts_on_data_that_does_not_change_hold_the_models_false_alarm_budget():
    """Each of 10 groups at the model's alpha would give a false slice drift verdict in 1 - 0.9**10 = 65% of the
    evaluations; shared among the groups, at most alpha = 10% (and as many data-quality ones, a budget of their
    own as the model's)."""
    alpha, n_groups, per_group, n_evaluations = 0.1, 10, 100, 200
    config = parse_config({"models": [{
        "name": "m", "features": [{"name": "x", "kind": "numeric", "method": "ks"}], "drift": {"alpha": alpha},
        "slices": {"attributes": ["segment.g"], "max_groups": n_groups, "min_group_size": 20}}]})  # fmt: skip
    model = config.models[0]
    rng = np.random.default_rng(8)

    def columns(n: int) -> dict[str, np.ndarray]:
        x = rng.normal(size=n)
        x[rng.random(n) < 0.05] = np.nan  # missing at the same rate on both sides
        return {
            "timestamp_ms": np.zeros(n), "feature.x": x, "feature.x.wrong_type": np.zeros(n, bool),
            "group.segment.g": np.repeat(np.arange(1, n_groups + 1, dtype=np.int32), n // n_groups),
            "prediction": np.full(n, np.nan), "label": np.full(n, np.nan),
        }  # fmt: skip

    suite = SliceSuite(model, alpha, QualitySuite(model, 20))
    suite.fit(columns(5 * n_groups * per_group), 0.0, {"segment.g": [OTHER] + [f"g{k}" for k in range(n_groups)]})
    assert suite.group_alpha == alpha / (n_groups + 1)  # 10 groups by name and the pool
    n_false = {"drift": 0, "data quality": 0}  # each with a budget of its own, as the model's
    for _ in range(n_evaluations):
        groups = suite.score(columns(n_groups * per_group), 0.0, [OTHER])["segment.g"]
        assert len(groups) == n_groups
        n_false["drift"] += any(group.drift.drifted for group in groups.values())
        n_false["data quality"] += any(group.data_quality.flagged for group in groups.values())
    for verdicts, n in n_false.items():
        low, high = proportion_confint(n, n_evaluations, alpha=0.05, method="wilson")
        assert low <= alpha, (verdicts, n, low, high)  # the measured rate is at most alpha, within its 95% interval


def test_an_old_checkpoint_whose_label_store_lacks_the_slice_codes_still_loads(sliced):
    _, pipeline = sliced
    snapshot = copy.deepcopy(pipeline.snapshot())
    saved = snapshot["states"]["models"]["m"]["labels"]["columns"]
    del saved["group.segment.locale"]  # what a store that kept only bias attributes saved
    restored = Pipeline(pipeline.config)
    restored.restore(snapshot)
    restored.evaluate(pipeline.watermark_ms)
    before, after = (evaluated.evaluations["m"].slices["segment.locale"] for evaluated in (pipeline, restored))
    assert {name: group.drift for name, group in after.items()} == {name: group.drift for name, group in before.items()}
    assert len(restored.states["m"].labels) == len(pipeline.states["m"].labels)  # every call kept, for late labels
    assert all(group.n_cohort == 0 for group in after.values())  # but in no group, until new calls come


@pytest.mark.parametrize(("numeric", "positive"), [(False, 2.0), (False, None), (True, None)])
def test_grouped_quality_is_quality_stats_on_each_groups_rows_alone(numeric, positive):
    """Every group's figures from the (group, outcome) cells counted once equal QualityStats on its rows alone: ties
    (three classes), missing predictions and labels, tiny groups, a group without labels, one without rows."""
    rng = np.random.default_rng(9)
    n, n_groups = 3_000, 10
    numbers = rng.integers(-1, 7, size=n)
    numbers[numbers == 5] = 6  # group 5 without rows
    numbers[rng.choice(n, 5, replace=False)] = [7, 8, 8, 9, 9]  # tiny groups: 7, 8 and 9 (unlabelled below)
    prediction = rng.normal(size=n) if numeric else rng.integers(1, 4, size=n).astype(float)
    label = prediction + rng.normal(size=n) if numeric else np.where(rng.random(n) < 0.7, prediction, 2.0)
    prediction[rng.random(n) < 0.1] = np.nan
    label[rng.random(n) < 0.5] = np.nan
    label[numbers == 9] = np.nan
    stats = QualityStats(positive=positive, numeric=numeric)
    got = GroupedQuality(prediction, label, positive, numeric).of(numbers, n_groups)
    for group in range(n_groups):
        mine = numbers == group
        expected = stats.compute(prediction=prediction[mine], label=label[mine])
        for name in ("n_events", "n_labelled", "label_coverage", "accuracy", "precision", "recall", "f1"):
            assert getattr(got[group], name) == pytest.approx(getattr(expected, name), rel=0, abs=0, nan_ok=True), name
        for name in ("mae", "rmse"):  # sums of errors, in another order
            assert getattr(got[group], name) == pytest.approx(getattr(expected, name), rel=1e-12, nan_ok=True), name


def _columns(rng: np.random.Generator, n: int, model, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``n`` rows of ``model``'s columns: numbers with NaN and ties, categories with MISSING, a text feature's
    descriptors with NaN, wrong types, the slice attributes' ``codes``; ``count`` complete and of the right type."""
    columns = {
        "timestamp_ms": np.arange(n, dtype=float),
        "prediction": rng.integers(0, 2, size=n).astype(float),
        "label": np.where(rng.random(n) < 0.5, rng.integers(0, 2, size=n), np.nan),
        **{Columns.group(attribute): group_codes for attribute, group_codes in codes.items()},
    }
    for feature in model.features:
        absent = rng.random(n) < {"x": 0.05, "count": 0.0, "topic": 0.4, "prompt": 0.05}[feature.name]
        if feature.kind == "text":
            for column in Columns.descriptors(feature).values():
                columns[column] = np.where(absent, np.nan, rng.poisson(20.0, size=n).astype(float))
        elif feature.kind == "categorical":
            columns[Columns.feature(feature.name)] = np.where(absent, MISSING, rng.integers(0, 6, size=n))
        else:
            values = rng.normal(size=n) if feature.name == "x" else rng.integers(0, 5, size=n).astype(float)  # ties
            columns[Columns.feature(feature.name)] = np.where(absent, np.nan, values)
        columns[Columns.wrong_type(feature.name)] = rng.random(n) < (0.0 if feature.name == "count" else 0.02)
    return columns


def test_slices_score_equals_each_groups_suites_run_on_its_rows_alone():
    """What SliceSuite.score finds once for all attributes (rows without a value, missing and wrong-type counts,
    present values shared by a group's drift tests and checks) changes no figure: every group's drift and
    data-quality results equal its own suites' on its rows alone, with ties, NaN and MISSING values, wrong types,
    groups too small to test, and groups of the reference absent from the window."""
    model = parse_config({"models": [{
        "name": "m",
        "features": [
            {"name": "x", "kind": "numeric", "method": "ks"},
            {"name": "count", "kind": "numeric", "method": "ks"},
            {"name": "topic", "kind": "categorical"},
            {"name": "prompt", "kind": "text", "path": "prompt"},
        ],
        "slices": {"attributes": ["segment.a", "segment.b"], "min_group_size": 30},
    }]}).models[0]  # fmt: skip
    rng = np.random.default_rng(21)
    names = {attribute: [OTHER, *(f"g{code}" for code in range(1, 9))] for attribute in model.slices.attributes}
    sizes = np.array([0.0, 0.3, 0.25, 0.2, 0.12, 0.08, 0.03, 0.015, 0.005])  # g6 to g8 small, g8 tiny

    def codes(n: int, absent: int) -> dict[str, np.ndarray]:
        share = sizes.copy()
        share[absent] = 0.0  # a group of the reference that the window lacks
        drawn = {attribute: rng.choice(9, size=n, p=share / share.sum()) for attribute in model.slices.attributes}
        for group_codes in drawn.values():
            group_codes[rng.random(n) < 0.03] = -1  # rows without a value: in no group
        return drawn

    suite = SliceSuite(model, 0.01, QualitySuite(model, 30))
    suite.fit(_columns(rng, 6_000, model, codes(6_000, absent=0)), 0.0, names)
    window = _columns(rng, 4_000, model, codes(4_000, absent=3))
    got = suite.score(window, 1_000.0, ["deny", "approve"])
    checked = 0
    for attribute, groups in suite.groups.items():
        rows = dict(groups.split(window, window[Columns.group(attribute)]))
        assert "g3" not in rows and "g3" not in got[attribute]
        for name, group in got[attribute].items():
            assert group.n == rows[name].n_rows
            alone = suite._suites[attribute].get(name)
            if group.n < 30 or alone is None:
                assert group.drift is group.data_quality is None
                continue
            expected = alone.score(rows[name], 1_000.0)
            assert group.drift == (expected if expected.features else None), (attribute, name)
            assert group.data_quality == alone.data_quality.score(rows[name]), (attribute, name)
            checked += 1
    assert checked >= 10

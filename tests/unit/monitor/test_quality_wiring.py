"""Quality, fairness and the accuracy estimate wired into the daemon: events in, ``/metrics`` out, against oracles.

Pipelines are fed records of JSON made here, through :meth:`Pipeline.apply` in batches of an odd size; every
expected figure is computed from the generated calls and feedback (what the stream *means*), with scikit-learn,
fairlearn or numpy, never from the daemon's columns. Feedback arrives in either order around its call, by request
or response id, and some labels are corrected by a later feedback event.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    selection_rate,
)
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    root_mean_squared_error,
)

from monitor.config import ConfigError, parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline

T0 = 1_790_000_000  # epoch seconds of position 0
TOLERANCE = 1e-12
CLASSES = ("approve", "deny", "review")
REFUSAL = "I'm sorry, but I can't help with that."
OTHER = "__other__"


def _records(events: list[dict], first_offset: int = 0) -> list[Record]:
    return [Record(json.dumps(event).encode(), "llm-events", 0, first_offset + i) for i, event in enumerate(events)]


def _apply_in_batches(pipeline: Pipeline, events: list[dict], size: int = 7) -> None:
    for start in range(0, len(events), size):
        assert pipeline.apply(_records(events[start : start + size], start)) == []


def _in_arrival_order(timed: list[tuple[float, dict]]) -> list[dict]:
    """Events sorted by their position in the stream (seconds after T0), ties in the order given."""
    events = []
    for position, event in sorted(timed, key=lambda item: item[0]):  # sorted() is stable
        events.append({**event, "timestamp": T0 + position})
    return events


def _metrics(pipeline: Pipeline) -> bytes:
    pipeline.evaluate(pipeline.watermark_ms)
    return exposition(build_registry(pipeline))


def _gauge(text: bytes, name: str, key: str, **where: str) -> dict[str, float]:
    """The samples of ``name`` whose labels include ``where``, by the value of their label ``key``."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(label) == value for label, value in where.items()):
                assert sample.labels[key] not in found, sample
                found[sample.labels[key]] = sample.value
    return found


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --- 1. Quality figures against labels and label-free proxies ---------------------------------------------------

QUALITY_CONFIG = {
    "windows": {"size": 300, "min_samples": 20},
    "models": [
        {
            "name": "bot",
            "features": [{"name": "response", "kind": "text"}],
            "quality": {"positive": "approve", "json_response": True},
        }
    ],
}
#: Responses by kind; None: the call sent no response at all.
RESPONSES = {
    "json": '{"decision": "approve", "confidence": 0.9}',
    "prose": "Here is what I found about your order.",
    "refusal": REFUSAL,
    "empty": "",
    "blank": "  \n ",
    "none": None,
}


def _classifier_calls(seed: int, n: int) -> list[dict]:
    """What happened on each call: its outputs, and the feedback that will be sent about it."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        failed = bool(rng.random() < 0.06)
        prediction = None if failed else str(rng.choice(CLASSES, p=[0.45, 0.35, 0.2]))
        if prediction is None:
            label = str(rng.choice(CLASSES)) if rng.random() < 0.3 else None
        elif rng.random() < 0.7:
            label = prediction if rng.random() < 0.72 else str(rng.choice(CLASSES))
        else:
            label = None
        kind = str(rng.choice(list(RESPONSES), p=[0.55, 0.15, 0.1, 0.06, 0.04, 0.1]))
        calls.append(
            {
                "request_id": f"bot-{i}",
                "response_id": f"resp-{i}" if i % 5 == 0 else None,
                "failed": failed,
                "prediction": prediction,
                "score": None if failed else float(rng.uniform()),
                "content_filter": bool(not failed and rng.random() < 0.05),
                "response": None if failed else RESPONSES[kind],
                "refusal": not failed and kind == "refusal",
                "label": label,
                "wrong_first": bool(label is not None and rng.random() < 0.1),  # a corrected label
                "rating": float(rng.choice([-1.0, 0.0, 0.5, 1.0])) if rng.random() < 0.3 else None,
                "judge_score": float(rng.uniform()) if not failed and rng.random() < 0.3 else None,
                "delays": rng.uniform(-20.0, 40.0, size=3),  # feedback up to 20 calls before, 40 after
            }
        )
    return calls


def _classifier_stream(calls: list[dict]) -> list[dict]:
    """Inference events one a second, and their feedback: label, rating and judge score in separate events."""
    timed = []
    for i, call in enumerate(calls):
        event = {"request_id": call["request_id"], "model": "bot", "latency_ms": 100.0 + i % 37}
        if call["response_id"] is not None:
            event["response_id"] = call["response_id"]
        if call["failed"]:
            event["error"] = "Timeout"
        else:
            event.update(prediction=call["prediction"], score=call["score"])
            event["finish_reason"] = "content_filter" if call["content_filter"] else "stop"
            if call["response"] is not None:
                event["response"] = call["response"]
        timed.append((float(i), event))
        # Feedback through the response id where the call has one, every other time.
        ids = {"request_id": call["request_id"]}
        if call["response_id"] is not None and i % 10 == 0:
            ids = {"response_id": call["response_id"]}
        feedback = {"type": "feedback", "model": "bot", **ids}
        label_at, rating_at, judge_at = i + call["delays"]
        if call["label"] is not None:
            if call["wrong_first"]:
                wrong = next(name for name in CLASSES if name != call["label"])
                timed.append((label_at - 5.0, {**feedback, "label": wrong}))
            timed.append((label_at, {**feedback, "label": call["label"]}))
        if call["rating"] is not None:
            timed.append((rating_at, {**feedback, "rating": call["rating"]}))
        if call["judge_score"] is not None:
            timed.append((judge_at, {**feedback, "judge_score": call["judge_score"]}))
    return _in_arrival_order(timed)


def test_quality_figures_equal_scikit_learn_and_numpy_on_the_windows_calls():
    config = parse_config(QUALITY_CONFIG)
    calls = _classifier_calls(seed=7, n=420)
    events = _classifier_stream(calls)
    arrival = {event["request_id"]: n for n, event in enumerate(events) if "type" not in event}
    early = [
        n < arrival[event["request_id"]] for n, event in enumerate(events) if "label" in event and "request_id" in event
    ]
    assert 0.1 < np.mean(early) < 0.5  # a good share of the labels come before their call
    pipeline = Pipeline(config)
    _apply_in_batches(pipeline, events)
    quality = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="bot")

    window = calls[-300:]  # the window holds the last 300 calls
    labelled = [call for call in window if call["label"] is not None]
    scored = [call for call in labelled if call["prediction"] is not None]
    y_true = [call["label"] for call in scored]
    y_pred = [call["prediction"] for call in scored]
    positive = {"labels": ["approve"], "average": None, "zero_division": np.nan}
    responded = [call for call in window if call["response"] is not None]
    expected = {
        "label_coverage": len(labelled) / len(window),
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, **positive)[0],
        "recall": recall_score(y_true, y_pred, **positive)[0],
        "f1": f1_score(y_true, y_pred, **positive)[0],
        "feedback_positive_ratio": np.mean([call["rating"] > 0 for call in window if call["rating"] is not None]),
        "judge_score_mean": np.mean([call["judge_score"] for call in window if call["judge_score"] is not None]),
        "error_ratio": np.mean([call["failed"] for call in window]),
        "refusal_ratio": np.mean([call["content_filter"] or call["refusal"] for call in window]),
        "empty_response_ratio": np.mean([call["response"].strip() == "" for call in responded]),
        "json_valid_ratio": np.mean([_parses(call["response"]) for call in responded]),
    }
    # The stream exercises what it should: labels with and without a prediction, both refusal sources, and so on.
    assert len(labelled) > len(scored) > 100 and 0 < expected["accuracy"] < 1
    assert any(call["content_filter"] and not call["refusal"] for call in window)
    assert any(call["refusal"] and not call["content_filter"] for call in window)
    assert any(call["wrong_first"] for call in window) and any(call["response_id"] for call in labelled)

    assert set(quality) == {*expected, "estimated_accuracy", "estimated_accuracy_lower", "estimated_accuracy_upper"}
    for metric, value in expected.items():
        assert quality[metric] == pytest.approx(value, abs=TOLERANCE), metric


def test_a_numeric_model_reports_mae_and_rmse_as_scikit_learn():
    config = parse_config(
        {"windows": {"size": 200, "min_samples": 20}, "models": [{"name": "reg", "quality": {"numeric": True}}]}
    )
    rng = np.random.default_rng(11)
    timed, truth = [], []
    for i in range(260):
        event = {"request_id": f"reg-{i}", "model": "reg", "latency_ms": 50.0}
        prediction = None if rng.random() < 0.05 else float(np.round(rng.normal(100.0, 20.0), 3))
        if prediction is not None:
            event["prediction"] = int(prediction) if i % 9 == 0 else prediction  # JSON integers are numbers too
            prediction = float(event["prediction"])
        label = (
            float(np.round(prediction + rng.normal(0.0, 8.0), 3))
            if prediction is not None and rng.random() < 0.8
            else None
        )
        if prediction is None and rng.random() < 0.5:
            label = 90.0  # a label for a call without a prediction counts in the coverage only
        timed.append((float(i), event))
        if label is not None:
            feedback = {"type": "feedback", "request_id": f"reg-{i}", "model": "reg", "label": label}
            timed.append((i + rng.uniform(-15.0, 30.0), feedback))
        truth.append((prediction, label))
    pipeline = Pipeline(config)
    _apply_in_batches(pipeline, _in_arrival_order(timed))
    quality = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="reg")

    window = truth[-200:]
    both = np.array([(p, y) for p, y in window if p is not None and y is not None])
    assert len(both) < sum(y is not None for _, y in window)  # some labels have no prediction to compare
    assert quality["mae"] == pytest.approx(mean_absolute_error(both[:, 1], both[:, 0]), abs=TOLERANCE)
    assert quality["rmse"] == pytest.approx(root_mean_squared_error(both[:, 1], both[:, 0]), abs=TOLERANCE)
    assert quality["label_coverage"] == pytest.approx(sum(y is not None for _, y in window) / 200, abs=TOLERANCE)
    # No classes: no accuracy-style figures, and no accuracy estimate for a regressor.
    assert not {"accuracy", "precision", "recall", "f1", "estimated_accuracy"} & set(quality)


def _labelled_pairs(model: str, pairs: list[tuple]) -> list[dict]:
    """One call per (prediction, label) pair, each followed by its label."""
    events = []
    for i, (prediction, label) in enumerate(pairs):
        call = {"request_id": f"{model}-{i}", "timestamp": T0 + i, "model": model, "prediction": prediction}
        events += [call, {"type": "feedback", "request_id": f"{model}-{i}", "timestamp": T0 + i, "model": model}]
        events[-1]["label"] = label
    return events


def test_classes_past_the_category_cap_are_not_counted_as_correct():
    pairs = [("a", "a"), ("b", "b"), ("a", "b"), ("c", "d"), ("d", "c"), ("e", "f"), ("c", "c")] * 3
    config = {"windows": {"size": 50, "min_samples": 5}, "limits": {"max_categories": 2}, "models": [{"name": "m"}]}
    pipeline = Pipeline(parse_config(config))
    _apply_in_batches(pipeline, _labelled_pairs("m", pairs))
    accuracy = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="m")["accuracy"]

    on_every_row = accuracy_score([label for _, label in pairs], [prediction for prediction, _ in pairs])  # 3/7
    on_named_classes = 2 / 3  # or leave out the rows whose classes lost their name: (a, a), (b, b), (a, b)
    assert any(accuracy == pytest.approx(fixed, abs=TOLERANCE) for fixed in (on_every_row, on_named_classes)), accuracy


def test_integer_classes_have_precision_for_their_positive_class():
    rng = np.random.default_rng(5)
    pairs = [(int(p), int(y)) for p, y in rng.integers(0, 2, size=(60, 2))]
    config = {"windows": {"size": 100, "min_samples": 5}, "models": [{"name": "m", "quality": {"positive": "1"}}]}
    pipeline = Pipeline(parse_config(config))
    _apply_in_batches(pipeline, _labelled_pairs("m", pairs))
    quality = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="m")

    y_pred, y_true = np.array(pairs).T
    assert quality["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=TOLERANCE)  # holds today
    assert quality["precision"] == pytest.approx(precision_score(y_true, y_pred, pos_label=1), abs=TOLERANCE)
    assert quality["recall"] == pytest.approx(recall_score(y_true, y_pred, pos_label=1), abs=TOLERANCE)


def test_an_integer_outcome_counts_for_its_positive_class():
    rng = np.random.default_rng(6)
    regions = rng.choice(["north", "south"], size=200)
    predictions = (rng.random(200) < np.where(regions == "north", 0.6, 0.3)).astype(int)
    outcome = {"field": "prediction", "positive": "1"}
    config = {
        "windows": {"size": 300, "min_samples": 5},
        "models": [{"name": "m", "bias": {"attributes": ["segment.region"], "outcome": outcome, "min_group_size": 20}}],
    }
    events = [
        {"request_id": f"m-{i}", "timestamp": T0 + i, "model": "m", "prediction": int(p), "segment": {"region": g}}
        for i, (p, g) in enumerate(zip(predictions, regions))
    ]
    pipeline = Pipeline(parse_config(config))
    _apply_in_batches(pipeline, events)
    ratios = _gauge(_metrics(pipeline), "driftwarden_segment_outcome_ratio", "group", model="m")

    frame = MetricFrame(metrics=selection_rate, y_true=predictions, y_pred=predictions, sensitive_features=regions)
    assert ratios == pytest.approx(frame.by_group.to_dict(), abs=TOLERANCE)


def test_a_group_named_empty_is_exported_under_a_name_prometheus_keeps_and_meets_no_other():
    outcome = {"field": "prediction", "positive": "approve"}
    # Prometheus reads region="" as no region label: the group's series would lose their group.
    config = {
        "windows": {"size": 300, "min_samples": 5},
        "models": [{"name": "m", "bias": {"attributes": ["segment.region"], "outcome": outcome, "min_group_size": 20}}],
    }
    regions = ["", "north", "(empty)", "((empty))"] * 25  # the last two as hostile producers might send them
    events = [
        {"request_id": f"m-{i}", "timestamp": T0 + i, "model": "m", "prediction": "approve" if i % 3 else "deny",
         "segment": {"region": region}}
        for i, region in enumerate(regions)
    ]
    pipeline = Pipeline(parse_config(config))
    _apply_in_batches(pipeline, events)
    text = _metrics(pipeline)

    # _gauge asserts each group's series comes once: "(empty)" and "" must not meet in one series.
    expected = {"(empty)": 25, "north": 25, "((empty))": 25, "(((empty)))": 25}
    assert _gauge(text, "driftwarden_segment_events", "group", model="m") == expected
    assert b'=""' not in text


# --- 2. Fairness per segment attribute, as fairlearn --------------------------------------------------------------

REGIONS = {"north": 0.46, "south": 0.30, "east": 0.22, "west": 0.02}
APPROVAL = {"north": 0.6, "south": 0.4, "east": 0.3, "west": 0.95}  # west: few calls, an extreme rate
AGE_BANDS = {"18-29": 0.3, "30-49": 0.42, "50+": 0.22, None: 0.06}
ATTRIBUTES = ("segment.region", "segment.age_band")


def _bias_config(**bias: object) -> dict:
    outcome = {"field": "prediction", "positive": "approve"}
    return {
        "windows": {"size": 400, "min_samples": 20},
        "models": [{"name": "loans", "bias": {"attributes": list(ATTRIBUTES), "outcome": outcome, **bias}}],
    }


def _loan_calls(seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        region = str(rng.choice(list(REGIONS), p=list(REGIONS.values())))
        age_band = [*AGE_BANDS][rng.choice(len(AGE_BANDS), p=list(AGE_BANDS.values()))]
        failed = rng.random() < 0.03
        prediction = None
        if not failed:
            prediction = "approve" if rng.random() < APPROVAL[region] else str(rng.choice(["deny", "review"]))
        label = None
        if rng.random() < 0.7:
            label = "approve" if rng.random() < (0.8 if prediction == "approve" else 0.25) else "deny"
        calls.append(
            {
                "i": i,
                "segment.region": region,
                "segment.age_band": age_band,
                "prediction": prediction,
                "label": label,
                "label_delay": float(rng.uniform(-10.0, 30.0)),
            }
        )
    return calls


def _loan_stream(calls: list[dict]) -> list[dict]:
    timed = []
    for call in calls:
        i = call["i"]
        segment = {"region": call["segment.region"]}
        if call["segment.age_band"] is not None or i % 2:  # a missing group: key absent, or null
            segment["age_band"] = call["segment.age_band"]
        event = {"request_id": f"loan-{i}", "model": "loans", "segment": segment}
        event.update({"prediction": call["prediction"]} if call["prediction"] else {"error": "Upstream5xx"})
        timed.append((float(i), event))
        if call["label"] is not None:
            feedback = {"type": "feedback", "request_id": f"loan-{i}", "model": "loans", "label": call["label"]}
            timed.append((i + call["label_delay"], feedback))
    return _in_arrival_order(timed)


def _pooled(groups: np.ndarray, max_groups: int) -> np.ndarray:
    """The ``max_groups`` largest groups keep their name (ties by name); the others become ``__other__``."""
    names, counts = np.unique(groups, return_counts=True)
    kept = [name for _, name in sorted(zip(-counts, names))[:max_groups]]
    return np.where(np.isin(groups, kept), groups, OTHER)


def _fairness_oracle(window: list[dict], attribute: str, min_group_size: int, max_groups: int | None = None) -> dict:
    """fairlearn's figures on the window's calls that have the attribute and a prediction (the outcome's field).

    Demographic parity over the groups of at least ``min_group_size`` calls; equalized odds over the labelled calls
    of the groups with at least ``min_group_size`` labels (as ``detectors.fairness`` documents it).
    """
    rows = [call for call in window if call[attribute] is not None and call["prediction"] is not None]
    groups = np.array([call[attribute] for call in rows], dtype=object)
    if max_groups is not None:
        groups = _pooled(groups, max_groups)
    y_pred = np.array([call["prediction"] == "approve" for call in rows], dtype=int)
    names, counts = np.unique(groups, return_counts=True)
    sufficient = np.isin(groups, names[counts >= min_group_size])
    labelled = np.array([call["label"] is not None for call in rows])
    y_true = np.array([call["label"] == "approve" for call in rows], dtype=int)
    names_labelled, counts_labelled = np.unique(groups[labelled], return_counts=True)
    compared = labelled & np.isin(groups, names_labelled[counts_labelled >= min_group_size])
    for name in np.unique(groups[compared]):  # every true and false positive rate is defined, as fairlearn assumes
        assert 0 < y_true[compared & (groups == name)].mean() < 1
    frame = MetricFrame(
        metrics=selection_rate,
        y_true=y_pred[sufficient],
        y_pred=y_pred[sufficient],
        sensitive_features=groups[sufficient],
    )
    return {
        "events": dict(zip(names.tolist(), counts.tolist())),
        "outcome_ratio": frame.by_group.to_dict(),
        "bias": {
            "demographic_parity_difference": demographic_parity_difference(
                y_pred[sufficient], y_pred[sufficient], sensitive_features=groups[sufficient]
            ),
            "disparate_impact_ratio": demographic_parity_ratio(
                y_pred[sufficient], y_pred[sufficient], sensitive_features=groups[sufficient]
            ),
            "equalized_odds_difference": equalized_odds_difference(
                y_true[compared], y_pred[compared], sensitive_features=groups[compared]
            ),
        },
    }


def _assert_fairness_exported(text: bytes, expected: dict, attribute: str) -> None:
    where = {"model": "loans", "attribute": attribute}
    assert _gauge(text, "driftwarden_segment_events", "group", **where) == expected["events"]
    ratios = _gauge(text, "driftwarden_segment_outcome_ratio", "group", **where)
    assert set(ratios) == set(expected["outcome_ratio"])
    for group, value in expected["outcome_ratio"].items():
        assert ratios[group] == pytest.approx(value, abs=TOLERANCE), group
    bias = _gauge(text, "driftwarden_bias", "metric", **where)
    assert set(bias) == set(expected["bias"])
    for metric, value in expected["bias"].items():
        assert bias[metric] == pytest.approx(value, abs=TOLERANCE), metric


def test_bias_figures_per_attribute_equal_fairlearn_on_the_windows_calls():
    calls = _loan_calls(seed=3, n=520)
    pipeline = Pipeline(parse_config(_bias_config(min_group_size=20)))
    _apply_in_batches(pipeline, _loan_stream(calls))
    text = _metrics(pipeline)

    window = calls[-400:]
    for attribute in ATTRIBUTES:
        expected = _fairness_oracle(window, attribute, min_group_size=20)
        assert len(expected["outcome_ratio"]) >= 3 and expected["bias"]["equalized_odds_difference"] > 0
        _assert_fairness_exported(text, expected, attribute)
    # West is too small to compare: it is counted, but has no outcome ratio and stays out of the disparities.
    region = _fairness_oracle(window, "segment.region", min_group_size=20)
    assert 0 < region["events"]["west"] < 20 and "west" not in region["outcome_ratio"]
    rates = [
        np.mean(
            [
                call["prediction"] == "approve"
                for call in window
                if call["segment.region"] == name and call["prediction"]
            ]
        )
        for name in REGIONS
    ]
    assert max(rates) - min(rates) > region["bias"]["demographic_parity_difference"]  # had west counted, it would show


def test_groups_beyond_max_groups_pool_into_other():
    calls = _loan_calls(seed=4, n=520)
    pipeline = Pipeline(parse_config(_bias_config(min_group_size=20, max_groups=2)))
    _apply_in_batches(pipeline, _loan_stream(calls))
    text = _metrics(pipeline)

    window = calls[-400:]
    for attribute in ATTRIBUTES:
        expected = _fairness_oracle(window, attribute, min_group_size=20, max_groups=2)
        assert len(expected["events"]) == 3 and OTHER in expected["outcome_ratio"]
        _assert_fairness_exported(text, expected, attribute)
    region = _fairness_oracle(window, "segment.region", min_group_size=20, max_groups=2)
    assert set(region["events"]) == {"north", "south", OTHER}


# --- 3. The accuracy estimate, before the labels ----------------------------------------------------------------

WARMUP, WINDOW = 3_000, 1_000


def _p_correct(scores: np.ndarray) -> np.ndarray:
    """The true chance that a prediction is right: far below its confidence score (0.5 for a score of 0.79)."""
    return scores**3


def _scored_calls(rng: np.random.Generator, first: int, n: int, low: float, high: float) -> list[dict]:
    scores = rng.uniform(low, high, size=n)
    correct = rng.random(n) < _p_correct(scores)
    labels = rng.choice(["approve", "deny"], size=n)
    calls = []
    for i, score, right, label in zip(range(first, first + n), scores, correct, labels):
        prediction = label if right else ("deny" if label == "approve" else "approve")
        calls.append(
            {"i": i, "score": float(score), "correct": bool(right), "label": str(label), "prediction": prediction}
        )
    return calls


def _scored_stream(calls: list[dict], labelled: bool, rng: np.random.Generator) -> list[dict]:
    timed = []
    for call in calls:
        i = call["i"]
        event = {"request_id": f"clf-{i}", "model": "clf", "prediction": call["prediction"], "score": call["score"]}
        timed.append((float(i), event))
        if labelled:
            feedback = {"type": "feedback", "request_id": f"clf-{i}", "model": "clf", "label": call["label"]}
            timed.append((i + rng.uniform(-5.0, 30.0), feedback))
    return _in_arrival_order(timed)


def _calibration_allowance(reference_scores: np.ndarray, low: float, high: float) -> float:
    """Three standard deviations of the calibration's own error over a window of scores in [low, high].

    The isotonic calibration averages the reference's labels over blocks of scores, so the window's mean calibrated
    probability is a weighted mean of reference outcomes; its error is at most that of a proportion estimated from
    the reference rows in the window's score range: standard deviation <= 0.5 / sqrt(n). The estimator's band
    covers the window's own sampling only (its docstring says so), hence this allowance on top.
    """
    n = np.count_nonzero((reference_scores >= low) & (reference_scores <= high))
    return 3 * 0.5 / math.sqrt(n)


def test_the_accuracy_estimate_covers_the_withheld_accuracy_and_falls_with_the_scores_before_their_labels():
    config = parse_config(
        {
            "windows": {"size": WINDOW, "min_samples": 50},
            "models": [{"name": "clf", "reference": {"warmup": WARMUP}}],
        }
    )
    rng = np.random.default_rng(2024)
    reference = _scored_calls(rng, 0, WARMUP, 0.5, 1.0)
    before = _scored_calls(rng, WARMUP, WINDOW, 0.5, 1.0)
    after = _scored_calls(rng, WARMUP + WINDOW, WINDOW, 0.5, 0.75)  # less confident: calibrated accuracy falls
    reference_scores = np.array([call["score"] for call in reference])
    pipeline = Pipeline(config)
    # The reference's labels arrive, some of them while the next calls stream in; the window's are withheld.
    _apply_in_batches(pipeline, _scored_stream(reference, labelled=True, rng=rng) + _scored_stream(before, False, rng))

    first = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="clf")
    true_before = np.mean([call["correct"] for call in before])
    assert "accuracy" not in first and first["label_coverage"] == 0  # no label of the window's calls is known
    _assert_estimate_covers(first, true_before, _calibration_allowance(reference_scores, 0.5, 1.0))
    mean_score = np.mean([call["score"] for call in before])
    assert abs(mean_score - true_before) > 0.2  # the raw scores are far off: the calibration is doing the work

    _apply_in_batches(pipeline, _scored_stream(after, labelled=False, rng=rng))
    second = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="clf")
    true_after = np.mean([call["correct"] for call in after])
    assert "accuracy" not in second and second["label_coverage"] == 0
    assert second["estimated_accuracy"] < first["estimated_accuracy"] - 0.1
    _assert_estimate_covers(second, true_after, _calibration_allowance(reference_scores, 0.5, 0.75))

    # When the labels do come, the realised accuracy appears beside the estimate, which does not move.
    feedback = [
        {"type": "feedback", "request_id": f"clf-{call['i']}", "model": "clf", "label": call["label"]} for call in after
    ]
    _apply_in_batches(pipeline, _in_arrival_order([(WARMUP + 2.0 * WINDOW + k, e) for k, e in enumerate(feedback)]))
    third = _gauge(_metrics(pipeline), "driftwarden_quality", "metric", model="clf")
    assert third["accuracy"] == pytest.approx(true_after, abs=TOLERANCE) and third["label_coverage"] == 1.0
    assert third["estimated_accuracy"] == second["estimated_accuracy"]


def _assert_estimate_covers(figures: dict[str, float], true_accuracy: float, allowance: float) -> None:
    estimated, lower, upper = (figures[f"estimated_accuracy{suffix}"] for suffix in ("", "_lower", "_upper"))
    assert lower <= estimated <= upper
    half_width = (upper - lower) / 2
    # The band is the estimator's: z(0.975) standard deviations of a window of 1,000 Bernoulli outcomes, at most.
    assert 0 < half_width <= norm.isf(0.025) * 0.5 / math.sqrt(WINDOW)
    assert abs(estimated - true_accuracy) <= half_width + allowance, (estimated, true_accuracy, half_width, allowance)


# --- 4. Config errors name the key and the reason -------------------------------------------------------------


def _model(**fields: object) -> dict:
    return {"models": [{"name": "bot", **fields}]}


PATHS = "must be 'features.<key>', 'segment.<key>' or one of the event fields"
OUTCOME = {"field": "prediction", "positive": "approve"}

CONFIG_ERRORS = [
    pytest.param(
        _model(quality={"positive": "approve", "numeric": True}),
        "models[0].quality",
        "a numeric model has no 'positive' class",
        id="positive-class-of-a-numeric-model",
    ),
    pytest.param(
        _model(bias={"attributes": ["segment.region"]}),
        "models[0].bias",
        "'outcome' is required when 'attributes' are given",
        id="attributes-without-outcome",
    ),
    pytest.param(
        _model(bias={"attributes": ["segment.region", "region"], "outcome": OUTCOME}),
        "models[0].bias.attributes",
        f"path 'region' {PATHS}",
        id="bad-attribute-path",
    ),
    pytest.param(
        _model(bias={"attributes": ["segment.region", "segment.age", "segment.region"], "outcome": OUTCOME}),
        "models[0].bias.attributes",
        "attribute names must be unique (repeated: segment.region)",
        id="duplicate-attributes",
    ),
    pytest.param(
        _model(bias={"attributes": ["segment.region"], "outcome": {"field": "segment", "positive": "approve"}}),
        "models[0].bias.outcome.field",
        f"path 'segment' {PATHS}",
        id="bad-outcome-path",
    ),
]


@pytest.mark.parametrize(("data", "where", "reason"), CONFIG_ERRORS)
def test_a_bad_quality_or_bias_setting_is_one_error_that_names_its_key_and_the_reason(data, where, reason):
    with pytest.raises(ConfigError) as raised:
        parse_config(data, environ={})
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{where}: {reason}"), message

"""Quality figures against scikit-learn's metrics on the same rows, and the label-free ratios by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    root_mean_squared_error,
)

from detectors.quality import QualityStats

TOLERANCE = 1e-12
LABEL_FIGURES = ("accuracy", "precision", "recall", "f1", "mae", "rmse")
FREE_FIGURES = ("feedback_positive_ratio", "judge_score_mean", "refusal_ratio", "empty_response_ratio",
                "error_ratio", "json_valid_ratio")  # fmt: skip


def _classes(seed: int, n: int, n_classes: int = 2, *, label_share: float = 0.6, accuracy: float = 0.8):
    """Predicted and true class codes as floats, NaN where a prediction or a label is missing."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, size=n).astype(float)
    prediction = np.where(rng.random(n) < accuracy, label, rng.integers(0, n_classes, size=n)).astype(float)
    label[rng.random(n) >= label_share] = np.nan
    prediction[rng.random(n) < 0.05] = np.nan
    return prediction, label


def _sklearn(prediction, label, positive, **average):
    """scikit-learn's figures on the rows with both values, undefined ratios as NaN."""
    both = ~np.isnan(prediction) & ~np.isnan(label)
    y_pred, y_true = prediction[both], label[both]
    options = {"zero_division": np.nan, **(average or {"pos_label": positive})}
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": np.ravel(precision_score(y_true, y_pred, **options))[0],
        "recall": np.ravel(recall_score(y_true, y_pred, **options))[0],
        "f1": np.ravel(f1_score(y_true, y_pred, **options))[0],
    }


def _assert_figures(result, expected):
    for figure, value in expected.items():
        assert getattr(result, figure) == pytest.approx(value, abs=TOLERANCE, nan_ok=True), figure


@pytest.mark.parametrize("positive", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_binary_figures_equal_scikit_learn(seed, positive):
    prediction, label = _classes(seed, 2_000)

    result = QualityStats(positive=positive).compute(prediction=prediction, label=label)

    _assert_figures(result, _sklearn(prediction, label, positive))
    assert result.n_events == 2_000 and result.n_labelled == np.sum(~np.isnan(label))
    assert result.label_coverage == result.n_labelled / 2_000
    assert math.isnan(result.mae) and math.isnan(result.rmse)


def test_one_class_against_the_rest_of_many_equals_scikit_learn_for_that_label():
    prediction, label = _classes(2, 3_000, n_classes=4, accuracy=0.6)

    result = QualityStats(positive=2.0).compute(prediction=prediction, label=label)

    _assert_figures(result, _sklearn(prediction, label, None, labels=[2.0], average=None))


def test_string_classes_have_no_missing_values():
    rng = np.random.default_rng(3)
    label = rng.choice(["approve", "deny", "review"], size=500)
    prediction = np.where(rng.random(500) < 0.7, label, "deny")

    result = QualityStats(positive="approve").compute(prediction=prediction, label=label)

    assert result.n_labelled == 500 and result.label_coverage == 1.0
    assert result.precision == precision_score(label, prediction, labels=["approve"], average=None)[0]
    assert result.recall == pytest.approx(recall_score(label, prediction, labels=["approve"], average=None)[0])


def test_without_a_positive_class_only_accuracy_is_defined():
    prediction, label = _classes(4, 1_000, n_classes=3)

    result = QualityStats().compute(prediction=prediction, label=label)

    both = ~np.isnan(prediction) & ~np.isnan(label)
    assert result.accuracy == pytest.approx(accuracy_score(label[both], prediction[both]), abs=TOLERANCE)
    assert all(math.isnan(getattr(result, figure)) for figure in ("precision", "recall", "f1"))


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ([0, 0, 0, 1], [0, 1, 1, 0]),  # precision 0, recall 0, F1 0
        ([0, 0, 0, 0], [0, 1, 1, 0]),  # no predicted positive: precision NaN, F1 0
        ([1, 1, 0, 0], [0, 0, 0, 0]),  # no labelled positive: recall NaN, F1 0
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # neither: precision, recall and F1 NaN
    ],
)
def test_zero_division_is_nan_like_scikit_learn_with_zero_division_nan(prediction, label):
    prediction, label = np.array(prediction, dtype=float), np.array(label, dtype=float)

    result = QualityStats(positive=1.0).compute(prediction=prediction, label=label)

    _assert_figures(result, _sklearn(prediction, label, 1.0))


def test_scikit_learns_default_zero_division_reports_0_where_the_figure_is_nan():
    prediction, label = np.zeros(4), np.array([0.0, 1.0, 1.0, 0.0])  # no predicted positive

    result = QualityStats(positive=1.0).compute(prediction=prediction, label=label)

    assert math.isnan(result.precision)
    with pytest.warns(UndefinedMetricWarning):
        assert precision_score(label, prediction, pos_label=1.0) == 0.0


def test_numeric_figures_equal_scikit_learn():
    rng = np.random.default_rng(5)
    label = rng.normal(100.0, 15.0, size=1_500)
    prediction = label + rng.standard_t(4, size=1_500) * 5.0
    label[rng.random(1_500) < 0.4] = np.nan
    prediction[rng.random(1_500) < 0.05] = np.nan
    both = ~np.isnan(label) & ~np.isnan(prediction)

    result = QualityStats(numeric=True).compute(prediction=prediction, label=label)

    assert result.mae == pytest.approx(mean_absolute_error(label[both], prediction[both]), abs=TOLERANCE)
    assert result.rmse == pytest.approx(root_mean_squared_error(label[both], prediction[both]), abs=TOLERANCE)
    assert result.n_labelled == np.sum(~np.isnan(label))
    assert all(math.isnan(getattr(result, figure)) for figure in ("accuracy", "precision", "recall", "f1"))


def test_label_free_ratios_count_only_the_rows_they_apply_to():
    nan = np.nan
    result = QualityStats().compute(
        rating=np.array([1.0, -1.0, nan, 0.0, 2.0, nan]),
        judge_score=np.array([0.9, nan, 0.5, nan, nan, 0.7]),
        refused=np.array([True, False, False, False, False, True]),
        empty=np.array([0.0, 1.0, 0.0, 0.0, nan, nan]),  # NaN: failed calls have no response to check
        failed=np.array([False, False, False, False, True, True]),
        json_valid=np.array([nan, nan, 1.0, 0.0, 1.0, nan]),
    )

    assert result.n_events == 6
    assert result.feedback_positive_ratio == 2 / 4  # a 0 rating is not positive
    assert result.judge_score_mean == pytest.approx(0.7, abs=TOLERANCE)
    assert (result.refusal_ratio, result.empty_response_ratio, result.error_ratio) == (2 / 6, 1 / 4, 2 / 6)
    assert result.json_valid_ratio == 2 / 3
    assert math.isnan(result.label_coverage) and result.n_labelled == 0  # no label column: not applicable


def test_an_empty_window_is_all_nan_without_warnings():
    empty = np.array([], dtype=float)

    result = QualityStats(positive=1.0).compute(
        prediction=empty, label=empty, rating=empty, judge_score=empty, refused=empty, empty=empty, failed=empty,
        json_valid=empty,
    )  # fmt: skip

    assert result.n_events == 0 and result.n_labelled == 0
    assert all(math.isnan(getattr(result, figure)) for figure in (*LABEL_FIGURES, *FREE_FIGURES, "label_coverage"))


def test_no_columns_give_no_figures():
    result = QualityStats().compute()

    assert result.n_events == 0
    assert all(math.isnan(getattr(result, figure)) for figure in (*LABEL_FIGURES, *FREE_FIGURES))


def test_arrays_of_different_lengths_are_a_value_error():
    with pytest.raises(ValueError, match="differ in length"):
        QualityStats().compute(prediction=np.zeros(3), label=np.zeros(4))


def test_a_numeric_model_with_a_positive_class_is_bad_config():
    with pytest.raises(ValueError, match="positive"):
        QualityStats(positive=1, numeric=True)


_codes = st.sampled_from([0.0, 1.0, 2.0, np.nan])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_codes, _codes), max_size=200), st.sampled_from([0.0, 1.0, 2.0]))
def test_any_window_equals_scikit_learn(rows, positive):
    prediction = np.array([row[0] for row in rows], dtype=float)
    label = np.array([row[1] for row in rows], dtype=float)
    both = ~np.isnan(prediction) & ~np.isnan(label)

    result = QualityStats(positive=positive).compute(prediction=prediction, label=label)

    assert result.label_coverage == pytest.approx(np.mean(~np.isnan(label)) if rows else np.nan, nan_ok=True)
    if both.any():
        _assert_figures(result, _sklearn(prediction, label, None, labels=[positive], average=None))
    else:
        assert all(math.isnan(getattr(result, figure)) for figure in ("accuracy", "precision", "recall", "f1"))

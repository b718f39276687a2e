"""Quality figures of a window: against labels where they exist, and from feedback and response checks where not."""

from __future__ import annotations

import math

import numpy as np

from detectors._proportions import nan_mean, ratio
from detectors.results import QualityResult

__all__ = ["QualityStats"]

_NAN = float("nan")


class QualityStats:
    """Accuracy-style figures against labels, and label-free proxies from feedback and response checks.

    ``compute`` takes one window's columns as keyword arrays, all of the same
    length (one row per inference event); leave out the ones the model does
    not have, and their figures are NaN. Float arrays mark a missing value with
    NaN; arrays of other dtypes (integer codes, strings) have none.

    With labels (the rows that have both a prediction and a label):

    - a classifier (``numeric=False``): ``accuracy``, the share of predictions
      equal to the label; when ``positive`` names the positive class,
      ``precision``, ``recall`` and ``f1`` of that class against all others
      (scikit-learn's ``precision_score(..., pos_label=positive)`` and so on
      for two classes, ``labels=[positive], average=None`` for more);
    - a regressor (``numeric=True``): ``mae`` and ``rmse``, as scikit-learn's
      ``mean_absolute_error`` and ``root_mean_squared_error``.

    A ratio whose denominator is 0 (no predicted positives for precision, no
    labelled positives for recall, neither for F1, no labelled rows at all) is
    NaN, as scikit-learn's with ``zero_division=np.nan``; scikit-learn's
    default (``"warn"``) reports 0 and warns instead.

    Without labels: ``feedback_positive_ratio``, the share of rated rows with
    ``rating > 0``; ``judge_score_mean`` over the judged rows; and the shares of
    ``True`` among the rows where a flag applies (float with NaN elsewhere, or
    boolean): ``refusal_ratio`` (``refused``: finish reason ``content_filter``
    or a refusal-looking response, decided by the caller),
    ``empty_response_ratio`` (``empty``), ``error_ratio`` (``failed``),
    ``json_valid_ratio`` (``json_valid``, NaN where no JSON was expected).
    ``label_coverage`` is the share of the window's rows that have a label.

    Parameters
    ----------
    positive
        The positive class as it appears in the arrays (a code or a string);
        None leaves precision, recall and F1 undefined.
    numeric
        True when predictions and labels are numbers to compare by error,
        not classes.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> label = rng.integers(0, 2, size=1_000).astype(float)
    >>> prediction = np.where(rng.random(1_000) < 0.85, label, 1 - label)
    >>> label[rng.random(1_000) < 0.7] = np.nan  # most labels have not arrived yet
    >>> rating = np.where(rng.random(1_000) < 0.1, rng.choice([-1.0, 1.0], size=1_000, p=[0.2, 0.8]), np.nan)
    >>> result = QualityStats(positive=1).compute(prediction=prediction, label=label, rating=rating)
    >>> result.n_labelled, round(result.label_coverage, 3), round(result.accuracy, 3), round(result.f1, 3)
    (293, 0.293, 0.853, 0.857)
    >>> round(result.feedback_positive_ratio, 3), result.judge_score_mean
    (0.791, nan)
    """

    def __init__(self, positive: object = None, numeric: bool = False):
        if numeric and positive is not None:
            raise ValueError("a numeric model has no positive class")
        self.positive = positive
        self.numeric = numeric

    def compute(
        self,
        *,
        prediction: np.ndarray | None = None,
        label: np.ndarray | None = None,
        rating: np.ndarray | None = None,
        judge_score: np.ndarray | None = None,
        refused: np.ndarray | None = None,
        empty: np.ndarray | None = None,
        failed: np.ndarray | None = None,
        json_valid: np.ndarray | None = None,
    ) -> QualityResult:
        """Figures of one window; a ``ValueError`` if the given arrays differ in length."""
        columns = (prediction, label, rating, judge_score, refused, empty, failed, json_valid)
        lengths = {len(column) for column in columns if column is not None}
        if len(lengths) > 1:
            raise ValueError(f"the window's arrays differ in length: {sorted(lengths)}")
        n_events = lengths.pop() if lengths else 0

        n_labelled, label_coverage = 0, _NAN
        accuracy = precision = recall = f1 = mae = rmse = _NAN
        if label is not None:
            label = np.asarray(label)
            has_label = _present(label)
            n_labelled = int(has_label.sum())
            label_coverage = ratio(n_labelled, n_events)
            if prediction is not None:
                prediction = np.asarray(prediction)
                both = has_label & _present(prediction)
                if self.numeric:
                    mae, rmse = _errors(prediction[both], label[both])
                else:
                    accuracy, precision, recall, f1 = self._classification(prediction[both], label[both])

        return QualityResult(
            n_events=n_events,
            n_labelled=n_labelled,
            label_coverage=label_coverage,
            accuracy=accuracy,
            precision=precision,
            recall=recall,
            f1=f1,
            mae=mae,
            rmse=rmse,
            feedback_positive_ratio=_positive_share(rating),
            judge_score_mean=_mean(judge_score),
            refusal_ratio=_mean(refused),
            empty_response_ratio=_mean(empty),
            error_ratio=_mean(failed),
            json_valid_ratio=_mean(json_valid),
        )

    def _classification(self, predicted: np.ndarray, true: np.ndarray) -> tuple[float, float, float, float]:
        """Accuracy, and precision, recall and F1 of the positive class (NaN without one)."""
        accuracy = nan_mean(predicted == true)
        if self.positive is None:
            return accuracy, _NAN, _NAN, _NAN
        predicted_positive, truly_positive = predicted == self.positive, true == self.positive
        n_predicted, n_true = int(predicted_positive.sum()), int(truly_positive.sum())
        n_hits = int(np.sum(predicted_positive & truly_positive))
        return accuracy, ratio(n_hits, n_predicted), ratio(n_hits, n_true), ratio(2 * n_hits, n_predicted + n_true)


def _present(values: np.ndarray) -> np.ndarray:
    """Where a value is present: not NaN in a float array, everywhere in any other."""
    return ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), dtype=bool)


def _errors(predicted: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Mean absolute error and root mean squared error."""
    errors = predicted.astype(float) - true.astype(float)
    return nan_mean(np.abs(errors)), math.sqrt(nan_mean(errors**2))


def _positive_share(rating: np.ndarray | None) -> float:
    """Share of the rated rows (not NaN) rated above 0; NaN when none is or the column was not given."""
    if rating is None:
        return _NAN
    rating = np.asarray(rating, dtype=float)
    return nan_mean(np.where(np.isnan(rating), np.nan, rating > 0))


def _mean(values: np.ndarray | None) -> float:
    """Mean of the values that are not NaN; NaN when there are none or the column was not given."""
    return _NAN if values is None else nan_mean(values)

"""A model's quality and fairness on each evaluation: proxies, a label-free accuracy estimate, bias per group.

Reads the window's columns that the feedback join fills (``label``,
``rating``, ``judge_score``) and the ones every call brings (``prediction``,
``score``, ``failed``, ``content_filter``, ``json_valid``, ``group.*``,
``outcome``). A text feature on the ``response`` field adds its descriptors:
refusals and empty answers are counted from its ``is_refusal`` and
``is_empty``. The accuracy estimate is calibrated on the reference
rows that have a label and a score (refitted when more labels arrived there)
and applied to the window's scores, so a quality drop shows before its labels
come; the realized ``accuracy`` is exported beside it once they do.

Labels that arrive after their call has left the window join it in the
model's label store (:mod:`monitor.state.labels`); :meth:`QualitySuite.evaluate`
also takes the store's cohort, the calls of the last ``quality.cohort`` of event
time whose labels have arrived, as NannyML computes realized performance on
chunks, and reports on it (:class:`CohortQuality`): the labelled figures, the
event-time span of the cohort's calls (stale labels show as an old newest
call), the accuracy estimate on the same calls beside their realized accuracy,
and the fairness figures that need labels (equalized odds).

>>> from monitor.config import parse_config
>>> model = parse_config({"models": [{"name": "bot", "quality": {"positive": "yes"}}]}).models[0]
>>> suite = QualitySuite(model, min_samples=2)
>>> window = {"prediction": np.array([1.0, 1.0, 2.0]), "label": np.array([1.0, 2.0, np.nan]),
...           "score": np.full(3, np.nan), "rating": np.array([1.0, np.nan, -1.0]),
...           "judge_score": np.full(3, np.nan), "failed": np.zeros(3, bool), "content_filter": np.zeros(3, bool)}
>>> result = suite.evaluate(window, reference=None, classes=["__other__", "yes", "no"], group_names={})
>>> result.quality.accuracy, result.quality.label_coverage, result.quality.feedback_positive_ratio
(0.5, 0.6666666666666666, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors.accuracy_estimate import AccuracyEstimator
from detectors.fairness import FairnessStats
from detectors.quality import QualityStats
from detectors.results import AccuracyEstimate, FairnessResult, QualityResult
from monitor.config import ModelConfig
from monitor.state.columns import Columns
from monitor.state.vocabulary import MISSING

__all__ = ["CohortQuality", "ModelQuality", "QualitySuite"]


@dataclass(frozen=True)
class CohortQuality:
    """Realized performance on the labelled cohort: the calls of the last ``quality.cohort`` whose labels arrived.

    ``quality`` holds the labelled figures (accuracy, precision, recall, F1; MAE, RMSE), ``oldest_ms`` and
    ``newest_ms`` the event times of the cohort's oldest and newest call. ``estimate`` is the label-free
    accuracy estimate on the cohort's calls that have a score (None until calibrated, or with fewer than
    ``min_samples`` scored calls) and
    ``scored_accuracy`` their realized accuracy; ``bias`` the fairness figures by attribute.
    """

    n_labelled: int
    oldest_ms: float
    newest_ms: float
    quality: QualityResult
    estimate: AccuracyEstimate | None
    scored_accuracy: float
    bias: dict[str, FairnessResult]

    @property
    def estimate_error(self) -> float:
        """The estimate minus the truth on the same calls (NaN without an estimate): how far it has drifted."""
        return math.nan if self.estimate is None else self.estimate.estimated - self.scored_accuracy


@dataclass(frozen=True)
class ModelQuality:
    """One model's quality figures, its accuracy estimate (None until calibrated), fairness by attribute, and
    realized performance on its labelled cohort (None below ``min_samples`` labelled calls, or without a store)."""

    quality: QualityResult
    estimate: AccuracyEstimate | None
    bias: dict[str, FairnessResult]
    cohort: CohortQuality | None = None


class QualitySuite:
    """The quality, accuracy-estimate and fairness calculators of one model."""

    def __init__(self, model: ModelConfig, min_samples: int):
        self.model = model
        self.min_samples = min_samples
        self._fairness = FairnessStats(model.bias.min_group_size, model.bias.max_groups)
        method = model.quality.accuracy_estimate
        self._estimator = AccuracyEstimator(method) if method and not model.quality.numeric else None
        self._n_calibrated = 0  # labelled reference rows the estimator was fitted on
        responses = [feature for feature in model.features if (feature.kind, feature.path) == ("text", "response")]
        self._response = Columns.descriptors(responses[0]) if responses else None  # its descriptors tell refusals

    @property
    def calibrates(self) -> bool:
        """Whether the accuracy estimate is on, and so needs the reference's labelled rows."""
        return self._estimator is not None

    def evaluate(
        self,
        window: dict[str, np.ndarray],
        reference: dict[str, np.ndarray] | None,
        classes: list[str],
        group_names: dict[str, list[str]],
        cohort: dict[str, np.ndarray] | None = None,
    ) -> ModelQuality:
        """Figures of one window; ``classes`` are the prediction and label classes by code, ``group_names``
        each bias attribute's group names by code, ``cohort`` the label store's labelled cohort
        (:meth:`~monitor.state.labels.LabelStore.cohort`)."""
        stats = self.stats(classes)
        refused, empty = window["content_filter"], None
        if self._response is not None:
            refused = refused | (window[self._response["is_refusal"]] == 1.0)
            empty = window[self._response["is_empty"]]
        quality = stats.compute(
            prediction=window["prediction"],
            label=window["label"],
            rating=window["rating"],
            judge_score=window["judge_score"],
            refused=refused,
            empty=empty,
            failed=window["failed"],
            json_valid=window.get("json_valid"),
        )
        estimate = self._estimate(window, reference)
        bias = self._bias(window, classes, group_names)
        return ModelQuality(quality, estimate, bias, self._cohort(cohort, classes, group_names))

    def evaluate_cohort(
        self, cohort: dict[str, np.ndarray], classes: list[str], group_names: dict[str, list[str]]
    ) -> ModelQuality | None:
        """The labelled cohort's figures alone, for a window below ``min_samples`` calls (traffic paused while
        labels keep coming): the window's own figures are left undefined (NaN, so not exported); None when the
        cohort too is below ``min_samples``."""
        realized = self._cohort(cohort, classes, group_names)
        return None if realized is None else ModelQuality(self._stats(classes).compute(), None, {}, realized)

    def _stats(self, classes: list[str]) -> QualityStats:
        numeric = self.model.quality.numeric
        return QualityStats(positive=None if numeric else _code(classes, self.model.quality.positive), numeric=numeric)

    def _cohort(
        self, cohort: dict[str, np.ndarray] | None, classes: list[str], group_names: dict[str, list[str]]
    ) -> CohortQuality | None:
        """Realized figures of the labelled cohort, the estimate beside the truth on its scored calls."""
        if cohort is None or len(cohort["label"]) < self.min_samples:
            return None
        prediction, label, score = cohort["prediction"], cohort["label"], cohort["score"]
        estimate, scored_accuracy = None, math.nan
        if self._estimator is not None and self._estimator.fitted:
            scored = ~np.isnan(score) & ~np.isnan(prediction)
            if np.count_nonzero(scored) >= self.min_samples:  # fewer: their realized accuracy is mostly noise
                estimate = self._estimator.estimate(score[scored])
                scored_accuracy = float(np.mean(prediction[scored] == label[scored]))
        timestamp_ms = cohort["timestamp_ms"]
        return CohortQuality(
            n_labelled=len(label),
            oldest_ms=float(timestamp_ms.min()),
            newest_ms=float(timestamp_ms.max()),
            quality=self._stats(classes).compute(prediction=prediction, label=label),
            estimate=estimate,
            scored_accuracy=scored_accuracy,
            bias=self._bias(cohort, classes, group_names),
        )

    def stats(self, classes: list[str]) -> QualityStats:
        """The calculator of the quality figures, for the classes by code (the positive one's code among them)."""
        numeric = self.model.quality.numeric
        return QualityStats(positive=None if numeric else _code(classes, self.model.quality.positive), numeric=numeric)

    def _estimate(self, window: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None):
        if self._estimator is None or reference is None:
            return None
        correct = np.where(np.isnan(reference["label"]), np.nan, reference["label"] == reference["prediction"])
        n_labelled = int(np.count_nonzero(~np.isnan(correct) & ~np.isnan(reference["score"])))
        if n_labelled >= self.min_samples and n_labelled != self._n_calibrated:
            self._estimator.fit(reference["score"], correct)
            self._n_calibrated = n_labelled
        return self._estimator.estimate(window["score"]) if self._estimator.fitted else None

    def _bias(
        self, window: dict[str, np.ndarray], classes: list[str], group_names: dict[str, list[str]]
    ) -> dict[str, FairnessResult]:
        """Fairness by attribute; a label is positive when it is the outcome's positive class."""
        outcome = self.model.bias.outcome
        if outcome is None:
            return {}
        positive = _code(classes, outcome.positive)
        all_labels = np.where(np.isnan(window["label"]), np.nan, window["label"] == positive)  # once, not per attribute
        all_outcomes, has_outcome = window["outcome"].astype(bool), ~np.isnan(window["outcome"])
        results = {}
        for attribute in self.model.bias.attributes:
            codes, outcomes, labels = window[Columns.group(attribute)], all_outcomes, all_labels
            known = (codes != MISSING) & has_outcome
            if not known.all():  # else the columns serve as they are, uncopied
                codes, outcomes, labels = codes[known], outcomes[known], labels[known]
            results[attribute] = self._fairness.compute(codes, outcomes, labels, names=group_names[attribute])
        return results


def _code(classes: list[str], name: str | None) -> float | None:
    """The code of class ``name`` (None without one; NaN, matching nothing, if never seen)."""
    if name is None:
        return None
    return float(classes.index(name)) if name in classes else float("nan")

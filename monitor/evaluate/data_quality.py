"""A model's data-quality checks: fitted once on its reference, scored on every evaluation of its window.

Every configured feature is checked for missing values (absent or null) and
type violations (a value of the wrong JSON type for its kind: a string where
a number is expected, a number where a category is, anything but a string
for a text feature, a vector of another length for an embedding); numeric
features also for values outside the reference's range, categorical ones for
categories the reference never saw (:mod:`detectors.data_quality`). A value
of the wrong type is windowed as it was before these checks (a string as a
missing number, a number as the name of its category), and counted here.

The checks of a model are corrected together, with the correction and the
alpha of its drift tests (:func:`monitor.evaluate.drift.drift_alpha`): the
data-quality checks have a false-alarm budget of their own, the size of the
drift tests' one.

>>> from monitor.config import parse_config
>>> model = parse_config({"models": [{"name": "bot", "features": [
...     {"name": "amount", "kind": "numeric", "path": "features.amount"}]}]}).models[0]
>>> suite = DataQualitySuite(model, alpha=0.01, min_samples=10)
>>> rng = np.random.default_rng(1)
>>> def columns(values):
...     return {"feature.amount": values, "feature.amount.wrong_type": np.zeros(len(values), bool)}
>>> suite.fit(columns(rng.normal(size=1_000)))
>>> window = rng.normal(size=1_000)
>>> window[:600] = np.nan
>>> result = suite.score(columns(window))
>>> result.flagged, round(result.checks["amount"]["missing"].share, 2)
([('amount', 'missing')], 0.6)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detectors.data_quality import CHECKS, DataQualityTest, flag
from detectors.results import ModelDataQuality
from monitor.config import FeatureConfig, ModelConfig
from monitor.state.columns import Columns
from monitor.state.vocabulary import MISSING

__all__ = ["DataQualitySuite", "FeatureCounts", "data_quality_policy", "presence", "present"]

#: A feature's present values (none for text and embeddings: only their presence is checked), and its rows, missing
#: values and wrong-type values in a window: what its checks read.
FeatureCounts = tuple[np.ndarray, int, int, int]


def data_quality_policy(model: ModelConfig, alpha: float, evaluations_per_week: float) -> str:
    """The expected false data-quality alerts a week of a model whose data does not change, in one line
    (``alpha``: its drift tests' level, :func:`monitor.evaluate.drift.drift_alpha`): a budget of the drift
    tests' size, of its own.

    >>> from monitor.config import parse_config
    >>> model = parse_config({"models": [{"name": "m", "features": [
    ...     {"name": "amount", "kind": "numeric"}, {"name": "channel", "kind": "categorical"}]}]}).models[0]
    >>> print(data_quality_policy(model, 1e-4, 10_080))
    6 checks at alpha 0.0001 after bh correction, as drift: at most 1.01 false data-quality alerts a week
    """
    n_checks = sum(len(CHECKS[feature.kind]) for feature in model.features)
    correction, expected = model.drift.correction, f"{alpha * evaluations_per_week:.3g}"
    if correction == "none":
        return f"{n_checks} checks at alpha {alpha:.3g} each, as drift: up to {expected} false alerts a week per check"
    return (
        f"{n_checks} checks at alpha {alpha:.3g} after {correction} correction, as drift: at most {expected} false "
        f"data-quality alert{'' if expected == '1' else 's'} a week"
    )


class DataQualitySuite:
    """The data-quality checks of one model's features; :meth:`fit` once on the reference, then :meth:`score`."""

    def __init__(self, model: ModelConfig, alpha: float, min_samples: int):
        self.alpha = alpha
        self.correction = model.drift.correction
        self.features = model.features
        self._tests = {feature.name: DataQualityTest(feature.kind, alpha, min_samples) for feature in self.features}
        self.fitted = False

    def fit(self, reference: dict[str, np.ndarray]) -> None:
        """Learn each feature's shares, range or categories from the reference's columns."""
        for feature in self.features:
            self._tests[feature.name].fit(*_split(reference, feature))
        self.fitted = True

    def score(self, window: Mapping[str, np.ndarray]) -> ModelDataQuality:
        """Check the window's features and correct the verdicts across all the checks."""
        return self.score_counts({feature.name: _counts(window, feature) for feature in self.features})

    def score_counts(self, counts: Mapping[str, FeatureCounts]) -> ModelDataQuality:
        """:meth:`score` on what each feature's checks read of a window, by feature name (:data:`FeatureCounts`)."""
        tests = self._tests
        checks = {feature.name: tests[feature.name].figures(*counts[feature.name]) for feature in self.features}
        return flag(checks, self.correction, self.alpha)


def presence(feature: FeatureConfig) -> tuple[str, str]:
    """The column whose rows tell whether ``feature`` has a value, and the kind it is read as (a text feature's
    length descriptor, a number; the feature's own column otherwise)."""
    if feature.kind == "text":
        return Columns.descriptors(feature)["length_chars"], "numeric"
    return Columns.feature(feature.name), feature.kind


def present(values: np.ndarray, kind: str) -> np.ndarray:
    """Which rows of a column of ``kind`` hold a value: not :data:`MISSING`, not NaN, an embedding without NaN.

    >>> present(np.array([1.0, np.nan]), "numeric").tolist(), present(np.array([3, MISSING]), "categorical").tolist()
    ([True, False], [True, False])
    """
    if kind == "categorical":
        return values != MISSING
    if kind == "embedding":
        return ~np.isnan(values).any(axis=1)
    return ~np.isnan(values)


def _split(columns: Mapping[str, np.ndarray], feature: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A feature's present values (none for text and embeddings: only their presence is checked), and per row
    whether it was missing and whether its value had the wrong type."""
    wrong_type = columns[Columns.wrong_type(feature.name)]
    column, kind = presence(feature)
    values = columns[column]
    rows = present(values, kind)
    checked = values[rows] if feature.kind in ("numeric", "categorical") else np.empty(0)
    return checked, ~rows & ~wrong_type, wrong_type


def _counts(columns: Mapping[str, np.ndarray], feature: FeatureConfig) -> FeatureCounts:
    """What ``feature``'s checks read of a window (:data:`FeatureCounts`)."""
    values, missing, wrong_type = _split(columns, feature)
    return values, len(missing), int(np.count_nonzero(missing)), int(np.count_nonzero(wrong_type))

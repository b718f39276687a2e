"""A model's drift tests: fitted once on its reference, scored on every evaluation of its window.

Each configured feature is tested as a kind the detectors know: numeric and
categorical columns as they are, a text feature through each of its
descriptors (``prompt.length_chars`` is tested like a numeric feature), an
embedding row by row. Missing values are left out on both sides (the
data-quality checks count them: :mod:`monitor.evaluate.data_quality`), and a
feature with fewer than ``min_samples`` values on either side is not tested.
The verdicts of the p-value tests are then corrected across the model's
features (:mod:`detectors.correction`); the distance tests' thresholds are
calibrated on the reference to their share of the same ``alpha``
(:class:`detectors.calibrated_distance.CalibratedDistance`), unless
``drift.thresholds`` pins them, which leaves them outside the policy below
(:func:`promise_coverage` says which features it covers).

The false-alarm policy in an on-call engineer's units: a model is evaluated
``windows.evaluations_per_week`` times a week, and with Bonferroni or
Benjamini-Hochberg correction each evaluation of a stream that does not drift
flags some feature with probability at most ``alpha``. So at most
``alpha * evaluations_per_week`` false drift verdicts a week are expected;
``drift.false_alarms_per_week`` sets that number and alpha follows from it.

>>> from monitor.config import parse_config
>>> config = parse_config({"windows": {"evaluate_every": "1m"},
...                        "models": [{"name": "bot", "drift": {"false_alarms_per_week": 1}}]})
>>> drift, windows = config.models[0].drift, config.windows
>>> round(drift_alpha(drift, windows) * windows.evaluations_per_week, 6)
1.0
>>> print(false_alarm_policy(drift, windows))
alpha 9.92e-05 after bh correction, 10080 evaluations a week: at most 1 false drift alert a week without drift
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors._two_sample import TwoSampleTest
from detectors.calibrated_distance import CalibratedDistance
from detectors.correction import correct
from detectors.registry import AUTO_CANDIDATES, TWO_SAMPLE_TESTS, make_test
from detectors.results import ModelDrift
from monitor.config import DriftConfig, ModelConfig, WindowsConfig
from monitor.evaluate.data_quality import DataQualitySuite, present
from monitor.state.columns import TIMESTAMP_MS, Columns

__all__ = ["DriftSuite", "TestedFeature", "drift_alpha", "false_alarm_policy", "promise_coverage", "tested_features"]


def drift_alpha(drift: DriftConfig, windows: WindowsConfig) -> float:
    """The significance level of the model's p-value tests, after correction."""
    if drift.false_alarms_per_week is None:
        return drift.alpha
    return drift.false_alarms_per_week / windows.evaluations_per_week


def false_alarm_policy(drift: DriftConfig, windows: WindowsConfig) -> str:
    """The expected false drift alerts a week on a stream without drift, in one line."""
    alpha = drift_alpha(drift, windows)
    per_week = windows.evaluations_per_week
    expected = f"{alpha * per_week:.3g}"
    if drift.correction == "none":
        return (
            f"alpha {alpha:.3g} per feature without correction, {per_week:.0f} evaluations a week: "
            f"up to {expected} false drift alerts a week per feature without drift (set correction: bh)"
        )
    return (
        f"alpha {alpha:.3g} after {drift.correction} correction, {per_week:.0f} evaluations a week: "
        f"at most {expected} false drift alert{'' if expected == '1' else 's'} a week without drift"
    )


@dataclass(frozen=True)
class TestedFeature:
    """One tested column: its label in metrics, its window column, the kind it is tested as, the method."""

    label: str
    column: str
    kind: str
    method: str


class DriftSuite:
    """The drift tests of one model's features; :meth:`fit` once on the reference, then :meth:`score`.

    Its :attr:`data_quality` checks are fitted on the same reference, held to the same alpha and correction.
    """

    def __init__(self, model: ModelConfig, alpha: float, min_samples: int):
        self.alpha = alpha
        self.min_samples = min_samples
        self.drift = model.drift
        self.features = tested_features(model)
        self.data_quality = DataQualitySuite(model, alpha, min_samples)
        self._tests: dict = {}
        #: The features :meth:`fit` gave a test (those with enough reference values).
        self.tested: list[TestedFeature] = []
        self._n_reference = 0
        self._reference_newest_ms = float("nan")
        self.fitted = False

    def fit(self, reference: dict[str, np.ndarray], newest_ms: float) -> None:
        """Fit every feature's test on the reference columns (those with enough values), and the
        data-quality checks.

        A distance test (no p-value) whose threshold the config does not pin is
        calibrated on the reference (:class:`CalibratedDistance`, seeded by the
        feature's label, so a refit after a restore gives the same thresholds).
        """
        self.data_quality.fit(reference)
        tests: dict[str, TwoSampleTest | CalibratedDistance] = {}
        for feature in self.features:
            values = _present(reference[feature.column], feature.kind)
            if len(values) >= self.min_samples:
                test = make_test(feature.method, feature.kind, values)
                if test.has_p_value:
                    test.threshold = self.alpha
                elif test.name in self.drift.thresholds:
                    test.threshold = self.drift.thresholds[test.name]
                elif test.null_exponent is not None:
                    seed = zlib.crc32(feature.label.encode())
                    tests[feature.label] = CalibratedDistance(test, random_state=seed).fit(values)
                    continue
                tests[feature.label] = test
        self._tests = tests
        self.tested = [feature for feature in self.features if feature.label in tests]
        self._n_reference = len(reference[TIMESTAMP_MS])
        self._reference_newest_ms = newest_ms
        self.fitted = True

    def score(self, window: Mapping[str, np.ndarray], now_ms: float) -> ModelDrift:
        """Test the window's features and correct the verdicts across them.

        The false-alarm rate ``alpha`` is shared among the features it covers
        (p-value tests and calibrated distances): with a correction each
        calibrated distance gets ``alpha / m`` of the ``m`` covered features
        tested, and the p-value tests are corrected together at the rest.
        """
        values = {feature.label: _present(window[feature.column], feature.kind) for feature in self.tested}
        return self.score_values(values, len(window[TIMESTAMP_MS]), now_ms)

    def score_values(self, values: Mapping[str, np.ndarray], n_window: int, now_ms: float) -> ModelDrift:
        """:meth:`score` on the present values of each feature of :attr:`tested` (by label) in a window of
        ``n_window`` rows."""
        tested = {}
        for feature in self.tested:
            kept = values[feature.label]
            if len(kept) >= self.min_samples:
                tested[feature.label] = (self._tests[feature.label], kept)
        covered = sum(isinstance(test, CalibratedDistance) or test.has_p_value for test, _ in tested.values())
        share = self.alpha if self.drift.correction == "none" else self.alpha / max(covered, 1)
        n_calibrated = sum(isinstance(test, CalibratedDistance) for test, _ in tested.values())
        results = [
            test.score(kept, share) if isinstance(test, CalibratedDistance) else test.score(kept)
            for test, kept in tested.values()
        ]
        alpha = self.alpha if self.drift.correction == "none" else self.alpha - share * n_calibrated
        corrected = correct(results, self.drift.correction, alpha)
        return ModelDrift(
            features=dict(zip(tested, corrected)),
            n_window=n_window,
            n_reference=self._n_reference,
            reference_age_ms=now_ms - self._reference_newest_ms,
        )


def promise_coverage(model: ModelConfig) -> str:
    """Which tested features the false-alarm policy covers, and why the others are outside it, in one line.

    A feature is covered when its test has a p-value or is a calibrated distance; it is outside when its
    method (or one ``auto`` may pick) has a threshold pinned in ``drift.thresholds``, or is the domain
    classifier, whose AUC threshold is fixed. A feature whose config names ``wasserstein`` is covered only
    if its reference has no heavy tail (:mod:`detectors.tails`; ``auto`` tests such a feature with ``ks``).

    >>> from monitor.config import parse_config
    >>> config = parse_config({"models": [{"name": "bot", "drift": {"thresholds": {"psi": 0.2}}, "features": [
    ...     {"name": "amount", "kind": "numeric"}, {"name": "tier", "kind": "categorical", "method": "psi"},
    ...     {"name": "vector", "kind": "embedding", "dim": 8}, {"name": "cost", "kind": "numeric",
    ...     "method": "wasserstein"}]}]})
    >>> print(promise_coverage(config.models[0]))
    covers amount, cost (if its reference has no heavy tail); not tier (thresholds.psi is pinned), vector \
(classifier's threshold is fixed)
    """
    pinned = model.drift.thresholds
    covered, outside = [], []
    for feature in tested_features(model):
        candidates = AUTO_CANDIDATES[feature.kind] if feature.method == "auto" else (feature.method,)
        reasons = [f"thresholds.{method} is pinned" for method in candidates if method in pinned]
        reasons += [
            f"{method}'s threshold is fixed"
            for method in candidates
            if not TWO_SAMPLE_TESTS[method].has_p_value and TWO_SAMPLE_TESTS[method].null_exponent is None
        ]
        if reasons:
            outside.append(f"{feature.label} ({'; '.join(reasons)})")
        elif feature.method == "wasserstein":
            covered.append(f"{feature.label} (if its reference has no heavy tail)")
        else:
            covered.append(feature.label)
    return f"covers {', '.join(covered) or 'no feature'}" + (f"; not {', '.join(outside)}" if outside else "")


def tested_features(model: ModelConfig) -> list[TestedFeature]:
    """The columns a model's drift tests read, a text feature's descriptors one by one."""
    tested = []
    for feature in model.features:
        method = feature.method or getattr(model.drift, feature.kind)
        if feature.kind == "text":
            tested += [
                TestedFeature(f"{feature.name}.{name}", column, "numeric", method)  # the label shown, not a column
                for name, column in Columns.descriptors(feature).items()
            ]
        else:
            tested.append(TestedFeature(feature.name, Columns.feature(feature.name), feature.kind, method))
    return tested


def _present(values: np.ndarray, kind: str) -> np.ndarray:
    """The values that are not missing."""
    return values[present(values, kind)]

"""Data quality of a feature's window against its reference: missing values, wrong types, values out of range.

Each check is a share of the window and a one-sided test that it is higher
than the reference's own share:

- ``missing``: rows where the feature is absent or null, of all rows;
- ``type_violation``: rows whose value has the wrong type for the feature's
  kind (a string where a number is expected, a number where a category is), of
  all rows;
- ``out_of_range`` (numeric features): values outside the ``[min, max]`` the
  reference showed, of the values present;
- ``unseen_category`` (categorical features): values in a category the
  reference never had, of the values present.

The reference's own share of missing values and type violations is what it
holds. Its share of values out of range or unseen is counted leaving each
value out in turn: a value is outside the range of the others when it is the
only minimum or the only maximum (2 of ``n`` continuous values), unseen by
the others when its category occurs once (Good-Turing's estimate of the
chance that the next value is new).

Missing values, type violations and unseen categories are tested with
Fisher's exact test, one-sided (the window's share greater than the
reference's): its p-value is ``scipy.stats.fisher_exact(table,
alternative="greater")``, summed here over the at most ``k_reference + 1``
tables as extreme (scipy's hypergeometric tail costs 0.15 ms a call). Values out of
range have an exact null of their own: when the ``m`` window values and the
``n`` reference values come from one continuous distribution, every order
of the ``n + m`` is equally likely, and the chance that ``k`` or more window
values fall outside the reference's range is a ratio of binomial coefficients
(:func:`out_of_range_p_value`); ties only make it more conservative.

:func:`flag` corrects the p-values of all the checks of a model together,
with the correction and the alpha of its drift tests.

>>> rng = np.random.default_rng(0)
>>> reference, window = rng.normal(size=2_000), rng.normal(size=1_000)
>>> window_missing = rng.random(1_000) < 0.6
>>> test = DataQualityTest("numeric", alpha=0.05).fit(reference, np.zeros(2_000, bool), np.zeros(2_000, bool))
>>> results = test.score(window[~window_missing], window_missing, np.zeros(1_000, bool))
>>> [(check, round(result.share, 3), result.flagged) for check, result in results.items()]
[('missing', 0.614, True), ('type_violation', 0.0, False), ('out_of_range', 0.0, False)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.special import gammaln

from detectors._binning import Categories
from detectors.correction import reject
from detectors.results import DataQualityResult, ModelDataQuality

__all__ = ["CHECKS", "DataQualityTest", "Figures", "fisher_greater_p_value", "flag", "out_of_range_p_value"]

#: The checks of each feature kind, in the order they are reported.
CHECKS = {
    "numeric": ("missing", "type_violation", "out_of_range"),
    "categorical": ("missing", "type_violation", "unseen_category"),
    "text": ("missing", "type_violation"),
    "embedding": ("missing", "type_violation"),
}
#: A check before its verdict: the window's share, the reference's, the rows (or present values) the window's is a
#: share of, and the p-value (a :class:`~detectors.results.DataQualityResult`'s first four fields).
Figures = tuple[float, float, int, float]


def fisher_greater_p_value(k: int, n: int, k_reference: int, n_reference: int) -> float:
    """One-sided Fisher exact p-value that ``k / n`` is greater than ``k_reference / n_reference``.

    >>> round(fisher_greater_p_value(30, 100, 10, 100), 6)
    0.000325
    """
    if k == 0:
        return 1.0
    total, positives = n + n_reference, k + k_reference
    j = np.arange(k, min(positives, n) + 1)  # the tables at least as extreme: k_reference + 1 of them at most
    log_pmf = _log_binomial(positives, j) + _log_binomial(total - positives, n - j) - _log_binomial(total, n)
    return float(min(1.0, np.exp(log_pmf).sum()))


def out_of_range_p_value(k: int, m: int, n: int) -> float:
    """The chance that ``k`` or more of ``m`` window values fall outside the range of ``n`` reference values
    when all ``n + m`` are exchangeable (drawn from one continuous distribution).

    The reference's values take a random ``n`` of the ``N = n + m`` ranks; the window has ``k`` or more outside
    their range when the span ``S`` from the lowest to the highest is at most ``N - k``, and
    ``P(S <= t) = (N C(t - 1, n - 1) - (n - 1) C(t, n)) / C(N, n)``.

    >>> round(out_of_range_p_value(1, 1, 2), 6)  # the third of three values is the lowest or the highest: 2 in 3
    0.666667
    """
    if k == 0:
        return 1.0
    total, span = n + m, n + m - k
    log_ratio = float(_log_binomial(span - 1, n - 1) - _log_binomial(total, n))
    return float(min(1.0, math.exp(log_ratio) * (total - (n - 1) * span / n)))


def _log_binomial(a, b):
    """``log C(a, b)``, elementwise."""
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


class DataQualityTest:
    """The data-quality checks of one feature of ``kind``; :meth:`fit` once on the reference, then :meth:`score`.

    Both take the feature's present values (numbers, or category codes), and per row whether the feature was
    missing and whether its value had the wrong type. A check on present values runs only when both sides
    have at least ``min_samples`` of them. ``alpha`` is the uncorrected level (see :func:`flag`).
    """

    def __init__(self, kind: str, alpha: float = 0.05, min_samples: int = 1):
        if kind not in CHECKS:
            raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(CHECKS)}")
        self.kind = kind
        self.alpha = alpha
        self.min_samples = min_samples
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._n_missing = 0
        self._n_wrong_type = 0
        self._n_values = 0
        self._low = self._high = math.nan
        self._n_outside = 0  # reference values outside the range of the others
        self._categories: Categories | None = None
        self._n_singletons = 0
        self.fitted = False

    def fit(self, values: np.ndarray, missing: np.ndarray, wrong_type: np.ndarray) -> DataQualityTest:
        """Learn the reference's shares, its range (numeric) or its categories (categorical)."""
        self._reset()
        self._n = len(missing)
        self._n_missing = int(np.count_nonzero(missing))
        self._n_wrong_type = int(np.count_nonzero(wrong_type))
        self._n_values = len(values)
        if self._n_values and self.kind == "numeric":
            self._low, self._high = float(values.min()), float(values.max())
            self._n_outside = int(np.count_nonzero(values == self._low) == 1) + int(
                np.count_nonzero(values == self._high) == 1
            )
        elif self._n_values and self.kind == "categorical":
            self._categories = Categories(values)
            self._n_singletons = int(np.count_nonzero(self._categories.count(values)[:-1] == 1))
        self.fitted = True
        return self

    def score(self, values: np.ndarray, missing: np.ndarray, wrong_type: np.ndarray) -> dict[str, DataQualityResult]:
        """Each check of the window, by name, held to the uncorrected ``alpha``."""
        n_missing, n_wrong_type = int(np.count_nonzero(missing)), int(np.count_nonzero(wrong_type))
        return self.score_counts(values, len(missing), n_missing, n_wrong_type)

    def score_counts(
        self, values: np.ndarray, n: int, n_missing: int, n_wrong_type: int
    ) -> dict[str, DataQualityResult]:
        """:meth:`score` of a window of ``n`` rows, ``n_missing`` of them missing and ``n_wrong_type`` of the wrong
        type, whose present values are ``values``."""
        checks = self.figures(values, n, n_missing, n_wrong_type)
        alpha = self.alpha
        return {name: DataQualityResult(*figures, alpha, figures[3] < alpha) for name, figures in checks.items()}

    def figures(self, values: np.ndarray, n: int, n_missing: int, n_wrong_type: int) -> dict[str, Figures]:
        """:meth:`score_counts` before the verdicts: each check's :data:`Figures`, by name."""
        counts = {
            "missing": (n_missing, n, self._n_missing, self._n),
            "type_violation": (n_wrong_type, n, self._n_wrong_type, self._n),
        }
        enough = min(len(values), self._n_values) >= self.min_samples
        p_values = {name: fisher_greater_p_value(*figures) for name, figures in counts.items()}
        if enough and self.kind == "numeric":
            k = int(np.count_nonzero((values < self._low) | (values > self._high)))
            counts["out_of_range"] = (k, len(values), self._n_outside, self._n_values)
            p_values["out_of_range"] = out_of_range_p_value(k, len(values), self._n_values)
        elif enough and self._categories is not None:
            k = self._categories.n_unseen(values)
            counts["unseen_category"] = (k, len(values), self._n_singletons, self._n_values)
            p_values["unseen_category"] = fisher_greater_p_value(*counts["unseen_category"])
        return {
            name: (
                k / n_rows if n_rows else 0.0,
                k_reference / n_reference if n_reference else 0.0,
                n_rows,
                p_values[name],
            )
            for name, (k, n_rows, k_reference, n_reference) in counts.items()
        }


def flag(checks: Mapping[str, Mapping[str, Figures]], correction: str, alpha: float) -> ModelDataQuality:
    """A model's checks (by feature, then check: their :data:`Figures`) with their verdicts corrected across all
    of them, by the rule and at the level of its drift tests (:func:`detectors.correction.reject`).

    >>> flagged = flag({"a": {"missing": (0.5, 0.0, 100, 0.001)}, "b": {"missing": (0.5, 0.0, 100, 0.03)}},
    ...                "bonferroni", 0.05)
    >>> flagged.flagged, flagged.checks["b"]["missing"].threshold
    ([('a', 'missing')], 0.025)
    """
    pairs = [(feature, check) for feature, figures in checks.items() for check in figures]
    thresholds, rejected = reject(np.array([checks[f][c][3] for f, c in pairs]), correction, alpha)
    corrected: dict[str, dict[str, DataQualityResult]] = {feature: {} for feature in checks}
    for (feature, check), threshold, verdict in zip(pairs, thresholds.tolist(), rejected.tolist()):
        corrected[feature][check] = DataQualityResult(*checks[feature][check], threshold, verdict)
    return ModelDataQuality(corrected)

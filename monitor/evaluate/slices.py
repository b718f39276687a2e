"""A model's figures again per slice: per locale, per tenant, per customer tier.

A slice attribute (``slices.attributes``) is a column of group codes in the
window (:meth:`Columns.group <monitor.state.columns.Columns.group>`).
:class:`Groups` picks its groups from a sample of those codes, capped as
bias groups are: the ``max_groups`` largest with at least ``min_group_size``
rows keep their name (ties by name), every other value, and any value the
sample never held, pools into :data:`OTHER`; rows without a value belong to
no group. :meth:`Groups.split` then cuts any window into one
:class:`SubWindow` per group present, whose columns are taken on demand, so
any suite that reads a window reads a group's rows alone.

:class:`SliceSuite` picks each attribute's groups on the model's reference
(so they stay put from tick to tick, and each has reference rows to be
compared with), fits a :class:`~monitor.evaluate.drift.DriftSuite` per group on
the group's reference rows, and scores each group's window rows with it: a
group's drift share and data-quality checks are the model's, run on that
group alone. Its realized quality is the model's labelled figures over its
window rows that have a label, and again over its calls in the labelled
cohort (:meth:`~monitor.state.labels.LabelStore.cohort`: labels that came
after their call left the window), all groups of an attribute at once
(:class:`GroupedQuality`).

Each group's tests run at the model's ``alpha`` shared among all the groups
of all its slice attributes (:func:`slice_alpha`, Bonferroni across the
groups, the model's correction within each), so that a model's slice
verdicts have the false-alarm budget of its drift tests, of their own,
however many groups there are.

>>> names = ["__other__", "de", "en", "fr"]
>>> groups = Groups.choose(np.array([1, 1, 1, 2, 2, 3, 0, -1]), names, min_group_size=2, max_groups=5)
>>> groups.names
('de', 'en', '__other__')
>>> window = {"x": np.arange(6.0)}
>>> {name: sub["x"].tolist() for name, sub in groups.split(window, np.array([2, 1, 4, 3, -1, 1]))}
{'de': [1.0, 5.0], 'en': [0.0], '__other__': [2.0, 3.0]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detectors._proportions import ratio
from detectors.results import ModelDataQuality, ModelDrift, QualityResult
from monitor.config import ModelConfig, SliceConfig
from monitor.evaluate.data_quality import presence, present
from monitor.evaluate.drift import DriftSuite, tested_features
from monitor.evaluate.quality import QualitySuite
from monitor.state.columns import LABEL, PREDICTION, Columns
from monitor.state.vocabulary import OTHER

__all__ = [
    "OTHER",
    "SERIES_PER_GROUP",
    "GroupSlice",
    "GroupedQuality",
    "Groups",
    "SliceSuite",
    "SubWindow",
    "max_series",
    "slice_alpha",
    "slice_policy",
]

#: The series a slice group can have: its calls, its drift share, its share of flagged data-quality checks, at
#: most five window quality figures (label coverage with accuracy, precision, recall and F1 for a classifier, or
#: with MAE and RMSE for a numeric model), its calls in the labelled cohort and at most four figures on them.
SERIES_PER_GROUP = 13

#: One NaN for every figure that is not a number, as :mod:`detectors.quality` does: equal results compare equal.
_NAN = float("nan")
#: The figures of a QualityResult that do not come from labels, NaN in :class:`GroupedQuality`'s.
_UNLABELLED = (
    "feedback_positive_ratio",
    "judge_score_mean",
    "refusal_ratio",
    "empty_response_ratio",
    "error_ratio",
    "json_valid_ratio",
)


def max_series(slices: SliceConfig) -> int:
    """The most series a model's slices can export: ``max_groups`` named groups and :data:`OTHER` per attribute.

    >>> from monitor.config import SliceConfig
    >>> max_series(SliceConfig(attributes=["segment.locale", "segment.tier"]))
    546
    """
    return (slices.max_groups + 1) * SERIES_PER_GROUP * len(slices.attributes)


def slice_alpha(alpha: float, correction: str, n_groups: int) -> float:
    """The level of each group's tests: the model's ``alpha`` shared among its ``n_groups`` slice groups
    (Bonferroni), so that on data that does not change some group's verdict is false with probability at most
    ``alpha`` per evaluation; without a correction each group keeps ``alpha``, as each feature does.

    >>> slice_alpha(0.01, "bh", 40), slice_alpha(0.01, "none", 40)
    (0.00025, 0.01)
    """
    return alpha if correction == "none" else alpha / max(n_groups, 1)


def slice_policy(model: ModelConfig, alpha: float, evaluations_per_week: float) -> str:
    """What ``check-config`` says of a model's slices: their groups, the bound of their series and the
    false-alarm budget of their verdicts (``alpha``: its drift tests' level), in one line.

    >>> from monitor.config import parse_config
    >>> model = parse_config({"models": [{"name": "m", "slices": {"attributes": ["segment.a", "segment.b"],
    ...     "max_groups": 9}}]}).models[0]
    >>> print(slice_policy(model, 1e-4, 10_080))
    segment.a, segment.b, at most 10 groups each (9 by name and __other__): at most 260 series; each group's \
tests at alpha 0.0001 / groups (5e-06 with 20) after bh correction: at most 1.01 false slice drift alerts a \
week, and as many data-quality ones
    """
    slices, correction = model.slices, model.drift.correction
    n_groups = (slices.max_groups + 1) * len(slices.attributes)
    groups = (
        f"{', '.join(slices.attributes)}, at most {slices.max_groups + 1} groups each ({slices.max_groups} by name "
        f"and {OTHER}): at most {max_series(slices)} series"
    )
    expected = f"{alpha * evaluations_per_week:.3g}"
    if correction == "none":
        return f"{groups}; each group's tests at alpha {alpha:.3g}: up to {expected} false alerts a week per group"
    return (
        f"{groups}; each group's tests at alpha {alpha:.3g} / groups ({slice_alpha(alpha, correction, n_groups):.3g} "
        f"with {n_groups}) after {correction} correction: at most {expected} false slice drift "
        f"alert{'' if expected == '1' else 's'} a week, and as many data-quality ones"
    )


class SubWindow(Mapping):
    """Rows ``start:end`` of a window whose rows are taken in group order (:class:`_InGroupOrder`)."""

    def __init__(self, ordered: _InGroupOrder, start: int, end: int):
        self.ordered = ordered
        self.start = start
        self.end = end

    @property
    def n_rows(self) -> int:
        """How many rows it holds."""
        return self.end - self.start

    @property
    def rows(self) -> np.ndarray:
        """The positions of its rows in the window."""
        return self.ordered.order[self.start : self.end]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.ordered[name][self.start : self.end]  # a view

    def __iter__(self) -> Iterator[str]:
        return iter(self.ordered)

    def __len__(self) -> int:
        return len(self.ordered)


class _InGroupOrder(Mapping):
    """A window's columns with their rows in ``order``, each column taken once, when first read: one gather per
    column, then each group's rows are a slice of it (four times faster than a gather per group)."""

    def __init__(self, window: Mapping[str, np.ndarray], order: np.ndarray):
        self.window = window
        self.order = order
        self._taken: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        column = self._taken.get(name)
        if column is None:
            column = self._taken[name] = self.window[name].take(self.order, axis=0)
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self.window)

    def __len__(self) -> int:
        return len(self.window)


@dataclass(frozen=True)
class Groups:
    """An attribute's groups: their names (the kept ones largest first, then :data:`OTHER`) and, by code + 1,
    the group of each code (-1 for a missing value; codes given after the choice are :data:`OTHER`)."""

    names: tuple[str, ...]
    by_code: np.ndarray

    @classmethod
    def choose(cls, codes: np.ndarray, names: list[str], min_group_size: int, max_groups: int) -> Groups:
        """The groups of a sample of codes into ``names`` (a vocabulary's values, :data:`OTHER` as code 0)."""
        counts = np.bincount(codes[codes >= 0], minlength=len(names))
        candidates = [code for code in np.flatnonzero(counts >= min_group_size).tolist() if names[code] != OTHER]
        kept = sorted(candidates, key=lambda code: (-counts[code], names[code]))[:max_groups]
        by_code = np.full(len(names) + 2, len(kept), dtype=np.int16)  # the pool: every code not kept, newer ones too
        by_code[0] = -1  # a missing value (code -1)
        by_code[np.asarray(kept, dtype=np.intp) + 1] = np.arange(len(kept))
        return cls(tuple(names[code] for code in kept) + (OTHER,), by_code)

    def numbers(self, codes: np.ndarray) -> np.ndarray:
        """Each row's group, as its position in :attr:`names` (-1 for a row without a value)."""
        return self.by_code.take(codes + 1, mode="clip")  # a code above the last: the last entry, the pool

    def split(self, window: Mapping[str, np.ndarray], codes: np.ndarray) -> Iterator[tuple[str, SubWindow]]:
        """Each group that has rows in ``window`` (whose group codes are ``codes``) with its rows, in the order
        of :attr:`names`: one stable sort of the rows by group (a radix sort of small integers), so that every
        row of a column is taken once."""
        return self.split_numbers(window, self.numbers(codes))

    def split_numbers(self, window: Mapping[str, np.ndarray], numbers: np.ndarray) -> Iterator[tuple[str, SubWindow]]:
        """:meth:`split` by each row's group already found (:meth:`numbers`)."""
        ordered = _InGroupOrder(window, np.argsort(numbers, kind="stable"))
        ends = [0, *np.cumsum(np.bincount(numbers + 1, minlength=len(self.names) + 1)).tolist()]
        for number, name in enumerate(self.names):
            start, end = ends[number + 1], ends[number + 2]  # ends[1]: past the rows without a value, first
            if end > start:
                yield name, SubWindow(ordered, start, end)


@dataclass(frozen=True)
class GroupSlice:
    """One group's figures in a window: its rows, its drift against its own reference rows (None when no
    feature could be tested on it), its data-quality checks (None when not tested), its realized quality (None
    for a group too small to score); its calls in the labelled cohort, and their realized quality (None without
    a label store, or below ``min_group_size`` of them)."""

    n: int
    drift: ModelDrift | None
    quality: QualityResult | None
    data_quality: ModelDataQuality | None = None
    n_cohort: int = 0
    cohort: QualityResult | None = None

    @property
    def flagged_share(self) -> float:
        """The share of its data-quality checks flagged (NaN when not checked).

        >>> GroupSlice(10, None, None).flagged_share
        nan
        """
        if self.data_quality is None:
            return float("nan")
        return ratio(len(self.data_quality.flagged), sum(map(len, self.data_quality.checks.values())))


def _per_group(shifted: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """How many calls (or how much of ``weights``) each group has; ``shifted``: each call's group number plus
    one, 0 for the calls of no group (bin 0, left out).

    >>> _per_group(np.array([1, 0, 2, 1]), 3).tolist()
    [2, 1, 0]
    """
    return np.bincount(shifted, weights, minlength=n_groups + 1)[1 : n_groups + 1]


class GroupedQuality:
    """The labelled figures of :class:`~detectors.quality.QualityStats` of each group's rows, for any grouping of
    the same calls: what does not depend on the groups (which calls are labelled, which predictions are right) is
    derived once, then each grouping costs one ``np.bincount`` pass per figure (:meth:`of`); the other figures
    are NaN.

    >>> label = np.array([1.0, 2.0, np.nan, 1.0, 1.0])
    >>> calls = GroupedQuality(np.array([1.0, 1.0, 1.0, 2.0, 1.0]), label, 1.0, numeric=False)
    >>> results = calls.of(np.array([0, 0, 0, 1, -1]), 2)
    >>> [(r.n_events, r.n_labelled, r.accuracy, r.precision, r.recall) for r in results]
    [(3, 2, 0.5, 0.5, 1.0), (1, 1, 0.0, nan, 0.0)]
    """

    def __init__(self, prediction: np.ndarray, label: np.ndarray, positive: object, numeric: bool):
        labelled = ~np.isnan(label)
        self.labelled = np.flatnonzero(labelled)
        self.both = np.flatnonzero(labelled & ~np.isnan(prediction))
        predicted, true = prediction[self.both], label[self.both]
        self.positive = positive
        self.numeric = numeric
        self.errors: dict[str, np.ndarray] = {}  # what each labelled call adds to its group's sums (numeric)
        if numeric:
            errors = predicted - true
            self.errors = {"absolute": np.abs(errors), "squared": errors**2}
        #: Each labelled call's outcome (a classifier's): whether it is right, plus 2 if it is predicted positive and
        #: 4 if truly positive; a grouping counts its (group, outcome) cells in one ``np.bincount``.
        self.outcome = (predicted == true) + 2 * (predicted == positive) + 4 * (true == positive)

    def of(self, numbers: np.ndarray, n_groups: int) -> list[QualityResult]:
        """Each group's figures (``numbers``: each call's group, -1 for none)."""
        nan = np.full(n_groups, np.nan)
        shifted = np.add(numbers, 1, dtype=np.intp)

        def count(rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
            return _per_group(rows, n_groups, weights)

        rows = shifted[self.both]
        n_events, n_labelled = count(shifted), count(shifted[self.labelled])
        accuracy = precision = recall = f1 = mae = rmse = nan
        if self.numeric:
            n_both, errors = count(rows), self.errors
            mae = ratio(count(rows, errors["absolute"]), n_both)
            rmse = np.sqrt(ratio(count(rows, errors["squared"]), n_both))
        else:  # by group, truly positive, predicted positive, right
            cells = np.bincount(rows * 8 + self.outcome, minlength=8 * (n_groups + 1))
            outcomes = cells[8 : 8 * (n_groups + 1)].reshape(n_groups, 2, 2, 2)
            accuracy = ratio(outcomes[..., 1].sum(axis=(1, 2)), outcomes.sum(axis=(1, 2, 3)))
            if self.positive is not None:
                n_true, n_predicted = outcomes[:, 1].sum(axis=(1, 2)), outcomes[:, :, 1].sum(axis=(1, 2))
                n_hits = outcomes[:, 1, 1].sum(axis=1)
                precision, recall = ratio(n_hits, n_predicted), ratio(n_hits, n_true)
                f1 = ratio(2 * n_hits, n_predicted + n_true)
        figures = {
            "label_coverage": ratio(n_labelled, n_events),
            "accuracy": accuracy,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mae": mae,
            "rmse": rmse,
        }
        columns = ([_NAN if value != value else value for value in column.tolist()] for column in figures.values())
        by_group = zip(*columns)
        return [
            QualityResult(
                n_events=n, n_labelled=k, **dict(zip(figures, values)), **dict.fromkeys(_UNLABELLED, _NAN)
            )
            for n, k, values in zip(n_events.tolist(), n_labelled.tolist(), by_group)
        ]


class _Presence:
    """Which rows of a window lack a value, found once for all the slice attributes: the rows without a value of
    each column the drift tests and data-quality checks read, and each feature's missing and wrong-type rows.

    Such rows are few, so each attribute counts its groups' with a small ``np.bincount`` (:meth:`by_group`), and
    a group with none takes its column's rows as they are: each group's suites then get the present values,
    missing and wrong-type counts :meth:`DriftSuite.score <monitor.evaluate.drift.DriftSuite.score>` and
    :meth:`DataQualitySuite.score <monitor.evaluate.data_quality.DataQualitySuite.score>` would find in its rows,
    without masking each column twice or taking the wrong-type columns (:meth:`score`).
    """

    _NONE = np.empty(0)  # the values a text or embedding feature's checks read

    def __init__(self, window: Mapping[str, np.ndarray], model: ModelConfig):
        self.features = model.features
        kinds = dict(presence(feature) for feature in self.features)
        kinds |= {feature.column: feature.kind for feature in tested_features(model)}
        self.kinds = kinds
        self.absent = {column: np.flatnonzero(~present(window[column], kind)) for column, kind in kinds.items()}
        self.wrong_type, self.missing = {}, {}
        for feature in self.features:
            wrong_type = window[Columns.wrong_type(feature.name)]
            absent = self.absent[presence(feature)[0]]
            self.wrong_type[feature.name] = np.flatnonzero(wrong_type)
            self.missing[feature.name] = absent[~wrong_type[absent]]

    def by_group(self, numbers: np.ndarray, n_groups: int) -> dict[str, dict[str, list[int]]]:
        """Per group (``numbers``: each row's group, -1 for none), how many rows lack each column's value
        (``"absent"``), and each feature's missing and wrong-type rows."""
        shifted = numbers + 1

        def count(rows: np.ndarray) -> list[int]:
            return _per_group(shifted[rows], n_groups).tolist()

        return {
            "absent": {column: count(rows) for column, rows in self.absent.items()},
            "missing": {name: count(rows) for name, rows in self.missing.items()},
            "wrong_type": {name: count(rows) for name, rows in self.wrong_type.items()},
        }

    def score(
        self, suite: DriftSuite, rows: SubWindow, counts: dict[str, dict[str, list[int]]], number: int, now_ms: float
    ) -> tuple[ModelDrift, ModelDataQuality]:
        """A group's drift and data-quality checks (its ``rows``, its ``counts`` at ``number``)."""
        absent, kinds = counts["absent"], self.kinds
        taken: dict[str, np.ndarray] = {}

        def values(column: str) -> np.ndarray:
            kept = taken.get(column)
            if kept is None:
                kept = taken[column] = rows[column]
                if absent[column][number]:
                    kept = taken[column] = kept[present(kept, kinds[column])]
            return kept

        tested = {feature.label: values(feature.column) for feature in suite.tested}
        drift = suite.score_values(tested, rows.n_rows, now_ms)
        checked = {
            feature.name: (
                values(Columns.feature(feature.name)) if feature.kind in ("numeric", "categorical") else self._NONE,
                rows.n_rows,
                counts["missing"][feature.name][number],
                counts["wrong_type"][feature.name][number],
            )
            for feature in self.features
        }
        return drift, suite.data_quality.score_counts(checked)


class SliceSuite:
    """The groups of a model's slice attributes, and the drift suites fitted on each group's reference rows.

    :meth:`fit` once on the reference (it picks the groups), then :meth:`score` on each window. ``alpha`` is
    the model's; each group's tests run at :attr:`group_alpha`, its share (:func:`slice_alpha`).
    """

    def __init__(self, model: ModelConfig, alpha: float, quality: QualitySuite):
        self.model = model
        self.alpha = alpha
        self.config = model.slices
        self.quality = quality
        self.groups: dict[str, Groups] = {}
        self.group_alpha = alpha
        self._suites: dict[str, dict[str, DriftSuite]] = {}

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has picked the groups."""
        return bool(self.groups)

    def fit(self, reference: dict[str, np.ndarray], newest_ms: float, names: dict[str, list[str]]) -> None:
        """Pick each attribute's groups on the reference and fit a drift suite per group on its rows there,
        at the model's alpha shared among all the groups; ``names`` are each attribute's group names by code."""
        config = self.config
        groups = {
            attribute: Groups.choose(
                reference[Columns.group(attribute)], names[attribute], config.min_group_size, config.max_groups
            )
            for attribute in config.attributes
        }
        n_groups = sum(len(chosen.names) for chosen in groups.values())
        self.group_alpha = alpha = slice_alpha(self.alpha, self.model.drift.correction, n_groups)
        for attribute, chosen in groups.items():
            suites = {}
            for name, rows in chosen.split(reference, reference[Columns.group(attribute)]):
                suite = suites[name] = DriftSuite(self.model, alpha, config.min_group_size)
                suite.fit(rows, newest_ms)  # type: ignore[arg-type]  # a mapping of columns, as a window is
            self._suites[attribute] = suites
        self.groups = groups

    def score(
        self,
        window: dict[str, np.ndarray],
        now_ms: float,
        classes: list[str],
        cohort: dict[str, np.ndarray] | None = None,
    ) -> dict[str, dict[str, GroupSlice]]:
        """Each attribute's groups present in the window or in the labelled ``cohort`` (the label store's,
        if the model has one), with their figures; ``classes`` are the prediction and label classes by code."""
        stats = self.quality.stats(classes)
        window_calls = GroupedQuality(window[PREDICTION], window[LABEL], stats.positive, stats.numeric)
        cohort_calls = None
        if cohort is not None:
            cohort_calls = GroupedQuality(cohort[PREDICTION], cohort[LABEL], stats.positive, stats.numeric)
        min_group_size = self.config.min_group_size
        lacking = _Presence(window, self.model)
        results = {}
        for attribute, groups in self.groups.items():
            column, n_groups = Columns.group(attribute), len(groups.names)
            numbers = groups.numbers(window[column])
            quality = window_calls.of(numbers, n_groups)
            labelled: Sequence[QualityResult | None] = [None] * n_groups
            if cohort is not None and cohort_calls is not None:
                labelled = cohort_calls.of(groups.numbers(cohort[column]), n_groups)
            rows = dict(groups.split_numbers(window, numbers))
            absent = lacking.by_group(numbers, n_groups)
            suites, figures = self._suites[attribute], {}
            for number, name in enumerate(groups.names):
                n, in_cohort = quality[number].n_events, labelled[number]
                n_cohort = 0 if in_cohort is None else in_cohort.n_events
                if n == 0 and n_cohort == 0:
                    continue
                drift = data_quality = scored = None
                suite = suites.get(name)  # none for a group without reference rows (the pool, at times)
                if n >= min_group_size:
                    scored = quality[number]
                    if suite is not None:
                        drift, data_quality = lacking.score(suite, rows[name], absent, number, now_ms)
                figures[name] = GroupSlice(
                    n,
                    drift if drift is not None and drift.features else None,
                    scored,
                    data_quality,
                    n_cohort,
                    in_cohort if n_cohort >= min_group_size else None,
                )
            results[attribute] = figures
        return results

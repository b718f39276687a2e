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
group's drift share is the model's drift test run on that group alone. Its
realized quality is the model's labelled figures over its rows that have a
label.

>>> names = ["__other__", "de", "en", "fr"]
>>> groups = Groups.choose(np.array([1, 1, 1, 2, 2, 3, 0, -1]), names, min_group_size=2, max_groups=5)
>>> groups.names
('de', 'en', '__other__')
>>> window = {"x": np.arange(6.0)}
>>> {name: sub["x"].tolist() for name, sub in groups.split(window, np.array([2, 1, 4, 3, -1, 1]))}
{'de': [1.0, 5.0], 'en': [0.0], '__other__': [2.0, 3.0]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from detectors.results import ModelDrift, QualityResult
from monitor.config import ModelConfig, SliceConfig
from monitor.evaluate.drift import DriftSuite
from monitor.evaluate.quality import QualitySuite
from monitor.state.columns import LABEL, PREDICTION, Columns
from monitor.state.vocabulary import OTHER

__all__ = ["OTHER", "SERIES_PER_GROUP", "GroupSlice", "Groups", "SliceSuite", "SubWindow", "max_series"]

#: The series a slice group can have: its calls, its drift share, and at most five quality figures (label
#: coverage with accuracy, precision, recall and F1 for a classifier, or with MAE and RMSE for a numeric model).
SERIES_PER_GROUP = 7


def max_series(slices: SliceConfig) -> int:
    """The most series a model's slices can export: ``max_groups`` named groups and :data:`OTHER` per attribute.

    >>> from monitor.config import SliceConfig
    >>> max_series(SliceConfig(attributes=["segment.locale", "segment.tier"]))
    294
    """
    return (slices.max_groups + 1) * SERIES_PER_GROUP * len(slices.attributes)


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
            column = self._taken[name] = self.window[name][self.order]
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
        return self.by_code[np.minimum(codes + 1, len(self.by_code) - 1)]

    def split(self, window: Mapping[str, np.ndarray], codes: np.ndarray) -> Iterator[tuple[str, SubWindow]]:
        """Each group that has rows in ``window`` (whose group codes are ``codes``) with its rows, in the order
        of :attr:`names`: one stable sort of the rows by group (a radix sort of small integers), so that every
        row of a column is taken once."""
        numbers = self.numbers(codes)
        ordered = _InGroupOrder(window, np.argsort(numbers, kind="stable"))
        ends = [0, *np.cumsum(np.bincount(numbers + 1, minlength=len(self.names) + 1)).tolist()]
        for number, name in enumerate(self.names):
            start, end = ends[number + 1], ends[number + 2]  # ends[1]: past the rows without a value, first
            if end > start:
                yield name, SubWindow(ordered, start, end)


@dataclass(frozen=True)
class GroupSlice:
    """One group's figures in a window: its rows, its drift against its own reference rows (None when no
    feature could be tested on it) and its realized quality (None for a group too small to score)."""

    n: int
    drift: ModelDrift | None
    quality: QualityResult | None


class SliceSuite:
    """The groups of a model's slice attributes, and the drift suites fitted on each group's reference rows.

    :meth:`fit` once on the reference (it picks the groups), then :meth:`score` on each window.
    """

    def __init__(self, model: ModelConfig, alpha: float, quality: QualitySuite):
        self.model = model
        self.alpha = alpha
        self.config = model.slices
        self.quality = quality
        self.groups: dict[str, Groups] = {}
        self._suites: dict[str, dict[str, DriftSuite]] = {}

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has picked the groups."""
        return bool(self.groups)

    def fit(self, reference: dict[str, np.ndarray], newest_ms: float, names: dict[str, list[str]]) -> None:
        """Pick each attribute's groups on the reference and fit a drift suite per group on its rows there;
        ``names`` are each attribute's group names by code."""
        config = self.config
        for attribute in config.attributes:
            codes = reference[Columns.group(attribute)]
            groups = Groups.choose(codes, names[attribute], config.min_group_size, config.max_groups)
            suites = {}
            for name, rows in groups.split(reference, codes):
                suite = suites[name] = DriftSuite(self.model, self.alpha, config.min_group_size)
                suite.fit(rows, newest_ms)  # type: ignore[arg-type]  # a mapping of columns, as a window is
            self.groups[attribute], self._suites[attribute] = groups, suites

    def score(
        self, window: dict[str, np.ndarray], now_ms: float, classes: list[str]
    ) -> dict[str, dict[str, GroupSlice]]:
        """Each attribute's groups present in the window, with their figures; ``classes`` are the prediction
        and label classes by code."""
        stats = self.quality.stats(classes)
        min_group_size = self.config.min_group_size
        results = {}
        for attribute, groups in self.groups.items():
            suites, figures = self._suites[attribute], {}
            for name, rows in groups.split(window, window[Columns.group(attribute)]):
                n = rows.n_rows
                if n < min_group_size:
                    figures[name] = GroupSlice(n, None, None)
                    continue
                suite = suites.get(name)  # none for a group without reference rows (the pool, at times)
                drift = suite.score(rows, now_ms) if suite is not None else None  # type: ignore[arg-type]
                quality = stats.compute(prediction=rows[PREDICTION], label=rows[LABEL])
                figures[name] = GroupSlice(n, drift if drift is not None and drift.features else None, quality)
            results[attribute] = figures
        return results

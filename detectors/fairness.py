"""Outcome rates per group of a sensitive attribute, and the disparities between groups, as fairlearn defines them."""

from __future__ import annotations

import numpy as np

from detectors._proportions import ratio, wilson_interval
from detectors.results import FairnessResult, GroupFairness

__all__ = ["OTHER", "FairnessStats"]

#: The name of the pooled group holding every value beyond the ``max_groups`` largest.
OTHER = "__other__"


class FairnessStats:
    """Per-group outcome rates (with Wilson intervals), error rates, and the model-level disparities.

    ``compute(groups, outcome, label=None)`` takes one window's columns: the
    group of each row (strings or integer codes, missing rows already
    removed), the positive outcome as 0/1 (``prediction == "approve"``) and
    optionally the ground truth as 0/1 with NaN where unknown. Rows without a
    label count in the outcome rates and are left out of the label-based
    figures only.

    Only the ``max_groups`` largest groups keep their name (ties by sorted
    name); the rest pool into ``"__other__"``, a group like any other, so that
    the exported ``group`` label stays bounded. A value that is itself named
    ``"__other__"`` is always pooled. Group names are ``str`` of the values.

    The disparities are taken over the *sufficient* groups, those with at least
    ``min_group_size`` rows; a smaller group's figures are reported but too
    noisy to compare:

    - demographic parity difference: highest minus lowest outcome rate
      (fairlearn's ``demographic_parity_difference`` with the outcome as ``y_pred``);
    - disparate impact ratio: lowest over highest outcome rate (fairlearn's
      ``demographic_parity_ratio``); the four-fifths rule flags a ratio under 0.8;
    - equalized odds difference: the larger of the range of true positive
      rates and the range of false positive rates (fairlearn's
      ``equalized_odds_difference``), over the groups with at least
      ``min_group_size`` *labelled* rows, each range over the groups where that
      rate is defined.

    Each is NaN when fewer than two groups qualify, and the ratio also when
    every outcome rate is 0. fairlearn scores an undefined rate (a group
    without labelled positives) as 0 instead; the figures agree whenever every
    rate is defined.

    Parameters
    ----------
    min_group_size
        Rows a group needs to count in the disparities.
    max_groups
        Groups kept by name; the others pool into ``"__other__"``.
    confidence
        Confidence level of the Wilson intervals, in (0, 1).

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> groups = rng.choice(["a", "b", "c"], size=2_000, p=[0.6, 0.39, 0.01])
    >>> outcome = rng.random(2_000) < np.where(groups == "a", 0.5, 0.35)
    >>> result = FairnessStats(min_group_size=30).compute(groups, outcome)
    >>> {name: (group.n, group.sufficient, round(group.outcome_rate, 3)) for name, group in result.groups.items()}
    {'a': (1208, True, 0.474), 'b': (775, True, 0.36), 'c': (17, False, 0.353)}
    >>> round(result.demographic_parity_difference, 3), round(result.disparate_impact_ratio, 3)
    (0.114, 0.76)
    >>> result.four_fifths_violated, result.equalized_odds_difference  # no labels: no equalized odds
    (True, nan)
    """

    def __init__(self, min_group_size: int = 30, max_groups: int = 20, confidence: float = 0.95):
        if min_group_size < 1:
            raise ValueError("min_group_size must be at least 1")
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if not 0.0 < confidence < 1.0:
            raise ValueError("confidence must lie in (0, 1)")
        self.min_group_size = min_group_size
        self.max_groups = max_groups
        self.confidence = confidence

    def compute(
        self,
        groups: np.ndarray,
        outcome: np.ndarray,
        label: np.ndarray | None = None,
        names: list[str] | None = None,
    ) -> FairnessResult:
        """Figures of one window; all three arrays have one entry per row.

        With ``names``, ``groups`` are non-negative integer codes into it (counted
        with ``bincount``, much faster than sorting strings); otherwise any labels.
        """
        names, table, n_pooled = self._capped(np.asarray(groups), _cells(outcome, label), names)
        n = table.sum(axis=1)
        n_outcome = table[:, _OUTCOME:].sum(axis=1)
        lower, upper = wilson_interval(n_outcome, n, self.confidence)
        rates = ratio(n_outcome, n)
        false_neg, true_pos = table[:, _POSITIVE], table[:, _OUTCOME + _POSITIVE]
        true_neg, false_pos = table[:, _NEGATIVE], table[:, _OUTCOME + _NEGATIVE]
        n_labelled = true_pos + false_neg + false_pos + true_neg
        tpr = ratio(true_pos, true_pos + false_neg)
        fpr = ratio(false_pos, false_pos + true_neg)
        accuracy = ratio(true_pos + true_neg, n_labelled)

        sufficient = n >= self.min_group_size
        compared = rates[sufficient]
        labelled_enough = n_labelled >= self.min_group_size
        columns = (n, sufficient, rates, lower, upper, n_labelled, tpr, fpr, accuracy)
        return FairnessResult(
            groups={name: GroupFairness(*row) for name, row in zip(names, zip(*(c.tolist() for c in columns)))},
            demographic_parity_difference=_spread(compared),
            disparate_impact_ratio=ratio(compared.min(), compared.max()) if compared.size >= 2 else float("nan"),
            equalized_odds_difference=_larger(_spread(tpr[labelled_enough]), _spread(fpr[labelled_enough])),
            n_pooled_groups=n_pooled,
        )

    def _capped(
        self, groups: np.ndarray, cells: np.ndarray, names: list[str] | None
    ) -> tuple[list[str], np.ndarray, int]:
        """Names of the kept groups (largest first, then ``"__other__"`` if any pooled), their rows counted
        by cell (one row of :func:`_cells` counts per group), and the number of distinct values pooled."""
        if names is None:
            values, inverse = np.unique(groups, return_inverse=True)
            table = _table(inverse.ravel(), cells, len(values))
            labels = values.astype(str)
        else:  # integer codes: counted without sorting the rows
            table = _table(groups, cells, len(names))
            present = np.flatnonzero(table.any(axis=1))
            labels, table = np.asarray(names, dtype=str)[present], table[present]
        counts = table.sum(axis=1)
        by_size = np.argsort(-counts, kind="stable")
        kept = by_size[labels[by_size] != OTHER][: self.max_groups]
        n_pooled = len(labels) - len(kept)
        pooled = [table.sum(axis=0) - table[kept].sum(axis=0)] if n_pooled > 0 else []
        return labels[kept].tolist() + [OTHER] * (n_pooled > 0), np.vstack([table[kept], *pooled]), n_pooled


#: A row's cell: its outcome positive (+3), and no label (0), a negative (1) or a positive one (2).
_NEGATIVE, _POSITIVE, _OUTCOME, _N_CELLS = 1, 2, 3, 6


def _cells(outcome: np.ndarray, label: np.ndarray | None) -> np.ndarray:
    """Each row's cell (see :data:`_N_CELLS`): outcome 0/1, label 1 positive, any other number negative, NaN none."""
    cells = np.multiply(np.asarray(outcome, dtype=bool), _OUTCOME, dtype=np.int8)  # int8: 8x less to write than intp
    if label is not None:
        label = np.asarray(label, dtype=float)
        cells += ~np.isnan(label)
        cells += label == 1
    return cells


def _table(codes: np.ndarray, cells: np.ndarray, n_groups: int) -> np.ndarray:
    """Rows counted by group code and cell, one bincount for all: shape (groups, cells)."""
    keys = codes.astype(np.intp) * _N_CELLS + cells
    return np.bincount(keys, minlength=n_groups * _N_CELLS).reshape(-1, _N_CELLS)


def _larger(a: float, b: float) -> float:
    """The larger of two spreads, either alone when the other is undefined, NaN when both are."""
    return max(a, b) if not (np.isnan(a) or np.isnan(b)) else (b if np.isnan(a) else a)


def _spread(rates: np.ndarray) -> float:
    """Highest minus lowest of the defined rates; NaN when fewer than two are defined."""
    defined = rates[~np.isnan(rates)]
    return float(defined.max() - defined.min()) if defined.size >= 2 else float("nan")

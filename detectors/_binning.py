"""Buckets fitted on the reference, for the tests that compare proportions (PSI, Jensen-Shannon, chi-square).

Numbers fall into bins between reference quantiles; labels into the reference's
categories plus one last bucket for the labels it never saw.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np

from detectors._two_sample import TwoSampleTest

__all__ = ["BinnedTest", "Buckets", "Categories", "QuantileBins"]

#: A reference whose labels are integers below this looks codes up in tables of this size at most (the daemon's
#: category codes are small); other labels go through ``searchsorted``.
_MAX_CODE = 1 << 16


class Buckets(Protocol):
    """What a binned test needs of its buckets: how many values fall in each."""

    def count(self, values: np.ndarray) -> np.ndarray: ...


class QuantileBins:
    """Bins between the reference's quantiles, the outer two open-ended.

    ``n_bins`` bins have ``n_bins - 1`` inner edges at the reference's quantiles
    (numpy's default linear interpolation); equal edges collapse, so a reference
    with few distinct values gets fewer bins. A bin holds ``edge_left <= x < edge_right``.

    Examples
    --------
    >>> bins = QuantileBins(np.arange(100.0), n_bins=4)
    >>> bins.edges.tolist(), bins.count(np.array([-5.0, 30.0, 60.0, 500.0])).tolist()
    ([24.75, 49.5, 74.25], [1, 1, 1, 1])
    """

    def __init__(self, reference: np.ndarray, n_bins: int):
        self.edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))

    def count(self, values: np.ndarray) -> np.ndarray:
        """Number of values per bin, ``len(edges) + 1`` of them."""
        return np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=self.edges.size + 1)


class Categories:
    """The reference's categories, sorted; counts values per category plus one last bucket for unseen ones.

    Labels may be strings or numbers; non-negative integer codes (the daemon's
    categorical encoding) are looked up in a table of each code's bucket, then
    counted with one ``np.bincount``.

    Examples
    --------
    >>> categories = Categories(np.array(["a", "b", "b"]))
    >>> categories.count(np.array(["b", "c", "a", "z", "b"])).tolist()  # a, b, unseen
    [1, 2, 2]
    >>> codes = Categories(np.array([3, 1, 3]))
    >>> codes.count(np.array([3, 7, 1, 0, 3])).tolist(), codes.n_unseen(np.array([3, 7, 1, 0, 3]))
    ([1, 2, 2], 2)
    """

    def __init__(self, reference: np.ndarray):
        self.categories = np.unique(reference)
        codes, n_known = self.categories, self.categories.size
        self._bucket = np.empty(0, dtype=np.intp)  # by code: its category's position, n_known for a code unseen
        if codes.dtype.kind in "iu" and 0 <= codes[0] and codes[-1] < _MAX_CODE:
            self._bucket = np.full(int(codes[-1]) + 2, n_known, dtype=np.intp)  # the last: every larger code
            self._bucket[codes] = np.arange(n_known)
        self._seen = self._bucket < n_known  # by code: whether the reference had it

    def count(self, values: np.ndarray) -> np.ndarray:
        """Number of values per reference category, then the number of unseen values."""
        n_known = self.categories.size
        if self._coded(values):
            return np.bincount(self._bucket.take(values, mode="clip"), minlength=n_known + 1)
        index = np.searchsorted(self.categories, values)
        found = self.categories[np.minimum(index, n_known - 1)] == values
        return np.bincount(np.where(found, index, n_known), minlength=n_known + 1)

    def n_unseen(self, values: np.ndarray) -> int:
        """Number of values in no reference category: ``count(values)[-1]``, without counting the others."""
        if self._coded(values):
            return values.size - int(np.count_nonzero(self._seen.take(values, mode="clip")))
        return int(self.count(values)[-1])

    def _coded(self, values: np.ndarray) -> bool:
        """Whether the tables look ``values`` up: the reference's and their own are non-negative integer codes (a
        code above the reference's takes the tables' last entry, an unseen one)."""
        return (
            self._bucket.size > 0
            and values.dtype.kind in "iu"
            and np.can_cast(values.dtype, np.intp)
            and 0 <= values.min()
        )


class BinnedTest(TwoSampleTest):
    """Base of the distances between bucket proportions: subclasses implement ``_distance(reference, window)``.

    Parameters
    ----------
    threshold
        Drift when the distance is at or above it; None takes the method's default.
    kind
        ``"numeric"`` (bins between reference quantiles) or ``"categorical"``
        (reference categories plus one bucket for unseen labels).
    n_bins
        Number of quantile bins for numbers (fewer when quantiles coincide).
    """

    kinds: ClassVar[tuple[str, ...]] = ("numeric", "categorical")
    has_p_value: ClassVar[bool] = False

    def __init__(self, threshold: float | None = None, kind: str = "numeric", n_bins: int = 10):
        if kind not in self.kinds:
            raise ValueError(f"{self.name}: kind must be one of {self.kinds}, not {kind!r}")
        if n_bins < 1:
            raise ValueError(f"{self.name}: n_bins must be at least 1")
        self.kind = kind
        self.n_bins = int(n_bins)
        super().__init__(threshold)

    def _reset(self) -> None:
        super()._reset()
        self._buckets: Buckets | None = None
        self._reference_share: np.ndarray | None = None

    def _fit(self, reference: np.ndarray) -> None:
        self._buckets = QuantileBins(reference, self.n_bins) if self.kind == "numeric" else Categories(reference)
        self._reference_share = self._buckets.count(reference) / len(reference)

    def _statistic(self, window: np.ndarray) -> tuple[float, None, float]:
        window_share = self._fitted(self._buckets).count(window) / len(window)
        unseen_share = float(window_share[-1]) if self.kind == "categorical" else 0.0
        return self._distance(self._fitted(self._reference_share), window_share), None, unseen_share

    def _distance(self, reference_share: np.ndarray, window_share: np.ndarray) -> float:
        raise NotImplementedError

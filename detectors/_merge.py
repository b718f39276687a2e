"""The sorted reference the CDF-based tests share, and a sorted window merged with it in one pass (Anderson-Darling's
statistic walks the merge; KS and Wasserstein need only binary searches or the two quantile functions)."""

from __future__ import annotations

import numpy as np

from detectors._two_sample import TwoSampleTest

__all__ = ["SortedSampleTest", "merge_sorted"]


class SortedSampleTest(TwoSampleTest):
    """Base of the numeric tests on the two empirical CDFs: ``fit`` sorts the reference once, and, for a test
    that walks the merge, :meth:`_merge` sorts a window and merges it with the reference (see :func:`merge_sorted`)."""

    kinds = ("numeric",)

    def _reset(self) -> None:
        super()._reset()
        self._reference: np.ndarray | None = None

    def _fit(self, reference: np.ndarray) -> None:
        self._reference = np.sort(np.asarray(reference, dtype=float))

    def _merge(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return merge_sorted(self._fitted(self._reference), np.sort(np.asarray(window, dtype=float)))


def merge_sorted(sorted_reference: np.ndarray, sorted_window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted samples; also count the window values at or before each merged position.

    Costs one ``searchsorted`` of the window into the reference and a few linear
    passes, instead of sorting both samples together. Among equal values the
    window's come last; at the last position of a run of equal values the counts
    are those of the empirical CDFs (``searchsorted(..., side="right")``).

    Parameters
    ----------
    sorted_reference, sorted_window
        Both sorted ascending, float.

    Returns
    -------
    merged
        All values, sorted.
    n_window_upto
        ``n_window_upto[k]`` is the number of window values among ``merged[: k + 1]``,
        so ``k + 1 - n_window_upto[k]`` is the number of reference values.

    Examples
    --------
    >>> merged, n_window_upto = merge_sorted(np.array([1.0, 2.0, 4.0]), np.array([2.0, 3.0]))
    >>> merged.tolist(), n_window_upto.tolist()
    ([1.0, 2.0, 2.0, 3.0, 4.0], [0, 0, 1, 2, 2])
    """
    n_window = sorted_window.size
    at = np.searchsorted(sorted_reference, sorted_window, side="right") + np.arange(n_window)
    from_window = np.zeros(sorted_reference.size + n_window, dtype=bool)
    from_window[at] = True
    merged = np.empty(from_window.size)
    merged[at] = sorted_window
    merged[~from_window] = sorted_reference
    return merged, np.cumsum(from_window)

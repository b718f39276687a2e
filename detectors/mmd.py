"""Embedding drift as the maximum mean discrepancy (RBF kernel) with a permutation p-value."""

from __future__ import annotations

import numpy as np

from detectors._embedding import EmbeddingTest

__all__ = ["MMDTest"]


def _squared_distances(a: np.ndarray, a_norms: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||^2`` for every pair of rows, as one matrix product."""
    return np.maximum(a_norms[:, None] + b_norms[None, :] - 2.0 * (a @ b.T), 0.0)


class MMDTest(EmbeddingTest):
    """Unbiased squared MMD (RBF kernel) of reference and window rows; drift when its permutation ``p < threshold``.

    With ``m`` reference rows ``x`` and ``n`` window rows ``y`` (each side cut
    to ``max_samples``, see ``EmbeddingTest``) and ``k(a, b) = exp(-||a - b||^2
    / (2 * sigma^2))``, the statistic is the unbiased estimate of Gretton et
    al. (2012)::

        sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
            - 2 sum_{i, j} k(x_i, y_j) / (m n)

    It is about 0 without drift and may then be slightly negative. ``sigma^2``
    is the median heuristic on the pooled rows: the median of the positive
    squared distances between two different rows (identical rows, such as
    repeated prompts, left out so that they cannot shrink it to 0).

    The p-value is ``(1 + #{permuted >= observed}) / (1 + n_permutations)``:
    each permutation is ``rng.permutation(m + n)`` (``rng`` having cut the
    window), whose first ``m`` pooled rows play the reference. The kernel
    matrix is computed once per window, and all permutations are scored by
    one product of it with their membership matrix. The reference's own
    distances are computed by ``fit``.

    Parameters
    ----------
    threshold
        Significance level; None takes 0.05.
    max_samples
        Rows kept of each side.
    n_permutations
        Permutations for the p-value, whose smallest value is ``1 / (1 + n_permutations)``.
    random_state
        Seeds the cut of each side and the permutations.

    Notes
    -----
    Evidently's ``MMDDriftMethod`` (``evidently/legacy/metrics/data_drift/
    embedding_drift_methods.py``) computes the same unbiased statistic over
    every row (its kernel matrix grows with the square of the rows), with
    ``sigma`` the median distance between at most 1000 rows of each side and
    the kernel ``exp(-||a - b||^2 / sigma^2)``, and reports ``max(mmd, 0)``.
    It flags drift when the statistic exceeds a fixed 0.015, or, with
    ``bootstrap=True``, a quantile of statistics between resamples of the
    reference alone; it has no permutation p-value. Like alibi-detect's
    ``MMDDrift``, this test is calibrated by permutations instead, so its
    ``threshold`` is a false-alarm rate, whatever the data's scale.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = MMDTest().fit(rng.normal(size=(500, 32)))
    >>> result = test.score(rng.normal(size=(300, 32)))
    >>> round(result.statistic, 5), round(result.p_value, 4), result.drifted
    (0.00016, 0.297, False)
    >>> result = test.score(rng.normal(scale=1.1, size=(300, 32)))
    >>> round(result.statistic, 5), round(result.p_value, 4), result.drifted
    (0.00183, 0.0099, True)
    """

    name = "mmd"
    has_p_value = True
    default_threshold = 0.05

    def __init__(
        self, threshold: float | None = None, max_samples: int = 1000, n_permutations: int = 100, random_state: int = 0
    ):
        self.n_permutations = int(n_permutations)
        if self.n_permutations < 1:
            raise ValueError(f"mmd: n_permutations must be at least 1, got {n_permutations}")
        super().__init__(threshold, max_samples, random_state)

    def _reset(self) -> None:
        super()._reset()
        self._norms: np.ndarray | None = None  # of the reference rows
        self._distances: np.ndarray | None = None  # between the reference rows

    def _fit(self, reference: np.ndarray) -> None:
        super()._fit(reference)
        rows = self._fitted(self._reference)
        self._norms = np.einsum("ij,ij->i", rows, rows)
        self._distances = _squared_distances(rows, self._norms, rows, self._norms)

    def _compare(self, window: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
        reference, reference_norms = self._fitted(self._reference), self._fitted(self._norms)
        m, n = len(reference), len(window)
        norms = np.einsum("ij,ij->i", window, window)
        across = _squared_distances(reference, reference_norms, window, norms)
        within = self._fitted(self._distances)
        distances = np.block([[within, across], [across.T, _squared_distances(window, norms, window, norms)]])
        pairs = distances[np.triu_indices(m + n, k=1)]
        positive = pairs[pairs > 0]
        bandwidth = float(np.median(positive)) if positive.size else 1.0  # all rows equal: any kernel gives 0
        kernel = np.exp(distances / (-2.0 * bandwidth))
        np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out i == j
        # Column 0 is the observed split, the others the permutations: 1 where a row plays the reference.
        in_reference = np.zeros((m + n, 1 + self.n_permutations))
        in_reference[:m, 0] = 1.0
        permutations = np.array([rng.permutation(m + n)[:m] for _ in range(self.n_permutations)])
        in_reference[permutations, np.arange(1, 1 + self.n_permutations)[:, None]] = 1.0
        row_sums = kernel.sum(axis=1)
        within_reference = np.einsum("ij,ij->j", in_reference, kernel @ in_reference)
        to_all = in_reference.T @ row_sums  # = within_reference + across
        across_sum = to_all - within_reference
        within_window = row_sums.sum() - to_all - across_sum
        mmd = within_reference / (m * (m - 1)) + within_window / (n * (n - 1)) - 2.0 * across_sum / (m * n)
        p_value = (1 + np.count_nonzero(mmd[1:] >= mmd[0])) / (1 + self.n_permutations)
        return float(mmd[0]), float(p_value), 0.0

"""What the embedding tests share: rows of numbers, each side cut by a seeded draw to a bounded size."""

from __future__ import annotations

import numpy as np

from detectors._two_sample import TwoSampleTest

__all__ = ["EmbeddingTest"]


class EmbeddingTest(TwoSampleTest):
    """Base of the tests on embeddings: 2-D inputs, rows are events and columns dimensions.

    Each side is cut to at most ``max_samples`` rows, drawn without replacement
    (kept in their order) by ``np.random.default_rng(random_state)``, created
    afresh by every ``fit`` and ``score``: a window costs the same whatever its
    size, and a result depends on the inputs and the config alone, so a replay
    equals the live run. Subclasses implement ``_compare(window, rng)``, with the
    window already cut and ``rng`` ready for any further draw.
    """

    kinds = ("embedding",)

    def __init__(self, threshold: float | None = None, max_samples: int = 1000, random_state: int = 0):
        self.max_samples = int(max_samples)
        self.random_state = int(random_state)
        if self.max_samples < self.min_rows:
            raise ValueError(f"{self.name}: max_samples must be at least {self.min_rows}, got {max_samples}")
        super().__init__(threshold)

    @property
    def min_rows(self) -> int:
        """The fewest rows a side may have."""
        return 2

    def _reset(self) -> None:
        super()._reset()
        self._reference: np.ndarray | None = None

    def _fit(self, reference: np.ndarray) -> None:
        self._reference = self._cut(reference, np.random.default_rng(self.random_state))

    def _statistic(self, window: np.ndarray) -> tuple[float, float | None, float]:
        rng = np.random.default_rng(self.random_state)
        return self._compare(self._cut(window, rng), rng)

    def _cut(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The rows as float64, at most ``max_samples`` of them."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError(f"{self.name}: expected rows of an embedding (a 2-D array), got shape {rows.shape}")
        if self._reference is not None and rows.shape[1] != self._reference.shape[1]:
            dimensions = self._reference.shape[1]
            raise ValueError(f"{self.name}: the window has {rows.shape[1]} dimensions, the reference {dimensions}")
        if len(rows) < self.min_rows:
            raise ValueError(f"{self.name}: needs at least {self.min_rows} rows a side, got {len(rows)}")
        if len(rows) > self.max_samples:
            rows = rows[np.sort(rng.choice(len(rows), size=self.max_samples, replace=False))]
        return rows

    def _compare(self, window: np.ndarray, rng: np.random.Generator) -> tuple[float, float | None, float]:
        raise NotImplementedError

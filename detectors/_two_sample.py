"""What every windowed two-sample drift test shares: fit once on the reference, score each window."""

from __future__ import annotations

import copy
from typing import ClassVar, TypeVar

import numpy as np

from detectors.results import DriftResult

__all__ = ["TwoSampleTest"]

_State = TypeVar("_State")


class TwoSampleTest:
    """Base of the windowed tests: ``fit(reference)`` once, then ``score(window) -> DriftResult`` per tick.

    Subclasses set the class attributes and implement ``_fit`` (precompute all
    the reference allows: sorted sample, bin edges, category map) and
    ``_statistic`` (return ``(statistic, p_value or None, unseen_share)``).
    Inputs are 1-D arrays with missing values already removed (2-D rows for
    embeddings); an empty input is a ``ValueError``.

    ``threshold`` is the significance level when the test has a p-value
    (drift when ``p_value < threshold``) and the distance otherwise (drift
    when ``statistic >= threshold``); None takes the method's default.
    """

    #: The config name, the feature kinds the test accepts, its default threshold.
    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    has_p_value: ClassVar[bool]
    default_threshold: ClassVar[float]
    #: For a distance: how it shrinks without drift, as ``(1/n + 1/m) ** null_exponent`` for samples of ``n`` and
    #: ``m`` values, which lets :class:`detectors.calibrated_distance.CalibratedDistance` calibrate its threshold;
    #: None for a test with a p-value, or one too costly to resample (the domain classifier).
    null_exponent: ClassVar[float | None] = None

    def __init__(self, threshold: float | None = None):
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self._reset()

    def _reset(self) -> None:
        self._n_reference = 0

    @property
    def fitted(self) -> bool:
        return self._n_reference > 0

    @property
    def n_reference(self) -> int:
        return self._n_reference

    def fit(self, reference: np.ndarray) -> TwoSampleTest:
        """Precompute the reference side; returns self."""
        reference = np.asarray(reference)
        if len(reference) == 0:
            raise ValueError(f"{self.name}: the reference is empty")
        self._reset()
        self._fit(reference)
        self._n_reference = len(reference)
        return self

    def score(self, window: np.ndarray) -> DriftResult:
        """Test one window against the fitted reference."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit() a reference before score()")
        window = np.asarray(window)
        if len(window) == 0:
            raise ValueError(f"{self.name}: the window is empty")
        statistic, p_value, unseen_share = self._statistic(window)
        drifted = statistic >= self.threshold if p_value is None else p_value < self.threshold
        return DriftResult(self.name, float(statistic), p_value, self.threshold, bool(drifted), unseen_share)

    def null_statistics(
        self, reference: np.ndarray, n_reference: int, n_window: int, n_resamples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """The statistic of ``n_resamples`` splits of ``reference``: each a pseudo-reference of ``n_reference``
        values and a disjoint pseudo-window of ``n_window``, drawn without replacement (``n_reference + n_window``
        at most its length), on which a copy of the test is fitted and which it scores. What
        :class:`detectors.calibrated_distance.CalibratedDistance` calibrates on: the two parts are exchangeable
        with a reference and a window from one distribution, so a category or a value the pseudo-reference lacks
        turns up in the pseudo-window as often as in a real window. ``rng`` permutes the reference once a split."""
        if n_reference + n_window > len(reference):
            raise ValueError(f"{self.name}: {n_reference} + {n_window} values do not split {len(reference)}")
        pseudo = copy.copy(self)
        statistics = np.empty(n_resamples)
        for index in range(n_resamples):
            order = rng.permutation(len(reference))
            pseudo.fit(reference[order[:n_reference]])
            statistics[index] = pseudo.score(reference[order[n_reference : n_reference + n_window]]).statistic
        return statistics

    def _fitted(self, state: _State | None) -> _State:
        """Fitted state, which ``_reset`` leaves as None and ``_fit`` sets; a ``RuntimeError`` before ``fit``."""
        if state is None:
            raise RuntimeError(f"{self.name}: fit() a reference before score()")
        return state

    def _fit(self, reference: np.ndarray) -> None:
        raise NotImplementedError

    def _statistic(self, window: np.ndarray) -> tuple[float, float | None, float]:
        raise NotImplementedError

"""Page-Hinkley: cumulative deviations from the running mean, against their own extremes."""

from __future__ import annotations

import math

from detectors._change_detector import ChangeDetector, sample_std, welford

__all__ = ["PageHinkley"]

MODES = ("up", "down", "both")


class PageHinkley(ChangeDetector):
    """The Page-Hinkley test (Page, 1954), with the same detections as ``river.drift.PageHinkley``.

    Two fading sums of the deviations from the running mean, one biased down
    by ``delta`` and one up, are compared with their running minimum and
    maximum; a change is an excursion beyond ``threshold``.

    Parameters
    ----------
    min_instances
        Values seen before any detection.
    delta
        Magnitude of change tolerated, subtracted from (added to) each deviation.
    threshold
        The excursion that signals a change (lambda).
    alpha
        Forgetting factor of the sums.
    mode
        Detect increases (``"up"``), decreases (``"down"``) or ``"both"``.
    relative
        When True, ``delta`` and ``threshold`` are in standard deviations of
        the values since the last reset (a running estimate, like the mean),
        and the first ``min_instances`` values only estimate mean and spread:
        the sums start after them. Then, with ``alpha=1``, the detector is a
        two-sided CUSUM with allowance ``delta`` and decision interval
        ``threshold`` on the stream's own scale, whose average run length
        without change :func:`detectors.run_length.two_sided_arl` gives.
    min_std
        With ``relative``, the least standard deviation taken: a floor for a
        stream whose spread is known not to be less (an error ratio's binomial
        one), so that a run of equal values does not make the next one a change.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1_000), rng.normal(1.0, 1.0, 500)])
    >>> ph = PageHinkley()
    >>> for i, x in enumerate(stream):
    ...     ph.update(x)
    ...     if ph.drift_detected:
    ...         print(i)
    1038

    Relative to the stream's own spread, with a threshold set for 10,000 values between false changes:

    >>> from detectors.run_length import decision_interval
    >>> ph = PageHinkley(delta=0.5, threshold=decision_interval(10_000, k=0.5), alpha=1.0, relative=True)
    >>> for i, x in enumerate(stream * 1e-3):
    ...     ph.update(x)
    ...     if ph.drift_detected:
    ...         print(i)
    1008
    """

    _state = ("n", "mean", "m2", "sum_increase", "sum_decrease", "min_increase", "max_decrease")

    def __init__(
        self, min_instances=30, delta=0.005, threshold=50.0, alpha=1 - 0.0001, mode="both", relative=False, min_std=0.0
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self.relative = relative
        self.min_std = min_std
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the running mean (Welford), for ``relative``
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = float("inf")
        # river's starting value, not -inf: it matters until the first sum exceeds it (relative: on no scale but -inf)
        self._max_decrease = -math.inf if self.relative else -1.0

    def _step(self, x: float) -> bool:
        self._n, self._mean, self._m2 = welford(self._n, self._mean, self._m2, x)
        deviation = x - self._mean
        if not self.relative:
            return self._accumulate(deviation, self.delta, self.threshold)
        if self._n <= self.min_instances:
            return False
        std = sample_std(self._n, self._m2, self.min_std)
        return self._accumulate(deviation, self.delta * std, self.threshold * std)

    def _accumulate(self, deviation: float, delta: float, threshold: float) -> bool:
        """Add a deviation from the mean to both sums; whether either is now beyond ``threshold`` of its extreme."""
        self._sum_increase = self.alpha * self._sum_increase + deviation - delta
        self._sum_decrease = self.alpha * self._sum_decrease + deviation + delta
        self._min_increase = min(self._min_increase, self._sum_increase)
        self._max_decrease = max(self._max_decrease, self._sum_decrease)
        if self._n < self.min_instances:
            return False
        increase = self._sum_increase - self._min_increase > threshold
        decrease = self._max_decrease - self._sum_decrease > threshold
        return {"up": increase, "down": decrease, "both": increase or decrease}[self.mode]

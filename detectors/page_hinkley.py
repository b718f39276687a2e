"""Page-Hinkley: cumulative deviations from the running mean, against their own extremes."""

from __future__ import annotations

from detectors._change_detector import ChangeDetector

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
    """

    _state = ("n", "mean", "sum_increase", "sum_decrease", "min_increase", "max_decrease")

    def __init__(self, min_instances=30, delta=0.005, threshold=50.0, alpha=1 - 0.0001, mode="both"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._mean = 0.0
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = float("inf")
        self._max_decrease = -1.0  # river's starting value, not -inf: it matters until the first sum exceeds it

    def _step(self, x: float) -> bool:
        self._n += 1
        self._mean += (1.0 / self._n) * (x - self._mean)
        deviation = x - self._mean
        self._sum_increase = self.alpha * self._sum_increase + deviation - self.delta
        self._sum_decrease = self.alpha * self._sum_decrease + deviation + self.delta
        self._min_increase = min(self._min_increase, self._sum_increase)
        self._max_decrease = max(self._max_decrease, self._sum_decrease)
        if self._n < self.min_instances:
            return False
        increase = self._sum_increase - self._min_increase > self.threshold
        decrease = self._max_decrease - self._sum_decrease > self.threshold
        return {"up": increase, "down": decrease, "both": increase or decrease}[self.mode]

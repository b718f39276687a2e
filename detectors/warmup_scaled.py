"""A change detector fed in units of its stream's own spread, which a warm-up estimates."""

from __future__ import annotations

from detectors._change_detector import ChangeDetector, sample_std, welford

__all__ = ["WarmupScaled"]


class WarmupScaled(ChangeDetector):
    """Feeds ``detector`` each value's deviation from the warm-up's mean, in the warm-up's standard deviations.

    The first ``warmup`` values estimate mean and standard deviation
    (Welford's algorithm, sample standard deviation) and are held; once they
    are all in, they reach the inner detector first, then every later value,
    each as ``(x - mean) / std``, or as ``x - mean`` when the warm-up had no
    spread. The inner detector so sees the level before any step, even a step
    right after the warm-up (an ADWIN fed only later values would hold no
    value from before it, and never cut). A detection resets both, so the new
    regime gets its own warm-up. This makes a detector whose bound has a term in the values' range,
    as ADWIN's has (it assumes values in [0, 1]), equally quick on a latency in
    milliseconds and on an error ratio.

    Parameters
    ----------
    detector
        The detector fed the scaled values (its own config is kept).
    warmup
        Values that estimate the scale, at least 2.
    min_std
        The least standard deviation taken: a floor for a stream whose spread
        is known not to be less (an error ratio's binomial one), so that a
        warm-up of equal values does not leave later ones unscaled.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors.adwin import ADWIN
    >>> rng = np.random.default_rng(1)
    >>> stream = np.concatenate([rng.normal(0.15, 0.035, 100), rng.normal(0.58, 0.035, 20)])  # an error ratio steps
    >>> for name, detector in (("raw", ADWIN(clock=1)), ("scaled", WarmupScaled(ADWIN(clock=1), warmup=30))):
    ...     found = []
    ...     for i, x in enumerate(stream):
    ...         detector.update(x)
    ...         found += [i] if detector.drift_detected else []
    ...     print(name, found[:1])
    raw []
    scaled [104]
    """

    _state = ("n", "mean", "m2", "held")

    def __init__(self, detector: ChangeDetector, warmup: int = 30, min_std: float = 0.0):
        if warmup < 2:
            raise ValueError("warmup must be at least 2 to estimate a standard deviation")
        self.detector = detector
        self.warmup = warmup
        self.min_std = min_std
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._held: list[float] = []
        self.detector._reset()

    def _step(self, x: float) -> bool:
        if self._n < self.warmup:
            self._n, self._mean, self._m2 = welford(self._n, self._mean, self._m2, x)
            self._held.append(x)
            if self._n < self.warmup:
                return False
            held, self._held = self._held, []
            return any(self._feed(value) for value in held)  # after a change in them, the next update resets all
        return self._feed(x)

    def _feed(self, x: float) -> bool:
        std = sample_std(self._n, self._m2, self.min_std)
        self.detector.update((x - self._mean) / std if std > 0.0 else x - self._mean)
        return self.detector.drift_detected

    def snapshot(self) -> dict:
        return {**super().snapshot(), "detector": self.detector.snapshot()}

    def restore(self, snapshot: dict) -> None:
        super().restore(snapshot)
        self.detector.restore(snapshot["detector"])

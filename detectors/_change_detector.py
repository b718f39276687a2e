"""What the online change detectors share: river's update-then-read protocol and a plain-value snapshot."""

from __future__ import annotations

import math
from typing import ClassVar

__all__ = ["ChangeDetector", "sample_std", "welford"]


class ChangeDetector:
    """Base of the online change detectors: ``update(x)``, then read ``drift_detected``.

    As in river, the update after a detection first resets the detector, so it
    starts learning the new regime from scratch. Subclasses keep their config
    in public attributes, list the underscore attributes ``_reset`` sets up in
    ``_state`` (without the underscore), and implement ``_step``, which takes
    one value and says whether it completes a change.
    """

    #: The state that ``snapshot`` saves, besides ``drift_detected``.
    _state: ClassVar[tuple[str, ...]]

    def _reset(self) -> None:
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update completed a change."""
        return self._drift_detected

    def update(self, x: float) -> None:
        """Feed one value of the stream."""
        if self._drift_detected:
            self._reset()
        self._drift_detected = self._step(float(x))

    def snapshot(self) -> dict:
        """The state as plain values (numbers, bools, lists of them), ready for msgpack."""
        return {name: _copy(getattr(self, f"_{name}")) for name in ("drift_detected", *self._state)}

    def restore(self, snapshot: dict) -> None:
        """Continue from a ``snapshot()`` of a detector with the same config."""
        for name in ("drift_detected", *self._state):
            setattr(self, f"_{name}", _copy(snapshot[name]))

    def _step(self, x: float) -> bool:
        raise NotImplementedError


def _copy(value):
    """Lists (tuples, after a round trip through msgpack) copied all the way down, so no state is shared."""
    return [_copy(item) for item in value] if isinstance(value, list | tuple) else value


def welford(n: int, mean: float, m2: float, x: float) -> tuple[int, float, float]:
    """Welford's update of a count, a mean and the sum of squared deviations from it with one more value.

    >>> welford(*welford(*welford(0, 0.0, 0.0, 1.0), 2.0), 6.0)
    (3, 3.0, 14.0)
    """
    n += 1
    deviation = x - mean
    mean += deviation / n
    return n, mean, m2 + deviation * (x - mean)


def sample_std(n: int, m2: float, least: float = 0.0) -> float:
    """The sample standard deviation of ``n`` values from their :func:`welford` sum, at least ``least``.

    >>> sample_std(3, 14.0)
    2.6457513110645907
    """
    return max(math.sqrt(m2 / (n - 1)), least)

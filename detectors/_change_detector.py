"""What the online change detectors share: river's update-then-read protocol and a plain-value snapshot."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ChangeDetector"]


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

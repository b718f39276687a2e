"""A bounded dictionary from strings to small integer codes.

Categorical window columns store codes instead of strings, and label values
exported to Prometheus pass through a vocabulary so that no traffic pattern
can create unbounded series: once ``limit`` distinct values are known, every
new one is folded into :data:`OTHER`. Admission is first come, first served,
so a value's code (and a label's series) never changes once given. A value
longer than :data:`MAX_VALUE_CHARS` is folded too, so that a vocabulary's
memory is bounded by its limit.

>>> vocabulary = Vocabulary(limit=2)
>>> vocabulary.encode(["de", "en", "fr", None, "de"])
array([ 1,  2,  0, -1,  1], dtype=int32)
>>> vocabulary.values
['__other__', 'de', 'en']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_VALUE_CHARS", "MISSING", "OTHER", "Vocabulary"]

#: The value (code 0) that everything past the limit is folded into.
OTHER = "__other__"
#: The code of a missing value.
MISSING = -1
#: The longest value that can take a code (as long as an event's ids may be).
MAX_VALUE_CHARS = 256


class Vocabulary:
    """Codes for at most ``limit`` distinct strings, plus :data:`OTHER` as code 0."""

    def __init__(self, limit: int):
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self._codes: dict[str | None, int] = {OTHER: 0, None: MISSING}  # None: a batch's missing values in C
        self.values = [OTHER]

    def restore(self, values: list[str]) -> None:
        """Take back the :attr:`values` of a vocabulary, codes and all (a checkpoint saves the list)."""
        self.values = list(values)
        self._codes = {value: code for code, value in enumerate(self.values)}
        self._codes[None] = MISSING

    def __len__(self) -> int:
        return len(self.values)

    def code(self, value: str) -> int:
        """The code of ``value``, admitting it if there is room and it is not too long, else 0 (:data:`OTHER`)."""
        code = self._codes.get(value)
        if code is None:
            if len(self.values) > self.limit or len(value) > MAX_VALUE_CHARS:
                return 0
            code = self._codes[value] = len(self.values)
            self.values.append(value)
        return code

    def encode(self, values: Sequence[str | None]) -> np.ndarray:
        """Codes of many values as ``int32``; ``None`` becomes :data:`MISSING`."""
        codes = list(map(self._codes.get, values))  # known values and None: one lookup each, in C
        if None in codes:  # values not seen yet
            for position, value in enumerate(values):
                if codes[position] is None:
                    codes[position] = self.code(value)  # type: ignore[arg-type]  # (None is known: MISSING)
        return np.array(codes, dtype=np.int32)

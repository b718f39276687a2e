"""The retry schedule shared by every delivery: the alert outbox and the retraining ledger."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """When to try a delivery again: ``first_ms`` after the first failure, doubling up to ``max_ms``.

    No jitter: a single daemon retries one receiver, and deterministic delays
    keep tests exact. After ``max_attempts`` failures in a row the delivery
    is given up (None: never; the outbox is bounded by its size instead).

    Examples
    --------
    >>> backoff = Backoff(first_ms=1_000, max_ms=300_000, max_attempts=12)
    >>> [backoff.delay_ms(n) // 1000 for n in (1, 2, 3, 8, 9, 10, 50)]
    [1, 2, 4, 128, 256, 300, 300]
    >>> backoff.next_attempt_ms(attempts=3, now_ms=10_000), backoff.next_attempt_ms(attempts=12, now_ms=10_000)
    (14000, None)
    """

    first_ms: int
    max_ms: int
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.first_ms <= self.max_ms:
            raise ValueError(f"need 0 < first_ms <= max_ms, got {self.first_ms} and {self.max_ms}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")

    def delay_ms(self, attempts: int) -> int:
        """The wait after ``attempts`` consecutive failures (0 before the first)."""
        if attempts < 1:
            return 0
        return min(self.first_ms << min(attempts - 1, 32), self.max_ms)

    def next_attempt_ms(self, attempts: int, now_ms: float) -> int | None:
        """When to try again after the ``attempts``-th failure in a row, at ``now_ms``; None to give up."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return None
        return int(now_ms) + self.delay_ms(attempts)

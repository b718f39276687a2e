"""Retry delays shared by the outbox and the retraining ledger: exponential, capped, without jitter."""

from __future__ import annotations

__all__ = ["backoff_ms"]


def backoff_ms(attempts: int, first_ms: int, max_ms: int) -> int:
    """Delay before the next try after ``attempts`` consecutive failures: ``first_ms`` doubling up to ``max_ms``.

    No jitter: a single daemon retries one receiver, and deterministic delays keep tests exact.

    >>> [backoff_ms(n, 1_000, 300_000) // 1000 for n in (0, 1, 2, 3, 8, 9, 10, 50)]
    [0, 1, 2, 4, 128, 256, 300, 300]
    """
    if attempts < 1:
        return 0
    return min(first_ms << min(attempts - 1, 32), max_ms)

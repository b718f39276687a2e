"""Correction for testing many features at once, so that a model's drift verdict keeps its false-alarm rate.

A model with 25 features tested at p < 0.05 each raises a false alarm on
1 - 0.95**25 = 72% of the windows that did not drift at all. :func:`correct`
turns each p-value test's verdict into one that holds a family-wise level
``alpha`` (Bonferroni) or a false discovery rate ``alpha`` (Benjamini-Hochberg,
whose chance of flagging anything on a stream without drift is also at most
``alpha`` for independent features). The corrected ``threshold`` is the
p-value a feature had to reach, so the exported number explains the verdict.
Distance results (no p-value) keep their own threshold and verdict.

>>> from detectors.results import DriftResult
>>> results = [DriftResult("ks", 0.1, p, 0.05, p < 0.05) for p in (0.001, 0.02, 0.04, 0.6)]
>>> [r.drifted for r in correct(results, "none", 0.05)]
[True, True, True, False]
>>> [(r.drifted, r.threshold) for r in correct(results, "bonferroni", 0.05)]
[(True, 0.0125), (False, 0.0125), (False, 0.0125), (False, 0.0125)]
>>> [(r.drifted, r.threshold) for r in correct(results, "bh", 0.05)]
[(True, 0.025), (True, 0.025), (False, 0.025), (False, 0.025)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.results import DriftResult

__all__ = ["CORRECTIONS", "correct", "reject"]

#: Config names: no correction, Bonferroni's family-wise bound, Benjamini-Hochberg's false discovery rate.
CORRECTIONS = ("none", "bonferroni", "bh")


def correct(results: Sequence[DriftResult], correction: str, alpha: float) -> list[DriftResult]:
    """The results with the verdicts of their p-value tests corrected across all of them.

    With ``"none"`` each test keeps ``p_value < alpha``; otherwise a feature
    drifted when ``p_value <= threshold`` (the rejection rule of both
    procedures, as in statsmodels' ``multipletests``), where ``threshold`` is
    ``alpha / m`` for Bonferroni and ``alpha * k / m`` for Benjamini-Hochberg
    (``k`` the largest rank whose p-value is at most ``alpha * k / m``, or 1
    when none is), ``m`` being the number of p-value tests.
    """
    _check(correction)
    tested = [index for index, result in enumerate(results) if result.p_value is not None]
    corrected = list(results)
    if not tested:
        return corrected
    thresholds, drifted = reject(np.array([results[index].p_value for index in tested]), correction, alpha)
    for index, threshold, verdict in zip(tested, thresholds.tolist(), drifted.tolist()):
        result = results[index]  # built directly: dataclasses.replace costs three times as much, 500 times a tick
        corrected[index] = DriftResult(
            result.method, result.statistic, result.p_value, threshold, verdict, result.unseen_share
        )
    return corrected


def reject(p_values: np.ndarray, correction: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The threshold each p-value is held to and whether it is rejected, under ``correction`` (see :func:`correct`,
    whose rule this is; the data-quality checks share it).

    >>> thresholds, rejected = reject(np.array([0.001, 0.02, 0.04, 0.6]), "bh", 0.05)
    >>> thresholds.tolist(), rejected.tolist()
    ([0.025, 0.025, 0.025, 0.025], [True, True, False, False])
    """
    _check(correction)
    m = len(p_values)
    if correction == "none":
        return np.full(m, alpha), p_values < alpha
    if m == 0:
        return np.full(0, alpha), np.zeros(0, dtype=bool)
    threshold = alpha / m if correction == "bonferroni" else alpha * _bh_rank(p_values, alpha) / m
    return np.full(m, threshold), p_values <= threshold


def _check(correction: str) -> None:
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; valid: {', '.join(CORRECTIONS)}")


def _bh_rank(p_values: np.ndarray, alpha: float) -> int:
    """The largest k with the k-th smallest p-value at most alpha * k / m (1 when there is none: at once when all
    are above the largest bound, as on most windows; the bounds rise with k however they round)."""
    m = len(p_values)
    if p_values.min() > alpha * m / m:
        return 1
    below = np.nonzero(np.sort(p_values) <= alpha * np.arange(1, m + 1) / m)[0]
    return int(below[-1]) + 1 if below.size else 1

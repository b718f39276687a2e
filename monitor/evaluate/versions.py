"""Each model's versions at an evaluation: their figures in the window, and each candidate against the baseline.

:meth:`Versions.read <monitor.state.versions.Versions.read>` copies, under the pipeline's lock, what the
comparisons need; :func:`evaluate_versions` then computes, without it:

- every version's figures in the evaluated window (:class:`VersionFigures`): its calls and share of them, latency
  quantiles, error ratio, mean output tokens, mean cost per call (a model with pricing: over the calls that report
  tokens), and the quality proxies and accuracy of its labelled calls;
- every candidate's comparison with the baseline (:class:`VersionComparison`), on the calls both made since it
  began (those settled out of the window and those still in it): an anytime-valid test per metric
  (:class:`~detectors.sequential.AnytimeTTest`, whose running state the comparison keeps), the fixed-horizon
  difference of the p95 latencies with its interval, and the probability that a candidate call is slower than a
  baseline call (both on the calls still in the window);
- its verdict: -1 when a verdict metric is significantly worse, else 1 when one is significantly better, else 0.
  The verdict metrics share ``versions.alpha`` (Bonferroni), so an A/A comparison gets a verdict, ever, with
  probability at most alpha however often it is looked at.

>>> import numpy as np
>>> from monitor.config import VersionsConfig
>>> from monitor.state.columns import Columns, FAILED, LATENCY_MS, TIMESTAMP_MS, VERSION
>>> from monitor.state.versions import Versions
>>> from monitor.state.windows import Window
>>> from monitor.config import ModelConfig
>>> rng = np.random.default_rng(0)
>>> window, versions = Window(10_000, Columns(ModelConfig(name="m")).layout), Versions(VersionsConfig())
>>> for start in range(0, 6_000, 2_000):
...     names = np.where(rng.random(2_000) < 0.1, "canary", "stable").tolist()
...     batch = {name: np.full(2_000, column.missing, column.dtype) for name, column in window.columns.items()}
...     batch[TIMESTAMP_MS] = np.arange(start, start + 2_000, dtype=float)
...     batch[VERSION] = versions.encode(names, batch[TIMESTAMP_MS], window.n_appended)
...     slower = np.where(batch[VERSION] == versions.code("canary"), 1.5, 1.0)  # the canary is 1.5 times slower
...     batch[LATENCY_MS] = rng.lognormal(6.0, 0.5, 2_000) * slower
...     batch[FAILED] = np.zeros(2_000, bool)
...     versions.settle(window, batch)
...     window.append(batch)
...     view = window.view()
...     result = evaluate_versions(versions.read(window, view), view, now_ms=start + 2_000.0)
>>> result.baseline, result.comparisons["canary"].verdict
('stable', -1)
>>> round(float(np.exp(result.comparisons["canary"].metrics["latency"].effect)), 1)  # the latency ratio
1.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.results import SequentialResult, TrafficResult
from detectors.sequential import Moments
from detectors.traffic import TrafficStats
from detectors.version_effects import distribution_distance, quantile_difference, rank_effect
from monitor.config import VERSION_METRICS
from monitor.state.columns import FINISH_REASON, LATENCY_MS, PREDICTION, TIMESTAMP_MS, VERSION
from monitor.state.versions import VersionsRead, metric_values, moments_since
from monitor.state.vocabulary import OTHER

__all__ = ["ModelVersions", "VersionComparison", "VersionFigures", "evaluate_versions", "evidence"]

_TRAFFIC = TrafficStats()


@dataclass(frozen=True)
class VersionFigures:
    """One version's calls in the evaluated window: how many and their share of the model's, their traffic
    figures, and the means of each compared metric over the calls that have it (NaN where none does; the
    latency's is of its logarithm)."""

    n_calls: int
    traffic_share: float
    traffic: TrafficResult
    means: dict[str, float]


@dataclass(frozen=True)
class VersionComparison:
    """One candidate against the baseline since the comparison began (``start_ms``: event time of its first
    call still in the window, NaN when none is).

    ``metrics`` holds each compared metric's anytime-valid result (the latency's is of log latency: its effect
    and bounds are logarithms of the ratio of geometric means). On the calls in the window: ``latency_p95_ms``
    is the difference of the p95 latencies with its fixed-horizon interval, ``latency_slower`` the probability
    that a candidate call is slower than a baseline call (ties half), and ``distances`` the Jensen-Shannon
    distances of the output distributions (``finish_reason``, and a classifier's ``prediction``): NaN when either
    side has too few calls or values.
    """

    verdict: int
    metrics: dict[str, SequentialResult]
    latency_p95_ms: tuple[float, float, float]
    latency_slower: float
    start_ms: float
    distances: dict[str, float]


@dataclass(frozen=True)
class ModelVersions:
    """A model's versions at an evaluation: the baseline, every version's figures, every candidate's comparison."""

    baseline: str | None
    figures: dict[str, VersionFigures]
    comparisons: dict[str, VersionComparison]


def evaluate_versions(read: VersionsRead, view: dict[str, np.ndarray], now_ms: float) -> ModelVersions:
    """The figures of the versions in ``view`` (the evaluated window) and the comparisons ``read`` holds, as of
    the event time ``now_ms``."""
    rows, row_numbers = read.rows, read.row_numbers
    values = metric_values(rows, read.numeric)
    names, groups = _groups(read, rows[VERSION])
    first_row = int(row_numbers[0]) if len(row_numbers) else 0
    starts = [start_row for _, start_row in read.comparisons.values()]
    since = moments_since(values, groups, len(names), row_numbers, [*starts, first_row])
    latencies = _SortedLatencies(rows[LATENCY_MS], groups, row_numbers)
    if rows is view:  # the comparisons read the evaluated window itself: its figures come with theirs
        figures = _figures(names, groups, since[first_row], latencies)
    else:
        view_names, view_groups = _groups(read, view[VERSION])
        view_rows = np.arange(len(view_groups))
        whole = moments_since(metric_values(view, read.numeric), view_groups, len(view_names), view_rows, [0])
        view_latencies = _SortedLatencies(view[LATENCY_MS], view_groups, view_rows)
        figures = _figures(view_names, view_groups, whole[0], view_latencies)
    group_of = {name: group for group, name in enumerate(names)}
    baseline = group_of.get(str(read.baseline), -1)
    outputs = {FINISH_REASON: rows[FINISH_REASON]}  # as category codes (negative: none)
    if not read.numeric:
        outputs[PREDICTION] = np.nan_to_num(rows[PREDICTION], nan=-1.0).astype(np.int64)
    counts = {column: _CategoryCounts(codes, groups, len(names), row_numbers) for column, codes in outputs.items()}
    comparisons = {}
    for name, (comparison, start_row) in read.comparisons.items():
        candidate = group_of.get(name, -1)
        compared = row_numbers >= start_row
        results = {}
        for metric, test in comparison.tests.items():
            settled_baseline, settled_candidate = read.settled[name][metric]
            sides = since[start_row][metric]
            results[metric] = test.update(
                settled_baseline.merge(sides[baseline] if baseline >= 0 else Moments()),
                settled_candidate.merge(sides[candidate] if candidate >= 0 else Moments()),
            )
        baseline_ms, candidate_ms = latencies.since(start_row, baseline), latencies.since(start_row, candidate)
        times = rows[TIMESTAMP_MS][compared]
        comparisons[name] = VersionComparison(
            verdict=_verdict(results, read.verdict_metrics),
            metrics=results,
            latency_p95_ms=quantile_difference(baseline_ms, candidate_ms, q=0.95, presorted=True),
            latency_slower=rank_effect(baseline_ms, candidate_ms, presorted=True),
            start_ms=float(times.min()) if times.size else float("nan"),
            distances={
                column: distribution_distance(*table.since(start_row, baseline, candidate))
                for column, table in counts.items()
            },
        )
        comparison.latest = evidence(comparisons[name], read.baseline, now_ms)
    return ModelVersions(read.baseline, figures, comparisons)


def evidence(comparison: VersionComparison, baseline: str | None, evaluated_at_ms: float) -> dict[str, Any]:
    """A comparison as plain JSON data (non-finite figures as None): its verdict, baseline, span and each metric's
    effect, interval, p-value and sample sizes; what a rollback request carries and ``driftwarden versions`` shows.

    >>> from detectors.results import SequentialResult
    >>> result = SequentialResult(0.2, 0.1, 0.3, 0.001, 900, 100, tested=True, significant=True)
    >>> comparison = VersionComparison(-1, {"error_ratio": result}, (5.0, 1.0, 9.0), 0.6, 1_000.0, {})
    >>> evidence(comparison, "v1", 2_000.0)["metrics"]["error_ratio"]["effect"]
    0.2
    """
    metrics = {
        metric: {
            "effect": result.effect, "lower": result.lower, "upper": result.upper, "p_value": result.p_value,
            "n_baseline": result.n_baseline, "n_candidate": result.n_candidate, "tested": result.tested,
            "significant": result.significant,
        }
        for metric, result in comparison.metrics.items()
    }  # fmt: skip
    effect, lower, upper = comparison.latency_p95_ms
    metrics["latency_p95_ms"] = {"effect": effect, "lower": lower, "upper": upper}
    metrics["latency_slower"] = {"effect": comparison.latency_slower}
    metrics.update((f"{column}_distance", {"effect": distance}) for column, distance in comparison.distances.items())
    return _plain({
        "verdict": comparison.verdict, "baseline": baseline, "start_ms": comparison.start_ms,
        "evaluated_at_ms": evaluated_at_ms, "metrics": metrics,
    })  # fmt: skip


def _plain(value: Any) -> Any:
    """Figures as plain JSON data: floats as floats, NaN and infinities as None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _groups(read: VersionsRead, codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The versions among ``codes`` (live ones by name, the rest as :data:`OTHER`), and each row's group: its
    version's index in that list, -1 for a call that names none."""
    groups = np.full(len(codes), -1)
    names: list[str] = []
    for name, code in read.codes.items():  # a comparison per live version: no sort of the codes
        rows = codes == code
        if rows.any():
            groups[rows] = len(names)
            names.append(name)
    other = (codes != 0) & (groups < 0)  # past max_live, or a retired version's
    if other.any():
        groups[other] = len(names)
        names.append(OTHER)
    return names, groups


class _SortedLatencies:
    """Each group's latencies (those reported) from a row on, sorted once for all who read them: the figures'
    quantiles, and the p95 difference and rank effect of every candidate that shares a start."""

    def __init__(self, latency_ms: np.ndarray, groups: np.ndarray, row_numbers: np.ndarray):
        self._latency_ms, self._groups, self._row_numbers = latency_ms, groups, row_numbers
        self._first_row = int(row_numbers[0]) if len(row_numbers) else 0
        self._sorted: dict[tuple[int, int], np.ndarray] = {}

    def since(self, start_row: int, group: int) -> np.ndarray:
        """The group's latencies from ``start_row`` on, sorted; none for group -1 (a version without calls here:
        the rows of that group are the calls that name no version)."""
        if group < 0:
            return np.empty(0)
        key = (max(start_row, self._first_row), group)
        if key not in self._sorted:
            first = int(np.searchsorted(self._row_numbers, key[0]))
            latency_ms = self._latency_ms[first:][self._groups[first:] == group]
            self._sorted[key] = np.sort(latency_ms[~np.isnan(latency_ms)])
        return self._sorted[key]


class _CategoryCounts:
    """Each group's count of each category code (negative: none) from a row on, counted once for every
    candidate that shares the start."""

    def __init__(self, codes: np.ndarray, groups: np.ndarray, n_groups: int, row_numbers: np.ndarray):
        self._codes, self._groups, self._n_groups, self._row_numbers = codes, groups, n_groups, row_numbers
        self._first_row = int(row_numbers[0]) if len(row_numbers) else 0
        self._tables: dict[int, np.ndarray] = {}

    def since(self, start_row: int, *groups: int) -> list[np.ndarray]:
        """The counts of ``groups`` (one row of categories each; none for a group -1) from ``start_row`` on."""
        start_row = max(start_row, self._first_row)
        if start_row not in self._tables:
            first = int(np.searchsorted(self._row_numbers, start_row))
            codes, owners = self._codes[first:], self._groups[first:]
            counted = (codes >= 0) & (owners >= 0)
            size = int(codes[counted].max()) + 1 if counted.any() else 1
            cells = np.bincount(owners[counted] * size + codes[counted], minlength=self._n_groups * size)
            self._tables[start_row] = cells.reshape(self._n_groups, size)
        table = self._tables[start_row]
        return [table[group] if group >= 0 else np.zeros(table.shape[1], np.int64) for group in groups]


def _figures(
    names: list[str], groups: np.ndarray, moments: dict[str, list[Moments]], latencies: _SortedLatencies
) -> dict[str, VersionFigures]:
    """Each version's figures in the window: ``moments`` are each metric's per group of ``groups``; a group's
    calls and error ratio are its ``error_ratio`` moments' (every call is failed or not)."""
    figures = {}
    for group, name in enumerate(names):
        calls = moments["error_ratio"][group]
        sorted_ms = latencies.since(0, group)
        figures[name] = VersionFigures(
            n_calls=calls.n,
            traffic_share=calls.n / len(groups),
            traffic=TrafficResult(
                calls.n, sorted_ms.size, _TRAFFIC.quantiles_of(sorted_ms), calls.mean if calls.n else math.nan
            ),
            means={metric: sides[group].mean if sides[group].n else math.nan for metric, sides in moments.items()},
        )
    return figures


def _verdict(results: dict[str, SequentialResult], verdict_metrics: tuple[str, ...]) -> int:
    """-1 when a verdict metric is significantly worse, else 1 when one is significantly better, else 0.

    The side is the interval's (significant: it excludes 0), not the current effect's: the interval intersects
    every tick's, so a candidate once found worse stays so even when its running mean later crosses zero (an
    interval on both sides, the difference having changed sign, is worse and better: worse).
    """
    worse = better = False
    for metric in verdict_metrics:
        result = results[metric]
        if result.significant:
            above, below = result.lower > 0, result.upper < 0
            higher_is_worse = VERSION_METRICS[metric] == "higher"
            worse |= above if higher_is_worse else below
            better |= below if higher_is_worse else above
    return -1 if worse else int(better)

"""A model's versions: the codes its window keeps them by, its baseline, and each candidate's running comparison.

Each call's ``model_version`` becomes a code in the window's ``version`` column (0: the call named none). At most
``versions.max_live`` versions of a model are live: a new one takes the place of the least recently seen (never
the configured baseline) once that one has been silent for ``versions.retire_after`` of event time, else it folds
into :data:`OTHER`, as does a version of that name (so a producer that sends a new version per call makes one
series, not thousands). Codes are never given twice: the window's rows of a retired version count as :data:`OTHER`
until they leave it.

The baseline is the configured version, or the live one with the most calls in the window; another takes over
only with :data:`TAKE_OVER` times its calls, and the comparison of the two then carries on turned around.

Every live version other than the baseline is a candidate, compared with the baseline on the calls both made since
the comparison began (the later of the candidate's first call and the baseline's taking over), and on nothing
before: a canary is judged against the traffic it ran beside. The comparison is cumulative, as an anytime-valid
test needs: the calls still in the window are read at each evaluation (with the feedback that has joined them
since), and a call's figures are :meth:`Versions.settle`-d into running moments just before the window overwrites
it, so the test sees every call once. A label that joins a call after it left the window is not counted.

A model with ``pricing`` is compared on its calls' cost too, in its currency: a restart under another currency
begins each comparison's cost again (the window's costs in the old one are cleared; see
:meth:`ModelState.restore <monitor.state.model.ModelState.restore>`), so no comparison mixes two currencies.

>>> import numpy as np
>>> from monitor.config import VersionsConfig
>>> versions = Versions(VersionsConfig(max_live=2))
>>> versions.encode(["v1", "v1", "v2", "v3", None], np.array([1.0, 2.0, 3.0, 4.0, 5.0]), first_row=0).tolist()
[1, 1, 2, -1, 0]
>>> versions.live
['v1', 'v2']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from detectors.sequential import AnytimeTTest, Moments
from monitor.config import VERSION_METRICS, VersionsConfig
from monitor.state.columns import (
    CONTENT_FILTER,
    COST,
    FAILED,
    FINISH_REASON,
    INPUT_TOKENS,
    JUDGE_SCORE,
    LABEL,
    LATENCY_MS,
    OUTPUT_TOKENS,
    PREDICTION,
    RATING,
    TIMESTAMP_MS,
    VERSION,
)
from monitor.state.vocabulary import OTHER
from monitor.state.windows import Window

__all__ = [
    "COMPARED_COLUMNS", "OTHER_CODE", "Comparison", "Versions", "VersionsRead", "metric_values", "moments_since",
]  # fmt: skip

#: The version code of the calls of versions past ``max_live`` (and of retired versions' calls).
OTHER_CODE = -1
#: How many times the baseline's calls another version must have in the window to take over from it.
TAKE_OVER = 2.0
#: The window columns the comparisons read (and :data:`~monitor.state.columns.COST`, a model with pricing).
COMPARED_COLUMNS = (
    VERSION, LATENCY_MS, FAILED, RATING, JUDGE_SCORE, LABEL, PREDICTION, CONTENT_FILTER, INPUT_TOKENS, OUTPUT_TOKENS,
    FINISH_REASON,
)  # fmt: skip


def metric_values(rows: dict[str, np.ndarray], numeric: bool) -> dict[str, np.ndarray]:
    """Each compared metric's value per call, NaN where the call has none: the log of its latency (a latency
    ratio is a difference of logs), whether it failed, whether its rating is positive, its judge score, whether
    its label equals its prediction (a classifier's) or how far it is from it (a numeric model's), whether a
    content filter stopped it, its input and output tokens, and its cost if ``rows`` have costs (a model with
    pricing; NaN for a call that reports no token count).

    >>> rows = {LATENCY_MS: np.array([100.0, np.nan]), FAILED: np.array([False, True]),
    ...         RATING: np.array([1.0, np.nan]), JUDGE_SCORE: np.array([np.nan, 0.5]), LABEL: np.array([2.0, 1.0]),
    ...         PREDICTION: np.array([2.0, 3.0]), CONTENT_FILTER: np.array([False, False]),
    ...         INPUT_TOKENS: np.array([300.0, 40.0]), OUTPUT_TOKENS: np.array([12.0, np.nan])}
    >>> values = metric_values(rows, numeric=False)
    >>> {name: np.round(column * 1.0, 2).tolist() for name, column in values.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'latency': [4.61, nan], 'error_ratio': [0.0, 1.0], 'feedback_positive_ratio': [1.0, nan],
     'judge_score': [nan, 0.5], 'accuracy': [1.0, 0.0], 'absolute_error': [nan, nan],
     'content_filter_ratio': [0.0, 0.0], 'input_tokens': [300.0, 40.0], 'output_tokens': [12.0, nan]}
    """
    latency = rows[LATENCY_MS]
    rating, label, prediction = rows[RATING], rows[LABEL], rows[PREDICTION]
    values = {
        "latency": np.log(latency, out=np.full(len(latency), np.nan), where=latency > 0),
        "error_ratio": rows[FAILED],  # booleans: their moments are counted (Moments.of_groups)
        "feedback_positive_ratio": np.where(np.isnan(rating), np.nan, rating > 0),
        "judge_score": rows[JUDGE_SCORE],
        "accuracy": np.where(np.isnan(label) | np.isnan(prediction) | numeric, np.nan, label == prediction),
        "absolute_error": np.abs(label - prediction) if numeric else np.full(len(label), np.nan),
        "content_filter_ratio": rows[CONTENT_FILTER],
        "input_tokens": rows[INPUT_TOKENS],
        "output_tokens": rows[OUTPUT_TOKENS],
    }
    if COST in rows:
        values["cost"] = rows[COST]
    assert values.keys() == _metrics(COST in rows).keys(), "every compared metric has its values"
    return values


def _metrics(priced: bool) -> dict[str, str | None]:
    """The metrics a model's versions are compared on (by their worse direction): cost only with pricing."""
    return VERSION_METRICS if priced else {name: worse for name, worse in VERSION_METRICS.items() if name != "cost"}


def moments_since(
    values: dict[str, np.ndarray], groups: np.ndarray, n_groups: int, row_numbers: np.ndarray, starts: Iterable[int]
) -> dict[int, dict[str, list[Moments]]]:
    """For each start row, each metric's moments of each group's values over the rows from that start on (a
    start before the first row counts from the first). ``groups`` holds each row's group (negative: none);
    the rows are cut where the starts fall and each piece is read once, whatever the number of starts.

    >>> groups, rows = np.array([0, 1, 0, 1]), np.arange(10, 14)
    >>> moments = moments_since({"m": np.array([1.0, 5.0, 3.0, 7.0])}, groups, 2, rows, [0, 11])
    >>> [(side.n, side.mean) for side in moments[11]["m"]], [side.n for side in moments[0]["m"]]
    ([(1, 3.0), (2, 6.0)], [2, 2])
    """
    first = int(row_numbers[0]) if len(row_numbers) else 0
    starts = list(starts)
    cuts = sorted({max(start, first) for start in starts})
    bounds = [int(np.searchsorted(row_numbers, cut)) for cut in cuts] + [len(row_numbers)]
    suffix = {metric: [Moments()] * n_groups for metric in values}
    by_cut = {}
    for cut, begin, end in reversed(list(zip(cuts, bounds, bounds[1:]))):  # the last piece first: suffixes
        for metric, column in values.items():
            piece = Moments.of_groups(column[begin:end], groups[begin:end], n_groups)
            suffix[metric] = [part.merge(later) for part, later in zip(piece, suffix[metric])]
        by_cut[cut] = dict(suffix)
    return {start: by_cut[max(start, first)] for start in starts}


class Comparison:
    """One candidate against the baseline: where it began, the moments of the calls settled out of the window
    (per metric, the baseline's and the candidate's), each metric's running anytime-valid test, and what its
    latest evaluation found (:func:`~monitor.evaluate.versions.evidence`: for ``driftwarden versions`` and
    rollback requests)."""

    def __init__(self, start_row: int, config: VersionsConfig, priced: bool = False):
        self.config = config
        self.start_row = start_row
        self.priced = priced
        self.latest: dict[str, Any] | None = None
        self.settled = {metric: (Moments(), Moments()) for metric in _metrics(priced)}
        self.tests = {metric: self._test() for metric in _metrics(priced)}

    def _test(self) -> AnytimeTTest:
        config = self.config
        alpha = config.alpha / len(config.verdict_metrics) if config.verdict_metrics else config.alpha
        return AnytimeTTest(alpha=alpha, phi=config.prior_scale, min_samples=config.min_samples)

    def begin_again(self, metric: str) -> None:
        """Forget what ``metric`` was compared on so far: its settled moments, its test and its latest figures."""
        self.settled[metric] = (Moments(), Moments())
        self.tests[metric] = self._test()
        if self.latest is not None:
            self.latest["metrics"].pop(metric, None)

    def turned(self) -> Comparison:
        """The same comparison with the two sides swapped (the candidate became the baseline)."""
        turned = Comparison(self.start_row, self.config, self.priced)
        turned.settled = {metric: (candidate, baseline) for metric, (baseline, candidate) in self.settled.items()}
        turned.tests = {metric: test.turned() for metric, test in self.tests.items()}
        return turned

    def settle(self, leaving: dict[str, tuple[Moments, Moments]]) -> None:
        """Add the moments of calls leaving the window, per metric the baseline's and the candidate's."""
        for metric, (settled_baseline, settled_candidate) in self.settled.items():
            baseline, candidate = leaving[metric]
            self.settled[metric] = (settled_baseline.merge(baseline), settled_candidate.merge(candidate))

    def snapshot(self) -> dict:
        return {
            "start_row": self.start_row,
            "settled": {metric: [side.to_list() for side in sides] for metric, sides in self.settled.items()},
            "tests": {metric: test.snapshot() for metric, test in self.tests.items()},
            "latest": self.latest,
        }

    def restore(self, snapshot: dict) -> None:
        self.start_row = int(snapshot["start_row"])
        for metric, sides in snapshot["settled"].items():
            if metric in self.settled:
                self.settled[metric] = (Moments.from_list(sides[0]), Moments.from_list(sides[1]))
        for metric, saved in snapshot["tests"].items():
            if metric in self.tests:
                self.tests[metric].restore(saved)
        self.latest = snapshot.get("latest")


class VersionsRead(NamedTuple):
    """What an evaluation of a model's versions reads (:meth:`Versions.read`): the baseline, the live versions'
    codes, each candidate's comparison with the row it starts at and its settled moments, and the window's rows
    from the earliest start on (``row_numbers``: each one's number, counted from the first row ever)."""

    baseline: str | None
    codes: dict[str, int]
    comparisons: dict[str, tuple[Comparison, int]]
    settled: dict[str, dict[str, tuple[Moments, Moments]]]
    rows: dict[str, np.ndarray]
    row_numbers: np.ndarray
    numeric: bool
    verdict_metrics: tuple[str, ...]


class Versions:
    """One model's live versions and comparisons (see the module's docstring)."""

    def __init__(self, config: VersionsConfig, numeric: bool = False, currency: str | None = None):
        self.config = config
        self.numeric = numeric
        #: The model's pricing currency (None: no pricing, and no cost compared).
        self.currency = currency
        #: The window columns the comparisons read.
        self.columns = COMPARED_COLUMNS if currency is None else (*COMPARED_COLUMNS, COST)
        self._reset()

    def _reset(self) -> None:
        self._codes: dict[str, int] = {}  # the live versions' codes, by name
        self.last_seen_ms: dict[str, float] = {}
        self.first_row: dict[str, int] = {}  # the window row of each live version's first call
        self._next_code = 1
        #: The version the others are compared with, and the window row from which it was.
        self.baseline: str | None = None
        self.baseline_row = 0
        #: Each candidate's comparison with the baseline, by name.
        self.comparisons: dict[str, Comparison] = {}

    @property
    def live(self) -> list[str]:
        """The live versions' names, in the order they came."""
        return list(self._codes)

    def code(self, name: str) -> int:
        """The window code of a live version."""
        return self._codes[name]

    def encode(self, names: list[Any], timestamps_ms: np.ndarray, first_row: int) -> np.ndarray:
        """The codes of a batch's versions (appended to the window from ``first_row``), admitting new ones."""
        n = len(names)
        first = names[0] if n else None
        live = self._codes
        if names.count(first) == n:  # the usual batch: of no version, or of one live version
            if type(first) is not str:
                return np.zeros(n, dtype=np.int32)
            if first in live:
                self.last_seen_ms[first] = max(self.last_seen_ms[first], float(timestamps_ms.max()))
                return np.full(n, live[first], dtype=np.int32)
        lookup = {name: live.get(name, 0) for name in dict.fromkeys(names)}  # None, unset and new ones: 0 for now
        codes = np.fromiter(map(lookup.__getitem__, names), np.int32, n)
        for name, code in lookup.items():  # seen now: a live version in the batch is not silent
            if code > 0:
                self.last_seen_ms[name] = max(self.last_seen_ms[name], float(timestamps_ms[codes == code].max()))
        if any(code == 0 and type(name) is str for name, code in lookup.items()):
            self._admit_new(names, timestamps_ms, first_row, codes)
        return codes

    def _admit_new(self, names: list[Any], timestamps_ms: np.ndarray, first_row: int, codes: np.ndarray) -> None:
        """Code the batch's versions not live yet, in the order they come: admitted while there is room (or a
        silent one to retire), else :data:`OTHER_CODE`; a version named :data:`OTHER` is that fold's already.
        One pass over their rows, however many names they have."""
        rows_of: dict[str, list[int]] = {}
        for row in np.flatnonzero(codes == 0).tolist():
            name = names[row]
            if type(name) is str:
                rows_of.setdefault(name, []).append(row)
        for name, rows in rows_of.items():
            latest_ms = float(timestamps_ms[rows].max())
            if name == OTHER or (len(self._codes) >= self.config.max_live and not self._retire_one(latest_ms)):
                codes[rows] = OTHER_CODE
                continue
            codes[rows] = self._codes[name] = self._next_code
            self._next_code += 1
            self.first_row[name], self.last_seen_ms[name] = first_row + rows[0], latest_ms

    def _retire_one(self, now_ms: float) -> bool:
        """Retire the least recently seen live version other than the configured baseline if it has been silent
        for ``retire_after``; whether it was."""
        seen, kept = self.last_seen_ms, self.config.baseline
        retirable = [name for name in seen if name != kept] if kept in seen else seen
        name = min(retirable, key=seen.__getitem__, default=None)
        if name is None or seen[name] > now_ms - self.config.retire_after_ms:
            return False
        del self._codes[name]  # its calls still in the window are OTHER's now (see name)
        del self.last_seen_ms[name], self.first_row[name]
        self.comparisons.pop(name, None)
        if name == self.baseline:
            self._set_baseline(None, 0)
        return True

    def choose_baseline(self, codes: np.ndarray, first_held_row: int) -> None:
        """Take the configured baseline if it is live, else the live version with the most calls among ``codes``
        (the window's, from ``first_held_row`` on); the current baseline stays until another has more than
        :data:`TAKE_OVER` times its calls (or it has none), so that a 50/50 test does not swap them at every
        evaluation. A new baseline starts the comparisons again, on the calls the window holds, but for the one
        of the old baseline against the new, which carries on turned around (its test, moments and interval:
        what the two made is the same evidence either way). Then open a comparison for each new candidate: from
        the later of its and the baseline's first call."""
        configured = self.config.baseline
        if configured is not None:
            chosen = configured if configured in self._codes else None
        else:
            # a pass per live version, not a count per code ever given (codes grow with every version admitted)
            calls = {name: int(np.count_nonzero(codes == code)) for name, code in self._codes.items()}
            chosen = max(calls, key=calls.__getitem__, default=None)
            current = calls.get(self.baseline, 0) if self.baseline is not None else 0
            if chosen is None or calls[chosen] == 0:
                chosen = None
            elif current > 0 and calls[chosen] <= TAKE_OVER * current:
                chosen = self.baseline
        if chosen != self.baseline:
            old, turned = self.baseline, self.comparisons.get(chosen) if chosen is not None else None
            self._set_baseline(chosen, first_held_row)
            if turned is not None and old in self._codes:
                self.comparisons[old] = turned.turned()
        if self.baseline is None:
            return
        for name in self._codes:
            if name != self.baseline and name not in self.comparisons:
                start_row = max(self.first_row[name], self.first_row[self.baseline], self.baseline_row)
                self.comparisons[name] = Comparison(start_row, self.config, self.currency is not None)

    def _set_baseline(self, name: str | None, row: int) -> None:
        self.baseline, self.baseline_row = name, row
        self.comparisons = {}

    def read(self, window: Window, view: dict[str, np.ndarray]) -> VersionsRead:
        """Choose the baseline (see :meth:`choose_baseline`) and copy what :func:`~monitor.evaluate.versions.
        evaluate_versions` reads of the comparisons and of ``window``; called under the pipeline's lock.
        ``view`` is the evaluation's copy of the window: when it holds every row (no ``windows.duration`` cut
        any), the comparisons read it too, and nothing more is copied."""
        first_held = window.n_appended - len(window)
        self.choose_baseline(window.since(first_held, (VERSION,))[VERSION], first_held)
        start_row = min((comparison.start_row for comparison in self.comparisons.values()), default=window.n_appended)
        first_row = max(start_row, first_held)
        if first_row == first_held and len(view[TIMESTAMP_MS]) == len(window):
            rows = view
        else:
            rows = window.since(start_row, (*self.columns, TIMESTAMP_MS))
        return VersionsRead(
            baseline=self.baseline,
            codes=dict(self._codes),
            comparisons={name: (comparison, comparison.start_row) for name, comparison in self.comparisons.items()},
            settled={name: dict(comparison.settled) for name, comparison in self.comparisons.items()},
            rows=rows,
            row_numbers=np.arange(first_row, first_row + len(rows[VERSION])),
            numeric=self.numeric,
            verdict_metrics=tuple(self.config.verdict_metrics),
        )

    def settle(self, window: Window, batch: dict[str, np.ndarray]) -> None:
        """Before ``batch`` is appended to ``window``: add the figures of the calls it pushes out (and of its own
        head, if it is longer than the window) to the comparisons they belong to."""
        n_rows = len(batch[VERSION])
        n_leaving = len(window) + n_rows - window.capacity
        if not self.comparisons or n_leaving <= 0 or self.baseline is None:
            return
        leaving = window.oldest(n_leaving, self.columns)
        if n_rows > window.capacity:  # the batch's head never enters the ring
            head = n_rows - window.capacity
            leaving = {name: np.concatenate((leaving[name], batch[name][:head])) for name in self.columns}
        first_row = window.n_appended - len(window)
        rows = np.arange(first_row, first_row + len(leaving[VERSION]))
        codes = leaving[VERSION]
        groups = np.where(codes == self._codes[self.baseline], 0, -1)  # the baseline 0, each candidate its own
        for group, name in enumerate(self.comparisons, start=1):
            groups[codes == self._codes[name]] = group
        starts = [comparison.start_row for comparison in self.comparisons.values()]
        moments = moments_since(metric_values(leaving, self.numeric), groups, len(starts) + 1, rows, starts)
        for group, comparison in enumerate(self.comparisons.values(), start=1):
            comparison.settle(
                {metric: (sides[0], sides[group]) for metric, sides in moments[comparison.start_row].items()}
            )

    def snapshot(self) -> dict:
        return {
            "config": self.config.model_dump(mode="json"),
            "currency": self.currency,
            "codes": self._codes,
            "last_seen_ms": self.last_seen_ms,
            "first_row": self.first_row,
            "next_code": self._next_code,
            "baseline": self.baseline,
            "baseline_row": self.baseline_row,
            "comparisons": {name: comparison.snapshot() for name, comparison in self.comparisons.items()},
        }

    def restore(self, snapshot: dict) -> None:
        self._reset()
        self._codes = {str(name): int(code) for name, code in snapshot["codes"].items()}
        self.last_seen_ms = {name: float(seen) for name, seen in snapshot["last_seen_ms"].items()}
        self.first_row = {name: int(row) for name, row in snapshot["first_row"].items()}
        self._next_code = int(snapshot["next_code"])
        self.baseline, self.baseline_row = snapshot["baseline"], int(snapshot["baseline_row"])
        if snapshot.get("config") == self.config.model_dump(mode="json"):
            for name, saved in snapshot["comparisons"].items():
                comparison = self.comparisons[name] = Comparison(0, self.config, self.currency is not None)
                comparison.restore(saved)
                if self.currency is not None and snapshot.get("currency") != self.currency:  # costs in another
                    comparison.begin_again("cost")
        else:  # tested under other settings: the comparisons begin again at the next evaluation
            self.baseline = None
        while len(self._codes) > self.config.max_live:  # the config lowered max_live: keep the most recent
            self._retire_one(math.inf)

"""Online change detection on each model's latency p50 and p95 and error ratio, block by block.

A model's inference events are cut into consecutive blocks of ``block_size``
events (``windows.min_samples``) as they arrive; each complete block's
summaries feed one change detector per signal (ADWIN, Page-Hinkley or CUSUM,
river's ``update`` protocol), and each detection is counted in
``driftwarden_changes_total``: alert on its ``increase()``. Blocks do not
overlap, so the detectors see independent values, and they depend on the
events alone, not on when batches or ticks fall, so a replay counts the same
changes as the live daemon. This runs with each batch (a few small quantiles
per ``block_size`` events), and the partial block is part of the checkpoint.
The error ratio is fed through a variance-stabilising transform (:func:`stabilised`).

Each detector is calibrated on its signal's own spread (:func:`calibrated_detector`):
``arl`` blocks pass on average between false changes of a signal that does not
change, and a step of ``shift`` standard deviations is what Page-Hinkley and
CUSUM detect fastest.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> watch = ChangeWatch("adwin", block_size=100)
>>> for block in range(300):  # latency moves from about 800 ms to about 1000 ms at block 200
...     latency_ms = rng.normal(800 if block < 200 else 1000, 60, size=100)
...     changed = watch.observe(latency_ms, np.zeros(100, dtype=bool))
...     if changed:
...         print(block, changed)
202 ['latency_p50']
203 ['latency_p95']
"""

from __future__ import annotations

import math

import numpy as np

from detectors._change_detector import ChangeDetector
from detectors.adwin import ADWIN
from detectors.cusum import CUSUM
from detectors.page_hinkley import PageHinkley
from detectors.run_length import decision_interval
from detectors.traffic import TrafficStats
from detectors.warmup_scaled import WarmupScaled

__all__ = ["SIGNALS", "ChangeWatch", "calibrated_detector", "change_policy", "least_std", "stabilised"]

#: The summaries watched, by the ``metric`` label they are counted under.
SIGNALS = ("latency_p50", "latency_p95", "error_ratio")


def calibrated_detector(method: str, arl: float, shift: float, warmup: int, min_std: float = 0.0) -> ChangeDetector:
    """A change detector with a false change every ``arl`` values on average, fastest on a step of ``shift``
    standard deviations of the values, which the first ``warmup`` values estimate (at least ``min_std``: see
    :func:`least_std`).

    - ``page_hinkley``: Page-Hinkley relative to the running standard deviation, without forgetting, with
      ``delta = shift / 2`` and the threshold of :func:`detectors.run_length.decision_interval`: a
      two-sided CUSUM whose average run length is Siegmund's, as the estimates settle.
    - ``cusum``: Hawkins' self-starting tabular CUSUM with the same ``k`` and ``h``: each value standardised
      against the mean and deviation of all the values before it, through Student's t to a normal value, so the
      run length is the stated one from the first value after the warm-up (:class:`detectors.cusum.CUSUM`).
    - ``adwin``: ADWIN tested on every value, with ``delta = 1 / arl``, its bound on the chance of a false
      cut at each test, so its run length is at least ``arl`` (in practice far longer); fed values in the
      warm-up's standard deviations (:class:`detectors.warmup_scaled.WarmupScaled`), since its bound
      assumes values in [0, 1]. ``shift`` does not apply: ADWIN adapts to any step.

    >>> calibrated_detector("page_hinkley", arl=10_000, shift=1.0, warmup=30).threshold
    8.045360987070074
    """
    if method == "adwin":
        return WarmupScaled(ADWIN(delta=1.0 / arl, clock=1), warmup, min_std)
    k = shift / 2.0
    h = decision_interval(arl, k)
    if method == "page_hinkley":
        return PageHinkley(min_instances=warmup, delta=k, threshold=h, alpha=1.0, relative=True, min_std=min_std)
    if method == "cusum":
        return CUSUM(k=k, h=h, min_instances=warmup, min_std=min_std)
    raise ValueError(f"unknown change detector {method!r}; valid: adwin, page_hinkley, cusum")


def change_policy(method: str, block_size: int, arl: float, shift: float, warmup: int) -> str:
    """The calibrated detector's promise in one line, for ``check-config``.

    >>> print(change_policy("page_hinkley", 200, 10_000, 1.0, 30).replace(": ", ":\\n"))
    page_hinkley on blocks of 200 events, a warm-up of 30 blocks:
    a false change every 10000 blocks (2e+06 events) on average per signal; fastest on a step of 1 sd
    """
    bound = "at most " if method == "adwin" else ""
    step = "; adapts to any step" if method == "adwin" else f"; fastest on a step of {shift:g} sd"
    return (
        f"{method} on blocks of {block_size} events, a warm-up of {warmup} blocks: {bound}a false change every "
        f"{arl:g} blocks ({arl * block_size:.3g} events) on average per signal{step}"
    )


class ChangeWatch:
    """One model's change detectors (none when ``method`` is None) and the changes each has found.

    ``arl``, ``shift`` and ``warmup`` calibrate each signal's detector (:func:`calibrated_detector`), in blocks.
    """

    def __init__(
        self, method: str | None, block_size: int, arl: float = 10_000.0, shift: float = 1.0, warmup: int = 30
    ):
        self.method = method
        self.block_size = block_size
        self._detectors = {
            signal: calibrated_detector(method, arl, shift, warmup, least_std(signal, block_size))
            for signal in SIGNALS
            if method
        }
        self._stats = TrafficStats(quantiles=(0.5, 0.95))
        self._pending = {"latency_ms": np.empty(0), "failed": np.empty(0, dtype=np.bool_)}
        self.n_changes = dict.fromkeys(self._detectors, 0)

    def observe(self, latency_ms: np.ndarray, failed: np.ndarray) -> list[str]:
        """Take a batch's events; feed every block it completes; return the signals whose change completed."""
        if not self._detectors:
            return []
        latency_ms = np.concatenate((self._pending["latency_ms"], latency_ms))
        failed = np.concatenate((self._pending["failed"], failed))
        complete = len(latency_ms) // self.block_size * self.block_size
        self._pending = {"latency_ms": latency_ms[complete:], "failed": failed[complete:]}
        changed = []
        for values in self._summaries(latency_ms[:complete], failed[:complete]):
            for signal, detector in self._detectors.items():
                if math.isfinite(values[signal]):
                    detector.update(values[signal])
                    if detector.drift_detected:
                        self.n_changes[signal] += 1
                        changed.append(signal)
        return changed

    def _summaries(self, latency_ms: np.ndarray, failed: np.ndarray) -> list[dict[str, float]]:
        """Each complete block's signals, in order; one vectorised pass when no latency is missing."""
        n_blocks = len(latency_ms) // self.block_size
        if n_blocks == 0:
            return []
        if np.isnan(latency_ms).any():  # rare: a block without latencies has no quantiles
            blocks = [self._stats.compute(latency_ms[i : i + self.block_size], failed[i : i + self.block_size])
                      for i in range(0, len(latency_ms), self.block_size)]  # fmt: skip
            rows = [(dict(block.latency_quantiles_ms), block.error_ratio) for block in blocks]
            p50 = [quantiles.get(0.5, math.nan) for quantiles, _ in rows]
            p95 = [quantiles.get(0.95, math.nan) for quantiles, _ in rows]
            error_ratio = np.array([ratio for _, ratio in rows])
        else:
            ordered = np.sort(latency_ms.reshape(n_blocks, -1), axis=1)
            p50, p95 = _quantile(ordered, 0.5).tolist(), _quantile(ordered, 0.95).tolist()
            error_ratio = failed.reshape(n_blocks, -1).mean(axis=1)
        stable = stabilised(error_ratio, self.block_size).tolist()
        return [{"latency_p50": a, "latency_p95": b, "error_ratio": c} for a, b, c in zip(p50, p95, stable)]

    def snapshot(self) -> dict:
        return {
            "pending": self._pending,
            "n_changes": self.n_changes,
            "detectors": {signal: detector.snapshot() for signal, detector in self._detectors.items()},
        }

    def restore(self, snapshot: dict) -> None:
        self._pending = {
            "latency_ms": np.asarray(snapshot["pending"]["latency_ms"], dtype=np.float64),
            "failed": np.asarray(snapshot["pending"]["failed"], dtype=np.bool_),
        }
        self.n_changes = dict(snapshot["n_changes"])
        for signal, saved in snapshot["detectors"].items():
            detector = self._detectors[signal]
            if saved.keys() == detector.snapshot().keys():  # else saved uncalibrated, by an older release: afresh
                detector.restore(saved)


def least_std(signal: str, block_size: int) -> float:
    """The least standard deviation a signal's detector takes: the error ratio's binomial one after
    :func:`stabilised`, ``1 / (2 sqrt(block_size))``; the latency p50's grid step for latencies recorded in
    whole milliseconds, 0.5 ms for an even ``block_size`` (the mean of the two middle values) and 1 ms for an
    odd one; none for the p95 (0).

    At a low error rate most blocks have no failure, so their measured spread (none at all, after a warm-up
    without one) is far less, and a single failed call would read as many deviations: Page-Hinkley raised
    6 times the false changes its run length states on one failure in 2,000 calls, CUSUM a change on the
    first failure after a warm-up without one, and ADWIN, fed unscaled values after such a warm-up, missed a
    step from 0.01% to 3% in 2 runs of 3. With the floor, neither of the first two raised one there in 100,000
    blocks at a run length of 2,000, and such steps are caught in 1 to 3 blocks (ADWIN about 11).

    Likewise a p50 of whole milliseconds whose spread between blocks is less than a step of its grid (a median
    of a few milliseconds) repeats one value in most blocks, and a step reads as several deviations:
    Page-Hinkley raised 2.1 times its stated false changes on a median of 7 ms, 8 times on 5 ms at a run
    length of 2,000 blocks. With at least a step of the grid as the deviation, at most the stated rate. The
    price, for latencies recorded finer: a p50 that moves less than half a millisecond between blocks is
    measured in half milliseconds.

    >>> least_std("error_ratio", 200), least_std("latency_p50", 200), least_std("latency_p95", 200)
    (0.035355339059327376, 0.5, 0.0)
    """
    if signal == "error_ratio":
        return 0.5 / math.sqrt(block_size)
    return (1.0 if block_size % 2 else 0.5) if signal == "latency_p50" else 0.0


def stabilised(error_ratio: np.ndarray, block_size: int) -> np.ndarray:
    """Anscombe's arcsine transform of a block's error ratio, ``arcsin(sqrt((failed + 3/8) / (n + 3/4)))``.

    A binomial count's spread grows with its level, and at a few failures a block it is skewed; transformed,
    its standard deviation is about ``1 / (2 sqrt(n))`` at any level and its shape close to normal, which is
    what the detectors' run lengths assume.

    >>> np.round(stabilised(np.array([0.0, 0.02, 0.3]), 200), 4).tolist()
    [0.0432, 0.1482, 0.5805]
    """
    return np.arcsin(np.sqrt((error_ratio * block_size + 0.375) / (block_size + 0.75)))


def _quantile(rows: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each sorted row, as ``np.quantile`` computes it (linear, bit for bit) without its
    fixed cost (40 us a call, more than the rest of a batch's change watch, measured).

    >>> rows = np.sort(np.random.default_rng(3).lognormal(6, 1, size=(4, 200)), axis=1)
    >>> all(np.array_equal(_quantile(rows, q), np.quantile(rows, q, axis=1)) for q in (0.0, 0.5, 0.95, 0.99, 1.0))
    True
    """
    position = (rows.shape[1] - 1) * q
    below = math.floor(position)
    if below >= rows.shape[1] - 1:
        return rows[:, -1]
    gamma = position - below
    low, high = rows[:, below], rows[:, below + 1]
    step = high - low
    return high - step * (1 - gamma) if gamma >= 0.5 else low + step * gamma

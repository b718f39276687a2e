"""Change detection delay and false changes: the daemon's calibrated detectors against river's, on the same series.

The series are what :class:`monitor.state.changes.ChangeWatch` feeds its detectors, one value per block of 200
events: a latency quantile (normal, 800 ms, standard deviation 25 ms between blocks) and a 2% error ratio (a
binomial count over the block, arcsine-stabilised as the daemon feeds it). Each run is ``--before`` stationary
blocks, then a step of the stated size held for ``--after`` blocks. A detection before the step is a false change
(the detector then restarts, as in the daemon); the delay is the number of blocks from the step to the first
detection at or after it (1 = the first block after the step).

Detectors, all fed the same values:

- ours: ``calibrated_detector(method, arl=10_000, shift=1.0, warmup=30, min_std)`` for adwin, page_hinkley and
  cusum (the daemon's defaults: a false change every 10,000 blocks on average; ``min_std`` the signal's floor,
  :func:`~monitor.state.changes.least_std`, as the daemon sets it);
- river 0.26: ``river.drift.ADWIN()`` and ``river.drift.PageHinkley()`` with their defaults (clock 32; threshold 50).

Printed: a Markdown table with the median delay in blocks (and the share of runs detected within ``--after``
blocks where it is not all of them), and the false changes per 1,000 stationary blocks. Run:
``python bench/change_detectors.py [--runs 40] [--before 300] [--after 300]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from river import drift

from monitor.state.changes import calibrated_detector, least_std, stabilised

BLOCK = 200
LATENCY_MS, LATENCY_SD_MS = 800.0, 25.0
#: Step name -> (signal, size): latency steps in standard deviations, error ratio steps to a new ratio.
STEPS = {
    "latency +0.5 sd": ("latency", 0.5),
    "latency +1 sd": ("latency", 1.0),
    "latency +2 sd": ("latency", 2.0),
    "latency +4 sd": ("latency", 4.0),
    "error ratio 2% -> 4%": ("error_ratio", 0.04),
    "error ratio 2% -> 10%": ("error_ratio", 0.10),
    "error ratio 2% -> 30%": ("error_ratio", 0.30),
}
#: Detector name -> its maker, given the signal it watches.
DETECTORS: dict[str, Callable[[str], object]] = {
    "ours adwin": lambda signal: calibrated_detector("adwin", 10_000, 1.0, 30, least_std(signal, BLOCK)),
    "ours page_hinkley": lambda signal: calibrated_detector("page_hinkley", 10_000, 1.0, 30, least_std(signal, BLOCK)),
    "ours cusum": lambda signal: calibrated_detector("cusum", 10_000, 1.0, 30, least_std(signal, BLOCK)),
    "river ADWIN": lambda signal: drift.ADWIN(),
    "river PageHinkley": lambda signal: drift.PageHinkley(),
}


def series(signal: str, size: float, before: int, after: int, rng: np.random.Generator) -> np.ndarray:
    """``before`` stationary block values of the signal, then ``after`` with the step."""
    if signal == "latency":
        values = rng.normal(LATENCY_MS, LATENCY_SD_MS, before + after)
        values[before:] += size * LATENCY_SD_MS
        return values
    ratio = np.where(np.arange(before + after) < before, 0.02, size)
    return stabilised(rng.binomial(BLOCK, ratio) / BLOCK, BLOCK)


def run(detector: object, values: np.ndarray, before: int) -> tuple[int, int | None]:
    """False changes before the step, and the delay of the first detection after it (None: not detected)."""
    false_changes = 0
    for index, value in enumerate(values.tolist()):
        detector.update(value)  # type: ignore[attr-defined]
        if detector.drift_detected:  # type: ignore[attr-defined]
            if index >= before:
                return false_changes, index - before + 1
            false_changes += 1
    return false_changes, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--before", type=int, default=300)
    parser.add_argument("--after", type=int, default=300)
    arguments = parser.parse_args()
    started = time.perf_counter()
    delays: dict[tuple[str, str], list[int | None]] = {(step, name): [] for step in STEPS for name in DETECTORS}
    false_changes = dict.fromkeys(DETECTORS, 0)
    for step, (signal, size) in STEPS.items():
        for seed in range(arguments.runs):
            values = series(signal, size, arguments.before, arguments.after, np.random.default_rng(seed))
            for name, make in DETECTORS.items():
                n_false, delay = run(make(signal), values, arguments.before)
                false_changes[name] += n_false
                delays[step, name].append(delay)
    stationary_blocks = len(STEPS) * arguments.runs * arguments.before
    print(f"| step ({BLOCK} events a block) | " + " | ".join(DETECTORS) + " |")
    print("| --- " * (len(DETECTORS) + 1) + "|")
    for step in STEPS:
        cells = []
        for name in DETECTORS:
            found = [delay for delay in delays[step, name] if delay is not None]
            share = len(found) / arguments.runs
            cell = f"{np.median(found):.0f}" if found else "-"
            cells.append(cell if share == 1 else f"{cell} ({share:.0%} found)")
        print(f"| {step}: median delay, blocks | " + " | ".join(cells) + " |")
    rates = [f"{1_000 * false_changes[name] / stationary_blocks:.2f}" for name in DETECTORS]
    print("| false changes per 1,000 stationary blocks | " + " | ".join(rates) + " |")
    elapsed = time.perf_counter() - started
    print(f"\n{arguments.runs} runs a step, {stationary_blocks} stationary blocks, {elapsed:.0f} s")


if __name__ == "__main__":
    main()

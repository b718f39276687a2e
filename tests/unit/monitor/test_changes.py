"""Change detection by blocks: the same detections as feeding each block's summaries to river-style detectors
by hand, whatever the batch boundaries, with or without missing latencies."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.adwin import ADWIN
from monitor.state.changes import ChangeWatch

BLOCK = 50


def _stream(seed: int, missing: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 200 * BLOCK
    latency_ms = np.concatenate([rng.gamma(4.0, 100.0, n // 2), rng.gamma(4.0, 160.0, n // 2)])
    failed = rng.random(n) < np.where(np.arange(n) < n * 3 // 5, 0.02, 0.6)
    if missing:
        latency_ms[rng.random(n) < 0.1] = np.nan
        latency_ms[7 * BLOCK : 8 * BLOCK] = np.nan  # a whole block without latencies
    return latency_ms, failed


def _by_hand(latency_ms: np.ndarray, failed: np.ndarray) -> dict[str, list[int]]:
    detectors = {"latency_p50": ADWIN(), "latency_p95": ADWIN(), "error_ratio": ADWIN()}
    detections = {signal: [] for signal in detectors}
    for block in range(len(latency_ms) // BLOCK):
        rows = slice(block * BLOCK, (block + 1) * BLOCK)
        present = latency_ms[rows][~np.isnan(latency_ms[rows])]
        values = {"error_ratio": failed[rows].mean()}
        if present.size:
            values["latency_p50"], values["latency_p95"] = np.quantile(present, (0.5, 0.95))
        for signal, value in values.items():
            detectors[signal].update(value)
            if detectors[signal].drift_detected:
                detections[signal].append(block)
    return detections


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing-latencies"])
@pytest.mark.parametrize("batch", [1, 37, BLOCK, 333])
def test_detections_equal_feeding_the_blocks_by_hand(missing, batch):
    latency_ms, failed = _stream(3, missing)
    expected = _by_hand(latency_ms, failed)
    watch = ChangeWatch("adwin", block_size=BLOCK)
    found = {signal: [] for signal in expected}

    for start in range(0, len(latency_ms), batch):
        before = dict(watch.n_changes)
        watch.observe(latency_ms[start : start + batch], failed[start : start + batch])
        for signal, count in watch.n_changes.items():
            found[signal] += [(start + batch) // BLOCK] * (count - before[signal])

    assert {signal: len(blocks) for signal, blocks in found.items()} == {
        signal: len(blocks) for signal, blocks in expected.items()
    }
    assert all(expected.values())  # the stream really changes in every signal
    if batch <= BLOCK:  # small batches complete at most one block: the detection is reported with it
        assert {s: [b - 1 for b in blocks] for s, blocks in found.items()} == expected


def test_without_a_detector_nothing_is_kept():
    watch = ChangeWatch(None, block_size=BLOCK)

    assert watch.observe(np.ones(10 * BLOCK), np.zeros(10 * BLOCK, dtype=bool)) == []
    assert watch.n_changes == {} and watch.snapshot()["pending"]["latency_ms"].size == 0

"""Drift scoring: one window of 25 features against its reference, against Evidently and a scipy loop.

The workload: a reference and a window of ``--rows`` rows each (50,000 by
default), 20 numeric and 5 categorical features (int32 codes, as the daemon
holds them), seeded, a few of them drifting. Timed in the same run on the
same data, interleaved and best of ``--repeat`` (the machines are shared and
noisy, so read the ratios):

- Evidently's ``DataDriftPreset`` (``Report.run`` on two ``Dataset`` s);
- a per-column scipy loop computing what Evidently computes with the methods
  it picks at this size: ``wasserstein_distance / max(std(reference), 0.001)``
  for numbers, ``jensenshannon`` of value proportions for categories;
- driftwarden's tests with the same methods, scoring only: ``fit`` happens once
  per reference and is reported apart, ``score`` runs on every tick. The fit
  is timed twice: the tests alone, with Evidently's fixed thresholds (whose
  verdicts are compared), and as the daemon fits them, each threshold
  calibrated on the reference (:class:`detectors.calibrated_distance.CalibratedDistance`) for the window's size.

Run: ``python bench/drift.py [--rows 50000] [--repeat 3]`` (``--rows`` above 1000,
where Evidently picks these methods).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
from scipy import stats
from scipy.spatial.distance import jensenshannon

from detectors.calibrated_distance import CalibratedDistance
from detectors.registry import make_test

N_NUMERIC, N_CATEGORICAL = 20, 5
THRESHOLD = 0.1  # Evidently's default for both distances
METHODS = {"numeric": "wasserstein", "categorical": "jensenshannon"}
EVIDENTLY_METHODS = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon"}
TARGETS = {"Evidently DataDriftPreset": 30.0, "scipy per-column loop": 2.0}


def make_data(rows: int, seed: int = 1) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
    """Reference and window columns, and each column's kind; every fourth feature drifts."""
    rng = np.random.default_rng(seed)
    reference, window, kinds = {}, {}, {}
    for i in range(N_NUMERIC):
        name, scale = f"num_{i:02d}", float(rng.uniform(0.5, 20.0))
        values = rng.lognormal(0.0, 0.6, size=2 * rows) * scale if i % 2 else rng.normal(10.0, scale, size=2 * rows)
        reference[name], window[name], kinds[name] = values[:rows], values[rows:], "numeric"
        if i % 4 == 0:
            window[name] = window[name] + 0.3 * np.std(values)
        if i % 5 == 3:
            reference[name], window[name] = np.round(reference[name]), np.round(window[name])  # ties
    for i in range(N_CATEGORICAL):
        name, n_categories = f"cat_{i}", 3 + 4 * i
        weights = rng.dirichlet(np.ones(n_categories))
        reference[name] = rng.choice(n_categories, size=rows, p=weights).astype(np.int32)
        if i % 4 == 0:  # drifts, and brings a category the reference never saw
            weights = np.append(weights[::-1], 0.1) / 1.1
        window[name] = rng.choice(weights.size, size=rows, p=weights).astype(np.int32)
        kinds[name] = "categorical"
    return reference, window, kinds


def run_evidently(reference: pd.DataFrame, window: pd.DataFrame, kinds: dict[str, str]) -> dict[str, bool]:
    definition = DataDefinition(
        numerical_columns=[name for name, kind in kinds.items() if kind == "numeric"],
        categorical_columns=[name for name, kind in kinds.items() if kind == "categorical"],
    )
    report = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(window, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    verdicts = {}
    for metric in report.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            assert EVIDENTLY_METHODS[config["method"]] == METHODS[kinds[config["column"]]], config
            verdicts[config["column"]] = metric["value"] >= config["threshold"]
    return verdicts


def run_scipy(reference: dict[str, np.ndarray], window: dict[str, np.ndarray], kinds: dict[str, str]) -> dict:
    verdicts = {}
    for name, kind in kinds.items():
        if kind == "numeric":
            distance = stats.wasserstein_distance(reference[name], window[name]) / max(np.std(reference[name]), 0.001)
        else:
            both = np.concatenate([reference[name], window[name]])
            categories, index = np.unique(both, return_inverse=True)
            n_reference = reference[name].size
            reference_counts = np.bincount(index[:n_reference], minlength=categories.size)
            window_counts = np.bincount(index[n_reference:], minlength=categories.size)
            distance = jensenshannon(reference_counts / n_reference, window_counts / window[name].size)
        verdicts[name] = bool(distance >= THRESHOLD)
    return verdicts


def fit_driftwarden(reference: dict[str, np.ndarray], kinds: dict[str, str]) -> dict:
    return {name: make_test(METHODS[kind], kind, reference[name]) for name, kind in kinds.items()}


def fit_calibrated(reference: dict[str, np.ndarray], kinds: dict[str, str], n_window: int) -> dict:
    """The daemon's fit and first tick: each distance's threshold calibrated on splits of the reference, the null
    of a window of ``n_window`` rows drawn (as the first tick of that size does)."""
    calibrated = {
        name: CalibratedDistance(make_test(METHODS[kind], kind, reference[name])).fit(reference[name])
        for name, kind in kinds.items()
    }
    return {name: test.threshold(0.01, n_window) for name, test in calibrated.items()}


def run_driftwarden(tests: dict, window: dict[str, np.ndarray]) -> dict[str, bool]:
    return {name: test.score(window[name]).drifted for name, test in tests.items()}


def timed(run, *arguments) -> tuple[float, dict[str, bool]]:
    start = time.perf_counter()
    verdicts = run(*arguments)
    return time.perf_counter() - start, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the reference and of the window")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    if arguments.rows <= 1000:
        parser.error("--rows must be above 1000, where Evidently picks wasserstein and jensenshannon")
    reference, window, kinds = make_data(arguments.rows)
    reference_frame, window_frame = pd.DataFrame(reference), pd.DataFrame(window)
    fit_seconds, tests = timed(fit_driftwarden, reference, kinds)
    paths = {
        "Evidently DataDriftPreset": (run_evidently, (reference_frame, window_frame, kinds)),
        "scipy per-column loop": (run_scipy, (reference, window, kinds)),
        "driftwarden score": (run_driftwarden, (tests, window)),
    }
    seconds, verdicts = dict.fromkeys(paths, float("inf")), {}
    for _ in range(arguments.repeat):  # interleave so that a noisy neighbour hurts all alike
        for path, (run, data) in paths.items():
            elapsed, verdicts[path] = timed(run, *data)
            seconds[path] = min(seconds[path], elapsed)
    ours_seconds = seconds["driftwarden score"]
    print(
        f"{arguments.rows:,} reference rows and {arguments.rows:,} window rows, {N_NUMERIC} numeric and "
        f"{N_CATEGORICAL} categorical features, best of {arguments.repeat}, one core\n"
    )
    print("| path | seconds | vs driftwarden score |")
    print("| --- | ---: | ---: |")
    for path, value in seconds.items():
        print(f"| {path} | {value:.4f} | {value / ours_seconds:.1f} |")
    print(f"\ndriftwarden fit (once per reference, not in the score): {fit_seconds:.4f} s")
    calibrated_seconds, _ = timed(fit_calibrated, reference, kinds, arguments.rows)
    print(
        f"driftwarden fit with thresholds calibrated on the reference, as the daemon fits: {calibrated_seconds:.3f}s "
        "(and draws the window size's null at its first tick)"
    )
    expected = verdicts["scipy per-column loop"]
    print(
        f"verdicts identical to the scipy loop's ({sum(expected.values())} of {len(expected)} features drifted): "
        f"driftwarden {verdicts['driftwarden score'] == expected}, Evidently {verdicts[next(iter(paths))] == expected}"
    )
    for path, target in TARGETS.items():
        verdict = "meets" if seconds[path] / ours_seconds >= target else "MISSES"
        print(f"target: driftwarden score >= {target:g}x faster than {path}: {verdict}")


if __name__ == "__main__":
    main()

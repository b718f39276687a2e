"""Events to a canary's verdict: the anytime-valid t-test read at every tick, against a fixed-horizon sample size.

Each run is one seeded stream of events, a tenth of them (at random) served by the candidate version, the rest by
the baseline; ``AnytimeTTest(alpha=0.05, min_samples=100)`` is fed both arms' cumulative :class:`Moments` every
``--tick`` events, as the daemon's evaluation ticks would, until its first significant verdict or ``--horizon``
events. The shifts, candidate against baseline:

- latency x1.3: lognormal latencies (log-mean 6, log-sd 0.5, in ms), the candidate's times 1.3; tested on the
  milliseconds themselves (a difference of means);
- error 2% -> 5%: 0/1 outcomes;
- judge score -0.3 sd: normal scores (mean 0.7, sd 0.1), the candidate's 0.03 lower.

Printed: a Markdown table with the median number of events (both arms) to the verdict and its 10th and 90th
percentiles over the runs, the share of runs with a verdict of the right sign within the horizon, and the sample
size of a fixed-horizon test of the same alpha and 80% power on the same 9:1 split (statsmodels' ``TTestIndPower``
on Cohen's d, ``NormalIndPower`` on Cohen's h for the error ratio), with the share of runs the anytime-valid test
had decided by then. Then the time :mod:`detectors.version_effects` takes for three candidates against one baseline
in a window of 100,000 events. With ``min_samples=100`` no
verdict comes before the candidate's 100th event, about the 1,000th of the stream. Run:
``python bench/sequential.py [--runs 200] [--tick 50] [--horizon 60000] [--min-samples 100]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from detectors.sequential import AnytimeTTest, Moments
from detectors.version_effects import quantile_difference, rank_effect

CANARY_SHARE = 0.1
LOG_MEAN, LOG_SD = 6.0, 0.5
#: Draws n values of the candidate (True) or the baseline (False).
Draw = Callable[[np.random.Generator, int, bool], np.ndarray]


def _latency(rng: np.random.Generator, n: int, candidate: bool) -> np.ndarray:
    return rng.lognormal(LOG_MEAN, LOG_SD, n) * (1.3 if candidate else 1.0)


def _errors(rng: np.random.Generator, n: int, candidate: bool) -> np.ndarray:
    return (rng.random(n) < (0.05 if candidate else 0.02)).astype(float)


def _judge(rng: np.random.Generator, n: int, candidate: bool) -> np.ndarray:
    return rng.normal(0.7 - (0.03 if candidate else 0.0), 0.1, n)


def _fixed_horizon_candidates() -> dict[str, float]:
    """Candidate events a fixed-horizon test needs for 80% power at alpha 0.05, 9 baseline events to 1."""
    latency_d = 0.3 / math.sqrt(math.expm1(LOG_SD**2))  # mean difference over the baseline's sd
    t_power, z_power = TTestIndPower(), NormalIndPower()
    settings = {"alpha": 0.05, "power": 0.8, "ratio": (1 - CANARY_SHARE) / CANARY_SHARE}
    return {
        "latency x1.3": t_power.solve_power(effect_size=latency_d, **settings),
        "error 2% -> 5%": z_power.solve_power(effect_size=proportion_effectsize(0.05, 0.02), **settings),
        "judge score -0.3 sd": t_power.solve_power(effect_size=0.3, **settings),
    }


#: Shift name -> (its draw, the sign of the candidate's difference).
SHIFTS: dict[str, tuple[Draw, int]] = {
    "latency x1.3": (_latency, 1),
    "error 2% -> 5%": (_errors, 1),
    "judge score -0.3 sd": (_judge, -1),
}


def events_to_verdict(draw: Draw, sign: int, seed: int, tick: int, horizon: int, min_samples: int) -> float:
    """Events (both arms) up to the first significant tick whose interval has the shift's sign; inf if none."""
    rng = np.random.default_rng(seed)
    is_candidate = rng.random(horizon) < CANARY_SHARE
    values = np.where(is_candidate, draw(rng, horizon, True), draw(rng, horizon, False))
    test, baseline, candidate = AnytimeTTest(min_samples=min_samples), Moments(), Moments()
    for end in range(tick, horizon + 1, tick):
        chunk, chosen = values[end - tick : end], is_candidate[end - tick : end]
        baseline = baseline.merge(Moments.of(chunk[~chosen]))
        candidate = candidate.merge(Moments.of(chunk[chosen]))
        result = test.update(baseline, candidate)
        if result.significant:
            return end if (result.lower > 0 if sign > 0 else result.upper < 0) else math.inf
    return math.inf


def _version_effects_ms(repeats: int = 20) -> float:
    """Milliseconds for both version effects of 3 candidates (10,000 events each) against a 70,000-event baseline."""
    rng = np.random.default_rng(0)
    baseline = rng.lognormal(LOG_MEAN, LOG_SD, 70_000)
    candidates = [rng.lognormal(LOG_MEAN, LOG_SD, 10_000) for _ in range(3)]
    started = time.perf_counter()
    for _ in range(repeats):
        for candidate in candidates:
            quantile_difference(baseline, candidate)
            rank_effect(baseline, candidate)
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tick", type=int, default=50, help="events between two ticks")
    parser.add_argument("--horizon", type=int, default=60_000, help="events after which a run ends undecided")
    parser.add_argument("--min-samples", type=int, default=100, help="values of each arm before the first test")
    args = parser.parse_args()
    fixed = _fixed_horizon_candidates()
    print("| shift | events to verdict: median (p10-p90) | decided | fixed horizon: events | decided by then |")
    print("| --- | --- | --- | --- | --- |")
    for name, (draw, sign) in SHIFTS.items():
        events = np.array(
            [
                events_to_verdict(draw, sign, seed, args.tick, args.horizon, args.min_samples)
                for seed in range(args.runs)
            ]
        )
        p10, median, p90 = np.quantile(events, [0.1, 0.5, 0.9], method="inverted_cdf")
        fixed_events = math.ceil(fixed[name]) * round(1 / CANARY_SHARE)
        print(
            f"| {name} | {median:,.0f} ({p10:,.0f}-{p90:,.0f}) | {np.isfinite(events).mean():.0%} "
            f"| {fixed_events:,} | {(events <= fixed_events).mean():.0%} |"
        )
    print(f"\nversion effects, 3 candidates vs a baseline in 100,000 events: {_version_effects_ms():.1f} ms")


if __name__ == "__main__":
    main()

"""The tail index estimate (detectors/tails.py) against Hill's estimator written out from its textbook definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors.tails import HEAVY_TAIL_INDEX, TAIL_SHARE, heavy_tailed, tail_index


def _hill(excesses: np.ndarray, k: int) -> float:
    """Hill (1975): with the excesses sorted from the largest, ``1 / mean_{i<=k} log(x_(i) / x_(k+1))``."""
    ordered = sorted(excesses.tolist(), reverse=True)
    return k / sum(math.log(ordered[i] / ordered[k]) for i in range(k))


def _oracle(values: np.ndarray) -> float:
    """The smaller of Hill's estimates over each side's distances from the median."""
    median = float(np.median(values))
    k = max(10, int(TAIL_SHARE * len(values)))
    return min(_hill(side[side > 0], k) for side in (values - median, median - values))


SAMPLES = {
    "pareto-1.5": lambda rng: stats.pareto(1.5).rvs(size=3_000, random_state=rng),
    "lognormal-2": lambda rng: rng.lognormal(0.0, 2.0, 2_000),
    "student-t-3": lambda rng: rng.standard_t(3, 5_000),
    "normal": lambda rng: rng.normal(10.0, 2.0, 1_000),
    "left-skewed": lambda rng: -rng.lognormal(0.0, 1.0, 4_000),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_estimate_is_hills_over_distances_from_the_median(name):
    values = SAMPLES[name](np.random.default_rng(4))

    assert tail_index(values) == pytest.approx(_oracle(values), rel=1e-12)


def test_the_estimate_does_not_change_when_values_are_shifted_or_scaled():
    values = np.random.default_rng(5).lognormal(0.0, 1.5, 2_000)

    assert tail_index(1e6 + 3.0 * values) == pytest.approx(tail_index(values), rel=1e-9)
    assert tail_index(-values) == pytest.approx(tail_index(values), rel=1e-12)  # either end


def test_a_heavier_power_tail_reads_a_smaller_index():
    rng = np.random.default_rng(6)
    estimates = [tail_index(stats.pareto(index).rvs(size=100_000, random_state=rng)) for index in (1.0, 1.5, 3.0)]

    assert estimates == sorted(estimates)
    assert estimates[0] < HEAVY_TAIL_INDEX < estimates[2] + 0.2


@pytest.mark.parametrize(
    "values",
    [np.full(500, 3.0), np.repeat([1.0, 2.0, 3.0], 400), np.array([]), np.array([np.nan, np.inf, 1.0])],
    ids=["constant", "three-values", "empty", "not-finite"],
)
def test_a_sample_without_a_tail_to_speak_of_is_not_heavy(values):
    assert tail_index(values) == math.inf
    assert not heavy_tailed(values)


@pytest.mark.parametrize(
    ("draw", "heavy"),
    [
        (lambda rng: rng.lognormal(0.0, 2.0, 2_000), True),
        (lambda rng: rng.pareto(1.5, 2_000), True),
        (lambda rng: rng.lognormal(6.5, 0.5, 2_000), False),  # a latency's spread
        (lambda rng: rng.poisson(400, 2_000).astype(float), False),  # token counts
        (lambda rng: rng.exponential(size=2_000), False),
        (lambda rng: rng.normal(size=2_000), False),
    ],
    ids=["lognormal-2", "pareto-1.5", "latency", "tokens", "exponential", "normal"],
)
def test_heavy_tails_are_told_from_the_tails_of_everyday_features(draw, heavy):
    verdicts = [heavy_tailed(draw(np.random.default_rng(seed))) for seed in range(40)]

    assert np.mean(verdicts) == (1.0 if heavy else 0.0)

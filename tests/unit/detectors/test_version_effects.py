"""Version effects against oracles: numpy's quantiles, scipy's bootstrap interval for a difference of quantiles, the
closed-form quantiles of lognormal latencies, and scipy's Mann-Whitney U."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import ndtri

from detectors.version_effects import distribution_distance, quantile_difference, rank_effect

LOG_SD = 0.5


def _latencies(seed: int, n_baseline: int, n_candidate: int, log_shift: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(6.0, LOG_SD, n_baseline), rng.lognormal(6.0 + log_shift, LOG_SD, n_candidate)


@pytest.mark.parametrize("q", [0.05, 0.5, 0.95, 0.99])
@pytest.mark.parametrize(("n_baseline", "n_candidate"), [(9_000, 1_000), (400, 3_001)])
def test_quantile_effect_equals_numpy(q, n_baseline, n_candidate):
    baseline, candidate = _latencies(1, n_baseline, n_candidate)

    effect, lower, upper = quantile_difference(baseline, candidate, q=q)

    assert effect == pytest.approx(np.quantile(candidate, q) - np.quantile(baseline, q), rel=1e-12)
    assert lower < effect < upper


@pytest.mark.parametrize("seed", range(5))
def test_quantile_interval_is_near_scipy_bootstrap(seed):
    """The bounds are within 20% of the interval's width of the percentile bootstrap's (1,000 resamples of each
    arm on its own); the symmetric interval here is within 15% on these seeds."""
    baseline, candidate = _latencies(seed, 5_000, 1_000)

    def difference(baseline, candidate, axis):
        return np.quantile(candidate, 0.95, axis=axis) - np.quantile(baseline, 0.95, axis=axis)

    oracle = stats.bootstrap(
        (baseline, candidate), difference, method="percentile", n_resamples=1_000, batch=100,
        rng=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    _, lower, upper = quantile_difference(baseline, candidate)

    width = oracle.high - oracle.low
    assert lower == pytest.approx(oracle.low, abs=0.2 * width)
    assert upper == pytest.approx(oracle.high, abs=0.2 * width)


@pytest.mark.parametrize("q", [0.5, 0.95])
def test_quantile_interval_covers_the_true_difference(q):
    """On 400 seeded pairs of lognormal arms, the interval holds the true difference of quantiles (closed form)
    at least as often as 95% allows, up to a binomial tolerance at an error probability of 1e-4, and is not so
    wide as to hold it almost always."""
    true = math.exp(6.2 + LOG_SD * ndtri(q)) - math.exp(6.0 + LOG_SD * ndtri(q))
    covered = [lower <= true <= upper for _, lower, upper in
               (quantile_difference(*_latencies(100 + seed, 4_500, 500), q=q) for seed in range(400))]  # fmt: skip

    assert stats.binom.ppf(1e-4, 400, 0.95) / 400 <= np.mean(covered) <= 0.99


@pytest.mark.parametrize("q", [0.05, 0.95, 0.99])
def test_quantile_difference_is_nan_for_an_arm_too_small_for_its_interval(q):
    """An order-statistic interval at 95% needs ``max(q, 1 - q) ** n <= 0.025``: 72 values for q = 0.95."""
    least = math.ceil(math.log(0.025) / math.log(max(q, 1 - q)))
    rng = np.random.default_rng(2)
    large = rng.normal(size=5_000)

    assert np.isnan(quantile_difference(large, rng.normal(size=least - 1), q=q)).all()
    assert np.isnan(quantile_difference(rng.normal(size=least - 1), large, q=q)).all()
    assert np.isfinite(quantile_difference(large, rng.normal(size=least), q=q)).all()
    assert np.isnan(quantile_difference(large, np.array([]), q=q)).all()


def test_values_that_are_not_finite_are_left_out():
    baseline, candidate = _latencies(3, 2_000, 300)
    dirty_baseline, dirty_candidate = baseline.copy(), candidate.copy()
    dirty_baseline[::50] = np.nan
    dirty_candidate[::30] = np.nan
    dirty_candidate[7] = np.inf
    clean_baseline, clean_candidate = (values[np.isfinite(values)] for values in (dirty_baseline, dirty_candidate))

    assert quantile_difference(dirty_baseline, dirty_candidate) == quantile_difference(clean_baseline, clean_candidate)
    assert rank_effect(dirty_baseline, dirty_candidate) == rank_effect(clean_baseline, clean_candidate)


@pytest.mark.parametrize(
    ("draw", "n_baseline", "n_candidate"),
    [
        (lambda rng, n, shift: rng.lognormal(6.0 + shift, LOG_SD, n), 9_000, 1_000),
        (lambda rng, n, shift: rng.integers(0, 5 + round(10 * shift), n).astype(float), 700, 300),  # many ties
        (lambda rng, n, shift: (rng.random(n) < 0.02 + shift / 4).astype(float), 5_000, 600),  # 0/1 outcomes
        (lambda rng, n, shift: rng.normal(shift, 1.0, n), 200, 2_000),  # the candidate the larger arm
    ],
)
def test_rank_effect_equals_scipy_mann_whitney(draw, n_baseline, n_candidate):
    rng = np.random.default_rng(4)
    baseline, candidate = draw(rng, n_baseline, 0.0), draw(rng, n_candidate, 0.2)

    oracle = stats.mannwhitneyu(candidate, baseline).statistic / (n_baseline * n_candidate)

    assert rank_effect(baseline, candidate) == pytest.approx(oracle, rel=1e-12)
    assert rank_effect(np.sort(baseline), candidate, presorted=True) == pytest.approx(oracle, rel=1e-12)
    assert rank_effect(candidate, baseline) == pytest.approx(1 - oracle, rel=1e-12)


def test_rank_effect_edges():
    assert rank_effect(np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])) == 1.0
    assert rank_effect(np.array([2.0, 2.0]), np.array([2.0])) == 0.5
    assert math.isnan(rank_effect(np.array([1.0]), np.array([np.nan])))


def test_distribution_distance_is_the_jensen_shannon_distance_of_the_shares_whatever_the_counts():
    rng = np.random.default_rng(6)
    baseline, candidate = rng.integers(0, 50, 6), rng.integers(0, 9, 6)
    shares = [counts / counts.sum() for counts in (baseline, candidate)]

    assert distribution_distance(baseline, candidate) == pytest.approx(jensenshannon(*shares, base=2), rel=1e-12)
    assert distribution_distance(baseline, 7 * baseline) == 0.0  # the same shares
    assert distribution_distance(np.array([2, 0]), np.array([0, 1])) == 1.0  # disjoint
    assert math.isnan(distribution_distance(np.array([0, 0]), candidate))  # no category on one side


@pytest.mark.parametrize("seed", range(5))
def test_arms_given_sorted_and_finite_give_the_figures_of_the_arms_as_they_came(seed):
    # The daemon sorts each version's latencies once and hands them over presorted: no partition, no second sort.
    rng = np.random.default_rng(seed)
    baseline, candidate = rng.lognormal(6.0, 0.5, 3_000), rng.lognormal(6.1, 0.5, 400)
    candidate[::7] = np.nan  # not reported: left out either way
    ordered = np.sort(baseline), np.sort(candidate[np.isfinite(candidate)])
    assert quantile_difference(*ordered, q=0.95, presorted=True) == quantile_difference(baseline, candidate, q=0.95)
    assert rank_effect(*ordered, presorted=True) == rank_effect(baseline, candidate)

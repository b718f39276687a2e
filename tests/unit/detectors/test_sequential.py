"""The anytime-valid t-test against savvi's ``LinearRegression`` fed the same stream, the arms' moments against numpy,
the 0/1 case against statsmodels' difference of proportions, and the error rate under continuous monitoring."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from savvi.linear_regression import LinearRegression, log_bf
from scipy import stats
from statsmodels.stats import proportion

from detectors.sequential import AnytimeTTest, Moments, evidence_at_tick

CANARY_SHARE = 0.1
ALPHA = 0.05


def _stream(kind: str, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and whether each went to the candidate (a tenth, at random)."""
    rng = np.random.default_rng(seed)
    is_candidate = rng.random(n) < CANARY_SHARE
    if kind == "gaussian":
        values = rng.normal(0.0, 1.0, n)
    elif kind == "gaussian shifted":
        values = rng.normal(0.0, 1.0, n) + 0.25 * is_candidate
    else:  # "bernoulli": errors 2% -> 5%
        values = (rng.random(n) < np.where(is_candidate, 0.05, 0.02)).astype(float)
    return values, is_candidate


def _arms(values: np.ndarray, is_candidate: np.ndarray) -> tuple[Moments, Moments]:
    return Moments.of(values[~is_candidate]), Moments.of(values[is_candidate])


def _savvi(values: np.ndarray, is_candidate: np.ndarray, ticks: list[int], phi: float) -> np.ndarray:
    """savvi fed ``[y, 1, is_candidate]`` one observation at a time, inferring after each; at every tick, for the
    candidate's coefficient: its p-value and interval there, then its running ones (over every observation)."""
    model = LinearRegression(ALPHA, p=2, phi=phi)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):  # savvi's own early observations
        for count, row in enumerate(np.column_stack([values, np.ones_like(values), is_candidate]), start=1):
            model.update(row)
            model.infer()
            if count in ticks:
                now = [min(1.0, model.calculate_p_value()[1]), *model.calculate_conf_int()[1]]
                rows.append(now + [model.p_value[1], *model.conf_int[1]])
    return np.array(rows)


STREAMS = [("gaussian", 1, 1.0), ("gaussian shifted", 2, 1.0), ("bernoulli", 3, 1.0), ("gaussian shifted", 4, 0.3)]


@pytest.mark.parametrize(("kind", "seed", "phi"), STREAMS)
def test_ticks_equal_savvi_observation_by_observation(kind, seed, phi):
    """At each tick, the p-value and interval equal savvi's there (up to its recursive least squares' 1e6 prior,
    a relative 1e-6), from the first ticks of a handful of candidate values on."""
    values, is_candidate = _stream(kind, seed, 3_000)
    ticks = [20, 40, 80, 160, *range(250, 3_001, 250)]
    oracle = _savvi(values, is_candidate, ticks, phi)
    test = AnytimeTTest(alpha=ALPHA, phi=phi, min_samples=50)
    ours, tested = [], []
    for end in ticks:
        baseline, candidate = _arms(values[:end], is_candidate[:end])
        ours.append(evidence_at_tick(baseline, candidate, ALPHA, phi) or (math.nan,) * 3)  # None: equal constants
        tested.append(test.update(baseline, candidate).tested)
    result = test.update(baseline, candidate)

    p_values, lowers, uppers = np.array(ours).T
    compared = np.isfinite(p_values)
    assert compared[ticks.index(250) :].all()
    assert p_values[compared] == pytest.approx(oracle[compared, 0], rel=1e-5)
    assert lowers[compared] == pytest.approx(oracle[compared, 1], rel=1e-5)
    assert uppers[compared] == pytest.approx(oracle[compared, 2], rel=1e-5)
    # p <= alpha exactly when the interval leaves 0 out (the two are dual)
    assert ((p_values <= ALPHA) == ((lowers > 0) | (uppers < 0)))[compared].all()
    # the running state is the least p-value and the intersection of the intervals of the ticks tested ...
    tested = np.array(tested)
    assert tested[-1] and not tested[0]
    assert result.p_value == pytest.approx(p_values[tested].min(), rel=1e-12)
    assert (result.lower, result.upper) == pytest.approx((lowers[tested].max(), uppers[tested].min()), rel=1e-12)
    # ... so never below savvi's running ones, which take every observation
    assert result.p_value >= oracle[-1, 3] * (1 - 1e-5)
    assert result.lower <= oracle[-1, 4] + 1e-5 * abs(oracle[-1, 4])
    assert result.upper >= oracle[-1, 5] - 1e-5 * abs(oracle[-1, 5])
    if kind == "gaussian shifted" and phi == 1.0:  # the shift was seen, in the right direction
        assert result.significant and result.lower > 0


def test_zero_spread_in_both_arms():
    same = Moments.of(np.zeros(200)), Moments.of(np.zeros(150))
    constant_failures = Moments.of(np.zeros(200)), Moments.of(np.ones(150))

    assert evidence_at_tick(*same) is None
    p_value, lower, upper = evidence_at_tick(*constant_failures)
    # the limit of savvi's Bayes factor as t^2 grows without bound, with n - 3 degrees of freedom and z2 = n_b n_c / n
    assert p_value == pytest.approx(math.exp(-log_bf(np.float64(1e300), 347, 1.0, 200 * 150 / 350)), rel=1e-9)
    assert lower == upper == 1.0
    result = AnytimeTTest().update(*same)
    assert (result.tested, result.significant, result.p_value, result.effect) == (False, False, 1.0, 0.0)
    assert (result.lower, result.upper) == (-math.inf, math.inf)


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [
        (Moments(), Moments()),
        (Moments(1, 0.0, 0.0), Moments(1, 1.0, 0.0)),  # 2 values in all: no degree of freedom
        (Moments(500, math.inf, math.nan), Moments(100, 1.0, 2.0)),
        (Moments(500, 0.0, math.inf), Moments(100, 1.0, 2.0)),
        (Moments(500, math.nan, 1.0), Moments(100, 1.0, 2.0)),
        (Moments(500, 0.0, -400.0), Moments(100, 1.0, 2.0)),  # not from values: a damaged checkpoint
        (Moments(500, 0.0, 400.0), Moments()),
    ],
)
def test_degenerate_moments_are_not_tested(baseline, candidate):
    assert evidence_at_tick(baseline, candidate) is None
    result = AnytimeTTest(min_samples=2).update(baseline, candidate)
    assert not result.tested and result.p_value == 1.0 and not result.significant


def test_identical_arms_are_not_significant():
    values = np.random.default_rng(6).normal(size=400)
    result = AnytimeTTest().update(Moments.of(values), Moments.of(values))
    assert result.tested and result.effect == 0.0 and result.p_value == 1.0
    assert result.lower < 0 < result.upper


def test_nothing_is_tested_before_min_samples_in_each_arm():
    rng = np.random.default_rng(9)
    test = AnytimeTTest(min_samples=100)
    baseline = Moments.of(rng.normal(0.0, 1.0, 5_000))
    few = Moments.of(rng.normal(5.0, 1.0, 99))  # a huge shift, on too few values

    result = test.update(baseline, few)

    assert evidence_at_tick(baseline, few)[0] < 1e-10  # the data would say so
    assert (result.tested, result.p_value, result.lower, result.upper) == (False, 1.0, -math.inf, math.inf)
    assert result.effect == pytest.approx(few.mean - baseline.mean)
    assert test.update(baseline, few.merge(Moments.of(rng.normal(5.0, 1.0, 1)))).significant


def test_fewer_values_than_the_last_tick_start_afresh():
    rng = np.random.default_rng(10)
    test = AnytimeTTest()
    shifted = Moments.of(rng.normal(0.0, 1.0, 2_000)), Moments.of(rng.normal(1.0, 1.0, 300))
    assert test.update(*shifted).significant
    null = Moments.of(rng.normal(0.0, 1.0, 1_000)), Moments.of(rng.normal(0.0, 1.0, 200))

    result = test.update(*null)

    assert result.p_value == pytest.approx(evidence_at_tick(*null)[0]) and not result.significant


def test_snapshot_round_trips_through_json_and_continues_alike():
    values, is_candidate = _stream("gaussian shifted", 11, 2_000)
    ticks = [_arms(values[:end], is_candidate[:end]) for end in range(1_000, 2_001, 100)]
    straight, stopped = AnytimeTTest(), AnytimeTTest()
    for arms in ticks[:5]:
        straight.update(*arms)
        stopped.update(*arms)
    resumed = AnytimeTTest()
    resumed.restore(json.loads(json.dumps(stopped.snapshot())))

    assert [resumed.update(*arms) for arms in ticks[5:]] == [straight.update(*arms) for arms in ticks[5:]]
    fresh = AnytimeTTest()
    fresh.restore(json.loads(json.dumps(AnytimeTTest().snapshot())))  # infinite ends included
    assert fresh.snapshot() == AnytimeTTest().snapshot()


@pytest.mark.parametrize(("settings", "message"), [({"alpha": 1.0}, "alpha"), ({"phi": 0.0}, "phi"),
                                                   ({"min_samples": 1}, "min_samples")])  # fmt: skip
def test_invalid_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        AnytimeTTest(**settings)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.lists(st.integers(0, 60), max_size=4),
)
def test_merged_moments_equal_numpy_on_the_concatenation(values, cuts):
    parts = np.split(np.array(values), sorted(cuts))
    merged = Moments()
    for part in parts:
        merged = merged.merge(Moments.of(part))

    scale = max(1.0, float(np.abs(values).max()))
    assert merged.n == len(values)
    assert merged.mean == pytest.approx(np.mean(values), rel=1e-9, abs=1e-12 * scale)
    assert merged.m2 == pytest.approx(np.var(values) * len(values), rel=1e-7, abs=1e-9 * scale**2 * len(values))


def test_moments_of_millions_are_stable_far_from_zero():
    rng = np.random.default_rng(12)
    values = 1e9 + rng.normal(0.0, 1.0, 2_000_000)  # a mean nine orders above the spread
    merged = Moments()
    for chunk in np.split(values, 400):
        merged = merged.merge(Moments.of(chunk))

    assert merged.m2 / merged.n == pytest.approx(np.var(values), rel=1e-6)
    assert merged.mean == pytest.approx(np.mean(values), rel=1e-15)
    naive = np.square(values).mean() - np.mean(values) ** 2  # the sums of squares these data defeat
    assert naive != pytest.approx(np.var(values), rel=1e-2)


def test_moments_leave_out_values_that_are_not_finite():
    values = np.random.default_rng(13).normal(size=100)
    values[::7] = np.nan
    values[3] = np.inf
    finite = values[np.isfinite(values)]

    moments = Moments.of(values)

    assert (moments.n, moments.mean) == (finite.size, pytest.approx(finite.mean()))
    assert moments.m2 == pytest.approx(np.var(finite) * finite.size)
    assert Moments.of(np.array([np.nan, -np.inf])) == Moments() == Moments().merge(Moments())
    assert Moments.from_list(json.loads(json.dumps(moments.to_list()))) == moments


@pytest.mark.parametrize(
    ("seed", "n_baseline", "n_candidate", "rate_b", "rate_c"),
    [(14, 2_000, 250, 0.02, 0.05), (15, 9_000, 1_000, 0.10, 0.10), (16, 500, 500, 0.30, 0.25)],
)
def test_01_outcomes_equal_statsmodels_difference_of_proportions(seed, n_baseline, n_candidate, rate_b, rate_c):
    rng = np.random.default_rng(seed)
    baseline = (rng.random(n_baseline) < rate_b).astype(float)
    candidate = (rng.random(n_candidate) < rate_c).astype(float)
    counts = (int(candidate.sum()), n_candidate, int(baseline.sum()), n_baseline)

    result = AnytimeTTest(alpha=ALPHA).update(Moments.of(baseline), Moments.of(candidate))

    assert result.effect == pytest.approx(
        proportion.test_proportions_2indep(*counts, compare="diff", method="wald").diff
    )
    wald_lower, wald_upper = proportion.confint_proportions_2indep(*counts, compare="diff", method="wald", alpha=ALPHA)
    # valid at every tick, the interval is wider than the fixed-horizon one around the same difference
    assert result.lower < wald_lower and result.upper > wald_upper


def _first_verdicts(values: np.ndarray, is_candidate: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
    """For each stream (row), tested every ``tick`` events by a fresh test: the events up to its first significant
    tick (inf if none) and the side of 0 its interval is on then (1 above, -1 below, 0 if none)."""
    events, sides = np.full(len(values), math.inf), np.zeros(len(values))
    for row, stream in enumerate(values):
        test, baseline, candidate = AnytimeTTest(alpha=ALPHA), Moments(), Moments()
        for end in range(tick, stream.size + 1, tick):
            chunk, chosen = stream[end - tick : end], is_candidate[end - tick : end]
            baseline = baseline.merge(Moments.of(chunk[~chosen]))
            candidate = candidate.merge(Moments.of(chunk[chosen]))
            result = test.update(baseline, candidate)
            if result.significant:
                events[row], sides[row] = end, (result.lower > 0) - (result.upper < 0)
                break
    return events, sides


AA_DRAWS = {
    "gaussian": lambda rng, size: rng.normal(0.0, 1.0, size),
    "bernoulli 2%": lambda rng, size: (rng.random(size) < 0.02).astype(float),
    "log of lognormal latencies": lambda rng, size: np.log(rng.lognormal(6.0, 0.5, size)),
    "lognormal latencies": lambda rng, size: rng.lognormal(6.0, 0.5, size),
}


@pytest.mark.statistical
@pytest.mark.parametrize("kind", AA_DRAWS)
def test_aa_streams_peeked_at_every_tick_rarely_become_significant(kind):
    """500 A/A streams of 4,000 events, every tenth to the candidate, tested every 50 events: the share ever
    significant is at most alpha (its Clopper-Pearson interval reaches below it), while scipy's Welch test read at
    the same ticks (from the first with 100 candidate values) is significant in far more streams."""
    rng = np.random.default_rng(sorted(AA_DRAWS).index(kind))
    n_streams, n_events, tick = 500, 4_000, 50
    values = AA_DRAWS[kind](rng, (n_streams, n_events))
    is_candidate = np.arange(n_events) % 10 == 0

    ever = np.isfinite(_first_verdicts(values, is_candidate, tick)[0])
    peeked = np.zeros(n_streams, dtype=bool)
    for end in range(1_000, n_events + 1, tick):
        with warnings.catch_warnings():  # Welch on two constant arms (0/1 values): NaN, not significant
            warnings.simplefilter("ignore", RuntimeWarning)
            p_values = stats.ttest_ind(values[:, :end][:, is_candidate[:end]], values[:, :end][:, ~is_candidate[:end]],
                                       axis=1, equal_var=False).pvalue  # fmt: skip
        peeked |= p_values <= ALPHA

    ours = stats.binomtest(int(ever.sum()), n_streams).proportion_ci(method="exact")
    welch = stats.binomtest(int(peeked.sum()), n_streams).proportion_ci(method="exact")
    assert ours.low <= ALPHA, ever.mean()
    assert welch.low > 2 * ALPHA, peeked.mean()


@pytest.mark.statistical
def test_a_wider_spread_with_the_same_mean_is_outside_the_guarantee():
    """The caveat of ``AnytimeTTest``'s docstring: the variance is pooled, so a 10% candidate with the baseline's
    mean but twice its standard deviation is declared different in more than alpha of 500 streams."""
    rng = np.random.default_rng(17)
    is_candidate = np.arange(4_000) % 10 == 0
    values = rng.normal(0.0, 1.0, (500, 4_000)) * np.where(is_candidate, 2.0, 1.0)

    ever = np.isfinite(_first_verdicts(values, is_candidate, tick=50)[0])

    assert stats.binomtest(int(ever.sum()), len(ever)).proportion_ci(method="exact").low > ALPHA, ever.mean()


AB_DRAWS = {  # candidate (True) or baseline: a shift and its sign
    "latency x1.3": (lambda rng, size, candidate: rng.lognormal(6.0, 0.5, size) * (1.3 if candidate else 1.0), 1),
    "errors 2% -> 5%": (lambda rng, size, candidate: (rng.random(size) < (0.05 if candidate else 0.02)) * 1.0, 1),
    "judge score -0.3 sd": (lambda rng, size, candidate: rng.normal(0.7 - 0.03 * candidate, 0.1, size), -1),
}


@pytest.mark.statistical
@pytest.mark.parametrize("kind", AB_DRAWS)
def test_ab_shifts_are_found_with_their_sign(kind):
    """20 seeded streams of a 10% canary with a known shift are each judged significant, with an interval on the
    shift's side of 0, within 20,000 events (bench/sequential.py prints how soon)."""
    draw, sign = AB_DRAWS[kind]
    rng = np.random.default_rng(len(kind))
    n_streams, n_events = 20, 20_000
    is_candidate = rng.random(n_events) < CANARY_SHARE
    values = np.where(is_candidate, draw(rng, (n_streams, n_events), True), draw(rng, (n_streams, n_events), False))

    events, sides = _first_verdicts(values, is_candidate, tick=50)

    assert np.isfinite(events).all() and (sides == sign).all()

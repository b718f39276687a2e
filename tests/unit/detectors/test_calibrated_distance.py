"""Distance thresholds calibrated on the reference: deterministic, sized to the window, and held on null streams.

A null stream here is what the promise is about: a reference and a window drawn independently from one
distribution, a new reference each time (a false alarm is a property of the pair, as for a p-value test). The
measured false-alarm rate comes with its Clopper-Pearson interval (``scipy.stats.binomtest``); the check is that the
interval's lower end is at most the configured alpha, i.e. the data do not show the rate above it. The default run
measures 120 pairs per method at alpha 0.1 (a few seconds); the soak run (``-m soak``) 1,500 pairs at 0.05 and 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors.calibrated_distance import CalibratedDistance
from detectors.ks import KSTest
from detectors.registry import TWO_SAMPLE_TESTS, make_test

WEIGHTS = np.array([0.4, 0.3, 0.15, 0.1, 0.04, 0.01])
#: One distribution per calibrated method and kind: (method, kind, draw(rng, n)).
NULLS = {
    "wasserstein-normal": ("wasserstein", "numeric", lambda rng, n: rng.normal(10.0, 2.0, n)),
    "wasserstein-integers": ("wasserstein", "numeric", lambda rng, n: rng.poisson(3.0, n).astype(float)),
    "jensenshannon-numeric": ("jensenshannon", "numeric", lambda rng, n: rng.exponential(size=n)),
    "jensenshannon-categorical": (
        "jensenshannon",
        "categorical",
        lambda rng, n: rng.choice(WEIGHTS.size, n, p=WEIGHTS).astype(np.int32),
    ),
    "psi-numeric": ("psi", "numeric", lambda rng, n: rng.normal(size=n)),
}
#: Tails a bootstrap of the reference against itself cannot reproduce, which the split-sample null does: categories
#: the reference never drew (Zipf's law, as user agents or product ids follow), values beyond its largest (a lognormal
#: of spread 2, as token counts or amounts). Bootstrapped, they measured 0.92 and 0.175 false alarms at alpha 0.1.
LONG_TAILS = {
    "jensenshannon-long-tail": (
        "jensenshannon",
        "categorical",
        lambda rng, n: np.minimum(rng.zipf(1.6, n), 500).astype(np.int32),
    ),
    "wasserstein-heavy-tail": ("wasserstein", "numeric", lambda rng, n: rng.lognormal(0.0, 2.0, n)),
}
NULLS.update(LONG_TAILS)


def _calibrated(method: str, kind: str, reference: np.ndarray, seed: int = 0) -> CalibratedDistance:
    test = TWO_SAMPLE_TESTS[method](kind=kind) if method != "wasserstein" else TWO_SAMPLE_TESTS[method]()
    return CalibratedDistance(test, random_state=seed).fit(reference)


def _false_alarms(name: str, alpha: float, n_pairs: int, seed: int) -> stats._result_classes.BinomTestResult:
    """Fit on a fresh reference of 1,000 values, score one window of 200 to 2,000: false alarms out of n_pairs."""
    method, kind, draw = NULLS[name]
    rng = np.random.default_rng(seed)
    alarms = 0
    for pair in range(n_pairs):
        calibrated = _calibrated(method, kind, draw(rng, 1_000), seed=pair)
        alarms += calibrated.score(draw(rng, int(rng.integers(200, 2_001))), alpha).drifted
    return stats.binomtest(alarms, n_pairs, alpha)


def test_every_distance_without_a_p_value_is_calibrated_but_the_classifier():
    uncalibrated = {name for name, test in TWO_SAMPLE_TESTS.items() if not test.has_p_value and not test.null_exponent}
    assert uncalibrated == {"classifier"}  # its cross-validated AUC is too costly to resample
    with pytest.raises(ValueError, match="null_exponent"):
        CalibratedDistance(KSTest())


def test_refitting_on_the_same_reference_gives_the_same_thresholds():
    reference = np.random.default_rng(1).normal(size=3_000)
    first, again = _calibrated("wasserstein", "numeric", reference), _calibrated("wasserstein", "numeric", reference)
    other_seed = _calibrated("wasserstein", "numeric", reference, seed=1)

    assert [first.threshold(alpha, 500) for alpha in (0.3, 0.05, 1e-5)] == [
        again.threshold(alpha, 500) for alpha in (0.3, 0.05, 1e-5)
    ]
    assert first.threshold(0.05, 500) != other_seed.threshold(0.05, 500)


def test_the_threshold_falls_with_alpha_and_with_the_windows_size():
    calibrated = _calibrated("psi", "numeric", np.random.default_rng(2).normal(size=3_000))
    by_alpha = [calibrated.threshold(alpha, 1_000) for alpha in (0.5, 0.25, 0.05, 1e-3, 1e-6)]
    by_size = [calibrated.threshold(0.01, n) for n in (200, 1_000, 10_000, 20_000)]

    assert by_alpha == sorted(by_alpha) and len(set(by_alpha)) == len(by_alpha)
    assert by_size == sorted(by_size, reverse=True)
    # Windows beyond half the 2,000-value sample share its split into 1,000 and 1,000 values, and PSI shrinks as
    # 1/a + 1/n for a window of n values: the reference counts as its pseudo-reference's a, never more.
    assert by_size[2] / by_size[3] == pytest.approx((1 / 1_000 + 1 / 10_000) / (1 / 1_000 + 1 / 20_000))


def test_a_constant_reference_flags_any_other_value_and_not_itself():
    calibrated = _calibrated("wasserstein", "numeric", np.full(500, 3.0))

    assert not calibrated.score(np.full(300, 3.0), 0.01).drifted
    assert calibrated.score(np.append(np.full(299, 3.0), 3.5), 0.01).drifted
    single = _calibrated("wasserstein", "numeric", np.array([3.0]))  # a reference of one value has no split
    assert not single.score(np.full(30, 3.0), 0.01).drifted and single.score(np.full(30, 3.5), 0.01).drifted


def test_a_shift_of_a_third_of_a_deviation_is_flagged_at_a_small_alpha():
    rng = np.random.default_rng(3)
    calibrated = _calibrated("wasserstein", "numeric", rng.normal(size=5_000))

    assert calibrated.score(rng.normal(loc=1 / 3, size=2_000), alpha=1e-5).drifted


def test_the_result_reports_the_calibrated_threshold_and_no_p_value():
    rng = np.random.default_rng(4)
    calibrated = _calibrated("jensenshannon", "categorical", rng.choice(3, 2_000).astype(np.int32))
    result = calibrated.score(rng.choice(4, 800).astype(np.int32), alpha=0.01)  # a quarter unseen

    assert result.method == "jensenshannon" and result.p_value is None and result.drifted
    assert result.threshold == calibrated.threshold(0.01, 800) and result.unseen_share > 0.2
    assert make_test("jensenshannon", "categorical", np.arange(3)).threshold == 0.1  # the test alone keeps its own


@pytest.mark.statistical
@pytest.mark.parametrize("name", ["wasserstein-normal", "jensenshannon-categorical"])
def test_null_streams_false_alarm_at_most_alpha(name):
    result = _false_alarms(name, alpha=0.1, n_pairs=120, seed=10)
    low, high = result.proportion_ci(0.90)  # two-sided 90%: its lower end is a one-sided 95% bound

    assert low <= 0.1, f"{name}: {result.statistic:.3f} false alarms a window ({low:.3f} to {high:.3f})"


@pytest.mark.statistical
@pytest.mark.parametrize("name", list(LONG_TAILS))
def test_null_streams_with_long_tails_false_alarm_at_most_alpha(name):
    result = _false_alarms(name, alpha=0.1, n_pairs=120, seed=10)
    low, high = result.proportion_ci(0.90)

    assert low <= 0.1, f"{name}: {result.statistic:.3f} false alarms a window ({low:.3f} to {high:.3f})"


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("name", "alpha", "shift"),
    [
        ("jensenshannon-categorical", 0.1, lambda rng, window: np.where(rng.random(window.size) < 0.1, 2, window)),
        ("jensenshannon-categorical", 0.05, lambda rng, window: np.where(rng.random(window.size) < 0.1, 2, window)),
        ("wasserstein-normal", 0.01, lambda rng, window: window + 0.5 * 2.0),
        ("wasserstein-heavy-tail", 0.01, lambda rng, window: window + 0.5 * np.std(window)),
    ],
    ids=["tenth-into-one-category", "tenth-into-one-category-at-0.05", "half-a-deviation", "heavy-tail-half-sd"],
)
def test_a_tenth_of_the_calls_into_one_category_or_half_a_deviation_is_found_in_most_windows(name, alpha, shift):
    """The price of the split-sample null's caution: still found in most windows of 200 to 2,000 values."""
    method, kind, draw = NULLS[name]
    rng = np.random.default_rng(12)
    found = [
        _calibrated(method, kind, draw(rng, 1_000), seed=pair)
        .score(shift(rng, draw(rng, int(rng.integers(200, 2_001)))), alpha)
        .drifted
        for pair in range(60)
    ]
    assert np.mean(found) > 0.5, f"{name}: found in {np.mean(found):.2f} of the windows at alpha {alpha}"


@pytest.mark.soak
@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize("name", [name for name in NULLS if name != "wasserstein-heavy-tail"])  # its own xfail below
def test_null_streams_false_alarm_at_most_alpha_over_many_pairs(name, alpha):
    """Zipf categories included (measured 0.039 at 0.05, 0.0007 at 0.01); a heavy tail's Wasserstein is not."""
    result = _false_alarms(name, alpha=alpha, n_pairs=1_500, seed=11)
    low, high = result.proportion_ci(0.90)

    assert low <= alpha, f"{name}: {result.statistic:.4f} false alarms a window ({low:.4f} to {high:.4f})"


@pytest.mark.soak
@pytest.mark.xfail(strict=True, reason="outside the promise (README): splits of one reference miss new extremes")
def test_a_heavy_tail_false_alarms_at_most_alpha_at_a_small_alpha():
    """Why ``auto`` tests a heavy tail with ``ks`` (detectors/tails.py; tests/unit/monitor/test_drift_wiring.py), and
    ``check-config`` covers a feature configured with ``wasserstein`` only if its reference has no heavy tail.
    A lognormal of spread 2 measured 0.029 false alarms at alpha 0.01 (from 0.022, 1,500 pairs),
    0.057 at 0.05 (within its interval). Not the exponential tail's fit: the empirical quantile of 2,000 splits
    measured 0.027 and a generalized Pareto tail 0.028 (600 pairs). Each false alarm came with a window whose
    largest value was beyond the reference's, and every split of one reference reuses its few largest values: the
    null is conditional on them, where a window's new extremes are not."""
    result = _false_alarms("wasserstein-heavy-tail", alpha=0.01, n_pairs=1_500, seed=11)
    low, high = result.proportion_ci(0.90)

    assert low <= 0.01, f"{result.statistic:.4f} false alarms a window ({low:.4f} to {high:.4f})"

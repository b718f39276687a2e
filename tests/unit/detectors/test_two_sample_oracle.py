"""Two-sample tests against oracles: scipy on the same samples or tables, Evidently where both define the same thing."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from detectors._binning import Categories
from detectors.anderson import AndersonTest
from detectors.chi_square import ChiSquareTest
from detectors.jensen_shannon import JensenShannonTest
from detectors.ks import KSTest, ks_p_value, ks_statistic
from detectors.psi import EPSILON, PSITest
from detectors.wasserstein import WassersteinTest, quantile_area

REL = 1e-9
SIZES = [(2, 1), (40, 25), (1_000, 1_000), (20_000, 3_000), (2_500, 12_000)]
SHAPES = ["continuous", "rounded", "integers"]


def _samples(shape: str, m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded reference and a slightly shifted window: continuous, rounded (many ties) or small integers."""
    rng = np.random.default_rng(seed)
    reference, window = rng.normal(size=m), rng.normal(loc=0.1, scale=1.2, size=n)
    if shape == "rounded":
        return np.round(reference, 1), np.round(window, 1)
    if shape == "integers":
        return rng.integers(0, 12, size=m), rng.integers(1, 14, size=n)  # int dtype, heavy ties
    return reference, window


def _anderson_ksamp(reference: np.ndarray, window: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy's "p-value capped/floored"
        return stats.anderson_ksamp([reference, window], variant="midrank")


def _categorical(seed: int, m: int, n: int, *, labels: np.ndarray, unseen: tuple = ()) -> tuple[np.ndarray, ...]:
    """Reference over ``labels``; the window over the same labels (shifted weights) and the unseen ones."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(len(labels)))
    reference = rng.choice(labels, size=m, p=weights)
    window_labels = np.concatenate([labels, np.array(unseen, dtype=labels.dtype)])
    window = rng.choice(window_labels, size=n, p=rng.dirichlet(np.ones(len(window_labels))))
    return reference, window


# Numeric tests with scipy oracles


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("m", "n"), SIZES)
def test_ks_equals_scipy_asymptotic(shape, m, n):
    reference, window = _samples(shape, m, n)
    expected = stats.ks_2samp(reference, window, method="asymp")

    result = KSTest().fit(reference).score(window)

    assert result.statistic == pytest.approx(expected.statistic, rel=REL)
    assert result.p_value == pytest.approx(expected.pvalue, rel=REL)
    assert result.drifted == (expected.pvalue < 0.05)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("m", "n"), SIZES)
def test_wasserstein_equals_scipy_over_reference_std(shape, m, n):
    reference, window = _samples(shape, m, n)
    expected = stats.wasserstein_distance(reference, window) / max(np.std(reference), 0.001)

    result = WassersteinTest().fit(reference).score(window)

    assert result.statistic == pytest.approx(expected, rel=REL)
    assert result.p_value is None


@pytest.mark.parametrize("n", [1, 2, 57, 140, 141, 238, 1_000, 4_762, 47_619, 100_001])
def test_ks_p_value_equals_scipys_kstwo_sf_in_every_branch(n):
    # Every algorithm scipy picks: the exact ones (small n, n*d <= 1, d >= 0.5, the Durbin matrix for p near 1),
    # twice the one-sided tail (n*d**2 >= 2.2) and Pelz-Good's series between, which ks_p_value sums itself.
    # (sqrt(n)*d from 0.2: scipy's Durbin matrix for p ~ 1 at larger n takes seconds a call, hence the
    # coarser grid there: the same branches, a quarter of the points.)
    grid = np.linspace(0.2, 3.0, 100 if n < 10_000 else 25)
    z = np.concatenate([grid, [np.sqrt(2.2) * (1 - 1e-9), np.sqrt(2.2)]])
    for d in np.concatenate([z / np.sqrt(n), np.linspace(0.001, 0.999, 60 if n < 10_000 else 0)]):
        assert ks_p_value(float(d), n) == pytest.approx(stats.kstwo.sf(d, n), rel=1e-11, abs=1e-300), d


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=80),
    b=st.lists(st.integers(-3, 3), min_size=1, max_size=300),
)
def test_quantile_area_is_scipys_wasserstein_distance_for_any_sizes(a, b):
    a, b = np.sort(np.array(a)), np.sort(np.array(b, dtype=float))
    expected = stats.wasserstein_distance(a, b)
    assert quantile_area(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-9 * max(1.0, np.abs(a).max()))
    assert quantile_area(b, a) == quantile_area(a, b)


def test_wasserstein_of_a_constant_reference_divides_by_the_floor():
    result = WassersteinTest().fit(np.full(100, 3.0)).score(np.array([3.0, 4.0]))

    assert result.statistic == pytest.approx(0.5 / 0.001, rel=REL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("m", "n"), SIZES[1:])
def test_anderson_equals_scipy_midrank(shape, m, n):
    reference, window = _samples(shape, m, n)
    expected = _anderson_ksamp(reference, window)

    result = AndersonTest().fit(reference).score(window)

    assert result.statistic == pytest.approx(expected.statistic, rel=REL)
    assert result.p_value == pytest.approx(expected.pvalue, rel=REL)


@pytest.mark.parametrize(("window", "p_value"), [("the reference itself", 0.25), ("shifted", 0.001)])
def test_anderson_p_value_is_capped_and_floored_like_scipy(window, p_value):
    rng = np.random.default_rng(5)
    reference = rng.normal(size=500)
    window = reference.copy() if window == "the reference itself" else rng.normal(loc=2.0, size=500)

    result = AndersonTest().fit(reference).score(window)

    assert result.p_value == p_value == _anderson_ksamp(reference, window).pvalue


def test_anderson_of_one_value_on_both_sides_is_no_drift_where_scipy_raises():
    with pytest.raises(ValueError, match="more than one distinct"):
        stats.anderson_ksamp([np.ones(10), np.ones(5)], variant="midrank")

    result = AndersonTest().fit(np.ones(10)).score(np.ones(5))

    assert (result.p_value, result.drifted) == (0.25, False)


@settings(max_examples=150, deadline=None)
@given(
    reference=st.lists(st.integers(-5, 5), min_size=2, max_size=60),
    window=st.lists(st.integers(-6, 6), min_size=2, max_size=60),
)
def test_cdf_tests_equal_scipy_on_any_small_tied_samples(reference, window):
    reference, window = np.array(reference, dtype=float) / 2, np.array(window, dtype=float) / 2
    ks, result = stats.ks_2samp(reference, window, method="asymp"), KSTest().fit(reference).score(window)
    assert (result.statistic, result.p_value) == pytest.approx((ks.statistic, ks.pvalue), rel=REL)
    expected = stats.wasserstein_distance(reference, window) / max(np.std(reference), 0.001)
    assert WassersteinTest().fit(reference).score(window).statistic == pytest.approx(expected, rel=REL, abs=1e-12)
    if np.unique(np.concatenate([reference, window])).size > 1:
        anderson, result = _anderson_ksamp(reference, window), AndersonTest().fit(reference).score(window)
        assert result.statistic == pytest.approx(anderson.statistic, rel=REL, abs=1e-12)  # near 0 when A2 ~ its mean
        assert result.p_value == pytest.approx(anderson.pvalue, rel=REL)


@settings(max_examples=200, deadline=None)
@given(
    reference=st.lists(st.integers(-4, 4), min_size=1, max_size=30),
    window=st.lists(st.integers(-8, 8), min_size=2, max_size=120),
)
def test_ks_of_a_window_larger_than_the_reference_equals_scipy_exactly(reference, window):
    # A slice group's case (a small reference, a larger window): ties with the reference, values beyond both ends.
    assume(len(window) > len(reference))
    reference, window = np.array(reference, dtype=float) / 2, np.array(window, dtype=float) / 2
    expected = stats.ks_2samp(reference, window, method="asymp")
    result = KSTest().fit(reference).score(window)
    assert result.statistic == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=REL)


_SPREAD = st.floats(-3.0, 3.0, allow_nan=False) | st.integers(-6, 6).map(lambda value: value / 2)


@settings(max_examples=300, deadline=None)
@given(
    reference=st.lists(_SPREAD, min_size=2, max_size=40),
    window=st.lists(_SPREAD | st.sampled_from([-np.inf, np.inf, np.nan]), min_size=2, max_size=150),
)
def test_ks_without_sorting_the_window_gives_the_sorted_windows_statistic_exactly(reference, window):
    # The grid that places a larger window among a spread-out reference's values (no sort) against binary searches
    # into the sorted window: ties with the reference, values beyond its ends, infinities, NaN (left to the sort).
    reference, window = np.array(reference), np.array(window)
    result = KSTest().fit(reference).score(window)
    assert result.statistic == ks_statistic(np.sort(reference), np.sort(window))


@pytest.mark.parametrize(("seed", "size"), enumerate([126, 127, 128, 250, 254]))
def test_ks_of_a_slice_groups_window_takes_the_grid_and_equals_the_sort(seed, size):
    rng = np.random.default_rng(seed)  # the grid's table in one byte up to 127 reference values, in two above
    reference = rng.normal(size=size) if seed % 2 else rng.lognormal(size=size)
    window = np.concatenate([rng.normal(0.1, 1.2, size=4_000), rng.choice(reference, 900), [-np.inf, np.inf, 1e300]])
    test = KSTest().fit(reference)
    assert test._grid is not None  # spread out: no sort of the window
    assert test.score(window).statistic == ks_statistic(np.sort(reference), np.sort(window))


# Binned tests: numbers in reference-quantile bins


def _quantile_shares(reference: np.ndarray, window: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's binning: np.histogram over the reference's distinct quantiles, outer edges at +-inf."""
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    return np.histogram(reference, edges)[0] / reference.size, np.histogram(window, edges)[0] / window.size


def _psi(reference_share: np.ndarray, window_share: np.ndarray) -> float:
    reference_share = np.where(reference_share == 0, EPSILON, reference_share)
    window_share = np.where(window_share == 0, EPSILON, window_share)
    return float(np.sum((reference_share - window_share) * np.log(reference_share / window_share)))


@pytest.mark.parametrize("n_bins", [1, 10, 30])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("m", "n"), SIZES[1:])
def test_numeric_psi_and_jensenshannon_equal_the_formulas_on_histogram_shares(shape, m, n, n_bins):
    reference, window = _samples(shape, m, n)
    reference_share, window_share = _quantile_shares(reference, window, n_bins)

    psi = PSITest(n_bins=n_bins).fit(reference).score(window)
    js = JensenShannonTest(n_bins=n_bins).fit(reference).score(window)

    assert psi.statistic == pytest.approx(_psi(reference_share, window_share), rel=REL, abs=1e-15)
    assert js.statistic == pytest.approx(jensenshannon(reference_share, window_share), rel=REL, abs=1e-15)
    assert psi.unseen_share == js.unseen_share == 0.0


def test_duplicate_quantiles_collapse_into_fewer_bins():
    test = PSITest(n_bins=10).fit(np.full(1_000, 5.0))  # nine equal quantiles: one edge, two bins

    assert test._buckets.edges.tolist() == [5.0]
    result = test.score(np.array([4.0, 5.0, 6.0, 7.0]))
    assert result.statistic == pytest.approx(_psi(np.array([0.0, 1.0]), np.array([0.25, 0.75])), rel=REL)


# Binned tests: labels in reference categories plus one unseen bucket

LABELS = {
    "strings": np.array(["chat", "search", "code", "summarise", "translate"]),
    "codes": np.arange(5, dtype=np.int32) * 3,  # the daemon's int32 codes, not contiguous
}
UNSEEN = {"strings": ("image", "audio"), "codes": (1, 400)}


def _category_shares(reference: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The oracle's counting with pandas: reference categories, then every unseen label pooled."""
    categories = pd.Index(pd.unique(reference))
    reference_counts = pd.Series(reference).value_counts().reindex(categories).to_numpy()
    window_counts = pd.Series(window).value_counts().reindex(categories, fill_value=0).to_numpy()
    unseen = window.size - window_counts.sum()
    return (
        np.append(reference_counts, 0) / reference.size,
        np.append(window_counts, unseen) / window.size,
        unseen / window.size,
    )


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("with_unseen", [False, True])
@pytest.mark.parametrize(("m", "n"), SIZES[1:])
def test_categorical_psi_and_jensenshannon_equal_the_formulas(labels, with_unseen, m, n):
    unseen = UNSEEN[labels] if with_unseen else ()
    reference, window = _categorical(1, m, n, labels=LABELS[labels], unseen=unseen)
    reference_share, window_share, unseen_share = _category_shares(reference, window)

    psi = PSITest(kind="categorical").fit(reference).score(window)
    js = JensenShannonTest(kind="categorical").fit(reference).score(window)

    assert psi.statistic == pytest.approx(_psi(reference_share, window_share), rel=REL, abs=1e-15)
    assert js.statistic == pytest.approx(jensenshannon(reference_share, window_share), rel=REL, abs=1e-15)
    assert psi.unseen_share == js.unseen_share == pytest.approx(unseen_share, rel=REL)
    assert unseen_share > 0 or not with_unseen


def _contingency_table(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2 x K counts: the reference's categories, then all unseen labels pooled, empty columns dropped."""
    reference_share, window_share, _ = _category_shares(reference, window)
    table = np.stack([reference_share * reference.size, window_share * window.size]).round()
    return table[:, table.sum(axis=0) > 0]


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("with_unseen", [False, True])
@pytest.mark.parametrize(("m", "n"), SIZES[1:])
def test_chisquare_equals_scipy_contingency_on_the_pooled_table(labels, with_unseen, m, n):
    unseen = UNSEEN[labels] if with_unseen else ()
    reference, window = _categorical(2, m, n, labels=LABELS[labels], unseen=unseen)
    expected = stats.chi2_contingency(_contingency_table(reference, window), correction=False)

    result = ChiSquareTest().fit(reference).score(window)

    assert result.statistic == pytest.approx(expected.statistic, rel=REL)
    assert result.p_value == pytest.approx(expected.pvalue, rel=REL, abs=1e-300)


def test_chisquare_of_only_unseen_labels_is_a_finite_drift():
    result = ChiSquareTest().fit(np.array(["a"] * 50 + ["b"] * 50)).score(np.array(["z"] * 20))

    expected = stats.chi2_contingency([[50, 50, 0], [0, 0, 20]], correction=False)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=REL)
    assert result.unseen_share == 1.0 and result.drifted


def test_chisquare_of_a_single_category_is_no_drift():
    result = ChiSquareTest().fit(np.array([7, 7, 7])).score(np.array([7, 7]))

    assert (result.statistic, result.p_value, result.drifted) == (0.0, 1.0, False)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16])
def test_integer_codes_count_as_their_strings_do(dtype):
    reference, window = _categorical(3, 2_000, 700, labels=np.arange(0, 10, 2, dtype=dtype), unseen=(3, 9, 120))
    codes = Categories(reference)
    strings = Categories(reference.astype(str))

    assert codes.count(window).tolist() == strings.count(window.astype(str)).tolist()
    assert codes.count(window).sum() == window.size
    assert codes.n_unseen(window) == strings.n_unseen(window.astype(str)) == codes.count(window)[-1] > 0


def test_negative_or_large_codes_take_the_general_path():
    categories = Categories(np.array([0, 2, 2, 5]))
    window = np.array([-1, 2, 5, 70_000, 0])

    assert categories.count(window).tolist() == [1, 1, 1, 2]
    assert categories.n_unseen(window) == 2
    assert categories.count(window.astype(np.uint64)).tolist() == [1, 1, 1, 2]  # no safe cast to a position


# Evidently, where it computes the same quantity


def _evidently(module: str, function: str):
    """Evidently's implementation of a stattest as ``f(reference, window, kind) -> value``; skips without Evidently."""
    implementation = getattr(pytest.importorskip(f"evidently.legacy.calculations.stattests.{module}"), function)
    from evidently.legacy.core import ColumnType

    return lambda reference, window, kind: implementation(
        pd.Series(reference), pd.Series(window), ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical,
        0.1,
    )[0]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("m", "n"), SIZES[1:])
def test_wasserstein_equals_evidentlys(shape, m, n):
    reference, window = _samples(shape, m, n)
    expected = _evidently("wasserstein_distance_norm", "_wasserstein_distance_norm")(reference, window, "numeric")

    assert WassersteinTest().fit(reference).score(window).statistic == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("m", "n"), [(12_000, 11_000), (20_000, 3_000)])
def test_ks_equals_evidentlys_above_scipys_exact_cut_off(m, n):
    reference, window = _samples("rounded", m, n)
    expected = _evidently("ks_stattest", "_ks_stat_test")(reference, window, "numeric")

    assert KSTest().fit(reference).score(window).p_value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_anderson_p_value_equals_evidentlys(shape):
    reference, window = _samples(shape, 800, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = _evidently("anderson_darling_stattest", "_anderson_darling")(reference, window, "numeric")

    assert AndersonTest().fit(reference).score(window).p_value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("n_unseen", [0, 1])
def test_categorical_jensenshannon_equals_evidentlys_up_to_one_unseen_label(labels, n_unseen):
    reference, window = _categorical(4, 3_000, 2_000, labels=LABELS[labels], unseen=UNSEEN[labels][:n_unseen])
    expected = _evidently("jensenshannon", "_jensenshannon")(reference, window, "categorical")

    result = JensenShannonTest(kind="categorical").fit(reference).score(window)

    assert result.statistic == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("labels", list(LABELS))
def test_categorical_psi_equals_evidentlys_without_unseen_labels(labels):
    reference, window = _categorical(5, 3_000, 2_000, labels=LABELS[labels])
    expected = _evidently("psi", "_psi")(reference, window, "categorical")

    assert PSITest(kind="categorical").fit(reference).score(window).statistic == pytest.approx(expected, rel=1e-9)


def test_chisquare_agrees_with_evidentlys_goodness_of_fit_for_a_large_reference():
    rng = np.random.default_rng(6)
    labels, weights = LABELS["strings"], [0.4, 0.3, 0.15, 0.1, 0.05]
    reference, window = rng.choice(labels, size=500_000, p=weights), rng.choice(labels, size=2_000, p=weights)
    goodness_of_fit = _evidently("chisquare_stattest", "_chi_stat_test")(reference, window, "categorical")

    result = ChiSquareTest().fit(reference).score(window)

    assert 0.01 < goodness_of_fit < 0.99  # a p-value worth comparing
    assert result.p_value == pytest.approx(goodness_of_fit, rel=0.01)

"""Data-quality checks against their oracles: scipy's Fisher exact test, a brute-force count of orderings."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from detectors.correction import reject
from detectors.data_quality import DataQualityTest, fisher_greater_p_value, flag, out_of_range_p_value

NONE = np.zeros(0, bool)


@given(
    n=st.integers(1, 300),
    n_reference=st.integers(1, 300),
    data=st.data(),
)
def test_fisher_p_value_equals_scipy(n, n_reference, data):
    k = data.draw(st.integers(0, n))
    k_reference = data.draw(st.integers(0, n_reference))
    table = [[k, n - k], [k_reference, n_reference - k_reference]]

    expected = fisher_exact(table, alternative="greater").pvalue

    assert fisher_greater_p_value(k, n, k_reference, n_reference) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("n", "m"), [(2, 1), (2, 5), (3, 4), (5, 5), (4, 8)])
def test_out_of_range_p_value_equals_a_count_of_all_orderings(n, m):
    """Every set of ranks the reference can take is equally likely: count those that leave k window values out."""
    total = n + m
    outside = [0] * (m + 1)
    for ranks in combinations(range(total), n):
        outside[ranks[0] + total - 1 - ranks[-1]] += 1
    for k in range(m + 1):
        expected = sum(outside[k:]) / comb(total, n)
        assert out_of_range_p_value(k, m, n) == pytest.approx(expected, rel=1e-9)


def _fit(kind, values, n_missing=0, n_wrong=0, alpha=0.01):
    n = len(values) + n_missing + n_wrong
    missing = np.zeros(n, bool)
    missing[:n_missing] = True
    wrong = np.zeros(n, bool)
    wrong[n_missing : n_missing + n_wrong] = True
    return DataQualityTest(kind, alpha=alpha, min_samples=10).fit(values, missing, wrong)


def test_sixty_percent_missing_is_flagged_with_scipys_p_value():
    rng = np.random.default_rng(3)
    test = _fit("numeric", rng.normal(size=1_990), n_missing=10)
    window = rng.normal(size=2_000)
    missing = rng.random(2_000) < 0.6

    results = test.score(window[~missing], missing, np.zeros(2_000, bool))

    k = int(missing.sum())
    expected = fisher_exact([[k, 2_000 - k], [10, 1_990]], alternative="greater").pvalue
    assert results["missing"].p_value == pytest.approx(expected, rel=1e-9)
    assert results["missing"].flagged and results["missing"].reference_share == 10 / 2_000
    assert not results["type_violation"].flagged and not results["out_of_range"].flagged


def test_type_violations_are_flagged_against_the_reference_share():
    rng = np.random.default_rng(4)
    test = _fit("categorical", rng.integers(1, 5, 990), n_wrong=10)
    wrong = rng.random(1_000) < 0.05  # 5% numbers where a category is expected, against 1%
    codes = rng.integers(1, 5, 1_000)

    results = test.score(codes, np.zeros(1_000, bool), wrong)

    k = int(wrong.sum())
    expected = fisher_exact([[k, 1_000 - k], [10, 990]], alternative="greater").pvalue
    assert results["type_violation"].p_value == pytest.approx(expected, rel=1e-9) and expected < 0.01
    assert results["type_violation"].flagged and not results["missing"].flagged
    assert not results["unseen_category"].flagged


def test_values_out_of_range_are_flagged_and_counted_as_the_exact_null_says():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=1_000)
    test = _fit("numeric", reference)
    window = rng.normal(size=1_000)
    window[:30] = reference.max() + 1.0

    result = test.score(window, np.zeros(1_000, bool), np.zeros(1_000, bool))["out_of_range"]

    k = int(np.count_nonzero((window < reference.min()) | (window > reference.max())))
    assert result.share == k / 1_000 and result.reference_share == 2 / 1_000
    assert result.p_value == out_of_range_p_value(k, 1_000, 1_000) and result.flagged


def test_unseen_categories_are_flagged_against_the_references_singletons():
    rng = np.random.default_rng(6)
    reference = np.concatenate([rng.integers(1, 6, 995), np.arange(100, 105)])  # 5 categories seen once
    test = _fit("categorical", reference)
    window = rng.integers(1, 6, 1_000)
    window[:50] = 7  # never seen

    result = test.score(window, np.zeros(1_000, bool), np.zeros(1_000, bool))["unseen_category"]

    expected = fisher_exact([[50, 950], [5, 995]], alternative="greater").pvalue
    assert result.share == 0.05 and result.reference_share == 5 / 1_000
    assert result.p_value == pytest.approx(expected, rel=1e-9) and result.flagged


def test_nothing_is_flagged_on_a_window_like_the_reference():
    rng = np.random.default_rng(7)
    numeric, categorical = _fit("numeric", rng.normal(size=1_000)), _fit("categorical", rng.integers(1, 9, 1_000))
    no = np.zeros(1_000, bool)

    results = {**numeric.score(rng.normal(size=1_000), no, no), **categorical.score(rng.integers(1, 9, 1_000), no, no)}

    assert not any(result.flagged for result in results.values())


def test_checks_on_values_need_min_samples_on_both_sides():
    test = _fit("numeric", np.arange(5.0))  # fewer than min_samples
    no = np.zeros(20, bool)

    assert list(test.score(np.arange(20.0), no, no)) == ["missing", "type_violation"]


@pytest.mark.statistical
def test_out_of_range_false_alarm_rate_is_at_most_alpha_on_a_null_stream():
    """2,000 windows from the reference's distribution: the share flagged at alpha 0.05, with its 99% bound."""
    rng = np.random.default_rng(8)
    no = np.zeros(200, bool)
    flagged = 0
    for _ in range(2_000):
        test = _fit("numeric", rng.normal(size=200), alpha=0.05)
        flagged += test.score(rng.normal(size=200), no, no)["out_of_range"].flagged
    rate, half_width = flagged / 2_000, 2.576 * np.sqrt(0.05 * 0.95 / 2_000)
    assert rate <= 0.05 + half_width


@pytest.mark.statistical
def test_unseen_category_false_alarm_rate_is_about_alpha_on_a_long_tailed_null_stream():
    """1,000 windows from the reference's Zipf distribution (new categories keep coming): the share flagged at
    alpha 0.05 stays within the 99% bound of alpha (Good-Turing's estimate makes the test approximate)."""
    rng = np.random.default_rng(10)
    no = np.zeros(1_000, bool)
    flagged = 0
    for _ in range(1_000):
        test = _fit("categorical", rng.zipf(1.3, 1_000), alpha=0.05)
        flagged += test.score(rng.zipf(1.3, 1_000), no, no)["unseen_category"].flagged
    rate, half_width = flagged / 1_000, 2.576 * np.sqrt(0.05 * 0.95 / 1_000)
    assert rate <= 0.05 + half_width


def test_flag_corrects_as_the_drift_tests_do():
    rng = np.random.default_rng(9)
    test = _fit("numeric", rng.normal(size=1_000))
    missing = rng.random(1_000) < 0.02
    n_missing = int(missing.sum())
    checks = {f"f{i}": test.figures(rng.normal(size=1_000)[~missing], 1_000, n_missing, 0) for i in range(5)}

    flagged = flag(checks, "bh", 0.05)

    p_values = np.array([figures[3] for results in checks.values() for figures in results.values()])
    thresholds, rejected = reject(p_values, "bh", 0.05)
    corrected = [result for results in flagged.checks.values() for result in results.values()]
    assert [result.flagged for result in corrected] == rejected.tolist()
    assert [result.threshold for result in corrected] == thresholds.tolist()


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="numeric"):
        DataQualityTest("tabular")

"""Multiple-testing correction against statsmodels' ``multipletests`` on the same p-values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from detectors.correction import correct, reject
from detectors.results import DriftResult

P_VALUES = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40)


def _results(p_values: list[float]) -> list[DriftResult]:
    return [DriftResult("ks", 0.0, p, 0.05, p < 0.05) for p in p_values]


@pytest.mark.parametrize(("correction", "oracle"), [("bonferroni", "bonferroni"), ("bh", "fdr_bh")])
@given(p_values=P_VALUES, alpha=st.sampled_from([0.001, 0.01, 0.05, 0.2]))
def test_verdicts_equal_statsmodels(correction, oracle, p_values, alpha):
    expected, *_ = multipletests(p_values, alpha=alpha, method=oracle)

    verdicts = [result.drifted for result in correct(_results(p_values), correction, alpha)]

    assert verdicts == expected.tolist()


@given(p_values=P_VALUES)
def test_the_threshold_separates_the_verdicts(p_values):
    for result in correct(_results(p_values), "bh", 0.05):
        assert result.drifted == (result.p_value <= result.threshold)


def test_bh_rejects_p_values_at_its_largest_bound_as_computed():
    # alpha * m / m is 0.10000000000000002 here, above alpha: such p-values are rejected, at the rank of the last.
    bound = 0.1 * 3 / 3
    assert bound > 0.1

    thresholds, rejected = reject(np.full(3, bound), "bh", 0.1)

    assert thresholds.tolist() == [bound] * 3 and rejected.tolist() == [True] * 3


def test_none_keeps_each_test_at_alpha():
    results = correct(_results([0.01, 0.049, 0.05, 0.3]), "none", 0.05)

    assert [(r.drifted, r.threshold) for r in results] == [(True, 0.05), (True, 0.05), (False, 0.05), (False, 0.05)]


def test_distance_results_pass_through_untouched():
    distance = DriftResult("wasserstein", 0.3, None, 0.1, True)
    results = [distance, *_results([0.001, 0.9])]

    corrected = correct(results, "bonferroni", 0.05)

    assert corrected[0] is distance
    assert [r.threshold for r in corrected[1:]] == [0.025, 0.025]  # m counts only the p-value tests


def test_unknown_correction_is_named():
    with pytest.raises(ValueError, match="unknown correction 'holm'; valid: none, bonferroni, bh"):
        correct(_results([0.5]), "holm", 0.05)


def test_bh_is_more_powerful_than_bonferroni_on_many_true_drifts():
    p_values = np.linspace(0.001, 0.02, 10).tolist() + [0.5] * 10

    n_bh = sum(r.drifted for r in correct(_results(p_values), "bh", 0.05))
    n_bonferroni = sum(r.drifted for r in correct(_results(p_values), "bonferroni", 0.05))

    assert (n_bh, n_bonferroni) == (10, 1)

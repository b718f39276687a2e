"""Fairness figures against oracles: fairlearn's metrics per group and between groups, statsmodels' Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score
from statsmodels.stats.proportion import proportion_confint

from detectors.fairness import OTHER, FairnessStats

TOLERANCE = 1e-12


def _window(seed: int, sizes: dict, *, label_share: float = 1.0):
    """Groups of the given sizes (shuffled), an outcome whose rate differs by group, labels on a share of rows."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat(list(sizes), list(sizes.values())))
    base = np.array([0.55, 0.4, 0.3, 0.45, 0.5, 0.35])[np.unique(groups, return_inverse=True)[1] % 6]
    label = (rng.random(groups.size) < 0.5).astype(float)
    outcome = (rng.random(groups.size) < base + 0.25 * (label - 0.5)).astype(int)  # better than chance
    label[rng.random(groups.size) >= label_share] = np.nan
    return groups, outcome, label


def _fairlearn(groups, outcome, label):
    """fairlearn's per-group frame and disparities (the outcome as y_pred) on the labelled rows."""
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=label,
        y_pred=outcome,
        sensitive_features=groups,
    )
    return frame.by_group, {
        "demographic_parity_difference": demographic_parity_difference(label, outcome, sensitive_features=groups),
        "disparate_impact_ratio": demographic_parity_ratio(label, outcome, sensitive_features=groups),
        "equalized_odds_difference": equalized_odds_difference(label, outcome, sensitive_features=groups),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_figure_equals_fairlearn_when_all_groups_are_sufficient(seed):
    groups, outcome, label = _window(seed, {"a": 400, "b": 250, "c": 120, "d": 60})

    result = FairnessStats(min_group_size=30).compute(groups, outcome, label)
    by_group, disparities = _fairlearn(groups, outcome, label.astype(int))

    assert list(result.groups) == ["a", "b", "c", "d"]
    for name, stats in result.groups.items():
        assert stats.sufficient and stats.n == stats.n_labelled == np.sum(groups == name)
        assert stats.outcome_rate == pytest.approx(by_group.loc[name, "selection_rate"], abs=TOLERANCE)
        assert stats.true_positive_rate == pytest.approx(by_group.loc[name, "true_positive_rate"], abs=TOLERANCE)
        assert stats.false_positive_rate == pytest.approx(by_group.loc[name, "false_positive_rate"], abs=TOLERANCE)
        assert stats.accuracy == pytest.approx(by_group.loc[name, "accuracy"], abs=TOLERANCE)
    for figure, expected in disparities.items():
        assert getattr(result, figure) == pytest.approx(expected, abs=TOLERANCE), figure
    assert 0 < result.equalized_odds_difference and result.n_pooled_groups == 0


def test_integer_codes_are_groups_too():
    groups, outcome, label = _window(3, {"a": 300, "b": 200, "c": 100})
    codes = np.unique(groups, return_inverse=True)[1].astype(np.int32)

    by_name = FairnessStats().compute(groups, outcome, label)
    by_code = FairnessStats().compute(codes, outcome, label)

    assert list(by_code.groups) == ["0", "1", "2"]
    assert list(by_code.groups.values()) == list(by_name.groups.values())
    assert by_code.equalized_odds_difference == by_name.equalized_odds_difference


def test_rows_without_a_label_count_only_in_the_outcome_rates():
    groups, outcome, label = _window(4, {"a": 500, "b": 400, "c": 300}, label_share=0.6)
    labelled = ~np.isnan(label)

    result = FairnessStats(min_group_size=30).compute(groups, outcome, label)
    by_group, disparities = _fairlearn(groups[labelled], outcome[labelled], label[labelled].astype(int))

    for name, stats in result.groups.items():
        assert stats.n == np.sum(groups == name) > stats.n_labelled == np.sum(labelled & (groups == name))
        assert stats.outcome_rate == pytest.approx(np.mean(outcome[groups == name]), abs=TOLERANCE)
        assert stats.true_positive_rate == pytest.approx(by_group.loc[name, "true_positive_rate"], abs=TOLERANCE)
        assert stats.accuracy == pytest.approx(by_group.loc[name, "accuracy"], abs=TOLERANCE)
    expected = disparities["equalized_odds_difference"]
    assert result.equalized_odds_difference == pytest.approx(expected, abs=TOLERANCE)


def test_wilson_intervals_equal_statsmodels():
    groups, outcome, _ = _window(5, {"a": 900, "b": 45, "c": 12, "d": 3})
    outcome[groups == "d"] = 0  # a proportion of exactly 0
    outcome[groups == "c"] = 1  # and of exactly 1

    for confidence in (0.9, 0.95, 0.99):
        result = FairnessStats(confidence=confidence).compute(groups, outcome)
        for name, stats in result.groups.items():
            lower, upper = proportion_confint(
                np.sum(outcome[groups == name]), stats.n, alpha=1 - confidence, method="wilson"
            )
            assert stats.outcome_rate_lower == pytest.approx(lower, abs=TOLERANCE)
            assert stats.outcome_rate_upper == pytest.approx(upper, abs=TOLERANCE)


def test_small_groups_are_reported_but_left_out_of_the_disparities():
    groups, outcome, label = _window(6, {"a": 400, "b": 300, "c": 29})
    outcome[groups == "c"] = 0  # an extreme rate that would dominate every disparity

    result = FairnessStats(min_group_size=30).compute(groups, outcome, label)
    kept = groups != "c"
    _, disparities = _fairlearn(groups[kept], outcome[kept], label[kept].astype(int))

    assert [stats.sufficient for stats in result.groups.values()] == [True, True, False]
    assert result.groups["c"].n == 29 and result.groups["c"].outcome_rate == 0.0
    for figure, expected in disparities.items():
        assert getattr(result, figure) == pytest.approx(expected, abs=TOLERANCE), figure


def test_a_group_with_few_labels_is_left_out_of_equalized_odds_only():
    groups, outcome, label = _window(7, {"a": 400, "b": 300, "c": 200})
    label[(groups == "c") & (np.cumsum(groups == "c") > 10)] = np.nan  # c keeps 10 labels

    result = FairnessStats(min_group_size=30).compute(groups, outcome, label)
    ab = groups != "c"
    _, disparities = _fairlearn(groups[ab], outcome[ab], label[ab].astype(int))

    assert result.groups["c"].sufficient and result.groups["c"].n_labelled == 10
    assert result.equalized_odds_difference == pytest.approx(disparities["equalized_odds_difference"], abs=TOLERANCE)
    assert result.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(outcome, outcome, sensitive_features=groups), abs=TOLERANCE
    )


def test_disparities_are_nan_with_fewer_than_two_sufficient_groups():
    groups, outcome, label = _window(8, {"a": 400, "b": 20, "c": 10})

    result = FairnessStats(min_group_size=30).compute(groups, outcome, label)

    assert math.isnan(result.demographic_parity_difference)
    assert math.isnan(result.disparate_impact_ratio) and not result.four_fifths_violated
    assert math.isnan(result.equalized_odds_difference)


def test_an_undefined_rate_is_nan_and_skipped_by_equalized_odds():
    groups, outcome, label = _window(9, {"a": 300, "b": 200, "c": 100})
    label[groups == "c"] = 0  # c has no labelled positives: no true positive rate

    result = FairnessStats().compute(groups, outcome, label)
    a, b, c = result.groups.values()
    fprs = [a.false_positive_rate, b.false_positive_rate, c.false_positive_rate]
    fairlearn_eod = equalized_odds_difference(label.astype(int), outcome, sensitive_features=groups)

    assert math.isnan(c.true_positive_rate)
    tpr_range = abs(a.true_positive_rate - b.true_positive_rate)
    assert result.equalized_odds_difference == pytest.approx(max(tpr_range, max(fprs) - min(fprs)), abs=TOLERANCE)
    # fairlearn scores c's undefined rate as 0, so its range is that of a, b and 0
    assert fairlearn_eod == pytest.approx(max(a.true_positive_rate, b.true_positive_rate), abs=TOLERANCE)


def test_all_zero_outcome_rates_have_no_ratio():
    groups, _, label = _window(10, {"a": 100, "b": 100})
    outcome = np.zeros(groups.size, dtype=int)

    result = FairnessStats().compute(groups, outcome, label)

    assert result.demographic_parity_difference == 0.0
    assert math.isnan(result.disparate_impact_ratio)
    assert math.isnan(demographic_parity_ratio(label, outcome, sensitive_features=groups))


def test_groups_beyond_the_largest_pool_into_other():
    groups, outcome, label = _window(11, {"a": 400, "b": 300, "c": 50, "d": 40, OTHER: 35, "e": 5})

    result = FairnessStats(min_group_size=30, max_groups=3).compute(groups, outcome, label)
    capped = np.where(np.isin(groups, ["a", "b", "c"]), groups, OTHER)
    by_group, disparities = _fairlearn(capped, outcome, label.astype(int))

    assert list(result.groups) == ["a", "b", "c", OTHER]
    assert result.n_pooled_groups == 3  # d, e and the literal "__other__"
    assert result.groups[OTHER].n == 80
    assert result.groups[OTHER].outcome_rate == pytest.approx(by_group.loc[OTHER, "selection_rate"], abs=TOLERANCE)
    for figure, expected in disparities.items():
        assert getattr(result, figure) == pytest.approx(expected, abs=TOLERANCE), figure


def test_ties_in_size_keep_the_first_names():
    groups = np.array(["b", "c", "a", "d"] * 40)

    result = FairnessStats(max_groups=2).compute(groups, np.ones(groups.size))

    assert list(result.groups) == ["a", "b", OTHER]


def test_an_empty_window_gives_no_groups_and_nan_disparities():
    result = FairnessStats().compute(np.array([], dtype=str), np.array([]), np.array([]))

    assert result.groups == {} and result.n_pooled_groups == 0
    assert math.isnan(result.demographic_parity_difference) and math.isnan(result.equalized_odds_difference)


@pytest.mark.parametrize("config", [{"min_group_size": 0}, {"max_groups": 0}, {"confidence": 1.0}, {"confidence": 0.0}])
def test_bad_config_raises(config):
    with pytest.raises(ValueError):
        FairnessStats(**config)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdefg"), st.booleans(), st.sampled_from([0.0, 1.0, np.nan])), max_size=300),
    st.integers(1, 40),
    st.integers(1, 8),
)
def test_figures_are_consistent_on_any_window(rows, min_group_size, max_groups):
    groups = np.array([row[0] for row in rows], dtype=str)
    outcome = np.array([row[1] for row in rows], dtype=bool)
    label = np.array([row[2] for row in rows], dtype=float)

    result = FairnessStats(min_group_size=min_group_size, max_groups=max_groups).compute(groups, outcome, label)
    stats = list(result.groups.values())
    sufficient = [s.outcome_rate for s in stats if s.sufficient]

    assert sum(s.n for s in stats) == len(rows) and sum(s.n_labelled for s in stats) == np.sum(~np.isnan(label))
    assert len(result.groups) <= max_groups + 1 and result.n_pooled_groups == len(set(groups)) - min(
        max_groups, len(set(groups))
    )
    for s in stats:
        assert s.outcome_rate_lower <= s.outcome_rate <= s.outcome_rate_upper
        assert 0 <= s.outcome_rate_lower and s.outcome_rate_upper <= 1
    if len(sufficient) >= 2:
        assert result.demographic_parity_difference == max(sufficient) - min(sufficient)
        assert 0 <= result.disparate_impact_ratio <= 1 or max(sufficient) == 0
    else:
        assert math.isnan(result.demographic_parity_difference) and math.isnan(result.disparate_impact_ratio)
    if len(sufficient) == len(stats) >= 2:
        capped = np.where(np.isin(groups, list(result.groups)), groups, OTHER)
        expected = demographic_parity_ratio(outcome, outcome, sensitive_features=capped)
        assert result.disparate_impact_ratio == pytest.approx(expected, abs=TOLERANCE, nan_ok=True)
    assert math.isnan(result.equalized_odds_difference) or 0 <= result.equalized_odds_difference <= 1


def test_integer_codes_with_names_give_the_same_figures_as_the_names_themselves():
    rng = np.random.default_rng(12)
    names = ["__other__", "north", "south", "east", "west", "rare"]
    codes = rng.choice(len(names), size=3_000, p=[0.0, 0.3, 0.3, 0.25, 0.14, 0.01])
    outcome = rng.random(3_000) < np.array([0.5, 0.6, 0.2, 0.5, 0.7, 0.5])[codes]
    label = np.where(rng.random(3_000) < 0.5, np.nan, (rng.random(3_000) < 0.5).astype(float))
    stats = FairnessStats(min_group_size=40, max_groups=3)

    by_name = stats.compute(np.array(names, dtype=object)[codes], outcome, label)
    by_code = stats.compute(codes, outcome, label, names=names)

    assert by_code == by_name
    assert list(by_code.groups) == ["north", "south", "east", "__other__"]

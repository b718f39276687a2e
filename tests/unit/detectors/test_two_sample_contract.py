"""What every registered two-sample test promises (STYLE #14), and the registry's choice and fitting by name."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest

from detectors._two_sample import TwoSampleTest
from detectors.registry import KINDS, TWO_SAMPLE_TESTS, auto_method, make_test
from detectors.results import DriftResult

CASES = [(name, kind) for name, test in TWO_SAMPLE_TESTS.items() for kind in test.kinds]
IDS = [f"{name}-{kind}" for name, kind in CASES]
LABELS = np.array(["chat", "search", "code", "summarise", "translate", "other"])


def _samples(kind: str, seed: int = 11) -> dict[str, np.ndarray]:
    """A reference, a window from the same distribution, and a shifted window (labels: int32 codes)."""
    rng = np.random.default_rng(seed)
    if kind == "numeric":
        return {
            "reference": rng.normal(size=3_000),
            "same": rng.normal(size=1_000),
            "shifted": rng.normal(loc=0.6, size=1_000),
        }
    if kind == "embedding":
        return {
            "reference": rng.normal(size=(1_500, 16)),
            "same": rng.normal(size=(1_000, 16)),
            "shifted": rng.normal(loc=0.6, size=(1_000, 16)),
        }
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    return {
        "reference": rng.choice(5, size=3_000, p=weights).astype(np.int32),
        "same": rng.choice(5, size=1_000, p=weights).astype(np.int32),
        "shifted": rng.choice(6, size=1_000, p=[0.1, 0.1, 0.2, 0.2, 0.2, 0.2]).astype(np.int32),  # 5 is unseen
    }


def _fitted(name: str, kind: str, reference: np.ndarray) -> TwoSampleTest:
    test_class = TWO_SAMPLE_TESTS[name]
    test = test_class(kind=kind) if len(test_class.kinds) > 1 else test_class()
    return test.fit(reference)


def test_the_registry_maps_each_name_to_its_class():
    assert sorted(TWO_SAMPLE_TESTS) == [
        "anderson",
        "chisquare",
        "classifier",
        "jensenshannon",
        "ks",
        "mmd",
        "psi",
        "wasserstein",
    ]
    for name, test_class in TWO_SAMPLE_TESTS.items():
        assert issubclass(test_class, TwoSampleTest) and test_class.name == name
        assert set(test_class.kinds) <= set(KINDS)


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_constructible_with_defaults_and_unfitted(name, kind):
    test_class = TWO_SAMPLE_TESTS[name]

    test = test_class(kind=kind) if len(test_class.kinds) > 1 else test_class()

    assert test.threshold == test_class.default_threshold
    assert not test.fitted and test.n_reference == 0
    assert test_class(threshold=0.3).threshold == 0.3


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_score_before_fit_raises(name, kind):
    test_class = TWO_SAMPLE_TESTS[name]

    with pytest.raises(RuntimeError, match="fit"):
        (test_class(kind=kind) if len(test_class.kinds) > 1 else test_class()).score(_samples(kind)["same"])


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_empty_reference_or_window_raises(name, kind):
    samples = _samples(kind)
    test_class = TWO_SAMPLE_TESTS[name]
    test = test_class(kind=kind) if len(test_class.kinds) > 1 else test_class()

    with pytest.raises(ValueError, match="empty"):
        test.fit(samples["reference"][:0])
    with pytest.raises(ValueError, match="empty"):
        test.fit(samples["reference"]).score(samples["same"][:0])


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_fitting_twice_or_refitting_gives_the_same_result(name, kind):
    samples = _samples(kind)
    test = _fitted(name, kind, samples["reference"])
    first = test.score(samples["shifted"])

    again = test.fit(samples["reference"]).score(samples["shifted"])
    after_another = test.fit(samples["shifted"]).fit(samples["reference"]).score(samples["shifted"])

    assert first == again == after_another
    assert test.n_reference == len(samples["reference"])


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_reset_is_idempotent_and_state_round_trips(name, kind):
    samples = _samples(kind)
    test = _fitted(name, kind, samples["reference"])

    restored = pickle.loads(pickle.dumps(test))
    assert restored.score(samples["shifted"]) == test.score(samples["shifted"])
    test._reset()
    test._reset()
    assert not test.fitted


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_no_drift_on_identical_samples(name, kind):
    reference = _samples(kind)["reference"]

    result = _fitted(name, kind, reference).score(reference.copy())

    assert not result.drifted
    if (result.p_value is None and name != "classifier") or name == "ks":  # a classifier's AUC is then near 0.5
        assert result.statistic == pytest.approx(0.0, abs=1e-12)
    if result.p_value is not None:
        assert result.p_value >= TWO_SAMPLE_TESTS[name].default_threshold


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_no_drift_on_a_sample_of_the_same_distribution(name, kind):
    samples = _samples(kind)

    result = _fitted(name, kind, samples["reference"]).score(samples["same"])

    assert not result.drifted, result
    assert result.unseen_share == 0.0


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_drift_on_a_shifted_sample(name, kind):
    samples = _samples(kind)

    result = _fitted(name, kind, samples["reference"]).score(samples["shifted"])

    assert result.drifted, result
    assert result.unseen_share == (pytest.approx(np.mean(samples["shifted"] == 5)) if kind == "categorical" else 0.0)


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_the_result_is_a_frozen_drift_result_consistent_with_the_threshold(name, kind):
    samples = _samples(kind)
    test = _fitted(name, kind, samples["reference"])

    result = test.score(samples["shifted"])

    assert type(result) is DriftResult
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.statistic = 0.0  # type: ignore[misc]
    assert (result.method, result.threshold) == (name, test.threshold)
    assert isinstance(result.statistic, float)
    if test.has_p_value:
        assert isinstance(result.p_value, float) and 0.0 <= result.p_value <= 1.0
        assert result.drifted == (result.p_value < result.threshold)
    else:
        assert result.p_value is None
        assert result.drifted == (result.statistic >= result.threshold)


@pytest.mark.parametrize("name", [name for name, test in TWO_SAMPLE_TESTS.items() if "categorical" in test.kinds])
def test_categorical_tests_take_strings_as_they_take_codes(name):
    samples = _samples("categorical")
    as_strings = {key: LABELS[values] for key, values in samples.items()}

    with_codes = _fitted(name, "categorical", samples["reference"]).score(samples["shifted"])
    with_strings = _fitted(name, "categorical", as_strings["reference"]).score(as_strings["shifted"])

    assert with_strings.statistic == pytest.approx(with_codes.statistic, rel=1e-12)
    assert with_strings == dataclasses.replace(with_codes, statistic=with_strings.statistic)


# The automatic choice: Evidently's default stattest

RNG = np.random.default_rng(3)
AUTO_CASES = [
    ("numeric", RNG.normal(size=1_000), "ks"),
    ("numeric", RNG.normal(size=1_001), "wasserstein"),
    ("numeric", RNG.integers(0, 6, size=800).astype(float), "ks"),  # 6 distinct values
    ("numeric", RNG.integers(0, 5, size=800), "chisquare"),  # 5 distinct values: compared as categories
    ("numeric", RNG.integers(0, 2, size=800), "chisquare"),  # Evidently: z-test
    ("numeric", RNG.integers(0, 5, size=5_000), "jensenshannon"),
    ("categorical", RNG.choice(LABELS, size=1_000), "chisquare"),
    ("categorical", RNG.choice(LABELS[:2], size=300), "chisquare"),  # Evidently: z-test
    ("categorical", RNG.choice(LABELS, size=5_000), "jensenshannon"),
    ("categorical", RNG.integers(0, 50, size=5_000).astype(np.int32), "jensenshannon"),
]
AUTO_IDS = [f"{kind}-{len(reference)}rows-{np.unique(reference).size}values" for kind, reference, _ in AUTO_CASES]


@pytest.mark.parametrize(("kind", "reference", "method"), AUTO_CASES, ids=AUTO_IDS)
def test_auto_method_follows_evidentlys_rule(kind, reference, method):
    assert auto_method(kind, reference) == method


@pytest.mark.parametrize(("kind", "reference", "method"), AUTO_CASES, ids=AUTO_IDS)
def test_auto_method_equals_evidentlys_default_stattest_on_the_reference(kind, reference, method):
    registry = pytest.importorskip("evidently.legacy.calculations.stattests.registry")
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    series = pd.Series(reference)

    chosen = registry._get_default_stattest(series, series, column_type).name  # current = reference: same counts

    assert {"z": "chisquare"}.get(chosen, chosen) == auto_method(kind, reference)


def test_auto_method_tests_a_large_heavy_tailed_reference_with_ks_where_evidently_picks_wasserstein():
    """The one choice that differs by design (detectors/tails.py): a calibrated Wasserstein threshold does not hold
    its false-alarm rate on a heavy tail."""
    registry = pytest.importorskip("evidently.legacy.calculations.stattests.registry")
    from evidently.legacy.core import ColumnType

    reference = RNG.lognormal(0.0, 2.0, size=5_000)
    series = pd.Series(reference)

    assert registry._get_default_stattest(series, series, ColumnType.Numerical).name == "wasserstein"
    assert auto_method("numeric", reference) == "ks"
    assert auto_method("numeric", np.log(reference)) == "wasserstein"  # the same values on a log scale: normal


def test_auto_method_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="numeric, categorical"):
        auto_method("text", np.ones(3))


# Fitting by name


@pytest.mark.parametrize(("kind", "reference", "method"), AUTO_CASES, ids=AUTO_IDS)
def test_make_test_resolves_auto_and_fits(kind, reference, method):
    test = make_test("auto", kind, reference)

    assert test.name == method and test.fitted and test.n_reference == len(reference)
    if method in ("chisquare", "jensenshannon"):  # few distinct numbers are compared as categories
        assert test.score(np.full(3, 99, dtype=reference.dtype)).unseen_share == 1.0


@pytest.mark.parametrize(("name", "kind"), CASES, ids=IDS)
def test_make_test_fits_a_named_method_with_its_threshold(name, kind):
    samples = _samples(kind)

    test = make_test(name, kind, samples["reference"], threshold=0.2)

    assert (type(test), test.threshold, test.fitted) == (TWO_SAMPLE_TESTS[name], 0.2, True)
    result, with_default = (
        test.score(samples["shifted"]),
        _fitted(name, kind, samples["reference"]).score(samples["shifted"]),
    )
    assert (result.statistic, result.p_value, result.threshold) == (with_default.statistic, with_default.p_value, 0.2)
    assert make_test(name, kind, samples["reference"]).threshold == TWO_SAMPLE_TESTS[name].default_threshold


def test_make_test_names_the_valid_methods_for_an_unknown_one():
    with pytest.raises(
        ValueError,
        match="'kolmogorov'.*auto, anderson, chisquare, classifier, jensenshannon, ks, mmd, psi, wasserstein",
    ):
        make_test("kolmogorov", "numeric", np.ones(3))


@pytest.mark.parametrize(
    ("method", "kind", "valid"),
    [
        ("ks", "categorical", "auto, chisquare, jensenshannon, psi"),
        ("chisquare", "numeric", "auto, anderson, jensenshannon, ks, psi, wasserstein"),
    ],
)
def test_make_test_names_the_valid_methods_for_the_kind(method, kind, valid):
    with pytest.raises(ValueError, match=f"'{method}' does not test {kind} features; valid: {valid}$"):
        make_test(method, kind, np.arange(10))


def test_make_test_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown feature kind 'text'"):
        make_test("ks", "text", np.ones(3))

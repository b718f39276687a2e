"""Config names of the detectors: the two-sample tests (with Evidently's automatic choice among
them, and fitting one by name) and the online change detectors."""

from __future__ import annotations

import numpy as np

from detectors._binning import BinnedTest
from detectors._change_detector import ChangeDetector
from detectors._two_sample import TwoSampleTest
from detectors.adwin import ADWIN
from detectors.anderson import AndersonTest
from detectors.chi_square import ChiSquareTest
from detectors.classifier import DomainClassifierTest
from detectors.cusum import CUSUM
from detectors.jensen_shannon import JensenShannonTest
from detectors.ks import KSTest
from detectors.mmd import MMDTest
from detectors.page_hinkley import PageHinkley
from detectors.psi import PSITest
from detectors.tails import heavy_tailed
from detectors.wasserstein import WassersteinTest

__all__ = [
    "AUTO_CANDIDATES",
    "CHANGE_DETECTORS",
    "KINDS",
    "TWO_SAMPLE_TESTS",
    "auto_method",
    "make_test",
    "methods_for",
]

TWO_SAMPLE_TESTS: dict[str, type[TwoSampleTest]] = {
    test.name: test
    for test in (
        KSTest,
        WassersteinTest,
        AndersonTest,
        PSITest,
        JensenShannonTest,
        ChiSquareTest,
        DomainClassifierTest,
        MMDTest,
    )
}
CHANGE_DETECTORS: dict[str, type[ChangeDetector]] = {"adwin": ADWIN, "page_hinkley": PageHinkley, "cusum": CUSUM}
KINDS = ("numeric", "categorical", "embedding")

#: Evidently's cut-offs: a reference of at most this many rows is "small" (p-value tests), and a
#: numeric feature with at most this many distinct values is compared as categories.
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5
#: The methods ``auto_method`` picks for categories; a numeric feature routed to them is binned by value.
_CATEGORY_METHODS = ("chisquare", "jensenshannon")
#: The methods ``auto_method`` may pick for a feature of each kind, whatever its reference.
AUTO_CANDIDATES = {"numeric": ("ks", "wasserstein", *_CATEGORY_METHODS), "categorical": _CATEGORY_METHODS}


def auto_method(kind: str, reference: np.ndarray) -> str:
    """The method Evidently would choose by default for a feature of this kind and reference.

    Follows ``_get_default_stattest`` in ``evidently/legacy/calculations/stattests/registry.py``
    (Evidently 0.7): a numeric feature with more than 5 distinct values gets
    ``ks`` when the reference has at most 1000 rows, else ``wasserstein``;
    a categorical feature, or a numeric one with at most 5 distinct values,
    gets ``chisquare`` when the reference has at most 1000 rows, else
    ``jensenshannon``.

    Three differences: Evidently counts distinct values over reference and
    current data together, the daemon over the reference alone (the choice is
    made once, at fit); for a small reference with at most 2 distinct
    values Evidently runs a z-test of two proportions, for which this returns
    ``chisquare`` (on a 2 x 2 table the two are the same test); and a large
    numeric reference with a heavy tail (:func:`~detectors.tails.heavy_tailed`)
    gets ``ks``, since a calibrated Wasserstein threshold does not hold its
    false-alarm rate there (:mod:`detectors.tails`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> auto_method("numeric", rng.normal(size=500)), auto_method("numeric", rng.normal(size=5_000))
    ('ks', 'wasserstein')
    >>> auto_method("numeric", rng.integers(0, 3, size=500)), auto_method("categorical", np.array(["a"] * 2_000))
    ('chisquare', 'jensenshannon')
    >>> auto_method("numeric", rng.lognormal(0.0, 2.0, size=5_000))
    'ks'
    """
    if kind not in KINDS or kind == "embedding":
        raise ValueError(f"no automatic method for kind {kind!r}; valid: numeric, categorical")
    small = len(reference) <= SMALL_REFERENCE_ROWS
    if kind == "numeric" and np.unique(reference).size > FEW_VALUES:
        return "ks" if small or heavy_tailed(reference) else "wasserstein"
    return "chisquare" if small else "jensenshannon"


def methods_for(kind: str) -> list[str]:
    """The method names that can test a feature of ``kind``, ``"auto"`` first where it applies.

    >>> methods_for("embedding")
    ['classifier', 'mmd']
    """
    automatic = ["auto"] if kind != "embedding" else []
    return automatic + sorted(name for name, test in TWO_SAMPLE_TESTS.items() if kind in test.kinds)


def make_test(method: str, kind: str, reference: np.ndarray, threshold: float | None = None) -> TwoSampleTest:
    """The test named ``method`` (or ``"auto"``) for a feature of this kind, fitted on the reference.

    ``"auto"`` resolves with ``auto_method``; when it sends a numeric feature
    with few distinct values to a categorical test, the values are the
    categories, as in Evidently. An unknown method, or one that does not
    accept the kind, is a ``ValueError`` listing the valid names.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = make_test("auto", "numeric", rng.normal(size=5_000))
    >>> test.name, test.threshold, test.score(rng.normal(loc=1.0, size=1_000)).drifted
    ('wasserstein', 0.1, True)
    >>> make_test("ks", "categorical", np.array(["a", "b"]))
    Traceback (most recent call last):
    ...
    ValueError: 'ks' does not test categorical features; valid: auto, chisquare, jensenshannon, psi
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(KINDS)}")
    reference = np.asarray(reference)
    if method == "auto":
        method = auto_method(kind, reference)
        kind = "categorical" if method in _CATEGORY_METHODS else kind
    test_class = TWO_SAMPLE_TESTS.get(method)
    if test_class is None:
        raise ValueError(f"unknown drift method {method!r}; valid: auto, {', '.join(sorted(TWO_SAMPLE_TESTS))}")
    if kind not in test_class.kinds:
        raise ValueError(f"{method!r} does not test {kind} features; valid: {', '.join(methods_for(kind))}")
    test = test_class(threshold, kind=kind) if issubclass(test_class, BinnedTest) else test_class(threshold)
    return test.fit(reference)

"""A window's accuracy estimated before its labels arrive, from the model's calibrated confidence (CBPE-style)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from detectors._proportions import nan_mean, ratio
from detectors.results import AccuracyEstimate

__all__ = ["AccuracyEstimator"]


class AccuracyEstimator:
    """Expected accuracy of a window from the model's confidence scores, calibrated on a labelled reference.

    In the spirit of NannyML's confidence-based performance estimation (CBPE):
    ``fit(scores, correct)`` learns, on reference rows whose labels are known,
    the probability that a prediction with a given confidence score is correct.
    For a window without labels, each row's calibrated probability ``p_i``
    makes its correctness a Bernoulli(``p_i``) variable, so the window's
    accuracy has expectation ``mean(p_i)`` and, the rows being independent,
    standard deviation ``sqrt(sum p_i (1 - p_i)) / n``. The band is the
    expectation plus or minus the normal quantile of ``confidence`` times that
    deviation, clipped to [0, 1].

    The band covers the sampling of the window's outcomes only. It assumes the
    calibration holds in the window: a shift of the scores (covariate shift)
    moves the estimate, but a change in how often a given score is right
    (concept drift) is invisible until labels arrive; and it leaves out the
    calibration's own error, small for a reference of thousands of rows.

    Calibration methods, each equal to scikit-learn's
    ``CalibratedClassifierCV`` with that method on the same scores:

    - ``"isotonic"``: ``IsotonicRegression(out_of_bounds="clip")``, a
      non-decreasing step function, flat beyond the reference's range;
    - ``"platt"``: Platt's sigmoid ``expit(a * score + b)``, fitted by maximum
      likelihood on Platt's smoothed targets (``(k + 1) / (k + 2)`` for the
      ``k`` correct rows, ``1 / (m + 2)`` for the ``m`` wrong ones) with
      L-BFGS-B from scikit-learn's start and tolerances. scikit-learn rescales
      scores of magnitude 30 or more first; confidence scores in [0, 1] never are.

    Rows whose score (or, in ``fit``, correctness) is NaN are left out.

    Parameters
    ----------
    method
        ``"isotonic"`` or ``"platt"``.
    confidence
        Coverage of the band, in (0, 1).

    Examples
    --------
    >>> rng = np.random.default_rng(11)
    >>> scores = rng.uniform(0.5, 1.0, size=5_000)  # overconfident: right far less often than it claims
    >>> correct = rng.random(5_000) < scores**3
    >>> estimator = AccuracyEstimator().fit(scores, correct)
    >>> window = rng.uniform(0.5, 1.0, size=500)
    >>> estimate = estimator.estimate(window)
    >>> round(estimate.estimated, 3), round(estimate.lower, 3), round(estimate.upper, 3), estimate.n
    (0.476, 0.439, 0.513, 500)
    >>> round(estimator.estimate(window - 0.2).estimated, 3)  # less confident: lower accuracy expected
    0.173
    """

    METHODS = ("isotonic", "platt")

    def __init__(self, method: str = "isotonic", confidence: float = 0.95):
        if method not in self.METHODS:
            raise ValueError(f"unknown calibration method {method!r}; valid: {', '.join(self.METHODS)}")
        if not 0.0 < confidence < 1.0:
            raise ValueError("confidence must lie in (0, 1)")
        self.method = method
        self.confidence = confidence
        self._z = float(norm.isf((1.0 - confidence) / 2.0))
        self._reset()

    def _reset(self) -> None:
        self._isotonic: tuple[np.ndarray, np.ndarray] | None = None  # the step's thresholds and values
        self._sigmoid: tuple[float, float] | None = None  # slope and intercept

    @property
    def fitted(self) -> bool:
        return self._isotonic is not None or self._sigmoid is not None

    def fit(self, scores: np.ndarray, correct: np.ndarray) -> AccuracyEstimator:
        """Calibrate on reference rows: each prediction's score and whether it was correct (1/0); returns self.

        A ``ValueError`` when no row has both a score and a correctness.
        """
        scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=float)
        usable = ~np.isnan(scores) & ~np.isnan(correct)
        if not usable.any():
            raise ValueError("the reference has no row with both a score and a label")
        self._reset()
        scores, correct = scores[usable], correct[usable] == 1
        if self.method == "isotonic":
            isotonic = IsotonicRegression(out_of_bounds="clip").fit(scores, correct)
            self._isotonic = isotonic.X_thresholds_, isotonic.y_thresholds_
        else:
            self._sigmoid = _platt(scores, correct)
        return self

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Probability that each prediction is correct, NaN where the score is."""
        scores = np.asarray(scores, dtype=float)
        scored = ~np.isnan(scores)
        probabilities = np.full(scores.shape, np.nan)
        if self._isotonic is not None:  # what IsotonicRegression.predict computes, without its empty-input error
            probabilities[scored] = np.interp(scores[scored], *self._isotonic)
        elif self._sigmoid is not None:
            slope, intercept = self._sigmoid
            probabilities[scored] = expit(slope * scores[scored] + intercept)
        else:
            raise RuntimeError("fit() a labelled reference before calibrate() or estimate()")
        return probabilities

    def estimate(self, scores: np.ndarray) -> AccuracyEstimate:
        """Expected accuracy of the window's scored rows, with its band; NaN when none is scored."""
        probabilities = self.calibrate(scores)
        probabilities = probabilities[~np.isnan(probabilities)]
        n = probabilities.size
        estimated = nan_mean(probabilities)
        half_width = self._z * ratio(np.sqrt(np.sum(probabilities * (1.0 - probabilities))), n)
        lower, upper = np.clip([estimated - half_width, estimated + half_width], 0.0, 1.0).tolist()
        return AccuracyEstimate(estimated=estimated, lower=lower, upper=upper, n=n)


def _platt(scores: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of Platt's sigmoid, as scikit-learn's ``_sigmoid_calibration`` fits them (sign flipped)."""
    n_correct = int(correct.sum())
    n_wrong = correct.size - n_correct
    target = np.where(correct, (n_correct + 1.0) / (n_correct + 2.0), 1.0 / (n_wrong + 2.0))

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        logit = parameters[0] * scores + parameters[1]
        residual = expit(logit) - target
        return float(np.sum(np.logaddexp(0.0, logit) - target * logit)), np.array([residual @ scores, residual.sum()])

    start = np.array([0.0, np.log((n_correct + 1.0) / (n_wrong + 1.0))])
    result = minimize(
        loss_and_gradient, start, method="L-BFGS-B", jac=True, options={"gtol": 1e-6, "ftol": 64 * np.finfo(float).eps}
    )
    slope, intercept = result.x
    return float(slope), float(intercept)

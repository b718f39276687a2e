"""Embedding drift as a classifier's skill at telling window rows from reference rows (cross-validated ROC AUC)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from detectors._embedding import EmbeddingTest

__all__ = ["DomainClassifierTest"]


class DomainClassifierTest(EmbeddingTest):
    """Cross-validated ROC AUC of a reference-vs-window classifier; drift when at or above ``threshold``.

    Reference rows are labelled 0 and window rows 1, both standardised by the
    reference's mean and standard deviation; an L2-regularised logistic
    regression is trained and scored in ``n_folds`` stratified folds (shuffled
    with ``random_state``), and the statistic is the mean of the folds' AUCs:
    about 0.5 when the window looks like the reference, 1 when every row can be
    told apart. Each side is first cut to ``max_samples`` rows (see
    ``EmbeddingTest``), which bounds the cost whatever the window size.

    Logistic regression rather than SGD: its L2-regularised loss is strictly
    convex, so lbfgs finds the one optimum whatever the row order, with no
    learning rate or epoch count to tune, and at a few thousand rows it costs
    tens of milliseconds per fold.

    Parameters
    ----------
    threshold
        Drift when the AUC is at or above it; None takes 0.55.
    max_samples
        Rows kept of each side.
    n_folds
        Cross-validation folds; the window needs at least that many rows.
    random_state
        Seeds the cut of each side and the folds.

    Notes
    -----
    Evidently's embedding drift (``EmbeddingsDriftMetric``, whose default is
    ``ModelDriftMethod`` in ``evidently/legacy/metrics/data_drift/
    embedding_drift_methods.py``) is the same idea with the same default
    threshold, 0.55. It differs in that it uses every row, so its cost grows
    with the window; trains ``SGDClassifier(loss="log_loss")`` on raw values;
    scores one shuffled 50/50 train/test split instead of cross-validating
    (half the rows never scored, so a noisier AUC); flags drift at ``> 0.55``
    where the base class uses ``>=``; and, for a reference under 1000 rows,
    compares the AUC with the 95th percentile of random predictions' AUCs
    instead of the threshold.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> test = DomainClassifierTest().fit(rng.normal(size=(1_000, 32)))
    >>> round(test.score(rng.normal(size=(500, 32))).statistic, 3)
    0.508
    >>> shifted = rng.normal(size=(500, 32))
    >>> shifted[:, :4] += 0.5
    >>> result = test.score(shifted)
    >>> round(result.statistic, 3), result.drifted
    (0.746, True)
    """

    name = "classifier"
    has_p_value = False
    default_threshold = 0.55

    def __init__(
        self, threshold: float | None = None, max_samples: int = 1000, n_folds: int = 3, random_state: int = 0
    ):
        self.n_folds = int(n_folds)
        super().__init__(threshold, max_samples, random_state)

    @property
    def min_rows(self) -> int:
        return self.n_folds

    def _reset(self) -> None:
        super()._reset()
        self._mean: np.ndarray | None = None
        self._scale: np.ndarray | None = None

    def _fit(self, reference: np.ndarray) -> None:
        super()._fit(reference)
        rows = self._fitted(self._reference)
        self._mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self._scale = np.where(std > 0, std, 1.0)
        self._reference = (rows - self._mean) / self._scale

    def _compare(self, window: np.ndarray, rng: np.random.Generator) -> tuple[float, None, float]:
        reference = self._fitted(self._reference)
        rows = np.vstack((reference, (window - self._fitted(self._mean)) / self._fitted(self._scale)))
        labels = np.repeat([0, 1], [len(reference), len(window)])
        folds = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.random_state)
        aucs = cross_val_score(LogisticRegression(), rows, labels, cv=folds, scoring="roc_auc", error_score="raise")
        return float(aucs.mean()), None, 0.0

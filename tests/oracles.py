"""Figures computed by the independent libraries the statistics are checked against, on the test's own data."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score


def classification_figures(true: Sequence, predicted: Sequence, positive: object) -> dict[str, float]:
    """scikit-learn's accuracy, and precision, recall and F1 of the ``positive`` class, by the names of
    ``driftwarden_quality``'s ``metric`` label."""
    return {
        "accuracy": accuracy_score(true, predicted),
        "precision": precision_score(true, predicted, pos_label=positive),
        "recall": recall_score(true, predicted, pos_label=positive),
        "f1": f1_score(true, predicted, pos_label=positive),
    }

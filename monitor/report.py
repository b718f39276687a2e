"""An HTML drift report of a model's current window against its reference, rendered by Evidently.

Meant for the person paged at night: the same features, methods and
(corrected) thresholds as the latest evaluation, with Evidently's
distributions and per-column verdicts to look at. Categorical codes are
shown as their values, text features as their descriptors; embeddings are
left out (Evidently would need one column per dimension). Rendering takes a
few seconds, so it runs on demand (``driftwarden report``, ``GET
/report?model=NAME``), never on the tick. Evidently and pandas are imported
only here, and only when a report is asked for.
"""

from __future__ import annotations

import numpy as np

from monitor.drift import tested_features
from monitor.pipeline import Pipeline
from monitor.vocabulary import MISSING

__all__ = ["ReportUnavailable", "drift_report_html"]

#: Methods that compare categories: a column tested with one is categorical to Evidently, even if
#: it holds numbers with few distinct values (``auto`` tests those as categories, as Evidently does).
_CATEGORY_METHODS = ("chisquare",)


class ReportUnavailable(LookupError):
    """No report can be drawn yet for this model; the message says why."""


def drift_report_html(pipeline: Pipeline, model: str) -> str:
    """The report of ``model``'s latest evaluated drift, as a standalone HTML page."""
    evaluation = pipeline.evaluations.get(model)
    drift = evaluation.drift if evaluation is not None else None
    if drift is None or not drift.features:
        known = ", ".join(sorted(pipeline.evaluations)) or "none yet"
        raise ReportUnavailable(
            f"model {model!r} has no drift evaluation yet (its reference may still be filling; "
            f"evaluated models: {known})"
        )
    with pipeline.lock:
        state = pipeline.states[model]
        window = state.window.view(evaluation.evaluated_at_ms, pipeline.config.windows.duration_ms)
        reference = state.reference.columns()
        vocabularies = {name: list(vocabulary.values) for name, vocabulary in state.vocabularies.items()}
    columns = {  # label -> window column, for the features the evaluation tested
        feature.label: feature.column
        for feature in tested_features(state.model)
        if feature.label in drift.features and feature.kind != "embedding"
    }
    current = _frame(window, columns, vocabularies)
    reference_frame = _frame(reference, columns, vocabularies)
    return _render(current, reference_frame, {label: drift.features[label] for label in columns})


def _frame(data: dict[str, np.ndarray], columns: dict[str, str], vocabularies: dict[str, list[str]]):
    import pandas as pd

    frame = {}
    for label, column in columns.items():
        values = data[column]
        if label in vocabularies:
            names = np.array(vocabularies[label] + [None], dtype=object)  # MISSING (-1) picks the None
            values = names[np.where(values == MISSING, -1, values)]
        frame[label] = values
    return pd.DataFrame(frame)


def _render(current, reference, results: dict) -> str:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    categorical = [label for label, result in results.items() if result.method in _CATEGORY_METHODS]
    definition = DataDefinition(
        numerical_columns=[label for label in results if label not in categorical], categorical_columns=categorical
    )
    preset = DataDriftPreset(
        columns=list(results),
        per_column_method={label: result.method for label, result in results.items()},
        per_column_threshold={label: result.threshold for label, result in results.items()},
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    return snapshot.get_html_str(as_iframe=False)

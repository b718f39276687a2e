"""The metrics contract as data: every family the daemon exports, with its type, help text and label names.

This is the one place the contract is written. The collectors build every
family from it (and yield no other); alert rules are checked against it, so
a rule on a metric that does not exist, or a selector on a label it does
not have, fails ``check-config`` with the list of what does; the README's
metrics table is generated from it (``python3 -m monitor.export.metrics``,
compared with the README by a test), and the tests of the dashboards and of
the Prometheus rules read it.

A family is named as the exposition shows it (a counter with its ``_total``).
Rules read its samples: a counter's or a gauge's own, a histogram's ``_count``
and ``_sum``.

>>> DRIFT_SHARE.labels
('model',)
>>> REQUEST_LATENCY.sample_names
('driftwarden_request_latency_seconds_count', 'driftwarden_request_latency_seconds_sum')
>>> METRICS["driftwarden_request_latency_seconds_sum"]
('model',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitor.state.vocabulary import OTHER

__all__ = [
    "ALERTING",
    "CONSUMER",
    "DAEMON",
    "EMPTY",
    "EVALUATION",
    "METRICS",
    "PIPELINE",
    "SPEC",
    "MetricSpec",
    "readme_table",
]

#: What an empty label value (a group, class or model named ``""`` in the events) is exported as: Prometheus
#: reads an empty value as no label at all, so the series would lose its group (a value "(empty)" is shown
#: as "((empty))", and so on: :func:`monitor.export.collectors.shown`).
EMPTY = "(empty)"


@dataclass(frozen=True)
class MetricSpec:
    """One family of the contract.

    ``help`` is the exposition's HELP text; ``note`` completes the README's
    labels column (the values a label takes, where the family comes from).
    """

    name: str
    type: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    note: str = ""

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The samples rules can read (a histogram's buckets are left to PromQL)."""
        if self.type == "histogram":
            return f"{self.name}_count", f"{self.name}_sum"
        return (self.name,)

    def readme_row(self) -> str:
        """The family's row of the README's metrics table."""
        labels = ", ".join(self.labels)
        described = f"{labels} ({self.note})" if labels and self.note else labels or f"({self.note})"
        return f"| `{self.name}` | {self.type} | {described} |"


# --- from the pipeline's counters ---------------------------------------------------------------------------------
EVENTS = MetricSpec(
    "driftwarden_events_total", "counter", "Valid events consumed, by model and type.", ("model", "type")
)
EVENTS_INVALID = MetricSpec(
    "driftwarden_events_invalid_total",
    "counter",
    "Events rejected and dead-lettered, by reason.",
    ("reason",),
    "every reason exported from 0",
)
EVENTS_UNMONITORED = MetricSpec(
    "driftwarden_events_unmonitored_total",
    "counter",
    "Valid events of models that no config entry monitors.",
    note="valid events of models no config entry monitors",
)
SPANS_SKIPPED = MetricSpec(
    "driftwarden_spans_skipped_total",
    "counter",
    "OpenTelemetry spans read that were not model calls, by reason.",
    ("reason",),
    "`not_genai` (no `gen_ai.*` attribute) or `not_a_model_call` (a tool's or an agent's span), exported from 0",
)
SPLIT_MODEL_EVENTS = MetricSpec(
    "driftwarden_split_model_events_total",
    "counter",
    "Events of a model that arrived on a partition other than the one its state lives with (its home).",
    ("model",),
    note="its producer does not key events by model: with several replicas, its statistics are split",
)
TOKENS = MetricSpec("driftwarden_tokens_total", "counter", "Tokens used by model calls.", ("model", "direction"))
COST = MetricSpec(
    "driftwarden_cost_total",
    "counter",
    "Spend of the model's calls in its pricing currency: their tokens at the prices of the version each named.",
    ("model", "currency"),
    "models with `pricing` only; currency: its ISO 4217 code, one per model (sum by currency, never across "
    "currencies); exact: each token at its price, summed as a fraction, rounded once",
)
COST_BUDGET = MetricSpec(
    "driftwarden_cost_budget_per_second",
    "gauge",
    "The model's spend budget (pricing.budget) as spend per second in its currency: what "
    "rate(driftwarden_cost_total[...]) should stay under.",
    ("model", "currency"),
    "models with `pricing.budget` only",
)
LABEL_VALUES_DROPPED = MetricSpec(
    "driftwarden_label_values_dropped_total",
    "counter",
    f"Observations whose label value was folded into {OTHER} by a cardinality cap "
    "(metric '*' is every per-model metric).",
    ("metric", "label"),
)
CHANGES = MetricSpec(
    "driftwarden_changes_total",
    "counter",
    "Changes found by the online change detector in a window summary (latency_p50, latency_p95, "
    "error_ratio), one per detection: alert on increase().",
    ("model", "metric", "method"),
    "metric: latency_p50, latency_p95, error_ratio",
)
REFERENCE_EVENTS = MetricSpec(
    "driftwarden_reference_events",
    "gauge",
    "Events in the model's drift reference (a warm-up reference is complete at its configured size).",
    ("model",),
    "a warm-up reference's progress, then its size",
)
REFERENCE_INFO = MetricSpec(
    "driftwarden_reference_info",
    "gauge",
    "1 for the model's complete drift reference: its id (a digest of its events) and its source "
    "(warmup, file or promoted).",
    ("model", "reference_id", "source"),
    "reference_id: 16 hex digits of a sha256 over the reference's events, the same wherever and whenever the "
    "same events are the reference; source: `warmup`, `file` (`promoted` is reserved)",
)
INTERNAL_ERRORS = MetricSpec(
    "driftwarden_internal_errors_total",
    "counter",
    "Exceptions caught where a bug would have stopped the daemon, by stage (ingest counts the events "
    "dropped, evaluate and alerts the model evaluations or rule runs that failed); the log has the trace.",
    ("stage",),
    "`ingest` (events dropped), `evaluate`, `alerts`: exceptions caught where a bug would have stopped the daemon; "
    "the log has the trace",
)
STATE_RESET = MetricSpec(
    "driftwarden_state_reset",
    "gauge",
    "1 for a model whose saved state was not restored at this start, by reason: config_changed (its "
    "config shapes its state differently now) or unreadable (the saved state did not fit).",
    ("model", "reason"),
    "1 for a model whose checkpointed state was not restored at this start: `config_changed` (its config now "
    "shapes its state differently: window size, features, bias or slice attributes, `quality.json_response`, "
    "reference, change detector; a complete warm-up reference is kept unless its own columns, limits or config "
    "changed) or `unreadable`",
)
REQUEST_LATENCY = MetricSpec(
    "driftwarden_request_latency_seconds", "histogram", "End-to-end latency of model calls.", ("model",)
)
TIME_TO_FIRST_TOKEN = MetricSpec(
    "driftwarden_time_to_first_token_seconds",
    "histogram",
    "Time to the first token of streamed model calls.",
    ("model",),
)
LABEL_DELAY = MetricSpec(
    "driftwarden_label_delay_seconds",
    "histogram",
    "Time from a model call to its feedback (0 when the feedback came first), observed at the join.",
    ("model",),
)
FEEDBACK_PENDING = MetricSpec(
    "driftwarden_feedback_pending", "gauge", "Feedback events waiting for their model call.", ("model",)
)
FEEDBACK = MetricSpec(
    "driftwarden_feedback_total",
    "counter",
    "Feedback events by what became of them: joined to their call, expired after label_ttl, "
    "or dropped from a full pending table.",
    ("model", "result"),
    "joined, expired, dropped",
)
# --- from each model's latest evaluation -------------------------------------------------------------------------
WINDOW_EVENTS = MetricSpec(
    "driftwarden_window_events", "gauge", "Inference events in the latest evaluated window.", ("model",)
)
WINDOW_LATENCY = MetricSpec(
    "driftwarden_window_latency_seconds",
    "gauge",
    "Latency quantiles over the latest evaluated window.",
    ("model", "quantile"),
    "0.5, 0.9, 0.95, 0.99",
)
WINDOW_COST = MetricSpec(
    "driftwarden_window_cost_per_call",
    "gauge",
    "Quantiles of a call's cost over the latest evaluated window, in the model's pricing currency.",
    ("model", "currency", "quantile"),
    "0.5, 0.9, 0.95, 0.99 of the calls that report tokens; models with `pricing` only",
)
ERROR_RATIO = MetricSpec(
    "driftwarden_error_ratio", "gauge", "Share of failed calls in the latest evaluated window.", ("model",)
)
LAST_EVALUATION = MetricSpec(
    "driftwarden_last_evaluation_timestamp_seconds",
    "gauge",
    "When each model was last evaluated (event time in replay).",
    ("model",),
)
DRIFT_SCORE = MetricSpec(
    "driftwarden_drift_score",
    "gauge",
    "Drift statistic of a feature's window against its reference.",
    ("model", "feature", "method"),
    "the statistic",
)
DRIFT_P_VALUE = MetricSpec(
    "driftwarden_drift_p_value",
    "gauge",
    "P-value of a feature's drift test (tests that have one).",
    ("model", "feature", "method"),
    "tests that have one",
)
DRIFT_THRESHOLD = MetricSpec(
    "driftwarden_drift_threshold",
    "gauge",
    "What the test is held to: the corrected p-value a feature must reach, or the distance it must reach.",
    ("model", "feature", "method"),
    "the corrected p-value or the distance a feature must reach",
)
DRIFT_DETECTED = MetricSpec(
    "driftwarden_drift_detected",
    "gauge",
    "1 when the feature drifted at the latest evaluation.",
    ("model", "feature"),
    "0/1",
)
DRIFT_SHARE = MetricSpec(
    "driftwarden_drift_share",
    "gauge",
    "Share of the model's tested features that drifted.",
    ("model",),
    "share of tested features that drifted",
)
REFERENCE_AGE = MetricSpec(
    "driftwarden_reference_age_seconds",
    "gauge",
    "Event time from the reference's newest event to the latest evaluation.",
    ("model",),
    "event time from its newest event to the evaluation",
)
_CHECKS_NOTE = "check: `missing`, `type_violation` (of all calls), `out_of_range` (numeric), `unseen_category`"
DATA_QUALITY_SHARE = MetricSpec(
    "driftwarden_data_quality_share",
    "gauge",
    "Share of a feature's window failing a data-quality check: missing or type_violation (of all calls), "
    "out_of_range of the reference's [min, max] (numeric) or unseen_category (categorical) (of the values present).",
    ("model", "feature", "check"),
    _CHECKS_NOTE + " (categorical) (of the values present)",
)
DATA_QUALITY_REFERENCE_SHARE = MetricSpec(
    "driftwarden_data_quality_reference_share",
    "gauge",
    "The reference's own share for the check (out_of_range and unseen_category: each reference value against "
    "the others).",
    ("model", "feature", "check"),
    "out_of_range, unseen_category: each reference value against the others",
)
DATA_QUALITY_P_VALUE = MetricSpec(
    "driftwarden_data_quality_p_value",
    "gauge",
    "P-value of the one-sided test that the window's share is above the reference's.",
    ("model", "feature", "check"),
    "Fisher's exact test; out_of_range: exact under exchangeability",
)
DATA_QUALITY_THRESHOLD = MetricSpec(
    "driftwarden_data_quality_threshold",
    "gauge",
    "The corrected p-value a check must reach to be flagged (the drift tests' correction and alpha).",
    ("model", "feature", "check"),
    "corrected across the model's checks as its drift tests are",
)
DATA_QUALITY_FLAGGED = MetricSpec(
    "driftwarden_data_quality_flagged",
    "gauge",
    "1 when the feature's share for the check is significantly above the reference's at the latest evaluation.",
    ("model", "feature", "check"),
    "0/1",
)
QUALITY = MetricSpec(
    "driftwarden_quality",
    "gauge",
    "Quality of the latest window: labelled metrics (with label_coverage), label-free proxies, "
    "and estimated_accuracy with its band.",
    ("model", "metric"),
    "accuracy, precision, recall, f1, mae, rmse, label_coverage, feedback_positive_ratio, judge_score_mean, "
    "refusal_ratio, empty_response_ratio, error_ratio, json_valid_ratio, estimated_accuracy, "
    "estimated_accuracy_lower, estimated_accuracy_upper",
)
BIAS = MetricSpec(
    "driftwarden_bias",
    "gauge",
    "Disparities of the outcome between an attribute's groups.",
    ("model", "attribute", "metric"),
    "demographic_parity_difference, disparate_impact_ratio, equalized_odds_difference",
)
SEGMENT_OUTCOME_RATIO = MetricSpec(
    "driftwarden_segment_outcome_ratio",
    "gauge",
    "Share of a group's calls with the positive outcome (groups with enough calls only).",
    ("model", "attribute", "group"),
    "groups with at least `min_group_size` calls",
)
SEGMENT_EVENTS = MetricSpec(
    "driftwarden_segment_events",
    "gauge",
    "Calls per group in the latest window; groups below bias.min_group_size are insufficient.",
    ("model", "attribute", "group"),
    "every kept group, insufficient ones too",
)
SLICE_EVENTS = MetricSpec(
    "driftwarden_slice_events",
    "gauge",
    "Calls per group of a slice attribute in the latest window (groups picked on the reference).",
    ("model", "slice", "group"),
    "slice: a `slices.attributes` path; group: the `slices.max_groups` largest of the reference with at least "
    "`min_group_size` calls there, the rest `__other__`; at most (max_groups + 1) x 13 series per slice attribute "
    "with the five families below",
)
SLICE_DRIFT_SHARE = MetricSpec(
    "driftwarden_slice_drift_share",
    "gauge",
    "Share of the model's tested features that drifted in a group's calls against the group's reference calls.",
    ("model", "slice", "group"),
    "groups with at least `slices.min_group_size` calls in the window and in the reference",
)
SLICE_QUALITY = MetricSpec(
    "driftwarden_slice_quality",
    "gauge",
    "Realized quality of a group's calls that have a label in the latest window.",
    ("model", "slice", "group", "metric"),
    "label_coverage, accuracy, precision, recall, f1 (or mae, rmse for a numeric model); groups with at least "
    "`slices.min_group_size` calls",
)
SLICE_DATA_QUALITY = MetricSpec(
    "driftwarden_slice_data_quality_flagged_share",
    "gauge",
    "Share of the model's data-quality checks flagged on a group's calls against the group's reference calls.",
    ("model", "slice", "group"),
    "groups with at least `slices.min_group_size` calls in the window and in the reference; above 0 when some "
    "check is flagged",
)
SLICE_COHORT_CALLS = MetricSpec(
    "driftwarden_slice_cohort_calls",
    "gauge",
    "A group's calls in the labelled cohort (the calls of the last quality.cohort whose labels arrived).",
    ("model", "slice", "group"),
    "groups with calls in the window or the cohort, for a model with a label store",
)
SLICE_COHORT_QUALITY = MetricSpec(
    "driftwarden_slice_cohort_quality",
    "gauge",
    "Realized quality of a group's calls in the labelled cohort, wherever their call now is.",
    ("model", "slice", "group", "metric"),
    "accuracy, precision, recall, f1 (or mae, rmse for a numeric model); groups with at least "
    "`slices.min_group_size` calls in the cohort",
)
COHORT_QUALITY = MetricSpec(
    "driftwarden_cohort_quality",
    "gauge",
    "Realized quality of the labelled cohort (the calls of the last quality.cohort whose labels arrived, "
    "wherever their call now is), and the label-free estimate on the same calls beside it.",
    ("model", "metric"),
    "accuracy, precision, recall, f1, mae, rmse; estimated_accuracy (with _lower, _upper) on the cohort's scored "
    "calls, scored_accuracy their realized accuracy, estimate_error the difference (estimate minus truth)",
)
COHORT_CALLS = MetricSpec(
    "driftwarden_cohort_calls",
    "gauge",
    "Labelled calls in the cohort (reported from windows.min_samples on).",
    ("model",),
    "calls of the last `quality.cohort` of event time whose labels have arrived",
)
COHORT_OLDEST_CALL = MetricSpec(
    "driftwarden_cohort_oldest_call_timestamp_seconds",
    "gauge",
    "Event time of the cohort's oldest labelled call.",
    ("model",),
)
COHORT_NEWEST_CALL = MetricSpec(
    "driftwarden_cohort_newest_call_timestamp_seconds",
    "gauge",
    "Event time of the cohort's newest labelled call: far behind the evaluation, the labels are stale.",
    ("model",),
)
COHORT_BIAS = MetricSpec(
    "driftwarden_cohort_bias",
    "gauge",
    "Disparities between an attribute's groups that need labels, on the labelled cohort.",
    ("model", "attribute", "metric"),
    "equalized_odds_difference",
)
VERSION_CALLS = MetricSpec(
    "driftwarden_version_calls",
    "gauge",
    "Calls of each version of the model in the latest window, and their share of the model's calls.",
    ("model", "version"),
    "version: the model's live versions (at most `versions.max_live`) and `__other__`; calls that name no "
    "version are in no series",
)
VERSION_TRAFFIC_SHARE = MetricSpec(
    "driftwarden_version_traffic_share",
    "gauge",
    "Share of the model's calls in the latest window that each version served.",
    ("model", "version"),
)
VERSION_LATENCY = MetricSpec(
    "driftwarden_version_latency_seconds",
    "gauge",
    "Latency quantiles of each version's calls in the latest window.",
    ("model", "version", "quantile"),
    "0.5, 0.9, 0.95, 0.99",
)
VERSION_QUALITY = MetricSpec(
    "driftwarden_version_quality",
    "gauge",
    "Mean of each figure over each version's calls in the latest window that have it (a ratio for 0/1 figures).",
    ("model", "version", "metric"),
    "error_ratio, feedback_positive_ratio, judge_score, accuracy (labelled calls of a classifier), absolute_error "
    "(of a numeric model's), content_filter_ratio, input_tokens, output_tokens, cost (per call that reports tokens, "
    "in the model's pricing currency, that of `driftwarden_cost_total`; models with `pricing` only)",
)
VERSION_BASELINE = MetricSpec(
    "driftwarden_version_baseline",
    "gauge",
    "1 for the version the model's other versions are compared with.",
    ("model", "version"),
    "`versions.baseline`, or the live version with the most calls in the window",
)
VERSION_COMPARISON = MetricSpec(
    "driftwarden_version_comparison",
    "gauge",
    "A candidate version against the baseline since the comparison began: effect (candidate minus baseline), "
    "its interval, and the anytime-valid p-value.",
    ("model", "version", "baseline", "metric", "stat"),
    "metric: latency (effect: the ratio of geometric means), error_ratio, feedback_positive_ratio, judge_score, "
    "accuracy, absolute_error, content_filter_ratio, input_tokens, output_tokens, cost (per call; models with "
    "`pricing` only) (effect; lower, upper: a "
    "confidence sequence at `versions.alpha` over the number of verdict metrics; p_value: valid however often "
    "read, significant at that level); "
    "latency_p95 (seconds; a "
    "fixed-horizon interval on the window's calls), latency_slower (the probability that a candidate call is "
    "slower than a baseline call), finish_reason_distance and prediction_distance (a classifier's; Jensen-Shannon "
    "distances, base 2, of the output distributions) (effect only); stat: effect, lower, upper, p_value",
)
VERSION_COMPARISON_CALLS = MetricSpec(
    "driftwarden_version_comparison_calls",
    "gauge",
    "Calls each side of a comparison made since it began (the sample its figures rest on).",
    ("model", "version", "baseline", "side"),
    "side: baseline, candidate",
)
VERSION_VERDICT = MetricSpec(
    "driftwarden_version_verdict",
    "gauge",
    "A candidate version's verdict against the baseline: -1 worse, 0 no difference or not yet decided, 1 better.",
    ("model", "version", "baseline"),
    "worse when a verdict metric is significantly worse, better when one is significantly better and none "
    "worse; none before `versions.min_samples` calls a side",
)
# --- from the daemon --------------------------------------------------------------------------------------------
CONSUMER_LAG = MetricSpec(
    "driftwarden_consumer_lag",
    "gauge",
    "Messages not yet consumed, per partition.",
    ("topic", "partition"),
    "`run` only",
)
CHECKPOINTS = MetricSpec(
    "driftwarden_checkpoints_total",
    "counter",
    "Checkpoints by outcome: saved (and committed), or aborted because a sink had undelivered "
    "messages (sink_failed) or the state could not be written (save_failed).",
    ("result",),
    "`saved`, or aborted with nothing committed: `sink_failed` (a dead letter not yet delivered), `save_failed` "
    "(the state could not be written, e.g. a full disk); `run` only",
)
DEAD_LETTERS_FAILED = MetricSpec(
    "driftwarden_dead_letters_failed_total",
    "counter",
    "Dead-letter deliveries that failed; each is sent again, and no offset is committed past it meanwhile.",
    note="dead-letter deliveries that failed; each is sent again, `run` only",
)
BUILD_INFO = MetricSpec(
    "driftwarden_build_info",
    "gauge",
    "1, labelled with the driftwarden release and the Python version the daemon runs.",
    ("version", "python_version"),
    "`run` only; beside it, the process collector's standard `process_*` series (CPU seconds, resident memory, "
    "open file descriptors)",
)
# --- from the alerting --------------------------------------------------------------------------------------------
ALERTS_FIRING = MetricSpec(
    "driftwarden_alerts_firing", "gauge", "Alerts firing now, by rule.", ("alertname", "model", "severity")
)
RETRAINING_JOBS = MetricSpec(
    "driftwarden_retraining_jobs_total",
    "counter",
    "Retraining jobs that reached each status (queued counts every job; published includes acknowledged).",
    ("model", "status"),
    "jobs that reached it: queued counts every job, published includes acknowledged; with a `retrain` rule, "
    "every status of every evaluated model starts at 0, so `increase()` sees the first job; a model is exported by "
    "the replica that holds it, and a `handed_over` job counts on its new owner",
)
ROLLBACK_REQUESTS = MetricSpec(
    "driftwarden_rollback_requests_total",
    "counter",
    "Rollback requests that reached each status (queued counts every request; published includes acknowledged).",
    ("model", "status"),
    "as `driftwarden_retraining_jobs_total`, for the requests of `rollback` rules: one per model and version per "
    "`rollback.cooldown`",
)

#: The families by where they come from, each in the order of the exposition.
PIPELINE: tuple[MetricSpec, ...] = (  # the pipeline's counters and histograms, kept by the hot path
    EVENTS, EVENTS_INVALID, EVENTS_UNMONITORED, SPANS_SKIPPED, SPLIT_MODEL_EVENTS, TOKENS, COST, COST_BUDGET,
    LABEL_VALUES_DROPPED, CHANGES, REFERENCE_EVENTS, REFERENCE_INFO, INTERNAL_ERRORS, STATE_RESET, REQUEST_LATENCY,
    TIME_TO_FIRST_TOKEN, LABEL_DELAY, FEEDBACK_PENDING, FEEDBACK,
)  # fmt: skip
EVALUATION: tuple[MetricSpec, ...] = (  # each model's latest evaluation
    WINDOW_EVENTS, WINDOW_LATENCY, WINDOW_COST, ERROR_RATIO, LAST_EVALUATION,
    DRIFT_SCORE, DRIFT_P_VALUE, DRIFT_THRESHOLD, DRIFT_DETECTED, DRIFT_SHARE, REFERENCE_AGE,
    DATA_QUALITY_SHARE, DATA_QUALITY_REFERENCE_SHARE, DATA_QUALITY_P_VALUE, DATA_QUALITY_THRESHOLD,
    DATA_QUALITY_FLAGGED,
    QUALITY, BIAS, SEGMENT_OUTCOME_RATIO, SEGMENT_EVENTS, SLICE_EVENTS, SLICE_DRIFT_SHARE, SLICE_QUALITY,
    SLICE_DATA_QUALITY, SLICE_COHORT_CALLS, SLICE_COHORT_QUALITY,
    COHORT_QUALITY, COHORT_CALLS, COHORT_OLDEST_CALL, COHORT_NEWEST_CALL, COHORT_BIAS,
    VERSION_CALLS, VERSION_TRAFFIC_SHARE, VERSION_LATENCY, VERSION_QUALITY, VERSION_BASELINE, VERSION_COMPARISON,
    VERSION_COMPARISON_CALLS, VERSION_VERDICT,
)  # fmt: skip
CONSUMER: tuple[MetricSpec, ...] = (CONSUMER_LAG,)  # the Kafka consumer (``run`` only)
#: The daemon's checkpoints, dead letters and build.
DAEMON: tuple[MetricSpec, ...] = (CHECKPOINTS, DEAD_LETTERS_FAILED, BUILD_INFO)
ALERTING: tuple[MetricSpec, ...] = (ALERTS_FIRING, RETRAINING_JOBS, ROLLBACK_REQUESTS)  # the rule engine, the ledgers
#: Every family, in the order a daemon's exposition shows them.
SPEC: tuple[MetricSpec, ...] = PIPELINE + EVALUATION + CONSUMER + DAEMON + ALERTING

#: What rules can read: every sample name of the contract, with its label names.
METRICS: dict[str, tuple[str, ...]] = {name: spec.labels for spec in SPEC for name in spec.sample_names}


def readme_table() -> str:
    """The README's metrics table (a test keeps the README equal to it)."""
    rows = ["| metric | type | labels |", "| --- | --- | --- |", *(spec.readme_row() for spec in SPEC)]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(readme_table(), end="")

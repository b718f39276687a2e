"""The metrics contract as data: every series the daemon exports, by sample name, with its label names.

The exporter yields exactly these (a test compares them with a real
scrape), and alert rules are checked against them, so a rule on a metric
that does not exist, or a selector on a label it does not have, fails
``check-config`` with the list of what does.

>>> METRICS["driftwarden_drift_share"]
('model',)
"""

from __future__ import annotations

__all__ = ["METRICS"]

METRICS: dict[str, tuple[str, ...]] = {
    "driftwarden_events_total": ("model", "type"),
    "driftwarden_events_invalid_total": ("reason",),
    "driftwarden_events_unmonitored_total": (),
    "driftwarden_tokens_total": ("model", "direction"),
    "driftwarden_label_values_dropped_total": ("metric", "label"),
    "driftwarden_changes_total": ("model", "metric", "method"),
    "driftwarden_reference_events": ("model",),
    "driftwarden_request_latency_seconds_count": ("model",),
    "driftwarden_request_latency_seconds_sum": ("model",),
    "driftwarden_time_to_first_token_seconds_count": ("model",),
    "driftwarden_time_to_first_token_seconds_sum": ("model",),
    "driftwarden_label_delay_seconds_count": ("model",),
    "driftwarden_label_delay_seconds_sum": ("model",),
    "driftwarden_feedback_pending": ("model",),
    "driftwarden_feedback_total": ("model", "result"),
    "driftwarden_window_events": ("model",),
    "driftwarden_window_latency_seconds": ("model", "quantile"),
    "driftwarden_error_ratio": ("model",),
    "driftwarden_last_evaluation_timestamp_seconds": ("model",),
    "driftwarden_drift_score": ("model", "feature", "method"),
    "driftwarden_drift_p_value": ("model", "feature", "method"),
    "driftwarden_drift_threshold": ("model", "feature", "method"),
    "driftwarden_drift_detected": ("model", "feature"),
    "driftwarden_drift_share": ("model",),
    "driftwarden_reference_age_seconds": ("model",),
    "driftwarden_quality": ("model", "metric"),
    "driftwarden_bias": ("model", "attribute", "metric"),
    "driftwarden_segment_outcome_ratio": ("model", "attribute", "group"),
    "driftwarden_segment_events": ("model", "attribute", "group"),
    "driftwarden_alerts_firing": ("alertname", "model", "severity"),
    "driftwarden_retraining_jobs_total": ("model", "status"),
    "driftwarden_consumer_lag": ("topic", "partition"),
    "driftwarden_internal_errors_total": ("stage",),
    "driftwarden_state_reset": ("model", "reason"),
    "driftwarden_checkpoints_total": ("result",),
    "driftwarden_dead_letters_failed_total": (),
}

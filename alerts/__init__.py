"""Alert rules, sinks and the job ledger (retraining, rollback); depends on ``detectors.results`` types only.

``alerts.rules`` turns metric samples into alerts (inactive, pending,
firing, resolved); ``alerts.sinks`` delivers them (Alertmanager, webhook,
log) through a persistent outbox; ``alerts.retraining`` queues retraining
jobs and rollback requests in a SQLite ledger and publishes them. Both deliver through the one
HTTP client of ``alerts.http`` (timeouts, no redirects) on the one retry
schedule of ``alerts.backoff``. I/O lives only in these.
"""

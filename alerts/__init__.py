"""Alert rules, sinks and the retraining queue; depends on ``detectors.results`` types only.

The rule engine, the Alertmanager/webhook/log sinks and the retraining queue
land with the alerts issue; until then this package is empty.
"""

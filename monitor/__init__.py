"""The driftwarden daemon, laid out in the order an event travels.

- ``ingest``: sources (Kafka, JSONL) and the event schema that judges each message;
- ``state``: what is kept per model (windows, histograms, feedback, the label store, references);
- ``pipeline``: the hot path into the state, and the evaluation of each model at its boundaries;
- ``evaluate``: the drift and quality suites an evaluation runs (the statistics are in ``detectors``);
- ``export``: what leaves the process: the metrics contract, ``/metrics``, reports, and alerts;
- ``run``: ``driftwarden run`` and ``replay``, checkpoints and the order of commits;
- ``demo``: ``driftwarden demo`` and its embedded broker;
- ``producer``: the light SDK serving code imports; ``config`` and ``cli`` for the operator.
"""

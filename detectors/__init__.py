"""Pure statistics over windows: numpy, scipy and scikit-learn only, no I/O.

Nothing here imports Kafka, Prometheus or logging (a test proves it), so every
calculator can be run, tested and benchmarked on arrays alone.
"""

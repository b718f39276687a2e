"""The driftwarden daemon: config, events, windows, per-model state, pipeline, exporter, CLI."""

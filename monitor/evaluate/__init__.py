"""What each evaluation computes from a model's state: the drift and quality suites, which run ``detectors``."""

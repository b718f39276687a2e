"""The garbage collector as ``driftwarden run`` sets it (``monitor.run.heap``), and why that is safe."""

from __future__ import annotations

import gc
import json

from monitor.config import parse_config
from monitor.demo.scenario import CHAT_FEATURES
from monitor.ingest import PartitionBatch
from monitor.pipeline import Pipeline

T0 = 1_700_000_000


def _message(i: int) -> bytes:
    if i % 97 == 0:
        return b'{"request_id": 1'  # malformed: dead-lettered
    if i % 5 == 4:
        return json.dumps(
            {"type": "feedback", "request_id": f"r{i - 4}", "timestamp": T0 + i / 100, "model": "bot", "rating": 1}
        ).encode()
    event = {
        "request_id": f"r{i}",
        "timestamp": T0 + i / 100,  # 100 events a second: an evaluation every 1,000
        "model": f"bot-{i % 2}" if i % 3 else "bot",
        "latency_ms": 100 + i % 400,
        "input_tokens": i % 300,
        "error": "Timeout" if i % 50 == 0 else None,
        "prompt": "How do I change the billing address on my account?",
        "features": {"topic": ["billing", "login"][i % 2], "temperature": 0.2},
        "segment": {"locale": "en-US"},
    }
    return json.dumps(event).encode()


def test_the_hot_path_and_evaluations_leave_no_reference_cycles():
    """settle_heap lets the youngest generation grow to ``YOUNG_OBJECTS`` before it is collected, so cyclic
    garbage would wait that long: applying batches (valid, malformed, feedback) and evaluating make none."""
    config = {
        "windows": {"size": 2_000, "min_samples": 50, "evaluate_every": "10s"},
        "models": [{"name": "*", "features": CHAT_FEATURES}],
    }
    pipeline = Pipeline(parse_config(config))
    values = [_message(i) for i in range(12_000)]
    batches = [PartitionBatch("t", 0, values[i : i + 500], range(i, i + 500)) for i in range(0, len(values), 500)]
    for batch in batches[:4]:  # first evaluations: references fitted, thresholds calibrated (long-lived state)
        pipeline.apply_batches([batch])
    gc.collect()
    gc.disable()
    try:
        evaluated = pipeline.n_evaluations
        rejected = [letter for batch in batches[4:] for letter in pipeline.apply_batches([batch])]
        assert pipeline.n_evaluations - evaluated >= 10 and rejected
        assert gc.collect() == 0
    finally:
        gc.enable()

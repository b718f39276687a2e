"""Write the example event stream: ``python examples/generate_events.py > examples/events.jsonl``.

Two models over one hour of synthetic traffic, one call a second. Half-way
through, support-bot's latency regresses (x2.5) and its error rate rises.
A few events use OpenTelemetry GenAI attribute names, and a few lines are
malformed on purpose, so that a replay shows every path of the decoder.
"""

from __future__ import annotations

import json
import sys

import numpy as np

START = 1_767_225_600  # 2026-01-01T00:00:00Z
N_EVENTS = 3_600
TOPICS = ["billing", "login", "shipping", "returns"]
LOCALES = ["en-US", "de-DE", "fr-FR", "ja-JP"]


def events(rng: np.random.Generator) -> list[str]:
    lines = []
    for i in range(N_EVENTS):
        model = "support-bot" if i % 3 else "summarizer"
        regressed = model == "support-bot" and i >= N_EVENTS // 2
        latency_ms = float(rng.lognormal(6.3, 0.4) * (2.5 if regressed else 1.0))
        event = {
            "request_id": f"req-{i:05d}",
            "timestamp": START + i,
            "model": model,
            "model_version": "2026-01",
            "operation": "chat",
            "latency_ms": round(latency_ms, 1),
            "ttft_ms": round(latency_ms * float(rng.uniform(0.1, 0.3)), 1),
            "input_tokens": int(rng.poisson(300)),
            "output_tokens": int(rng.poisson(120)),
            "finish_reason": "stop",
            "error": "RateLimitError" if rng.random() < (0.08 if regressed else 0.01) else None,
            "prompt": f"Question {i} about {TOPICS[i % 4]}",
            "features": {"topic": TOPICS[int(rng.integers(4))]},
            "segment": {"locale": LOCALES[int(rng.integers(4))]},
        }
        if i % 50 == 7:  # OpenTelemetry GenAI names, as instrumentation writes them
            event["gen_ai.usage.input_tokens"] = event.pop("input_tokens")
            event["gen_ai.response.finish_reasons"] = [event.pop("finish_reason")]
            event["gen_ai.response.time_to_first_chunk"] = event.pop("ttft_ms") / 1000
        lines.append(json.dumps(event))
        if i % 400 == 399:
            lines.append(
                json.dumps(
                    {"request_id": f"fb-{i}", "type": "feedback", "timestamp": START + i, "model": model, "rating": 1}
                )
            )
    lines[100] = '{"request_id": "broken", "timestamp": '  # truncated write
    lines[900] = json.dumps({"request_id": "neg", "timestamp": START + 900, "model": "summarizer", "latency_ms": -5})
    lines[2000] = json.dumps({"request_id": "ts", "timestamp": "yesterday", "model": "support-bot"})
    return lines


if __name__ == "__main__":
    sys.stdout.write("\n".join(events(np.random.default_rng(20260101))) + "\n")

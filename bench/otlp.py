"""OpenTelemetry topics against driftwarden's JSON events: the same model calls, decoded and applied.

``--calls`` model calls (20,000 by default) of two models, each with latency, tokens, a finish reason, a provider
and a response id, are written three ways: as driftwarden's JSON events (one a message, as the producer SDK
sends them), and as the OpenTelemetry SDK's spans encoded by its own OTLP encoders, ``otlp_proto`` and
``otlp_json``, ``--spans`` spans a request (a Collector's batch; 100 by default). Each is applied to a fresh
pipeline (decode, then ingest: what the daemon's loop does with a poll), in batches of 2,000 messages for the
JSON events and of 20 requests for the spans, interleaved, best of ``--repeat``. Printed: each path's model calls
a second and its ratio to the JSON events', measured in the same run.

Run: ``python bench/otlp.py [--calls 20000] [--spans 100] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as encode_json
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode_proto
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from monitor.config import parse_config
from monitor.ingest import PartitionBatch
from monitor.pipeline import Pipeline

T0_NS = 1_790_000_000 * 10**9
MODELS = ("chat-a", "chat-b")


def calls(n: int, seed: int = 5) -> list[dict]:
    generator = random.Random(seed)
    return [
        {
            "model": MODELS[i % 2],
            "start_ns": T0_NS + i * 10_000_000,
            "latency_ns": generator.randint(50, 5_000) * 1_000_000,
            "input_tokens": generator.randint(5, 2_000),
            "output_tokens": generator.randint(1, 800),
        }
        for i in range(n)
    ]


def json_events(made: list[dict]) -> list[bytes]:
    return [
        json.dumps(
            {
                "request_id": f"r{i}",
                "timestamp": (call["start_ns"] + call["latency_ns"]) / 1e9,
                "model": call["model"],
                "latency_ms": call["latency_ns"] / 1e6,
                "input_tokens": call["input_tokens"],
                "output_tokens": call["output_tokens"],
                "finish_reason": "stop",
                "provider": "openai",
                "operation": "chat",
                "response_id": f"chatcmpl-{i}",
            }
        ).encode()
        for i, call in enumerate(made)
    ]


def spans(made: list[dict]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for i, call in enumerate(made):
        span = tracer.start_span(f"chat {call['model']}", start_time=call["start_ns"])
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": call["model"],
                "gen_ai.response.id": f"chatcmpl-{i}",
                "gen_ai.usage.input_tokens": call["input_tokens"],
                "gen_ai.usage.output_tokens": call["output_tokens"],
                "gen_ai.response.finish_reasons": ["stop"],
            }
        )
        span.end(end_time=call["start_ns"] + call["latency_ns"])
    provider.shutdown()
    return list(exporter.get_finished_spans())


def batches(topic: str, messages: list[bytes], per_batch: int) -> list[PartitionBatch]:
    return [
        PartitionBatch(topic, 0, messages[start : start + per_batch], range(start, start + per_batch))
        for start in range(0, len(messages), per_batch)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--spans", type=int, default=100, help="spans a request (a Collector's batch)")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    made = calls(arguments.calls)
    recorded = spans(made)
    requests = {
        encoding: [
            encode(recorded[start : start + arguments.spans]) for start in range(0, len(recorded), arguments.spans)
        ]
        for encoding, encode in (
            ("otlp_proto", lambda part: encode_proto(part).SerializeToString()),
            ("otlp_json", lambda part: encode_json(part).to_json().encode()),
        )
    }
    paths = {
        "driftwarden JSON events, one a message": batches("events", json_events(made), 2_000),
        f"otlp_proto, {arguments.spans} spans a message": batches("proto", requests["otlp_proto"], 20),
        f"otlp_json, {arguments.spans} spans a message": batches("json", requests["otlp_json"], 20),
    }
    topics = [
        {"name": "events"},
        {"name": "proto", "encoding": "otlp_proto"},
        {"name": "json", "encoding": "otlp_json"},
    ]
    config = parse_config({"kafka": {"topics": topics}, "windows": {"evaluate_every": "1d"}}, environ={})
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(arguments.repeat):  # interleaved: the machine's load falls on all alike
        for name, polls in paths.items():
            pipeline = Pipeline(config)
            started = time.perf_counter()
            for poll in polls:
                assert pipeline.apply_batches([poll]) == []
            times[name].append(time.perf_counter() - started)
            assert sum(state.n_events["inference"] for state in pipeline.states) == len(made)
    baseline = arguments.calls / min(times["driftwarden JSON events, one a message"])
    print(f"{arguments.calls:,} model calls, best of {arguments.repeat}")
    print("| path | model calls/s (spans/s: each span a call) | ratio to JSON events |")
    print("| --- | --- | --- |")
    for name, measured in times.items():
        rate = arguments.calls / min(measured)
        print(f"| {name} | {rate:,.0f} | {rate / baseline:.2f}x |")


if __name__ == "__main__":
    main()

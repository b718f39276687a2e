"""Spans made by the real OpenTelemetry SDK and encoded by its own OTLP encoders: the bytes a Collector forwards.

:func:`genai_calls` records what a GenAI instrumentation records for model calls (with known times, tokens and
outcomes), mixed with spans that are not model calls; :func:`encode` gives one ``ExportTraceServiceRequest`` in an
encoding. The oracle of a test is read back from the SDK's own spans (:func:`expected_calls`), never from driftwarden.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as encode_json
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode_proto
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

NS = 1_000_000_000


class Call(NamedTuple):
    """What the SDK recorded for one model call, as the oracle reads it."""

    model: str
    trace_id: str
    span_id: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    failed: bool


def genai_calls(
    n: int, start_s: int, models: Sequence[str] = ("chat-a", "chat-b"), seed: int = 0
) -> list[ReadableSpan]:
    """``n`` model calls' spans (a chat call each, one second apart from ``start_s``, under an HTTP server span,
    every fourth calling a tool, every tenth failing), and an evaluation result on every fifth: ``3n`` spans and
    more, in the order they ended."""
    generator = random.Random(seed)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        began = (start_s + i) * NS
        model = models[i % len(models)]
        with tracer.start_as_current_span(
            "POST /chat", kind=SpanKind.SERVER, start_time=began, end_on_exit=False
        ) as server:
            server.set_attribute("http.request.method", "POST")
            call = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, start_time=began + 1_000_000)
            call.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": f"{model}-2026-01-01",
                    "gen_ai.response.id": f"chatcmpl-{i}",
                    "gen_ai.usage.input_tokens": generator.randint(5, 2_000),
                    "gen_ai.usage.output_tokens": generator.randint(1, 800),
                    "gen_ai.response.finish_reasons": ["length" if i % 7 == 0 else "stop"],
                }
            )
            if i % 10 == 0:
                call.set_attribute("error.type", "timeout")
                call.set_status(Status(StatusCode.ERROR, "upstream timed out"))
            if i % 5 == 0:
                call.add_event(
                    "gen_ai.evaluation.result",
                    {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": (i % 11) / 10},
                    timestamp=began + 900_000_000,
                )
            call.end(end_time=began + 1_000_000 + generator.randint(50, 5_000) * 1_000_000)
            if i % 4 == 0:
                tool = tracer.start_span("execute_tool lookup", start_time=began + 2_000_000)
                tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"})
                tool.end(end_time=began + 3_000_000)
            server.end(end_time=began + 6 * NS)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def expected_calls(spans: Sequence[ReadableSpan]) -> list[Call]:
    """The model calls among ``spans``, read from the SDK's spans."""
    return [
        Call(
            span.attributes["gen_ai.request.model"],
            f"{span.context.trace_id:032x}",
            f"{span.context.span_id:016x}",
            (span.end_time - span.start_time) / 1e6,
            span.attributes["gen_ai.usage.input_tokens"],
            span.attributes["gen_ai.usage.output_tokens"],
            span.status.status_code is StatusCode.ERROR,
        )
        for span in spans
        if "gen_ai.request.model" in span.attributes
    ]


def encode(spans: Sequence[ReadableSpan], encoding: str) -> bytes:
    """One ``ExportTraceServiceRequest`` of ``spans`` as the Collector's Kafka exporter writes it in ``encoding``."""
    if encoding == "otlp_proto":
        return encode_proto(spans).SerializeToString()
    return encode_json(spans).to_json().encode()

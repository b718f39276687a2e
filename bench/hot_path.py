"""Hot-path throughput: decode + validate + window append + counters/histograms, per event.

Measured on one core from an in-memory batch of realistic events, against
baselines run on the same bytes in the same process, interleaved and best of
``--repeat``, in CPU time of the process (``time.process_time``: the machines
are shared, and time spent waiting for a core is no one's work; read the ratios):

- ``json.loads`` alone: the floor any Python consumer pays to look at an event;
- msgspec alone, each message decoded into the :class:`~monitor.ingest.events.Event`
  struct (no validation beyond the types, no state): the decoder's own limit;
- a hand-rolled exporter: ``json.loads`` then prometheus-client's
  ``Counter.inc`` and two ``Histogram.observe`` per event (children cached).

The events are dated like a busy service's: 1,000 a second of event time, in
order (``realistic_events``), so that a model's event time crosses an
evaluation boundary (every 30 s by default) once in 30,000 events, as in
production; the evaluation tick has its own benchmark, ``bench/quality.py``.
The daemon is timed as it runs for days, past its start: each run's pipeline
is first fed as many events dated just before (untimed), which complete every
model's warm-up reference and its first evaluation (where the drift tests are
fitted on the reference and their thresholds calibrated, once per reference);
that first evaluation's time is printed apart.
BLAS runs one thread, as ``driftwarden run`` sets it (threads spinning after an
evaluation would count in the process's CPU time).

The target (issue 14): the driftwarden hot path at least 1.2x ``json.loads``.

Run: ``python bench/hot_path.py [--events 200000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from threadpoolctl import threadpool_limits

from monitor.config import KafkaConfig, parse_config
from monitor.demo.scenario import CHAT_FEATURES
from monitor.ingest import PartitionBatch
from monitor.ingest.events import Event
from monitor.pipeline import Pipeline

#: A poll's size: the daemon's default batch.
BATCH = KafkaConfig.model_fields["max_poll_records"].default
#: Models the events are spread over, in turn.
N_MODELS = 4
#: The first event's time.
START = datetime(2026, 11, 27, 10, tzinfo=UTC)
CONFIG = {"windows": {"size": 10_000}, "models": [{"name": "*", "features": CHAT_FEATURES}]}


def realistic_events(n: int, seed: int = 1, start: datetime = START, first_id: int = 0) -> list[bytes]:
    """Events shaped like a chat service's: ~450 bytes, ids (numbered from ``first_id``), usage, features,
    segment, prompt; dated 1 ms apart in order (1,000 events a second) from ``start``."""
    rng = np.random.default_rng(seed)
    topics = ["billing", "login", "shipping", "returns", "other"]
    events = []
    for i in range(n):
        event = {
            "request_id": f"3f1c9a7e-{first_id + i:012d}",
            "timestamp": (start + timedelta(milliseconds=i)).isoformat(timespec="milliseconds")[:-6] + "Z",
            "model": f"model-{i % N_MODELS}",
            "model_version": "2026-11-01",
            "operation": "chat",
            "provider": "openai",
            "latency_ms": round(float(rng.lognormal(6.5, 0.5)), 1),
            "ttft_ms": round(float(rng.lognormal(5.0, 0.4)), 1),
            "input_tokens": int(rng.poisson(400)),
            "output_tokens": int(rng.poisson(150)),
            "finish_reason": "stop",
            "error": None if rng.random() > 0.02 else "RateLimitError",
            "prompt": "How do I change the billing address on my account?",
            "features": {"topic": topics[i % 5], "temperature": 0.2},
            "segment": {"locale": "en-US", "tier": "pro"},
        }
        events.append(json.dumps(event).encode())
    return events


#: What one poll of a Kafka source hands over.
Poll = list[PartitionBatch]


def batches_of(values: list[bytes]) -> list[Poll]:
    """The polls a Kafka source would hand over: ``BATCH`` messages each, all from one partition."""
    polls = []
    for start in range(0, len(values), BATCH):
        chunk = values[start : start + BATCH]
        polls.append([PartitionBatch("llm-events", 0, chunk, range(start, start + len(chunk)))])
    return polls


def run_json_loads(values: list[bytes]) -> None:
    loads = json.loads
    for value in values:
        loads(value)


def run_msgspec(values: list[bytes]) -> None:
    decode = msgspec.json.Decoder(Event).decode
    for value in values:
        decode(value)


def run_hand_rolled(values: list[bytes]) -> None:
    registry = CollectorRegistry()
    events = Counter("events", "events", ["model", "type"], registry=registry)
    latency = Histogram("latency_seconds", "latency", ["model"], registry=registry)
    ttft = Histogram("ttft_seconds", "ttft", ["model"], registry=registry)
    children: dict[str, tuple] = {}
    loads = json.loads
    for value in values:
        event = loads(value)
        model = event["model"]
        child = children.get(model)
        if child is None:
            child = children[model] = (events.labels(model, "inference"), latency.labels(model), ttft.labels(model))
        child[0].inc()
        child[1].observe(event["latency_ms"] / 1000.0)
        child[2].observe(event["ttft_ms"] / 1000.0)


def warmed_pipeline(warmup: list[Poll]) -> tuple[Pipeline, float]:
    """A pipeline fed the warm-up batches (events dated before the timed ones), and the CPU seconds its
    evaluations took (the first of each model: the drift tests fitted and calibrated on its reference)."""
    pipeline = Pipeline(parse_config(CONFIG))
    evaluate = pipeline.evaluate
    seconds = 0.0

    def timed_evaluate(*arguments, **keywords) -> None:
        nonlocal seconds
        start = time.process_time()
        evaluate(*arguments, **keywords)
        seconds += time.process_time() - start

    pipeline.evaluate = timed_evaluate  # type: ignore[method-assign]
    for batch in warmup:
        pipeline.apply_batches(batch)
    del pipeline.evaluate  # the class's again: no cycle keeps a run's pipeline alive into the next run
    return pipeline, seconds


def driftwarden_rate(warmup: list[Poll], batches: list[Poll], n_events: int) -> tuple[float, float]:
    """The warmed pipeline's events/s over the batches, and the CPU seconds its warm-up evaluations took."""
    pipeline, evaluation_s = warmed_pipeline(warmup)
    apply = pipeline.apply_batches
    gc.collect()  # the warm-up's garbage is not the timed events' to collect
    start = time.process_time()
    for batch in batches:
        apply(batch)
    return n_events / (time.process_time() - start), evaluation_s


def best_rate(run, data, n_events: int) -> float:
    gc.collect()
    start = time.process_time()
    run(data)
    return n_events / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    threadpool_limits(limits=1)  # as `driftwarden run` does
    values = realistic_events(arguments.events)
    before = START - timedelta(milliseconds=len(values))
    warmup = batches_of(realistic_events(len(values), seed=2, start=before, first_id=len(values)))
    batches = batches_of(values)
    n = len(values)
    runs = {
        "json.loads only": run_json_loads,
        "msgspec decode into Event only": run_msgspec,
        "hand-rolled prometheus-client exporter": run_hand_rolled,
    }
    rates = dict.fromkeys([*runs, "driftwarden hot path"], 0.0)
    evaluation_s = []
    for _ in range(arguments.repeat):  # interleave so that a noisy neighbour hurts all alike
        for name, run in runs.items():
            rates[name] = max(rates[name], best_rate(run, values, n))
        rate, seconds = driftwarden_rate(warmup, batches, n)
        rates["driftwarden hot path"] = max(rates["driftwarden hot path"], rate)
        evaluation_s.append(seconds)
    baseline = rates["json.loads only"]
    size = sum(map(len, values)) / n
    print(f"{n} events of {size:.0f} bytes on average, best of {arguments.repeat}, one core\n")
    print("| path | events/s | vs json.loads |")
    print("| --- | ---: | ---: |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / baseline:.2f} |")
    target = 1.2
    ratio = rates["driftwarden hot path"] / baseline
    verdict = "meets" if ratio >= target else "MISSES"
    print(
        f"\nafter a warm-up of {n} events dated before (untimed), whose evaluations took {min(evaluation_s):.2f} s"
        f" of CPU for {N_MODELS} models (each model's first: its drift tests fitted and calibrated on its reference)"
    )
    print(f"target: driftwarden hot path >= {target}x json.loads on the same bytes: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()

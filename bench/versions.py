"""What model versions cost: the comparison's share of an evaluation tick, and of the hot path.

One model with a 100,000-event window (``--window``) and ``--versions`` live versions (4 by default: a stable
one with most of the traffic and three candidates at 10% each), priced (so its calls' cost is compared too), fed
150,000 calls (``--calls``) with latency, errors, input and output tokens and judge scores for a tenth of them, so
that the window has wrapped around and every comparison has calls settled out of it as well as calls in it. In
the same run, interleaved, best of ``--repeat``:

- **tick**: what an evaluation spends on versions (``ModelState.read_versions`` under the lock and
  ``evaluate_versions``: every version's figures, every candidate's anytime-valid tests on all metrics, the
  p95 difference and the probability of being slower), against the baseline of the same window's plain
  traffic figures (``TrafficStats.compute``: latency quantiles and error ratio of the whole window);
- **hot path**: applying the same calls to a pipeline whose events name versions, against one whose events
  name none (``model_version`` left out): the cost of coding versions and settling the comparisons.

Run: ``python bench/versions.py [--window 100000] [--versions 4] [--repeat 5]``; ``--quick`` runs small.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from detectors.traffic import TrafficStats
from monitor.config import parse_config
from monitor.evaluate.versions import evaluate_versions
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.state.columns import FAILED, LATENCY_MS

T0_S = 1_790_000_000
BATCH = 2_000


def records(n_calls: int, n_versions: int, with_versions: bool, seed: int = 3) -> list[list[Record]]:
    """Batches of the model's calls (and feedback), as a consumer's polls bring them."""
    rng = np.random.default_rng(seed)
    names = ["stable", *(f"canary-{i}" for i in range(1, n_versions))]
    shares = np.array([1.0 - 0.1 * (n_versions - 1), *[0.1] * (n_versions - 1)])
    lines = []
    for i, version in enumerate(rng.choice(n_versions, size=n_calls, p=shares)):
        latency_ms = round(float(rng.lognormal(6, 0.4)), 1)
        call = {"request_id": f"r{i}", "timestamp": T0_S + i / 100, "model": "bot", "latency_ms": latency_ms}
        call["input_tokens"], call["output_tokens"] = int(rng.poisson(900)), int(rng.poisson(120))
        if with_versions:
            call["model_version"] = names[version]
        if rng.random() < 0.02:
            call["error"] = "Timeout"
        lines.append(json.dumps(call).encode())
        if rng.random() < 0.1:
            feedback = {"type": "feedback", "request_id": f"r{i}", "timestamp": T0_S + i / 100, "model": "bot",
                        "judge_score": round(float(rng.random()), 3)}  # fmt: skip
            lines.append(json.dumps(feedback).encode())
    batch = [Record(line, "llm-events", 0, offset) for offset, line in enumerate(lines)]
    return [batch[start : start + BATCH] for start in range(0, len(batch), BATCH)]


def pipeline(window: int, first: list[Record]) -> Pipeline:
    """A pipeline (no evaluation while it is fed) that has applied ``first`` and evaluated once: the comparisons
    have begun, so the calls that follow settle into them as the window overwrites them."""
    pricing = {"currency": "USD", "input": 3, "output": 15, "versions": {"canary-1": {"output": 12}}}
    model = {"name": "bot", "reference": {"warmup": 1_000}, "versions": {"min_samples": 100}, "pricing": pricing}
    config = {"windows": {"size": window, "min_samples": 100, "evaluate_every": "1d"}, "models": [model]}
    fed = Pipeline(parse_config(config, environ={}))
    fed.apply(first)
    fed.evaluate(fed.watermark_ms)
    return fed


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--calls", type=int, default=None, help="calls fed (default: 1.5 windows)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small run, to check that it runs")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.window, arguments.repeat = 5_000, 2
    n_calls = arguments.calls or arguments.window * 3 // 2
    versioned, plain = records(n_calls, arguments.versions, True), records(n_calls, arguments.versions, False)

    ingest_times: dict[str, list[float]] = {"versions": [], "plain": []}
    for _ in range(arguments.repeat):  # interleaved: the machine's load falls on both alike
        for name, batches in (("versions", versioned), ("plain", plain)):
            fed = pipeline(arguments.window, batches[0])
            started = time.perf_counter()
            for batch in batches[1:]:
                fed.apply(batch)
            ingest_times[name].append(time.perf_counter() - started)
    fed = pipeline(arguments.window, versioned[0])
    for batch in versioned[1:]:
        fed.apply(batch)
    state = fed.states["bot"]
    view = state.window.view()
    now_ms = state.watermark_ms
    traffic = TrafficStats()
    tick_s = best_of(arguments.repeat, lambda: evaluate_versions(state.read_versions(view), view, now_ms))
    baseline_s = best_of(arguments.repeat, lambda: traffic.compute(view[LATENCY_MS], view[FAILED]))
    result = evaluate_versions(state.read_versions(view), view, now_ms)
    settled = state.versions.comparisons["canary-1"].settled["latency"][1].n
    assert "cost" in result.comparisons["canary-1"].metrics, "the calls are priced: their cost is compared"

    versions_s, plain_s = min(ingest_times["versions"]), min(ingest_times["plain"])
    n_fed = sum(map(len, versioned[1:]))
    print(f"window {arguments.window:,} events, {arguments.versions} live versions, {n_calls:,} calls fed; best of")
    print(f"{arguments.repeat}; comparisons: {len(result.comparisons)}, canary-1's calls settled: {settled:,}")
    print("| measure | versions | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    tick = f"{tick_s * 1000:.1f} ms | {baseline_s * 1000:.1f} ms | {tick_s / baseline_s:.2f}x"
    print(f"| tick: versions' figures and comparisons, against the window's traffic figures | {tick} |")
    rates = f"{n_fed / versions_s:,.0f} | {n_fed / plain_s:,.0f} | {plain_s / versions_s:.2f}x"
    print(f"| hot path: events a second with versions, against the same without | {rates} |")


if __name__ == "__main__":
    main()

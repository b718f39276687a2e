"""What the alert rules cost per model evaluation, with many models: typed samples against the exposition route.

``--models`` models (200 by default), each with three numeric features, a warm-up reference, quality and a
bias attribute, are fed and evaluated once; then every model is evaluated by the rules on its own, as the
daemon does when each model reaches its own boundary (``Alerting.tick(models={name})``), with three rules
(drift share, error ratio, p95 latency) and the daemon's collectors (consumer lag, the alerts). Two ways
to give the rules their samples, timed in the same run, interleaved, best of ``--repeat``:

- **exposition route** (the code before the metrics spec): collect the whole registry into Prometheus
  families and read their samples back, on every tick, for every model;
- **typed samples**: ``Exports.samples`` reads the collectors' typed readings of the evaluated model only,
  of the metrics the rules name.

Both must return the same alerts; the bench checks it. A round of one tick per model is O(models^2) work
on the exposition route and O(models) with typed samples, so the ratio grows with the number of models.

Run: ``python bench/rules.py [--models 200] [--repeat 5]``; ``--quick`` runs small, to check that it runs.
"""

from __future__ import annotations

import argparse
import json
import time

from alerts.rules import Sample
from monitor.config import parse_config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import ConsumerLagCollector, Exports, PipelineCollector
from monitor.ingest import Record
from monitor.pipeline import Pipeline

T0_S = 1_790_000_000
EVENTS_PER_MODEL = 300
RULES = [
    {"name": "Drift", "metric": "drift_share", "op": ">", "threshold": 0.3},
    {"name": "Errors", "metric": "error_ratio", "op": ">", "threshold": 0.1},
    {"name": "SlowP95", "metric": "window_latency_seconds", "selector": {"quantile": "0.95"}, "op": ">",
     "threshold": 1.0},
]  # fmt: skip


def config(n_models: int):
    return parse_config(
        {
            "windows": {"size": 200, "min_samples": 20},
            "limits": {"max_models": n_models + 1},
            "models": [
                {
                    "name": "*",
                    "reference": {"warmup": 100},
                    "features": [{"name": f"x{i}", "kind": "numeric"} for i in range(3)],
                    "quality": {"positive": "yes"},
                    "bias": {"attributes": ["segment.region"], "outcome": {"positive": "yes"}},
                }
            ],
            "alerts": {"rules": RULES},
        },
        environ={},
    )


def records(n_models: int) -> list[Record]:
    lines = []
    for i in range(EVENTS_PER_MODEL):
        for m in range(n_models):
            shift = 5 * (i > 200) * (m % 3 == 0)  # a third of the models drift late in their window
            lines.append(
                {"request_id": f"m{m}-{i}", "timestamp": T0_S + i, "model": f"model-{m}",
                 "latency_ms": 100 + (i * 37 + m) % 2000,
                 "error": "Timeout" if (i + m) % 13 == 0 else None, "prediction": "yes" if (i + m) % 3 else "no",
                 "features": {f"x{k}": (i * (k + 1) + m) % 50 + shift * 10 for k in range(3)},
                 "segment": {"region": ("north", "south", "east")[(i + m) % 3]}}  # fmt: skip
            )
    return [Record(json.dumps(line).encode(), "t", 0, offset) for offset, line in enumerate(lines)]


def exposition_route(exports: Exports):
    """The samples as the rules read them before the spec: the whole registry, collected and read back."""

    def samples(models, names) -> list[Sample]:
        return [Sample(s.name, s.labels, s.value) for family in exports.registry.collect() for s in family.samples]

    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_models, repeat = (20, 2) if args.quick else (args.models, args.repeat)

    cfg = config(n_models)
    pipeline = Pipeline(cfg)
    batch = records(n_models)
    for start in range(0, len(batch), 2_000):
        pipeline.apply(batch[start : start + 2_000])
    now_ms = pipeline.watermark_ms
    pipeline.evaluate(now_ms)
    models = [state.name for state in pipeline.states]

    exports = Exports(PipelineCollector(pipeline), ConsumerLagCollector(lambda: {("llm-events", 0): 3}))
    routes = {"exposition route": exposition_route(exports), "typed samples": exports.samples}
    alerting = {name: Alerting(cfg, read, deliver=False) for name, read in routes.items()}
    exports.add(AlertsCollector(alerting["typed samples"]))

    def round_of(name: str) -> list:
        return [alert for model in models for alert in alerting[name].tick(pipeline, now_ms, {model})]

    fired = {name: round_of(name) for name in routes}  # first round: pending -> firing
    fired = {name: round_of(name) for name in routes}
    assert fired["exposition route"] == fired["typed samples"], "the two routes disagree"
    best = dict.fromkeys(routes, float("inf"))
    for _ in range(repeat):
        for name in routes:
            started = time.perf_counter()
            round_of(name)
            best[name] = min(best[name], time.perf_counter() - started)

    n_samples = len(exports.samples())
    print(f"{n_models} models, {n_samples} samples exported, {len(RULES)} rules, {len(fired['typed samples'])} "
          f"alerts firing per round; best of {repeat} rounds of one tick per model")  # fmt: skip
    print()
    print("| samples for the rules | per model evaluation | round (all models) | vs exposition route |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in best.items():
        ratio = best["exposition route"] / seconds
        print(f"| {name} | {seconds / n_models * 1e3:.3f} ms | {seconds * 1e3:.1f} ms | {ratio:.1f}x |")


if __name__ == "__main__":
    main()

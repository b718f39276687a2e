"""Resident memory of a stated deployment, measured against the README's formula (``monitor/state/memory.py``).

The deployment: ``--models`` models (10) of 25 features each (15 numeric, 5 categorical, 4 text, one
16-dimensional embedding), windows of ``--window`` events (100,000) and warm-up references of 5,000, every
call with a request and a response id of 256 characters; every vocabulary (each categorical feature's and the
classes') full of values of 256 characters beyond the BMP (4 bytes each), every pending table full
(``quality.max_pending`` raised to 10,000, ten times its default, so that the term shows) of feedback with
256-character ids and labels like those. That is the worst the schema allows for everything but the ids,
which the join keeps as 32-character digests (the worst, ASCII ids of 64 characters kept as they are, is
printed beside it).

The pipeline is filled in-process from decoded events (``Pipeline.ingest``), phase by phase, and the
process's resident memory (VmRSS, the peak from VmHWM reset before each phase) is read after each:

1. each model's first batch of calls: its state is made, its window and reference arrays allocated;
2. pending tables filled (before the rest: freed memory that the allocator keeps would hide growth);
3. the rest of the calls (105,000 a model): the ids and their index, the vocabularies (1 and 3 are one row);
4. the first evaluation, which fits the drift tests: its peak above the state before it;
5. a checkpoint written to a temporary directory: its peak above the state before it;
6. one model's HTML report drawn (pandas and Evidently imported, the frames).

The wide strings are made as the daemon's first checkpoint leaves them, with the UTF-8 copy CPython
caches in a non-ASCII string once it is encoded. After a transient the resident memory does not fall all
the way back (glibc keeps freed heap for the next one), so transients are compared by their peaks above the
state before them, and the total is the highest peak.

The formula's baseline is the daemon and its consumer process at rest: measured here by starting
``driftwarden run`` against a broker that is not there and adding up the proportional set size of its
processes. The batch in flight (fetched, piped, decoded) needs a broker and is not measured here.

Run: ``python bench/memory.py [--models 10] [--window 100000]`` (about a minute: the deployment is filled as
stated, not scaled down); ``--quick`` runs small sizes, to check that it runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np

from monitor.config import Config, parse_config
from monitor.export.report import drift_report_html
from monitor.ingest.events import Event
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointStore, config_fingerprint
from monitor.state.feedback import MAX_KEY_CHARS
from monitor.state.memory import MB, memory_bound

BATCH = 2_000
T0_MS = 1_790_000_000_000.0
WARMUP = 5_000
ID_CHARS = 256
N_NUMERIC, N_CATEGORICAL, N_TEXT, DIM = 15, 5, 4, 16
WIDE = "\U0001f600"  # a character beyond the BMP: 4 bytes in a Python string
MAX_PENDING = 10_000
PROMPTS = ["How do I change the billing address on my account?", "Cancel my order 1234, please.", "hi", ""]


def deployment(n_models: int, window: int, max_categories: int) -> Config:
    features = [
        *({"name": f"n{j}", "kind": "numeric"} for j in range(N_NUMERIC)),
        *({"name": f"c{j}", "kind": "categorical"} for j in range(N_CATEGORICAL)),
        *({"name": f"t{j}", "kind": "text"} for j in range(N_TEXT)),
        {"name": "embedding", "kind": "embedding", "dim": DIM},
    ]
    quality = {"max_pending": MAX_PENDING}
    models = [
        {"name": f"model-{m}", "reference": {"warmup": WARMUP}, "quality": quality, "features": features}
        for m in range(n_models)
    ]
    return parse_config(
        {"windows": {"size": window}, "limits": {"max_categories": max_categories}, "models": models}
    )


def long_id(kind: str, model: int, i: int) -> str:
    prefix = f"{kind}-{model}-{i}-"
    return prefix + "x" * (ID_CHARS - len(prefix))


def wide_value(kind: str, i: int) -> str:
    """A distinct value of 256 characters of 4 bytes each, with its UTF-8 cached as a checkpoint leaves it."""
    prefix = f"{kind}{i}"
    value = prefix + WIDE * (ID_CHARS - len(prefix))
    msgspec.msgpack.encode(value)
    return value


def calls(model: int, n: int, max_categories: int, rng: np.random.Generator) -> Iterator[list[Event]]:
    """Batches of decoded inference events, made as they are taken; ``max_categories`` of them, after the first
    batch, fill every vocabulary."""
    numeric = rng.normal(size=(BATCH, N_NUMERIC)).round(3).tolist()
    embeddings = rng.normal(size=(BATCH, DIM)).round(3).tolist()
    for start in range(0, n, BATCH):
        batch = []
        for i in range(start, min(n, start + BATCH)):
            j = i % BATCH
            filling = BATCH <= i < BATCH + max_categories
            features = dict(zip([f"n{k}" for k in range(N_NUMERIC)], numeric[j]))
            for k in range(N_CATEGORICAL):
                features[f"c{k}"] = wide_value(f"c{k}-", i) if filling else f"v{(i + k) % 7}"
            for k in range(N_TEXT):
                features[f"t{k}"] = PROMPTS[(i + k) % len(PROMPTS)]
            batch.append(
                Event(
                    type="inference",
                    request_id=long_id("request", model, i),
                    response_id=long_id("response", model, i),
                    timestamp_ms=T0_MS + i,
                    model=f"model-{model}",
                    latency_ms=80.0 + i % 400,
                    prediction=wide_value("class-", i) if filling else ("approve" if i % 3 else "deny"),
                    score=0.5 + (i % 50) / 100,
                    embedding=embeddings[j],
                    features=features,
                )
            )
        yield batch


def orphans(model: int, n: int, at_ms: float) -> list[list[Event]]:
    """Batches of feedback naming calls that never come, each with its own 256-character label."""
    events = [
        Event(
            type="feedback",
            request_id=long_id("orphan", model, i),
            timestamp_ms=at_ms,
            model=f"model-{model}",
            label=wide_value("label-", i),
            rating=1.0,
            judge_score=0.5,
        )
        for i in range(n)
    ]
    return [events[i : i + BATCH] for i in range(0, n, BATCH)]


def rss() -> int:
    return _status_kb("VmRSS") * 1024


def peak() -> int:
    return _status_kb("VmHWM") * 1024


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current VmRSS


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def daemon_at_rest(seconds: float = 20.0) -> int:
    """The proportional set size of ``driftwarden run`` and its children, at rest with no broker to reach."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "config.yaml"
        config.write_text(
            f'kafka: {{bootstrap_servers: "127.0.0.1:1", topics: [t]}}\n'
            f'server: {{host: "127.0.0.1", port: {port}}}\nstate: {{dir: "{directory}/state"}}\n'
        )
        command = [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)]
        daemon = subprocess.Popen(  # its own session, so that the group it heads is ours to stop
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            time.sleep(seconds)  # imports, the consumer process spawned and retrying
            return sum(_pss(pid) for pid in _tree(daemon.pid))
        finally:
            os.killpg(daemon.pid, 9)
            daemon.wait()


def _tree(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [pid] + [descendant for child in children for descendant in _tree(child)]


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def row(name: str, measured: float, predicted: float | None) -> None:
    ratio = f"{measured / predicted:.2f}" if predicted else ""
    shown = f"{predicted / MB:,.0f}" if predicted is not None else ""
    print(f"| {name} | {measured / MB:,.0f} | {shown} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--window", type=int, default=100_000, help="events per window")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    arguments = parser.parse_args()
    max_categories = 1_000
    if arguments.quick:
        arguments.models, arguments.window, max_categories = 2, 5_000, 100
    config = deployment(arguments.models, arguments.window, max_categories)
    max_pending = config.models[0].quality.max_pending
    bound = memory_bound(config, key_chars=32, value_chars=ID_CHARS)  # 256-character ids: 32-character digests
    worst = memory_bound(config)
    rng = np.random.default_rng(1)
    pipeline = Pipeline(config)
    started = time.perf_counter()

    gc.collect()
    at_rest = rss()
    n_calls = WARMUP + arguments.window
    batches = [calls(model, n_calls, max_categories, rng) for model in range(arguments.models)]
    for model_batches in batches:
        pipeline.ingest(next(model_batches))
    gc.collect()
    created = rss()
    for model in range(arguments.models):
        for batch in orphans(model, max_pending, T0_MS):
            pipeline.ingest(batch)
    gc.collect()
    pending = rss()
    for model_batches in batches:
        for batch in model_batches:
            pipeline.ingest(batch)
    gc.collect()
    filled = rss()
    assert all(state.join.n_pending == max_pending for state in pipeline.states)
    reset_peak()
    pipeline.evaluate(pipeline.watermark_ms)
    evaluation_peak = peak()
    assert all(evaluation.drift is not None for evaluation in pipeline.evaluations.values())
    gc.collect()
    evaluated = rss()
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory)
        reset_peak()
        store.save(Checkpoint({("llm-events", 0): n_calls}, pipeline.snapshot(), config_fingerprint(config)))
        checkpoint_peak = peak()
        checkpoint_bytes = store.path.stat().st_size
    gc.collect()
    checkpointed = rss()
    filling_s = time.perf_counter() - started
    reset_peak()
    try:
        drift_report_html(pipeline, "model-0")
        report = peak() - checkpointed
    except Exception as error:  # noqa: BLE001 - the report is drawn by another part, whose failure is printed
        report = None
        print(f"the HTML report could not be drawn: {type(error).__name__}: {error}")
    baseline = daemon_at_rest(5.0 if arguments.quick else 20.0)

    print(
        f"{arguments.models} models x 25 features ({N_NUMERIC} numeric, {N_CATEGORICAL} categorical, {N_TEXT} text, "
        f"an embedding of {DIM}), windows of {arguments.window:,} events, references of {WARMUP:,}, two "
        f"{ID_CHARS}-character ids a call, {max_categories:,} values of {ID_CHARS} 4-byte characters in each of "
        f"{N_CATEGORICAL + 1} vocabularies a model, {max_pending:,} pending feedback events a model; "
        f"filled and measured in {filling_s:.0f} s; checkpoint {checkpoint_bytes / MB:,.0f} MiB\n"
    )
    print("| resident memory (MiB) | measured | formula | measured / formula |")
    print("| --- | ---: | ---: | ---: |")
    row("this process at rest (not in the formula)", at_rest, None)
    windows = bound.windows + bound.references + bound.vocabularies + bound.models
    row("windows, references (arrays, ids), vocabularies, models", filled - pending + created - at_rest, windows)
    row("pending feedback", pending - created, bound.pending)
    first = bound.fitted + bound.evaluation
    row("first evaluation, peak: fitted tests, copies", evaluation_peak - filled, first)
    row("checkpoint, peak above the state before it", checkpoint_peak - evaluated, bound.checkpoint)
    if report is not None:
        row("HTML report of one model, peak", report, bound.report)
    row("baseline: driftwarden run and its consumer at rest (PSS)", baseline, bound.baseline)
    measured_total = baseline + max(evaluation_peak, checkpoint_peak, checkpointed) - at_rest + (report or 0)
    predicted = bound.total - bound.in_flight - (0 if report is not None else bound.report)
    row("total: baseline, the highest peak, the report (no batch in flight)", measured_total, predicted)
    print(f"\nthe batch in flight, not measured here: {bound.in_flight / MB:,.0f} MiB in the formula")
    print(f"the formula at its worst for this config (ids of {MAX_KEY_CHARS} ASCII characters): {worst}")


if __name__ == "__main__":
    main()

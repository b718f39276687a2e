"""What the state store costs: bytes per checkpoint, and put and get MB/s, for a stated deployment.

The deployment: ``--models`` models (8) of the demo's chat shape (``monitor/demo/scenario.py``
``CHAT_FEATURES``: input and output tokens, topic, locale, the prompt as text), windows of 10,000 events
and warm-up references of 5,000 (the defaults), every model fed 16,000 calls so that its window and its
reference are full, one call in ten followed by feedback (a rating and a judge score), ids of 26
characters. The pipeline's snapshot is encoded as a checkpoint encodes it
(``msgspec.msgpack.encode(document, enc_hook=_encode_array)`` of ``monitor/run/checkpoint.py``): the whole
snapshot is what one checkpoint writes, each model's state alone what a partition document holds per model.

The encoded checkpoint is then written and read back, best of ``--repeat``, interleaved, through:

- a plain file (``write_bytes``, no fsync; ``read_bytes``): the baseline of the directory store;
- :class:`~monitor.run.store.DirectoryStore` (temp file, fsync, rename, fsync of the directory);
- boto3's ``put_object`` and ``get_object`` alone, on moto's S3 server on loopback: the baseline of the S3 store;
- :class:`~monitor.run.store.S3Store` on the same server.

moto keeps objects in memory on this machine, so its figures are the client's cost and the protocol's on
loopback, not a real bucket's network; a restore's CPU cost (decode and ``Pipeline.restore``) is printed
beside them, in the same MB/s.

Run: ``python bench/state_store.py [--models 8] [--repeat 5]``; ``--quick`` runs small, to check that it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import msgspec
import numpy as np
from moto.server import ThreadedMotoServer

from monitor.config import parse_config
from monitor.demo.scenario import CHAT_FEATURES
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import _decode_array, _encode_array
from monitor.run.store import DirectoryStore, S3Store

T0_S = 1_790_000_000.0
BATCH = 2_000
KEY = "driftwarden/llm-events/0.msgpack"
BUCKET = "driftwarden-bench"
TOPICS = ["billing", "login", "shipping", "returns", "other"]
LOCALES = ["en-US", "de-DE", "fr-FR", "ja-JP"]
MB = 1e6


def deployment(window: int, warmup: int) -> dict:
    return {
        "windows": {"size": window},
        "models": [{"name": "*", "features": CHAT_FEATURES, "reference": {"warmup": warmup}}],
    }


def events(n_models: int, per_model: int, seed: int = 3) -> list[list[Record]]:
    """Calls of every model interleaved, ten milliseconds apart, one in ten followed by its feedback."""
    rng = np.random.default_rng(seed)
    values = []
    for i in range(n_models * per_model):
        model, request_id, at_s = f"chat-{i % n_models}", f"3f1c9a7e-{i:017d}", T0_S + i / 100
        call = {
            "request_id": request_id, "timestamp": at_s, "model": model, "operation": "chat",
            "latency_ms": round(float(rng.lognormal(6.5, 0.5)), 1), "ttft_ms": round(float(rng.lognormal(5, 0.4)), 1),
            "input_tokens": int(rng.poisson(300)), "output_tokens": int(rng.poisson(120)), "finish_reason": "stop",
            "prompt": f"A question about {TOPICS[i % 5]}", "features": {"topic": TOPICS[i % 5]},
            "segment": {"locale": LOCALES[i % 4]},
        }  # fmt: skip
        values.append(json.dumps(call).encode())
        if i % 10 == 0:
            feedback = {"type": "feedback", "request_id": request_id, "timestamp": at_s + 1, "model": model,
                        "rating": 1, "judge_score": round(float(rng.beta(8, 2)), 3)}  # fmt: skip
            values.append(json.dumps(feedback).encode())
    records = [Record(value, "llm-events", 0, offset) for offset, value in enumerate(values)]
    return [records[i : i + BATCH] for i in range(0, len(records), BATCH)]


def encode(document: object) -> bytes:
    return msgspec.msgpack.encode(document, enc_hook=_encode_array)


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small windows, to check that it runs")
    arguments = parser.parse_args()
    window, warmup = (500, 250) if arguments.quick else (10_000, 5_000)
    per_model = window + warmup + 1_000

    config = parse_config(deployment(window, warmup))
    pipeline = Pipeline(config)
    for batch in events(arguments.models, per_model):
        pipeline.apply(batch)
    states = list(pipeline.states)
    assert all(state.reference.complete and len(state.window) == window for state in states), "not full"

    started = time.perf_counter()
    snapshot = pipeline.snapshot()
    payload = encode(snapshot)
    encode_s = time.perf_counter() - started
    per_model_bytes = [len(encode(model)) for model in snapshot["states"]["models"].values()]

    def restore() -> None:
        Pipeline(config).restore(msgspec.msgpack.decode(payload, ext_hook=_decode_array))

    restore_s = best_seconds(restore, arguments.repeat)

    size = len(payload)
    print(f"deployment: {arguments.models} models of the demo's chat shape ({len(CHAT_FEATURES)} features), "
          f"windows of {window:,} events, references of {warmup:,}, {per_model:,} calls a model")  # fmt: skip
    print(f"bytes per model: {int(np.mean(per_model_bytes)):,} (from {min(per_model_bytes):,} "
          f"to {max(per_model_bytes):,})")  # fmt: skip
    print(f"bytes per checkpoint ({arguments.models} models): {size:,}; snapshot and encode {encode_s * 1000:.0f} ms")
    print(f"restore (decode and Pipeline.restore): {restore_s * 1000:.0f} ms, {size / MB / restore_s:,.0f} MB/s "
          f"({restore_s * 1000 / (size / MB):.1f} ms per MB)")  # fmt: skip

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # boto3's standard chain
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        with tempfile.TemporaryDirectory() as directory:
            plain = Path(directory) / "plain.msgpack"
            local = DirectoryStore(Path(directory) / "store")
            remote = S3Store(BUCKET, "bench/", url, "us-east-1")
            paths = {
                "plain file, no fsync (baseline)": (
                    lambda: plain.write_bytes(payload), lambda: plain.read_bytes()),
                "DirectoryStore (temp file, fsync, rename)": (
                    lambda: local.put(KEY, payload), lambda: local.get(KEY)),
                "boto3 put_object, get_object on moto (baseline)": (
                    lambda: client.put_object(Bucket=BUCKET, Key=f"raw/{KEY}", Body=payload),
                    lambda: client.get_object(Bucket=BUCKET, Key=f"raw/{KEY}")["Body"].read()),
                "S3Store on moto": (lambda: remote.put(KEY, payload), lambda: remote.get(KEY)),
            }  # fmt: skip
            best = {name: [float("inf"), float("inf")] for name in paths}
            for _ in range(arguments.repeat):  # interleaved: each round runs every path once
                for name, (put, get) in paths.items():
                    best[name][0] = min(best[name][0], best_seconds(put, 1))
                    best[name][1] = min(best[name][1], best_seconds(get, 1))
            assert local.get(KEY) == remote.get(KEY) == payload
    finally:
        server.stop()

    print(f"\nthe checkpoint of {size / MB:.1f} MB put and got back, best of {arguments.repeat}, interleaved:\n")
    print("| store | put ms | put MB/s | get ms | get MB/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (put_s, get_s) in best.items():
        rates = f"{put_s * 1000:.1f} | {size / MB / put_s:,.0f} | {get_s * 1000:.1f} | {size / MB / get_s:,.0f}"
        print(f"| {name} | {rates} |")


if __name__ == "__main__":
    main()

"""Embedding drift tests and text descriptors: time per evaluation and per text, against baselines of the same run.

Embedding tests: 384-dimensional unit-norm embeddings, a reference and a
window of ``--rows`` rows each (the window's mean moved by half a standard
deviation in 5 dimensions), seconds per ``score`` (``fit`` is done once, before). Each
driftwarden test (at most 1,000 rows a side) is compared with

- the same test unbounded (``max_samples`` = every row): what the seeded cut saves;
- Evidently's own embedding drift method on the same arrays (``model()``, its
  default, and ``mmd()``), when Evidently is installed.

Text descriptors: ``TextDescriptors.describe`` on ``--texts`` chat-like
texts of ~500 characters, against the cheapest pass there is, ``len()`` of
each text.

Timings are interleaved and best of ``--repeat`` (the machines are shared and
noisy, so read the ratios). Target: each driftwarden test under 2 s per
evaluation at 5,000 vs 5,000 rows. The header gives the BLAS threads: on a
busy machine, multi-threaded BLAS can make the classifier several times
slower than ``OPENBLAS_NUM_THREADS=1`` (numpy's threads wait for one another).

Run: ``python bench/embedding_drift.py [--rows 5000] [--texts 2000] [--repeat 3]``; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_info

from detectors.classifier import DomainClassifierTest
from detectors.mmd import MMDTest
from detectors.text_descriptors import TextDescriptors

DIM = 384
TARGET_SECONDS = 2.0
WORDS = (
    "the a to and of you your it is in for on with that this can I we please could would order account billing "
    "address password refund shipping delivery invoice plan update change cancel help thanks Hello Hi Sure Here "
    "steps First Then Finally 2 3 14 2026 $49.99 #4521 (optional) e.g. it’s don’t you’re — café"
).split()
OPENINGS = ("I'm sorry, but I can't help with that. ", "As an AI, I don't have access to accounts. ")
LINKS = (" See https://help.example.com/billing for details.", " Write to support@example.com.")


def embeddings(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Unit-norm rows, as sentence-embedding models give; ``shift`` moves 5 dimensions' mean before normalising."""
    rows = np.random.default_rng(seed).normal(size=(n, DIM))
    rows[:, :5] += shift
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def chat_texts(n: int, seed: int = 1) -> list[str]:
    """Prompts and responses of ~500 characters, most with a curly apostrophe or a dash; 5% refusals, 5% links."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS, size=95))[:480] + "."
        draw = rng.random()
        if draw < 0.05:
            text = str(rng.choice(OPENINGS)) + text
        elif draw < 0.10:
            text += str(rng.choice(LINKS))
        texts.append(text)
    return texts


def evidently_methods() -> dict:
    """Evidently's ``model()`` and ``mmd()`` as ``(reference, window) -> (statistic, drifted)``; empty without it."""
    try:
        import pandas as pd
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import mmd, model
    except ImportError:
        return {}

    def run(method):  # Evidently takes (current, reference) frames, and adds a column to them
        return lambda reference, window: method(pd.DataFrame(window), pd.DataFrame(reference))[:2]

    return {"Evidently model()": run(model()), "Evidently mmd()": run(mmd())}


def embedding_runs(reference: np.ndarray, window: np.ndarray) -> list[tuple[str, str, Callable | None]]:
    """Table rows: label, the driftwarden row it is compared with, ``run() -> (statistic, drifted)`` or None."""
    every_row = max(len(reference), len(window))
    evidently = evidently_methods()
    runs = []
    for test_class, evidently_label in ((DomainClassifierTest, "Evidently model()"), (MMDTest, "Evidently mmd()")):
        name = test_class.name
        for label, test in ((name, test_class()), (f"{name}, unbounded", test_class(max_samples=every_row))):
            test.fit(reference)
            runs.append((label, name, lambda test=test: verdict_of(test, window)))
        method = evidently.get(evidently_label)
        run = None if method is None else lambda method=method: method(reference, window)
        runs.append((evidently_label, name, run))
    return runs


def verdict_of(test: DomainClassifierTest | MMDTest, window: np.ndarray) -> tuple[float, bool]:
    result = test.score(window)
    return result.statistic, result.drifted


def timed(run: Callable) -> tuple[float, object]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 rows, 200 texts, once")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.rows, arguments.texts, arguments.repeat = 500, 200, 1

    reference, window = embeddings(arguments.rows, seed=1), embeddings(arguments.rows, seed=2, shift=0.5)
    runs = embedding_runs(reference, window)
    seconds, results = {label: float("inf") for label, _, run in runs if run is not None}, {}
    for _ in range(arguments.repeat):  # interleave so that a noisy neighbour hurts all alike
        for label, _, run in runs:
            if run is not None:
                elapsed, results[label] = timed(run)
                seconds[label] = min(seconds[label], elapsed)
    blas_threads = max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)
    print(f"{arguments.rows} vs {arguments.rows} rows of {DIM} dimensions, best of {arguments.repeat}, ", end="")
    print(f"{blas_threads} BLAS threads\n")
    print("| method | statistic | drifted | seconds per evaluation | x driftwarden's |")
    print("| --- | ---: | --- | ---: | ---: |")
    for label, compared_with, run in runs:
        if run is None:
            print(f"| {label} | Evidently not installed | | | |")
            continue
        statistic, drifted = results[label]
        ratio = seconds[label] / seconds[compared_with]
        print(f"| {label} | {statistic:.4g} | {bool(drifted)} | {seconds[label]:.3f} | {ratio:.2f} |")
    slowest = max(seconds["classifier"], seconds["mmd"])
    verdict = "meets" if slowest < TARGET_SECONDS else "MISSES"
    print(f"\ntarget: each driftwarden test under {TARGET_SECONDS:g} s per evaluation: {verdict}\n")

    texts, descriptors = chat_texts(arguments.texts), TextDescriptors()
    descriptors.describe(texts[:1])  # builds the code point table, as the daemon's first batch does
    passes = {
        "len() of each text": lambda: [len(text) for text in texts],
        "TextDescriptors.describe": lambda: descriptors.describe(texts),
    }
    repeat = max(arguments.repeat, 5)
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(repeat):
        for name, run in passes.items():
            best[name] = min(best[name], timed(run)[0])
    size = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} texts of {size:.0f} characters on average, best of {repeat}\n")
    print("| pass | µs per text | vs len() |")
    print("| --- | ---: | ---: |")
    for name, elapsed in best.items():
        print(f"| {name} | {elapsed * 1e6 / len(texts):.2f} | {elapsed / best['len() of each text']:.0f} |")


if __name__ == "__main__":
    main()

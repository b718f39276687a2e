"""The memory formula (``monitor/state/memory.py``): its terms against what the structures hold, and the chart's fit.

The kept terms are checked with ``tracemalloc`` (what Python and numpy allocate, exact and quick); the
resident memory of a whole deployment against the total is ``bench/memory.py``'s subject.
"""

from __future__ import annotations

import gc
import re
import tracemalloc
from pathlib import Path

import msgspec
import numpy as np
import pytest
import yaml

from monitor.cli import main
from monitor.config import load_config, parse_config
from monitor.ingest.events import Event
from monitor.state.columns import ID_COLUMNS, TIMESTAMP_MS, Column
from monitor.state.feedback import MAX_KEY_CHARS, FeedbackJoin
from monitor.state.memory import (
    INDEX_ENTRY_BYTES,
    PENDING_ENTRY_BYTES,
    VOCABULARY_ENTRY_BYTES,
    memory_bound,
    row_bytes,
)
from monitor.state.model import ModelState
from monitor.state.vocabulary import MAX_VALUE_CHARS, Vocabulary
from monitor.state.windows import Window

VALUES = Path(__file__).resolve().parents[3] / "helm" / "driftwarden" / "values.yaml"
WIDE = "\U0001f600"  # 4 bytes a character in a Python string
EVERY_KIND = {
    "name": "m",
    "quality": {"json_response": True},
    "pricing": {"currency": "USD", "input": 3, "output": 15},
    "bias": {"attributes": ["segment.region", "segment.tier"], "outcome": {"field": "prediction", "positive": "yes"}},
    "features": [
        {"name": "input_tokens", "kind": "numeric"},
        {"name": "topic", "kind": "categorical"},
        {"name": "prompt", "kind": "text"},
        {"name": "response", "kind": "text"},
        {"name": "embedding", "kind": "embedding", "dim": 12},
    ],
}


def _traced_bytes(build) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        built = build()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, built


def _key(i: int) -> str:
    """A join key at its longest: 64 ASCII characters."""
    prefix = f"{i}-"
    return prefix + "k" * (MAX_KEY_CHARS - len(prefix))


def _wide(i: int) -> str:
    """A value at its longest and widest, with its UTF-8 cached as a checkpoint leaves it."""
    prefix = f"{i}-"
    value = prefix + WIDE * (MAX_VALUE_CHARS - len(prefix))
    msgspec.msgpack.encode(value)
    return value


def test_row_bytes_is_what_a_window_row_of_every_column_kind_holds():
    config = parse_config({"windows": {"size": 1_000}, "models": [EVERY_KIND]})
    model = config.models[0]
    window = ModelState("m", model, config).window
    held = sum(array.nbytes for array in window.snapshot()["columns"].values()) // window.capacity
    assert row_bytes(model) == held


def test_a_pending_entry_at_its_worst_holds_no_more_than_the_formula_says():
    n = 20_000
    bound = memory_bound(parse_config({"models": [{"name": "m", "quality": {"max_pending": n}}]}))
    join = FeedbackJoin(ttl_ms=1e12, max_pending=n, reference_size=0)
    ids = {name: Column(object, missing=None) for name in ID_COLUMNS}
    no_calls = Window(1, {TIMESTAMP_MS: Column(np.float64), **ids})

    def fill() -> None:
        values = [{"label": _wide(i), "rating": 1.0, "judge_score": 0.5} for i in range(n)]
        join.add_feedback([(_key(i), float(i), values[i]) for i in range(n)], no_calls)

    held, _ = _traced_bytes(fill)
    assert join.n_pending == n
    assert 0.8 * bound.pending < held <= bound.pending, (held / n, bound.pending / n, PENDING_ENTRY_BYTES)


def test_the_ids_of_a_window_hold_no_more_than_the_formula_says():
    size = 20_000
    config = parse_config({"windows": {"size": size}, "models": [{"name": "m", "reference": {"warmup": 1}}]})
    state = ModelState("m", config.models[0], config)
    bound = memory_bound(config)

    def fill() -> None:  # twice the window: the index forgets as many ids as it learns
        for first in range(0, 2 * size, 2_000):
            calls = [
                Event(type="inference", request_id=_key(i), response_id=_key(-i), timestamp_ms=float(i))
                for i in range(first, first + 2_000)
            ]
            # a rating for each batch's first call: the index is built only for feedback (then for every id)
            state.ingest([*calls, Event(type="feedback", request_id=_key(first), timestamp_ms=first + 1.0, rating=1.0)])

    held, _ = _traced_bytes(fill)  # the window's arrays were allocated before
    formula = bound.windows - size * row_bytes(config.models[0])
    assert 0.7 * formula < held <= formula, (held / size, formula / size, INDEX_ENTRY_BYTES)


def test_a_full_vocabulary_at_its_worst_holds_no_more_than_the_formula_says():
    config = parse_config({"limits": {"max_categories": 5_000}, "models": [{"name": "m"}]})
    bound = memory_bound(config)  # one vocabulary: the classes
    vocabulary = Vocabulary(5_000)
    held, _ = _traced_bytes(lambda: vocabulary.encode([_wide(i) for i in range(6_000)]))
    assert 0.8 * bound.vocabularies < held <= bound.vocabularies, (held / 5_000, VOCABULARY_ENTRY_BYTES)


def test_the_charts_default_config_fits_its_memory_limit_at_the_worst():
    values = yaml.safe_load(VALUES.read_text())
    limit = values["resources"]["limits"]["memory"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limit).groups()
    limit_bytes = int(number) * {"Mi": 2**20, "Gi": 2**30}[unit]
    bound = memory_bound(parse_config(values["config"]))
    assert bound.total <= limit_bytes, f"{bound} does not fit the chart's limit of {limit}"


@pytest.mark.parametrize(
    ("change", "term", "factor"),
    [
        ({"windows": {"size": 20_000}}, "windows", 2.0),
        ({"limits": {"max_models": 201}}, "pending", 2.0),
        ({"models": [{"name": "*", "quality": {"max_pending": 2_000}}]}, "pending", 2.0),
        ({"limits": {"max_categories": 2_000}}, "vocabularies", 2.0),
    ],
)
def test_each_term_grows_with_the_setting_that_bounds_it(change, term, factor):
    base = getattr(memory_bound(parse_config({})), term)
    assert getattr(memory_bound(parse_config(change)), term) == pytest.approx(factor * base, rel=0.02)


def test_the_numbers_are_bytes_of_a_few_gigabytes_at_the_defaults():
    bound = memory_bound(parse_config({}))
    assert bound.n_models == 101  # "*": max_models admitted, then "__other__"
    assert 2 * 2**30 < bound.total < 3 * 2**30
    assert str(bound).startswith(f"{bound.total / 2**30:.2f} GiB for 101 models (MiB: baseline 320")
    terms = (bound.windows, bound.references, bound.fitted, bound.pending, bound.labels, bound.vocabularies)
    terms += (bound.models,)
    assert bound.kept == sum(terms)


def test_check_config_prints_the_bound(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text('models: [{name: "*", features: [{name: input_tokens, kind: numeric}]}]\n')
    assert main(["check-config", str(path)]) == 0
    assert f"  memory: at most {memory_bound(load_config(path))}\n" in capsys.readouterr().out


def test_a_reference_file_counts_its_lines_as_rows_and_its_decoded_events(tmp_path):
    path = tmp_path / "reference.jsonl"
    path.write_text("".join(f'{{"request_id": "{i}", "timestamp": {i}, "model": "m"}}\n' for i in range(300)))
    by_file = memory_bound(parse_config({"models": [{"name": "m", "reference": {"file": str(path)}}]}))
    by_warmup = memory_bound(parse_config({"models": [{"name": "m", "reference": {"warmup": 301}}]}))
    assert by_file.references == by_warmup.references + 4 * path.stat().st_size

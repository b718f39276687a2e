"""Token cost (``pricing``, :mod:`monitor.state.spend`): the spend and the window's cost per call, against an oracle.

The oracle is the test's own: each call's cost from the event it sent, in :class:`~decimal.Decimal` arithmetic at the
prices the test configured (as written), summed exactly; the window's quantiles by numpy over those costs. Every
figure goes through a real :class:`~monitor.pipeline.Pipeline` and its exposition, as Prometheus reads it. Then what a
hostile producer, an operator's config, a restart or a price change can do to them.
"""

from __future__ import annotations

import json
import logging
import random
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import ConfigError, parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointStore, config_fingerprint
from monitor.state.histogram import MAX_COUNT
from monitor.state.vocabulary import OTHER

QUANTILES = (0.5, 0.9, 0.95, 0.99)
T0 = 1_800_000_000
#: Prices as an operator writes them: integers, decimals YAML reads as floats, strings.
PRICING = {
    "currency": "USD",
    "input": 3,
    "output": "15.00",
    "cache_read": 0.3,
    "versions": {"rc1": {"output": 12.5}, "cheap": {"input": 0.25}, "folded": {"input": 7, "cache_read": "0.7"}},
}


def _config(pricing: dict | None = PRICING, size: int = 1_000, **model: object) -> object:
    entry = {"name": "m", "versions": {"max_live": 3}, **model}
    if pricing is not None:
        entry["pricing"] = pricing
    return parse_config({"windows": {"size": size, "min_samples": 1}, "models": [entry]})


def _calls(n: int, seed: int = 7) -> list[dict]:
    """Calls of every shape a cost reads: versions with and without prices of their own (live and folded, one named
    like the fold), every token count present or absent, cache reads above the input."""
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        call = {"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", "latency_ms": 100}
        version = rng.choice(["v1", "v1", "rc1", "cheap", "folded", OTHER, None])
        if version is not None:
            call["model_version"] = version
        for field, high in (("input_tokens", 8_000), ("output_tokens", 2_000), ("cache_read_input_tokens", 9_000)):
            if rng.random() < 0.8:
                call[field] = rng.randrange(high)
        calls.append(call)
    return calls


def _oracle(call: dict, pricing: dict = PRICING) -> Decimal | None:
    """What ``call`` costs by the pricing section as written: None if it reports no token count."""
    counts = [call.get(field) for field in ("input_tokens", "cache_read_input_tokens", "output_tokens")]
    if all(count is None for count in counts):
        return None
    input_tokens, cache_read, output_tokens = (count or 0 for count in counts)
    own = pricing["versions"].get(call.get("model_version"), {})
    price = {name: Decimal(str(own.get(name, pricing.get(name)))) for name in ("input", "output")}
    cache_price = own.get("cache_read", pricing.get("cache_read"))
    price["cache_read"] = price["input"] if cache_price is None else Decimal(str(cache_price))
    if pricing.get("input_includes_cache_read", True):
        input_tokens = max(input_tokens - cache_read, 0)
    return (input_tokens * price["input"] + cache_read * price["cache_read"] + output_tokens * price["output"]) / (
        10**6
    )


def _spend(calls: list[dict], pricing: dict = PRICING) -> float:
    """The exact spend of ``calls``, rounded once."""
    with localcontext() as context:
        context.prec = 200
        return float(sum((cost for call in calls if (cost := _oracle(call, pricing)) is not None), Decimal(0)))


def _apply(pipeline: Pipeline, calls: list[dict], sizes: list[int] | None = None) -> None:
    """``calls`` in batches of the given sizes (all at once by default); none may be rejected."""
    start = 0
    for size in sizes or [len(calls)]:
        chunk = calls[start : start + size]
        records = [Record(json.dumps(call).encode(), "llm-events", 0, start + i) for i, call in enumerate(chunk)]
        assert pipeline.apply(records) == []
        start += size
    assert start >= len(calls)


def _samples(pipeline: Pipeline, name: str) -> dict[tuple, float]:
    """The exposed samples ``name`` by their sorted labels."""
    text = exposition(build_registry(pipeline)).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _cost_total(pipeline: Pipeline, model: str = "m", currency: str = "USD") -> float:
    return _samples(pipeline, "driftwarden_cost_total")[(("currency", currency), ("model", model))]


def _through_disk(pipeline: Pipeline, directory: Path, config: object | None = None) -> Pipeline:
    """Checkpoint ``pipeline`` to ``directory`` and restore it into a fresh pipeline (under ``config`` if given)."""
    store = CheckpointStore(directory)
    store.save(Checkpoint({("llm-events", 0): 1}, pipeline.snapshot(), config_fingerprint(pipeline.config)))
    loaded = store.load()
    assert loaded is not None
    restored = Pipeline(config or pipeline.config)
    restored.restore(loaded.pipeline)
    return restored


# --- The oracle ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=["C", "Python"])
def twin(request, monkeypatch):
    """Each test of the oracle runs with the C packing of numbers and with its numpy twin."""
    if request.param == "Python":
        monkeypatch.setattr("monitor.state.model.packed_floats", lambda values: None)
    return request.param


def test_the_spend_is_each_token_at_its_versions_price_summed_exactly(twin):
    calls = _calls(600)
    pipeline = Pipeline(_config())
    rng = random.Random(3)
    sizes = [rng.randrange(1, 40) for _ in range(len(calls))]  # batches as polls bring them, some of one call
    _apply(pipeline, calls, sizes)
    assert _cost_total(pipeline) == _spend(calls)
    # the folded version is priced by its name: a window of three live versions keeps it in __other__
    assert "folded" not in pipeline.states["m"].versions.live


def test_the_windows_cost_quantiles_are_numpys_over_each_calls_cost(twin):
    calls = _calls(300)
    pipeline = Pipeline(_config(size=200))
    _apply(pipeline, calls, [17] * 18)
    pipeline.evaluate(pipeline.watermark_ms)
    windowed = [float(cost) for call in calls[-200:] if (cost := _oracle(call)) is not None]
    expected = np.quantile(windowed, QUANTILES)
    exported = _samples(pipeline, "driftwarden_window_cost_per_call")
    assert {labels: value for labels, value in exported.items()} == pytest.approx(
        {(("currency", "USD"), ("model", "m"), ("quantile", str(q))): value for q, value in zip(QUANTILES, expected)},
        rel=1e-12,
    )
    assert len(windowed) < 200  # calls that report no token count are left out, not counted as free


def test_any_batching_gives_the_same_spend_as_one_batch():
    calls = _calls(400, seed=11)
    whole = Pipeline(_config())
    _apply(whole, calls)
    rng = random.Random(5)
    for _ in range(5):
        split = Pipeline(_config())
        sizes = [rng.randrange(1, 60) for _ in range(len(calls))]
        _apply(split, calls, sizes)
        assert _cost_total(split) == _cost_total(whole) == _spend(calls)


def test_input_tokens_that_leave_the_cache_reads_out_are_priced_as_such():
    pricing = {**PRICING, "input_includes_cache_read": False}
    calls = _calls(200, seed=5)
    pipeline = Pipeline(_config(pricing))
    _apply(pipeline, calls)
    assert _cost_total(pipeline) == _spend(calls, pricing) != _spend(calls)


# --- What is exported, and what is not ----------------------------------------------------------------------------


def test_a_model_without_pricing_exports_no_cost_series():
    config = parse_config(
        {
            "windows": {"min_samples": 1},
            "models": [{"name": "free"}, {"name": "*", "pricing": {"currency": "EUR", "input": 1, "output": 2}}],
        }
    )
    pipeline = Pipeline(config)
    calls = [{**call, "model": model} for call in _calls(20) for model in ("free", "paid")]
    _apply(pipeline, calls)
    pipeline.evaluate(pipeline.watermark_ms)
    for name in ("driftwarden_cost_total", "driftwarden_window_cost_per_call"):
        assert {dict(labels)["model"] for labels in _samples(pipeline, name)} == {"paid"}, name
    assert _samples(pipeline, "driftwarden_cost_budget_per_second") == {}  # no budget set
    paid = [call for call in calls if call["model"] == "paid"]
    euros = {"currency": "EUR", "input": 1, "output": 2, "versions": {}}
    assert _cost_total(pipeline, "paid", "EUR") == _spend(paid, euros)


def test_the_budget_is_exported_as_spend_per_second():
    pipeline = Pipeline(_config({**PRICING, "budget": {"amount": "864", "per": "1d"}}))
    _apply(pipeline, _calls(3))
    assert _samples(pipeline, "driftwarden_cost_budget_per_second") == {(("currency", "USD"), ("model", "m")): 0.01}


def test_a_call_without_token_counts_adds_nothing_and_has_no_cost():
    pipeline = Pipeline(_config())
    _apply(pipeline, [{"request_id": f"r{i}", "timestamp": T0 + i, "model": "m"} for i in range(5)])
    pipeline.evaluate(pipeline.watermark_ms)
    assert _cost_total(pipeline) == 0.0
    assert _samples(pipeline, "driftwarden_window_cost_per_call") == {}


# --- Restarts and config changes ------------------------------------------------------------------------------------


def test_a_restart_through_a_checkpoint_counts_each_call_once(tmp_path):
    calls = _calls(500)
    pipeline = Pipeline(_config())
    _apply(pipeline, calls[:230])
    restored = _through_disk(pipeline, tmp_path)
    assert restored.states.resets == {}
    assert _cost_total(restored) == _spend(calls[:230])
    _apply(restored, calls[230:])
    assert _cost_total(restored) == _spend(calls)


def test_a_price_change_between_runs_prices_only_the_later_calls_and_never_lowers_the_counter(tmp_path):
    calls = _calls(400)
    pipeline = Pipeline(_config())
    _apply(pipeline, calls[:200])
    cheaper = {**PRICING, "input": 1, "output": 2, "versions": {}}
    restored = _through_disk(pipeline, tmp_path, _config(cheaper))
    assert restored.states.resets == {}  # prices do not shape the state
    assert _cost_total(restored) == _spend(calls[:200])
    _apply(restored, calls[200:])
    with localcontext() as context:
        context.prec = 200
        exact = sum(
            (cost for call in calls[:200] if (cost := _oracle(call)) is not None), Decimal(0)
        ) + sum((cost for call in calls[200:] if (cost := _oracle(call, cheaper)) is not None), Decimal(0))
    assert _cost_total(restored) == float(exact)


def test_a_currency_change_starts_the_new_currencys_spend_at_zero(tmp_path, caplog):
    pipeline = Pipeline(_config())
    _apply(pipeline, _calls(50))
    euros = {**PRICING, "currency": "EUR"}
    with caplog.at_level(logging.WARNING):
        restored = _through_disk(pipeline, tmp_path, _config(euros))
    assert "not carried over" in caplog.text
    assert _samples(restored, "driftwarden_cost_total") == {(("currency", "EUR"), ("model", "m")): 0.0}
    _apply(restored, _calls(30, seed=9))
    assert _cost_total(restored, currency="EUR") == _spend(_calls(30, seed=9), euros)


def test_pricing_added_to_a_model_keeps_its_state_and_prices_the_next_calls(tmp_path):
    pipeline = Pipeline(_config(None))
    _apply(pipeline, _calls(50))
    restored = _through_disk(pipeline, tmp_path, _config())
    assert restored.states.resets == {}
    assert restored.states["m"].n_events["inference"] == 50
    later = _calls(40, seed=2)
    _apply(restored, later)
    restored.evaluate(restored.watermark_ms)
    assert _cost_total(restored) == _spend(later)
    # the window's earlier calls have no cost (NaN): only the priced ones are in its quantiles
    windowed = [float(cost) for call in later if (cost := _oracle(call)) is not None]
    median = _samples(restored, "driftwarden_window_cost_per_call")[
        (("currency", "USD"), ("model", "m"), ("quantile", "0.5"))
    ]
    assert median == pytest.approx(float(np.quantile(windowed, 0.5)), rel=1e-12)


# --- Hostile traffic and config -------------------------------------------------------------------------------------


def test_token_counts_at_the_decoders_bound_saturate_and_export_a_finite_exact_spend():
    pricing = {"currency": "USD", "input": 10**9, "output": 10**9}  # the highest prices a config may give
    pipeline = Pipeline(_config(pricing))
    calls = [
        {"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", "input_tokens": 2**53 - i, "output_tokens": 2**53}
        for i in range(1_100)  # 1,100 x about 2**53 tokens of each kind: past MAX_COUNT (2**63 - 1)
    ]
    _apply(pipeline, calls[:600])
    tokens = sum(call["input_tokens"] + call["output_tokens"] for call in calls[:600])
    assert _cost_total(pipeline) == float(Fraction(tokens * 10**9, 10**6))  # exact below saturation
    assert pipeline.states["m"].spend.tokens[(Decimal(10**9),) * 3][0] == sum(2**53 - i for i in range(600))
    _apply(pipeline, calls[600:])
    pipeline.evaluate(pipeline.watermark_ms)
    assert pipeline.states["m"].spend.tokens[(Decimal(10**9),) * 3] == [MAX_COUNT, 0, MAX_COUNT]
    assert _cost_total(pipeline) == float(Fraction(2 * MAX_COUNT * 10**9, 10**6))
    quantiles = _samples(pipeline, "driftwarden_window_cost_per_call")
    assert all(2 * 2**53 * 1e3 - 1.2e6 <= value <= 2 * 2**53 * 1e3 for value in quantiles.values())  # finite


def test_cache_reads_above_the_input_never_make_a_negative_cost():
    pipeline = Pipeline(_config({"currency": "USD", "input": 3, "output": 15, "cache_read": 0.3}))
    calls = [
        {"request_id": "r0", "timestamp": T0, "model": "m", "input_tokens": 10, "cache_read_input_tokens": 1_000},
        {"request_id": "r1", "timestamp": T0 + 1, "model": "m", "cache_read_input_tokens": 2_000},
    ]
    _apply(pipeline, calls)
    pipeline.evaluate(pipeline.watermark_ms)
    assert _cost_total(pipeline) == float(Decimal("0.3") * 3_000 / 10**6)
    assert min(_samples(pipeline, "driftwarden_window_cost_per_call").values()) > 0


@pytest.mark.parametrize(
    ("pricing", "error"),
    [
        ({"input": 1e308}, "models[0].pricing.input: must be <= 1000000000 (got 1e+308)"),
        ({"output": float("nan")}, "models[0].pricing.output: must be a finite number (got nan)"),
        ({"output": "NaN"}, "models[0].pricing.output: must be a finite number (got 'NaN')"),
        ({"output": "Infinity"}, "models[0].pricing.output: must be a finite number (got 'Infinity')"),
        ({"cache_read": -0.1}, "models[0].pricing.cache_read: must be >= 0 (got -0.1)"),
        ({"input": True}, "models[0].pricing.input: must be a number (got True)"),
        ({"currency": "usd"}, "models[0].pricing.currency: must be a three-letter ISO 4217 code such as USD or EUR"),
        ({"currency": "US$"}, "models[0].pricing.currency: must be a three-letter ISO 4217 code such as USD or EUR"),
        ({"versions": {"rc1": {}}}, "models[0].pricing.versions.rc1: a version's prices must give at least one of"),
        ({"versions": {OTHER: {"input": 1}}}, "models[0].pricing.versions: '__other__' is not a version's name"),
        ({"versions": {"rc1": {"currency": "EUR"}}}, "models[0].pricing.versions.rc1.currency: unknown key"),
        ({"versions": {"rc1": {"input": -1}}}, "models[0].pricing.versions.rc1.input: must be >= 0 (got -1)"),
        ({"budget": {"amount": 0}}, "models[0].pricing.budget.amount: must be > 0 (got 0)"),
        ({"budget": {"amount": 10, "per": "soon"}}, "models[0].pricing.budget.per: must be a positive duration"),
    ],
)
def test_bad_pricing_names_the_key_and_the_reason(pricing, error):
    with pytest.raises(ConfigError) as raised:
        parse_config({"models": [{"name": "m", "pricing": {"currency": "USD", "input": 3, "output": 15, **pricing}}]})
    assert str(raised.value).startswith(error), str(raised.value)


def test_a_version_price_for_a_model_without_prices_is_refused():
    with pytest.raises(ConfigError) as raised:
        parse_config({"models": [{"name": "m", "pricing": {"versions": {"rc1": {"input": 1}}}}]})
    assert str(raised.value).splitlines() == [
        "models[0].pricing.currency: required key is missing",
        "models[0].pricing.input: required key is missing",
        "models[0].pricing.output: required key is missing",
    ]


def test_a_model_with_a_reference_file_is_priced_and_its_reference_costs_nothing(tmp_path):
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps(call) + "\n" for call in _calls(30, seed=4)))
    model = {"name": "m", "reference": {"file": str(reference)}, "pricing": PRICING}
    config = parse_config({"windows": {"min_samples": 1}, "models": [model]})
    pipeline = Pipeline(config)
    calls = _calls(60)
    _apply(pipeline, calls)
    assert _cost_total(pipeline) == _spend(calls)  # the reference's calls were not billed
    assert np.isnan(pipeline.states["m"].reference.columns()["cost"]).all()


def test_opentelemetry_token_names_are_priced_as_the_v1_fields():
    named = {"input_tokens": 5_000, "cache_read_input_tokens": 4_000, "output_tokens": 300, "model_version": "rc1"}
    otel = {
        "gen_ai.usage.input_tokens": 5_000, "gen_ai.usage.cache_read.input_tokens": 4_000,
        "gen_ai.usage.output_tokens": 300, "model_version": "rc1",
    }  # fmt: skip
    pipeline = Pipeline(_config())
    _apply(pipeline, [{"request_id": f"r{i}", "timestamp": T0 + i, "model": "m", **otel} for i in range(3)])
    assert _cost_total(pipeline) == _spend([named] * 3) > 0

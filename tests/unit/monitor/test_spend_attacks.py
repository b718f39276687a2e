"""Attacks on token cost: what a restart under changed pricing can do to the window's cost per call.

The oracle is :mod:`tests.unit.monitor.test_spend`'s: each call's cost in Decimal from the event sent, at the prices
the test configured, the window's quantiles by numpy over those costs.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.pipeline import Pipeline
from tests.unit.monitor.test_spend import PRICING, QUANTILES, _apply, _calls, _config, _oracle, _samples, _through_disk


def test_after_a_currency_change_the_windows_cost_per_call_holds_no_cost_in_the_old_currency(tmp_path):
    """The spend in USD is not carried into yen, but the window's calls kept their USD costs: the quantiles labelled
    JPY mixed dollars with yen for as long as the window held a call from before the restart."""
    pipeline = Pipeline(_config())
    _apply(pipeline, _calls(50))
    yen = {**PRICING, "currency": "JPY", "input": 450, "output": 2250, "cache_read": 45, "versions": {}}
    restored = _through_disk(pipeline, tmp_path, _config(yen))
    later = [
        {**call, "request_id": f"later-{i}", "timestamp": call["timestamp"] + 50}
        for i, call in enumerate(_calls(30, seed=9))
    ]
    _apply(restored, later)

    restored.evaluate(restored.watermark_ms)

    costs = [float(cost) for call in later if (cost := _oracle(call, yen)) is not None]
    assert _samples(restored, "driftwarden_window_cost_per_call") == {
        (("currency", "JPY"), ("model", "m"), ("quantile", str(q))): pytest.approx(value, rel=1e-12)
        for q, value in zip(QUANTILES, np.quantile(costs, QUANTILES).tolist())
    }

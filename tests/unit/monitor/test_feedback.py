"""Feedback joined to its model call: either order, by either id, within label_ttl, bounded, across a restart.

Pure tests without a broker: pipelines are fed records of JSON events made here (one call a second from
``T0``), checkpoints go to ``tmp_path``, and what Prometheus would read is checked on the exposition
itself. :class:`~monitor.state.feedback.FeedbackJoin` is driven directly where the pipeline would only slow a
test down (a million orphan feedback events) or hide what is measured (the cost of one expiry).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from monitor.config import parse_config
from monitor.export.collectors import build_registry, exposition
from monitor.ingest import Record
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import Checkpoint, CheckpointStore, config_fingerprint
from monitor.state.columns import FEEDBACK_COLUMNS, ID_COLUMNS, RATING, REQUEST_ID, RESPONSE_ID, TIMESTAMP_MS, Column
from monitor.state.feedback import MAX_KEY_CHARS, FeedbackJoin, join_key, join_keys
from monitor.state.windows import Window

T0 = 1_790_000_000  # epoch seconds of call 0
HOUR_S = 3_600


def _call(i: int, **fields: object) -> dict:
    """Inference event number ``i``, at ``T0 + i`` seconds, with request id ``m-<i>``."""
    return {"request_id": f"m-{i}", "timestamp": T0 + i, "model": "m", "latency_ms": 100.0, **fields}


def _feedback(i: int | str, at_s: float, by: str = "request_id", **values: object) -> dict:
    """Feedback at ``T0 + at_s`` naming call ``i`` (``m-<i>``) by ``by``, or the id ``i`` itself if a string."""
    key = i if isinstance(i, str) else f"m-{i}"
    return {"type": "feedback", by: key, "timestamp": T0 + at_s, "model": "m", **values}


def _pipeline(
    size: int = 100,
    warmup: int = 1,
    label_ttl: str = "1h",
    max_pending: int = 1_000,
    bias: dict | None = None,
    **quality: object,
) -> Pipeline:
    model = {
        "name": "m",
        "reference": {"warmup": warmup},
        "quality": {"label_ttl": label_ttl, "max_pending": max_pending, **quality},
    }
    if bias is not None:
        model["bias"] = bias
    return Pipeline(parse_config({"windows": {"size": size, "min_samples": 1}, "models": [model]}))


def _apply(pipeline: Pipeline, events: list[dict], batch: int | None = None) -> None:
    """Apply ``events`` in batches of ``batch`` (all at once by default); none may be rejected."""
    batch = batch or max(len(events), 1)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        records = [Record(json.dumps(event).encode(), "llm-events", 0, start + i) for i, event in enumerate(chunk)]
        assert pipeline.apply(records) == []


def _metrics(pipeline: Pipeline, evaluate: bool = False) -> bytes:
    if evaluate:
        pipeline.evaluate(pipeline.watermark_ms)
    return exposition(build_registry(pipeline))


def _sample(pipeline: Pipeline, name: str, **labels: str) -> float | None:
    """The value of the exposed sample ``name`` whose labels include ``labels`` (None if there is none)."""
    for family in text_string_to_metric_families(_metrics(pipeline).decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


def _outcomes(pipeline: Pipeline) -> dict[str, float]:
    """``driftwarden_feedback_total`` by result, and the pending gauge, as exposed for model ``m``."""
    counts = {
        result: _sample(pipeline, "driftwarden_feedback_total", model="m", result=result)
        for result in ("joined", "expired", "dropped")
    }
    return {**counts, "pending": _sample(pipeline, "driftwarden_feedback_pending", model="m")}


def _row(pipeline: Pipeline, i: int) -> dict[str, float]:
    """The window row of call ``i`` (found by its event time), as plain numbers."""
    view = pipeline.states["m"].window.view()
    (position,) = np.flatnonzero(view["timestamp_ms"] == (T0 + i) * 1000.0)
    return {
        name: values[position] if values.dtype == object else values[position].item()
        for name, values in view.items()
        if values.ndim == 1
    }


def _code(pipeline: Pipeline, value: str) -> float:
    """The code that predictions and labels share for class ``value``."""
    return float(pipeline.states["m"].categories["prediction"].values.index(value))


def _through_disk(pipeline: Pipeline, directory: Path) -> Pipeline:
    """Checkpoint ``pipeline`` to ``directory``, load it back and restore it into a fresh pipeline."""
    store = CheckpointStore(directory)
    store.save(Checkpoint({("llm-events", 0): 1}, pipeline.snapshot(), config_fingerprint(pipeline.config)))
    loaded = store.load()
    assert loaded is not None
    restored = Pipeline(pipeline.config)
    restored.restore(loaded.pipeline)
    return restored


# --- Either order, either id -----------------------------------------------------------------------------------


def test_feedback_after_its_call_lands_in_its_row_and_observes_the_label_delay():
    pipeline = _pipeline()
    _apply(pipeline, [_call(i, prediction="yes") for i in range(10)])
    _apply(pipeline, [_feedback(3, at_s=3 + 90, label="no")])  # 90 s after call 3

    labels = {i: _row(pipeline, i)["label"] for i in range(10)}
    assert labels.pop(3) == _code(pipeline, "no")
    assert np.isnan(list(labels.values())).all()  # no other row got it
    assert _outcomes(pipeline) == {"joined": 1.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}
    delay = "driftwarden_label_delay_seconds"
    assert _sample(pipeline, f"{delay}_count", model="m") == 1.0
    assert _sample(pipeline, f"{delay}_sum", model="m") == 90.0  # seconds on the wire
    assert _sample(pipeline, f"{delay}_bucket", model="m", le="60.0") == 0.0
    assert _sample(pipeline, f"{delay}_bucket", model="m", le="600.0") == 1.0


def test_feedback_before_its_call_waits_then_joins_when_the_call_arrives():
    pipeline = _pipeline()
    _apply(pipeline, [_call(i) for i in range(5)])
    _apply(pipeline, [_feedback(7, at_s=5, label="yes", rating=1.0)])  # call 7 comes 2 s later
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 0.0, "dropped": 0.0, "pending": 1.0}

    _apply(pipeline, [_call(i) for i in range(5, 10)])
    row = _row(pipeline, 7)
    assert (row["label"], row["rating"]) == (_code(pipeline, "yes"), 1.0)
    assert np.isnan(_row(pipeline, 6)["label"]) and np.isnan(_row(pipeline, 8)["label"])
    assert _outcomes(pipeline) == {"joined": 1.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}
    assert _sample(pipeline, "driftwarden_label_delay_seconds_count", model="m") == 1.0
    assert _sample(pipeline, "driftwarden_label_delay_seconds_sum", model="m") == 0.0  # feedback came first


def test_feedback_in_the_same_batch_as_its_call_joins_whichever_comes_first():
    pipeline = _pipeline()
    _apply(pipeline, [_feedback(0, at_s=0, label="a"), _call(0), _call(1), _feedback(1, at_s=31, label="b")])
    assert (_row(pipeline, 0)["label"], _row(pipeline, 1)["label"]) == (_code(pipeline, "a"), _code(pipeline, "b"))
    assert _outcomes(pipeline)["joined"] == 2.0
    assert _sample(pipeline, "driftwarden_label_delay_seconds_sum", model="m") == 30.0


@pytest.mark.parametrize("feedback_first", [False, True], ids=["call-first", "feedback-first"])
def test_feedback_joins_by_response_id(feedback_first):
    pipeline = _pipeline()
    calls = [_call(i, response_id=f"resp-{i}") for i in range(6)]
    feedback = [_feedback("resp-4", at_s=10, by="response_id", judge_score=0.25)]
    _apply(pipeline, feedback + calls if feedback_first else calls + feedback, batch=3)
    assert _row(pipeline, 4)["judge_score"] == 0.25
    assert np.isnan([_row(pipeline, i)["judge_score"] for i in (0, 1, 2, 3, 5)]).all()
    assert _outcomes(pipeline) == {"joined": 1.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}


def test_a_rating_does_not_erase_an_earlier_label_and_a_later_label_replaces_it():
    pipeline = _pipeline()
    _apply(pipeline, [_call(i) for i in range(3)])
    _apply(pipeline, [_feedback(1, at_s=5, label="yes")])
    _apply(pipeline, [_feedback(1, at_s=6, rating=-1.0)])
    _apply(pipeline, [_feedback(1, at_s=7, judge_score=0.9)])
    row = _row(pipeline, 1)
    assert (row["label"], row["rating"], row["judge_score"]) == (_code(pipeline, "yes"), -1.0, 0.9)

    _apply(pipeline, [_feedback(1, at_s=8, label="no"), _feedback(1, at_s=9, rating=1.0)])  # latest wins
    row = _row(pipeline, 1)
    assert (row["label"], row["rating"], row["judge_score"]) == (_code(pipeline, "no"), 1.0, 0.9)
    assert _outcomes(pipeline) == {"joined": 5.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}  # once each


def test_feedback_waiting_for_one_call_merges_so_a_rating_does_not_erase_the_waiting_label():
    pipeline = _pipeline()
    _apply(pipeline, [_feedback(0, at_s=0, label="yes", judge_score=0.1)])
    _apply(pipeline, [_feedback(0, at_s=1, rating=-1.0, judge_score=0.7)])
    _apply(pipeline, [_call(0)])
    row = _row(pipeline, 0)
    assert (row["label"], row["rating"], row["judge_score"]) == (_code(pipeline, "yes"), -1.0, 0.7)


def test_duplicate_feedback_after_the_call_is_counted_once_each_and_the_latest_wins():
    pipeline = _pipeline()
    _apply(pipeline, [_call(0)])
    _apply(pipeline, [_feedback(0, at_s=1, label="yes", rating=1.0), _feedback(0, at_s=2, label="no")])
    row = _row(pipeline, 0)
    assert (row["label"], row["rating"]) == (_code(pipeline, "no"), 1.0)
    assert _outcomes(pipeline)["joined"] == 2.0
    assert _sample(pipeline, "driftwarden_label_delay_seconds_count", model="m") == 2.0


def test_labels_waiting_by_request_and_response_id_of_one_call_join_it_in_the_order_they_came():
    pipeline = _pipeline()
    _apply(pipeline, [_call(0)])
    _apply(pipeline, [_feedback("resp-1", at_s=1, by="response_id", rating=1.0), _feedback(1, at_s=1, rating=2.0)])
    _apply(pipeline, [_call(1, response_id="resp-1")])
    assert _row(pipeline, 1)["rating"] == 2.0  # the latest, as had both come after the call


def test_duplicate_feedback_before_the_call_is_counted_once_each_and_the_latest_wins():
    pipeline = _pipeline()
    _apply(pipeline, [_feedback(0, at_s=0, label="yes", rating=1.0), _feedback(0, at_s=0.5, label="no")])
    assert _outcomes(pipeline)["pending"] == 1.0  # one call waited for
    _apply(pipeline, [_call(1), _call(0)])
    row = _row(pipeline, 0)
    assert (row["label"], row["rating"]) == (_code(pipeline, "no"), 1.0)  # merged, latest wins: this part holds
    assert _outcomes(pipeline)["joined"] == 2.0


# --- Expiry -----------------------------------------------------------------------------------------------------


def test_unknown_ids_expire_after_label_ttl_of_event_time_not_before():
    pipeline = _pipeline(label_ttl="1h")
    _apply(pipeline, [_feedback("ghost", at_s=0, label="yes"), _feedback(50, at_s=0, label="yes")])
    _apply(pipeline, [_call(i) for i in range(3)])
    _apply(pipeline, [_call(HOUR_S)])  # exactly label_ttl later: still waiting
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 0.0, "dropped": 0.0, "pending": 2.0}

    _apply(pipeline, [_call(HOUR_S + 1)])
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 2.0, "dropped": 0.0, "pending": 0.0}
    _apply(pipeline, [_call(50) | {"timestamp": T0 + HOUR_S + 2}])  # call 50 comes too late for its label
    view = pipeline.states["m"].window.view()
    assert np.isnan(view["label"]).all()
    assert _outcomes(pipeline)["joined"] == 0.0


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_feedback_for_a_call_that_left_the_window_joins_it_in_the_label_store_only(batch):
    pipeline = _pipeline(size=10, warmup=2)
    _apply(pipeline, [_call(i, prediction="no") for i in range(40)], batch=batch)  # the ring holds calls 30..39
    _apply(pipeline, [_feedback(i, at_s=40, label="yes", rating=1.0) for i in (5, 15, 25)])
    state = pipeline.states["m"]
    for column in ("label", "rating"):  # row i % 10 of the ring now holds call 35: it must not take 5's or 25's
        assert np.isnan(state.window.view()[column]).all()
        assert np.isnan(state.reference.rows.view()[column]).all()  # calls 0 and 1 only
    assert _outcomes(pipeline) == {"joined": 3.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}
    cohort = state.labels.cohort(now_ms=(T0 + 40) * 1000.0, span_ms=HOUR_S * 1000.0)
    assert cohort["timestamp_ms"].tolist() == [(T0 + i) * 1000.0 for i in (5, 15, 25)]
    assert cohort["label"].tolist() == [_code(pipeline, "yes")] * 3
    assert cohort["prediction"].tolist() == [_code(pipeline, "no")] * 3


@pytest.mark.parametrize("by", ["request_id", "response_id"])
def test_waiting_feedback_whose_call_arrives_in_a_batch_longer_than_the_window_joins_it_in_the_label_store(by):
    """The call passes through the window within its batch (only the batch's tail is kept) but the label store
    holds it: the waiting label joins there, as it would had it come after the call."""
    pipeline = _pipeline(size=4, warmup=1)
    _apply(pipeline, [_call(0, prediction="no", response_id="resp-0")])
    _apply(pipeline, [_feedback("resp-5" if by == "response_id" else 5, at_s=1, by=by, label="yes")])
    _apply(pipeline, [_call(i, prediction="no", response_id=f"resp-{i}") for i in range(1, 20)])  # ring: 16..19
    assert _outcomes(pipeline) == {"joined": 1.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}
    cohort = pipeline.states["m"].labels.cohort(now_ms=(T0 + 40) * 1000.0, span_ms=HOUR_S * 1000.0)
    assert cohort["timestamp_ms"].tolist() == [(T0 + 5) * 1000.0]
    assert cohort["label"].tolist() == [_code(pipeline, "yes")]
    assert np.isnan(pipeline.states["m"].window.view()["label"]).all()


def test_waiting_feedback_more_than_label_ttl_before_its_call_only_the_label_store_holds_expires():
    pipeline = _pipeline(size=4, warmup=1, label_ttl="5s")
    _apply(pipeline, [_call(0)])
    _apply(pipeline, [_feedback(10, at_s=1, label="yes")])  # 9 s before its call
    _apply(pipeline, [_call(i) for i in range(1, 20)])  # call 10 passes through the ring within its batch
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 1.0, "dropped": 0.0, "pending": 0.0}


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_without_a_label_store_feedback_for_a_call_that_left_the_window_is_written_nowhere_and_expires(batch):
    pipeline = _pipeline(size=10, warmup=2, max_labelled_calls=0)
    _apply(pipeline, [_call(i) for i in range(40)], batch=batch)  # the ring holds calls 30..39
    _apply(pipeline, [_feedback(i, at_s=40, label="yes", rating=1.0) for i in (5, 15, 25)])
    state = pipeline.states["m"]
    for column in ("label", "rating"):  # row i % 10 of the ring now holds call 35: it must not take 5's or 25's
        assert np.isnan(state.window.view()[column]).all()
        assert np.isnan(state.reference.rows.view()[column]).all()  # calls 0 and 1 only
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 0.0, "dropped": 0.0, "pending": 3.0}

    _apply(pipeline, [_call(40 + HOUR_S + 1)])
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 3.0, "dropped": 0.0, "pending": 0.0}


def test_feedback_arriving_out_of_event_time_order_expires_on_its_own_time():
    pipeline = _pipeline(label_ttl="1h")
    _apply(pipeline, [_feedback("newer", at_s=100, label="yes")])
    _apply(pipeline, [_feedback("older", at_s=0, label="yes")])  # arrives later, happened earlier
    _apply(pipeline, [_call(HOUR_S + 50)])  # "older" is past label_ttl, "newer" is not
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 1.0, "dropped": 0.0, "pending": 1.0}


def test_feedback_past_its_ttl_is_not_joined_however_the_stream_is_batched():
    events = [  # the feedback waits for call 9, which comes after label_ttl, just after another call
        _feedback(9, at_s=0, label="yes"),
        _call(1) | {"timestamp": T0 + HOUR_S + 50},
        _call(9) | {"timestamp": T0 + HOUR_S + 60},
    ]
    outcomes = {}
    for batch in (1, 2, 3):
        pipeline = _pipeline(label_ttl="1h")
        _apply(pipeline, events, batch=batch)
        outcomes[batch] = _outcomes(pipeline)
    expected = {"joined": 0.0, "expired": 1.0, "dropped": 0.0, "pending": 0.0}
    assert outcomes == {1: expected, 2: expected, 3: expected}


# --- Bounded memory ---------------------------------------------------------------------------------------------


def test_a_million_orphan_feedback_events_keep_the_pending_table_bounded():
    """max_pending 1,000 under 10**6 feedback events naming ids that never come.

    Memory is traced over the last 300,000 events only (tracemalloc slows allocation several-fold), well
    past the steady state. The bound: the pending table's 1,000 entries (key, tuple, float: about 0.2 kB
    each) are already there, and one chunk of 10,000 fresh events is alive while it is added (under 2 MB
    measured). Had the table kept the events traced here, it would need about 70 MB; 16 MB leaves room for
    the dict's own slack yet catches a leak of a fifth of them.
    """
    max_pending, total, chunk = 1_000, 1_000_000, 10_000
    join = FeedbackJoin(ttl_ms=7 * 86_400_000, max_pending=max_pending, reference_size=0)
    pipeline = _pipeline()  # a real window, though orphans never reach it
    _apply(pipeline, [_call(0)])
    window = pipeline.states["m"].window
    values = {"label": 1.0}

    def add(first: int) -> None:
        join.add_feedback([(f"orphan-{i}", 1.0e12 + i, values) for i in range(first, first + chunk)], window)

    traced_from = total - 300_000
    for first in range(0, traced_from, chunk):
        add(first)
        assert len(join._pending) == max_pending
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for first in range(traced_from, total, chunk):
            add(first)
            assert len(join._pending) == max_pending
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert join.n_pending == max_pending
    assert (join.n_dropped, join.n_joined, join.n_expired) == (total - max_pending, 0, 0)
    assert next(iter(join._pending)) == f"orphan-{total - max_pending}"  # the oldest were dropped
    assert peak - baseline < 16 * 2**20, f"traced peak grew by {(peak - baseline) / 2**20:.1f} MB"
    assert current - baseline < 1 * 2**20, f"{(current - baseline) / 2**20:.1f} MB left once the last chunk is gone"


def test_a_full_pending_table_drops_the_oldest_and_counts_it_in_the_exposition():
    pipeline = _pipeline(max_pending=100, label_ttl="1d")
    _apply(pipeline, [_feedback(1_000 + i, at_s=i / 1000, rating=1.0) for i in range(5_000)], batch=512)
    assert _outcomes(pipeline) == {"joined": 0.0, "expired": 0.0, "dropped": 4_900.0, "pending": 100.0}
    _apply(pipeline, [_call(5_899), _call(5_900)])  # 1,000 + 4,900 is the oldest one kept
    assert np.isnan(_row(pipeline, 5_899)["rating"]) and _row(pipeline, 5_900)["rating"] == 1.0


# --- Restart ----------------------------------------------------------------------------------------------------


def _before_checkpoint() -> list[dict]:
    """Calls 0..29 (the ring of 20 wraps), some feedback joined, some waiting for calls 40..44 or for nobody."""
    return [
        *[_call(i, prediction="yes" if i % 3 else "no", score=0.5 + i % 5 / 10) for i in range(30)],
        _feedback(12, at_s=31, label="yes"),  # joins a window row
        _feedback(2, at_s=31, label="no"),  # joins a warm-up reference row only
        *[_feedback(i, at_s=32, label="yes", rating=1.0) for i in range(40, 45)],  # wait for their calls
        _feedback("ghost", at_s=33, rating=-1.0),  # waits for nothing
    ]


def _after_checkpoint() -> list[dict]:
    """Feedback for indexed rows, the awaited calls, a reference label, and time enough for the ghost to expire."""
    return [
        *[_feedback(i, at_s=35, label="no", judge_score=0.5) for i in range(15, 20)],
        *[_call(i, prediction="yes", score=0.9) for i in range(30, 50)],
        _feedback(3, at_s=51, label="yes"),
        _call(60 + HOUR_S),
    ]


def test_pending_feedback_and_indexed_rows_survive_a_restart(tmp_path):
    original = _pipeline(size=20, warmup=5, accuracy_estimate="isotonic", positive="yes")
    _apply(original, _before_checkpoint(), batch=9)
    restored = _through_disk(original, tmp_path)
    assert _metrics(restored, evaluate=True) == _metrics(original, evaluate=True)
    assert restored.states["m"].join.n_pending == 6

    for pipeline in (original, restored):
        _apply(pipeline, _after_checkpoint(), batch=9)
    assert _metrics(restored, evaluate=True) == _metrics(original, evaluate=True)
    for name in ("window", "reference"):
        ours = getattr(restored.states["m"], name)
        theirs = getattr(original.states["m"], name)
        ours, theirs = (view.rows.view() if name == "reference" else view.view() for view in (ours, theirs))
        for column in ("label", "rating", "judge_score"):
            np.testing.assert_array_equal(ours[column], theirs[column], err_msg=f"{name}.{column}")
    # Guards the comparison: every kind of saved join state was used after the restart.
    assert _outcomes(restored) == {"joined": 2 + 5 + 5 + 1, "expired": 1.0, "dropped": 0.0, "pending": 0.0}
    reference_labels = restored.states["m"].reference.rows.view()["label"]
    assert reference_labels[2] == _code(restored, "no") and reference_labels[3] == _code(restored, "yes")


# --- Warm-up reference, label codes -----------------------------------------------------------------------------


def test_labels_join_the_warm_up_reference_rows_after_their_calls_left_the_window():
    pipeline = _pipeline(size=10, warmup=20, accuracy_estimate="isotonic")
    calls = [_call(i, prediction="yes", score=0.55 + (i % 9) / 20) for i in range(50)]
    _apply(pipeline, calls, batch=5)  # the window holds calls 40..49, the reference calls 0..19
    pipeline.evaluate(pipeline.watermark_ms)
    assert pipeline.evaluations["m"].quality.estimate is None  # nothing to calibrate on yet

    _apply(pipeline, [_feedback(i, at_s=60, label="yes" if i % 4 else "no") for i in range(20)])
    labels = pipeline.states["m"].reference.rows.view()["label"]
    expected = [_code(pipeline, "yes" if i % 4 else "no") for i in range(20)]
    assert labels.tolist() == expected
    assert np.isnan(pipeline.states["m"].window.view()["label"]).all()
    assert _outcomes(pipeline) == {"joined": 20.0, "expired": 0.0, "dropped": 0.0, "pending": 0.0}
    pipeline.evaluate(pipeline.watermark_ms)
    assert pipeline.evaluations["m"].quality.estimate is not None  # calibrated on the reference's labels


def test_labels_join_the_warm_up_reference_even_when_a_batch_is_longer_than_the_window():
    pipeline = _pipeline(size=10, warmup=20)
    _apply(pipeline, [_call(i, prediction="yes") for i in range(30)])  # one batch of 30 into a ring of 10
    _apply(pipeline, [_feedback(i, at_s=40, label="yes") for i in range(20)])
    assert pipeline.states["m"].reference.rows.view()["label"].tolist() == [_code(pipeline, "yes")] * 20


@pytest.mark.parametrize(
    ("prediction", "label"),
    [("approve", "approve"), ("true", True), (1.0, 1), (2.5, 2.5)],
    ids=["strings", "bool-label", "int-label", "float"],
)
def test_categorical_labels_share_codes_with_predictions(prediction, label):
    pipeline = _pipeline()
    _apply(pipeline, [_feedback(0, at_s=0, label="deny")])  # a label seen before any prediction takes a code too
    _apply(pipeline, [_call(0, prediction="deny"), _call(1, prediction=prediction), _call(2, prediction="deny")])
    _apply(pipeline, [_feedback(1, at_s=3, label=label), _feedback(2, at_s=3, label=label)])
    rows = [_row(pipeline, i) for i in range(3)]
    assert [row["label"] == row["prediction"] for row in rows] == [True, True, False]
    pipeline.evaluate(pipeline.watermark_ms)
    assert pipeline.evaluations["m"].quality.quality.accuracy == pytest.approx(2 / 3)


def test_numeric_labels_are_numbers():
    pipeline = _pipeline(numeric=True)
    _apply(pipeline, [_call(0, prediction=3.5), _call(1, prediction=10.0), _feedback(0, at_s=2, label=4)])
    _apply(pipeline, [_feedback(1, at_s=2, label=7.0)])
    assert [(_row(pipeline, i)["prediction"], _row(pipeline, i)["label"]) for i in (0, 1)] == [(3.5, 4.0), (10.0, 7.0)]
    assert pipeline.states["m"].categories["prediction"].values == ["__other__"]  # no codes given out
    pipeline.evaluate(pipeline.watermark_ms)
    quality = pipeline.evaluations["m"].quality.quality
    assert (quality.mae, quality.rmse) == (pytest.approx(1.75), pytest.approx(np.sqrt((0.25 + 9) / 2)))


def test_joined_labels_reach_the_fairness_figures():
    bias = {"attributes": ["segment.region"], "outcome": {"field": "prediction", "positive": "approve"}}
    pipeline = _pipeline(bias={**bias, "min_group_size": 1})
    calls = [
        _call(i, prediction="approve" if i % 2 else "deny", segment={"region": "north" if i < 4 else "south"})
        for i in range(8)
    ]
    _apply(pipeline, calls)
    pipeline.evaluate(pipeline.watermark_ms)
    assert np.isnan(pipeline.evaluations["m"].quality.bias["segment.region"].equalized_odds_difference)

    # Labels: north is always right (true positive rate 1, false positive rate 0), south always wrong (0 and 1).
    right_or_wrong = [("approve" if i % 2 else "deny") if i < 4 else ("deny" if i % 2 else "approve") for i in range(8)]
    _apply(pipeline, [_feedback(i, at_s=9, label=label) for i, label in enumerate(right_or_wrong)])
    pipeline.evaluate(pipeline.watermark_ms)
    fairness = pipeline.evaluations["m"].quality.bias["segment.region"]
    assert fairness.groups["north"].n_labelled == 4 and fairness.groups["south"].n_labelled == 4
    assert fairness.equalized_odds_difference == 1.0


# --- Junk labels ------------------------------------------------------------------------------------------------


def _labelled_traffic(first: int, n: int, seed: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """Calls ``first`` .. ``first + n - 1`` predicting one of three classes, and a label for four in five of them,
    half before and half after their call; with the (label, prediction) pairs the labels make."""
    rng = np.random.default_rng(seed)
    classes = ["yes", "no", "maybe"]
    events, pairs = [], []
    for i in range(first, first + n):
        prediction, label = classes[rng.integers(3)], classes[rng.integers(3)]
        call = _call(i, prediction=prediction)
        if i % 5 == 0:
            events.append(call)
            continue
        feedback = _feedback(i, at_s=i + (-1 if i % 2 else 30), label=label)
        events.extend([feedback, call] if i % 2 else [call, feedback])
        pairs.append((label, prediction))
    return events, pairs


def _assert_quality_equals_sklearn(pipeline: Pipeline, pairs: list[tuple[str, str]]) -> None:
    pipeline.evaluate(pipeline.watermark_ms)
    quality = pipeline.evaluations["m"].quality.quality
    truth, predicted = zip(*pairs)
    assert quality.n_labelled == len(pairs)
    assert quality.accuracy == pytest.approx(accuracy_score(truth, predicted))
    is_yes = [[value == "yes" for value in values] for values in (truth, predicted)]  # "yes" against the rest
    for ours, theirs in ((quality.precision, precision_score), (quality.recall, recall_score), (quality.f1, f1_score)):
        assert ours == pytest.approx(theirs(*is_yes))


def test_junk_labels_of_feedback_that_never_joins_leave_the_class_codes_to_real_labels(tmp_path):
    """1,500 feedback events naming calls that never come, each with its own label, against 1,000 class codes
    (limits.max_categories): none of them may take a code, before or after a checkpoint, so the labels of real
    calls still get theirs and accuracy, precision, recall and F1 equal scikit-learn's on the joined pairs."""
    pipeline = _pipeline(size=400, max_pending=2_000, positive="yes", label_ttl="1d")
    _apply(pipeline, [_feedback(f"ghost-{i}", at_s=0, label=f"junk-{i}") for i in range(1_500)], batch=500)
    assert pipeline.states["m"].categories["prediction"].values == ["__other__"]
    assert pipeline.states["m"].join.n_pending == 1_500

    restored = _through_disk(pipeline, tmp_path / "junk")
    events, pairs = _labelled_traffic(first=0, n=300, seed=8)
    for each in (pipeline, restored):
        _apply(each, events, batch=50)
        assert sorted(each.states["m"].categories["prediction"].values) == ["__other__", "maybe", "no", "yes"]
        _assert_quality_equals_sklearn(each, pairs)
        assert each.states["m"].join.n_pending == 1_500  # the junk still waits, holding no code

    again = _through_disk(restored, tmp_path / "joined")
    more, more_pairs = _labelled_traffic(first=300, n=100, seed=9)
    _apply(again, more, batch=50)
    _assert_quality_equals_sklearn(again, pairs + more_pairs)


def test_a_label_too_long_to_be_a_class_waits_as_unknown_without_its_text():
    pipeline = _pipeline()
    _apply(pipeline, [_feedback(0, at_s=0, label="y" * 10_000, rating=1.0)])
    (waiting,) = pipeline.states["m"].join._pending.values()
    assert "label" not in waiting.values  # the pending table holds no 10,000-character string, nor an unknown label

    _apply(pipeline, [_call(0, prediction="y")])
    row = _row(pipeline, 0)
    assert np.isnan(row["label"]) and row["rating"] == 1.0
    assert pipeline.states["m"].categories["prediction"].values == ["__other__", "y"]


# --- Memory per id ----------------------------------------------------------------------------------------------


def _long_id(i: int, fill: str) -> str:
    """A distinct id of the 256 characters the schema allows at most."""
    prefix = f"{i}-"
    return prefix + fill * (256 - len(prefix))


@pytest.mark.parametrize("fill", ["r", "é", "\U0001f600"], ids=["ascii", "latin-1", "astral"])
def test_long_ids_join_in_either_order_yet_the_join_keeps_at_most_64_ascii_characters_per_id(fill, tmp_path):
    """An id of 256 characters costs up to 1.1 kB as a Python string (4 bytes a character beyond the BMP); the
    window, the id index and the pending table keep a short digest of it instead."""
    pipeline = _pipeline(size=50)
    calls = [_call(i, response_id=_long_id(i, fill.upper())) | {"request_id": _long_id(i, fill)} for i in range(40)]
    early = [_feedback(_long_id(i, fill), at_s=0, label="yes") for i in range(30, 40)]  # before their calls
    ghosts = [_feedback(_long_id(1_000 + i, fill), at_s=0, rating=1.0) for i in range(5)]  # for nobody
    _apply(pipeline, early + ghosts + calls[:30])
    pipeline = _through_disk(pipeline, tmp_path)
    _apply(pipeline, calls[30:])
    late = [_feedback(_long_id(i, fill.upper()), at_s=50, by="response_id", label="no") for i in range(10)]
    _apply(pipeline, late)

    labels = [_row(pipeline, i)["label"] for i in range(40)]
    np.testing.assert_array_equal(labels, [_code(pipeline, "no")] * 10 + [np.nan] * 20 + [_code(pipeline, "yes")] * 10)
    state = pipeline.states["m"]
    assert _outcomes(pipeline) == {"joined": 20.0, "expired": 0.0, "dropped": 0.0, "pending": 5.0}
    kept = [*state.join._pending, *state.join._rows, *state.window.view()["request_id"]]
    kept += [*state.window.view()["response_id"], *state.reference.rows.view()["request_id"]]
    assert all(len(key) <= 64 and key.isascii() for key in kept), max(kept, key=len)


def test_join_keys_digest_only_long_or_non_ascii_ids_and_keep_none():
    short, long, accented, surrogate = "a" * MAX_KEY_CHARS, "a" * (MAX_KEY_CHARS + 1), "é", "\ud800"
    assert join_keys([short, short]) == [short, short]
    assert join_keys([None, None]) == [None, None]
    assert join_keys([short, None, long]) == [short, None, join_key(long)]
    assert join_keys([accented, surrogate]) == [join_key(accented), join_key(surrogate)]  # a lone surrogate too
    assert len({join_key(long), join_key(accented), join_key(surrogate)}) == 3
    assert all(len(join_key(key)) == 32 and join_key(join_key(key)) == join_key(key) for key in (long, accented))


_CALLS = st.lists(st.tuples(st.integers(0, 20), st.none() | st.integers(0, 20)), min_size=1, max_size=25)
_STEP = st.tuples(st.just("calls"), _CALLS) | st.tuples(st.just("feedback"), st.lists(st.integers(0, 20), max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, max_size=25), st.booleans())
def test_the_id_index_built_only_when_feedback_comes_joins_as_a_search_of_the_window_would(steps, restart_midway):
    """The join indexes the window's ids only when feedback needs them (rows overwritten meanwhile never are; a
    batch may outgrow the ring); each feedback event must still land in the latest row still held that names its
    id as a request or response id, or wait for a call that does. The oracle searches the rows themselves."""
    capacity = 16
    ids = {name: Column(object, missing=None) for name in ID_COLUMNS}
    window = Window(capacity, {TIMESTAMP_MS: Column(np.float64), **FEEDBACK_COLUMNS, **ids})
    join = FeedbackJoin(ttl_ms=1e12, max_pending=1_000, reference_size=0)
    held: list[tuple[str, str | None]] = []  # the oracle's rows, oldest first, and their ratings
    ratings: list[float] = []
    pending: dict[str, float] = {}
    value = 0.0

    def latest_naming(key: str) -> int | None:
        return max((i for i, ids in enumerate(held) if key in ids), default=None)

    for step, (kind, items) in enumerate(steps):
        if restart_midway and step == len(steps) // 2:
            saved = join.snapshot()
            join = FeedbackJoin(ttl_ms=1e12, max_pending=1_000, reference_size=0)
            join.restore(saved, window)
        if kind == "calls":
            request_ids = [f"k{q}" for q, _ in items]
            response_ids = [None if r is None else f"k{r}" for _, r in items]
            n = len(items)
            batch = {
                TIMESTAMP_MS: np.zeros(n),
                **{name: np.full(n, np.nan) for name in FEEDBACK_COLUMNS},
                REQUEST_ID: np.array(request_ids, dtype=object),
                RESPONSE_ID: np.array(response_ids, dtype=object),
            }
            join.forget(window, n)
            first_row = window.n_appended
            window.append(batch)
            join.add_inference(batch, first_row, window, window)
            held, ratings = [*held, *zip(request_ids, response_ids)][-capacity:], [*ratings, *[np.nan] * n][-capacity:]
            named = {*request_ids, *response_ids}
            for key in [key for key in pending if key in named]:  # in the order they came: the latest wins
                row = latest_naming(key)
                if row is not None:  # else its call passed through the ring within its batch: it waits
                    ratings[row] = pending.pop(key)
        else:
            for key in (f"k{k}" for k in items):
                value += 1.0
                join.add_feedback([(key, 1.0, {RATING: value})], window)
                row = latest_naming(key)
                if row is None:
                    pending.pop(key, None)  # a later event for the same call merges: its values win
                    pending[key] = value
                else:
                    ratings[row] = value
        np.testing.assert_array_equal(window.view()[RATING], ratings)
        assert join.n_pending == len(pending)


_JOIN_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["calls", "feedback", "both", "restart"]),
        st.lists(st.tuples(st.integers(0, 7), st.none() | st.integers(0, 7)), min_size=1, max_size=15),
        st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=4),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, database=None)
@given(_JOIN_STEPS, st.sampled_from([(6, 12), (6, 6), (6, 4), (6, 0)]))
def test_labels_land_in_the_window_label_store_and_reference_as_a_search_of_all_calls_would(steps, capacities):
    """Through the pipeline, with a label store (or a smaller one, or none), a warm-up reference of 3 calls, ids
    shared by several calls as request or response ids, batches longer than the window and restarts through disk:
    each label lands where a search of every call made so far says (the latest call still held naming its id; in
    the window, else the label store; and in the reference if a reference call names it), or waits for its call."""
    size, stored_calls = capacities
    warmup = 3
    quality = {"numeric": True, "max_labelled_calls": stored_calls}
    model = {"name": "m", "reference": {"warmup": warmup}, "quality": quality}
    # one evaluation a day: a batch is ingested whole, not cut where its event time crosses an evaluation
    windows = {"size": size, "min_samples": 1, "evaluate_every": "1d"}
    pipeline = Pipeline(parse_config({"windows": windows, "models": [model]}))
    calls: list[tuple[str, str | None]] = []  # every call made, in order: call i is row i
    labels: dict[int, float] = {}  # the oracle: call -> its label in the window or the store
    reference: dict[int, float] = {}  # reference row -> its label
    pending: dict[str, tuple[float, int]] = {}  # id -> latest label waiting, events merged
    joined = 0
    value = 0.0

    def latest(key: str, held: int) -> int | None:
        return max((i for i in range(max(0, len(calls) - held), len(calls)) if key in calls[i]), default=None)

    def join(key: str, label: float, n_events: int) -> bool:
        nonlocal joined
        row = latest(key, max(size, stored_calls))
        in_reference = max((i for i in range(min(warmup, len(calls))) if key in calls[i]), default=None)
        if row is None and in_reference is None:
            return False
        if row is not None:
            labels[row] = label
        if in_reference is not None:
            reference[in_reference] = label
        joined += n_events
        return True

    with TemporaryDirectory() as directory:
        for kind, new_calls, feedback in steps:
            if kind == "restart":
                pipeline = _through_disk(pipeline, Path(directory))
                continue
            events = []
            if kind in ("calls", "both"):
                first = len(calls)
                for offset, (request, response) in enumerate(new_calls):
                    fields = {} if response is None else {"response_id": f"k{response}"}
                    events.append({**_call(first + offset, prediction=1.0, **fields), "request_id": f"k{request}"})
                    calls.append((f"k{request}", None if response is None else f"k{response}"))
                for key in [key for key in pending if latest(key, len(calls) - first) is not None]:
                    if join(key, *pending[key]):  # else its call passed through the window and store in its batch
                        del pending[key]
            if kind in ("feedback", "both"):
                for key, by_response in ((f"k{k}", by) for k, by in feedback):
                    value += 1.0
                    at_s = max(len(calls) - 1, 0)
                    events.append(_feedback(key, at_s, by="response_id" if by_response else "request_id", label=value))
                    if not join(key, value, 1):
                        pending[key] = (value, pending.pop(key, (0.0, 0))[1] + 1)  # (in the order they came)
            _apply(pipeline, events)

            state = pipeline.states["m"]
            assert pipeline.n_internal_errors["ingest"] == 0
            window = state.window.view()
            held = range(max(0, len(calls) - size), len(calls))
            assert window["timestamp_ms"].tolist() == [(T0 + i) * 1000.0 for i in held]
            np.testing.assert_array_equal(window["label"], [labels.get(i, np.nan) for i in held])
            if state.labels is not None:
                cohort = state.labels.cohort(now_ms=(T0 + len(calls)) * 1000.0, span_ms=HOUR_S * 1000.0)
                found = dict(zip(cohort["timestamp_ms"].tolist(), cohort["label"].tolist()))
                stored = range(max(0, len(calls) - stored_calls), len(calls))
                assert found == {(T0 + i) * 1000.0: labels[i] for i in stored if i in labels}
            n_reference = min(warmup, len(calls))
            np.testing.assert_array_equal(
                state.reference.rows.view()["label"], [reference.get(i, np.nan) for i in range(n_reference)]
            )
            outcomes = _outcomes(pipeline)
            assert (outcomes["joined"], outcomes["pending"]) == (joined, len(pending))

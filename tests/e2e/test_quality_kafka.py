"""Quality and fairness end to end: a loan model's calls and feedback through a real broker, scraped by Prometheus.

One model's stream, one event a second of event time, on one partition:
calls that approve or deny with a confidence score and a region, and for most
calls a feedback event with the true label, some before their call and some
minutes after it, plus feedback naming calls that never happened. After the
warm-up reference (``WARMUP`` calls) south's approval rate falls from 0.6 to
0.2 at ``CHANGE``; the other regions keep theirs.

The daemon reads the stream up to the change, then the rest. What Prometheus
stored is compared with what the test computes from the generated data on its
own: the share of approvals per region, fairlearn's disparities, and
scikit-learn's accuracy, precision, recall and F1 over the calls of the last
window (the last ``WINDOW`` calls) whose label was produced. Every feedback
event that names a call is joined (the join never has to reach past the window:
batches are small and no label comes later than ``MAX_DELAY_CALLS`` calls), and
the unknown ones stay pending (``label_ttl`` is the default week).

One daemon and one Prometheus serve every test here: a consumer group join
costs seconds.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from monitor.ingest.kafka import create_topics
from tests.components import DaemonProcess, Prometheus, daemon_config, wait_for
from tests.integration.kafka_helpers import produce

MODEL = "loans"
ATTRIBUTE = "segment.region"
REGIONS = ("north", "south", "east")
N_CALLS = 2_000
WARMUP = 500
CHANGE = 800  # the first call after south's approval rate falls; the first part of the stream ends before it
WINDOW = 1_000
RATE_BEFORE = {"north": 0.6, "south": 0.6, "east": 0.6}
RATE_AFTER = {"north": 0.6, "south": 0.2, "east": 0.6}
FEEDBACK_SHARES = {"none": 0.15, "before": 0.2, "after": 0.65}
MAX_DELAY_CALLS = 160  # a late label comes 40 to 160 calls (1 to 5 minutes) after its call
N_UNKNOWN = 20  # feedback events naming calls that never happened
BATCH = 100  # kafka.max_poll_records: with it, a late label's call is still in the window when the label comes
T0 = 1_790_000_000
TOLERANCE = 1e-9  # the daemon computes in float64, in its own order

MODEL_CONFIG = {
    "name": MODEL,
    "reference": {"warmup": WARMUP},
    "quality": {"positive": "approve"},
    "bias": {
        "attributes": [ATTRIBUTE],
        "outcome": {"field": "prediction", "positive": "approve"},
        "min_group_size": 30,
    },
}


@dataclass(frozen=True)
class Stream:
    """The generated calls (arrays indexed by call), their feedback, and the events in stream order."""

    region: np.ndarray
    prediction: np.ndarray
    score: np.ndarray
    label: np.ndarray
    labelled: np.ndarray  # the call has a feedback event
    call_s: np.ndarray  # event time of each call
    feedback_s: np.ndarray  # event time of its feedback (NaN without)
    events: list[dict]
    n_first: int  # events before the call at CHANGE: the first part produced

    def window(self, first: int, end: int) -> SimpleNamespace:
        """Calls ``first`` to ``end - 1`` as the daemon's window holds them once every label has come."""
        part = slice(first, end)
        return SimpleNamespace(
            region=self.region[part],
            approved=self.prediction[part] == "approve",
            prediction=self.prediction[part],
            label=self.label[part],
            labelled=self.labelled[part],
        )


def generate(seed: int = 17) -> Stream:
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, size=N_CALLS)
    rate = np.array([(RATE_BEFORE if call < CHANGE else RATE_AFTER)[name] for call, name in enumerate(region)])
    approved = rng.random(N_CALLS) < rate
    score = rng.uniform(0.5, 1.0, size=N_CALLS)
    correct = rng.random(N_CALLS) < score  # calibrated: a call with score s is right with probability s
    prediction = np.where(approved, "approve", "deny")
    label = np.where(correct == approved, "approve", "deny")
    kind = rng.choice(list(FEEDBACK_SHARES), size=N_CALLS, p=list(FEEDBACK_SHARES.values()))
    offset = np.where(kind == "before", -rng.uniform(1, 15, N_CALLS), rng.uniform(40, MAX_DELAY_CALLS, N_CALLS))

    calls = [
        {
            "request_id": f"loan-{call}",
            "model": MODEL,
            "prediction": str(prediction[call]),
            "score": float(score[call]),
            "segment": {"region": str(region[call])},
        }
        for call in range(N_CALLS)
    ]
    feedback = {
        call: {"type": "feedback", "request_id": f"loan-{call}", "model": MODEL, "label": str(label[call])}
        for call in np.flatnonzero(kind != "none").tolist()
    }
    unknown = [
        {"type": "feedback", "request_id": f"ghost-{j}", "model": MODEL, "label": "deny"} for j in range(N_UNKNOWN)
    ]
    placed = [(float(call), event) for call, event in enumerate(calls)]  # ordered by call, feedback in between
    placed += [(call + float(offset[call]), event) for call, event in feedback.items()]
    placed += [(float(position), event) for position, event in zip(rng.uniform(0, N_CALLS, N_UNKNOWN), unknown)]
    placed.sort(key=lambda pair: pair[0])
    for second, (_, event) in enumerate(placed):
        event["timestamp"] = T0 + second
    feedback_s = np.full(N_CALLS, np.nan)
    for call, event in feedback.items():
        feedback_s[call] = event["timestamp"]
    return Stream(
        region=region,
        prediction=prediction,
        score=score,
        label=label,
        labelled=kind != "none",
        call_s=np.array([event["timestamp"] for event in calls], dtype=float),
        feedback_s=feedback_s,
        events=[event for _, event in placed],
        n_first=sum(position < CHANGE for position, _ in placed),
    )


def _evaluated_through(prometheus: Prometheus, event: dict) -> None:
    """Wait until Prometheus holds an evaluation as of ``event``'s time (the last produced, on one partition)."""
    expression = f'driftwarden_last_evaluation_timestamp_seconds{{model="{MODEL}"}}'
    wait_for(
        lambda: prometheus.values(expression) == {(): float(event["timestamp"])},
        45,
        f"an evaluation as of {event['timestamp']} to be scraped",
        every_s=0.25,
    )


def _by(prometheus: Prometheus, expression: str, label: str) -> dict[str, float]:
    """``expression``'s samples keyed by one label's values."""
    return {value: sample for (value,), sample in prometheus.values(expression, label).items()}


def _fairness(prometheus: Prometheus) -> dict:
    """What Prometheus holds of the model's fairness."""
    selector = f'{{model="{MODEL}",attribute="{ATTRIBUTE}"}}'
    return {
        "ratio": _by(prometheus, f"driftwarden_segment_outcome_ratio{selector}", "group"),
        "events": _by(prometheus, f"driftwarden_segment_events{selector}", "group"),
        "bias": _by(prometheus, f"driftwarden_bias{selector}", "metric"),
    }


@pytest.fixture(scope="module")
def scraped(kafka_broker, tmp_path_factory):
    """The stream, produced in two parts to one daemon scraped by Prometheus; the fairness seen after the first."""
    stream = generate()
    directory = tmp_path_factory.mktemp("quality-kafka")
    topic = f"quality-kafka-{uuid.uuid4().hex[:8]}"
    create_topics({"bootstrap_servers": kafka_broker.bootstrap_servers}, {topic: 1, f"{topic}-dlq": 1})

    def send(events: list[dict]) -> None:
        produce(kafka_broker, topic, [(0, json.dumps(event).encode()) for event in events], key=MODEL.encode())

    send(stream.events[: stream.n_first])
    config = daemon_config(
        kafka_broker.bootstrap_servers,
        directory / "state",
        topic,
        kafka={"max_poll_records": BATCH},
        windows={"size": WINDOW, "min_samples": 100, "evaluate_every": "1s"},
        models=[MODEL_CONFIG],
    )
    (directory / "daemon").mkdir()
    (directory / "prometheus").mkdir()
    daemon = DaemonProcess(config, directory / "daemon")
    prometheus = None
    try:
        daemon.start()
        prometheus = Prometheus([f"127.0.0.1:{daemon.port}"], directory / "prometheus")
        _evaluated_through(prometheus, stream.events[stream.n_first - 1])
        before = _fairness(prometheus)
        send(stream.events[stream.n_first :])
        _evaluated_through(prometheus, stream.events[-1])
        yield SimpleNamespace(stream=stream, prometheus=prometheus, before=before, after=_fairness(prometheus))
    finally:
        if prometheus is not None:
            prometheus.stop()
        daemon.close()


def _binomial_tolerance(rate: float, n: int) -> float:
    """Four standard deviations of a share of ``n`` draws with probability ``rate``."""
    return 4.0 * float(np.sqrt(rate * (1.0 - rate) / n))


def _expected_groups(window: SimpleNamespace) -> tuple[dict[str, float], dict[str, float]]:
    """Each region's calls and share of approvals in ``window``."""
    counts = {name: float(np.sum(window.region == name)) for name in REGIONS}
    shares = {name: float(np.mean(window.approved[window.region == name])) for name in REGIONS}
    return counts, shares


def _disparities(window: SimpleNamespace) -> dict[str, float]:
    """fairlearn's disparities of the approvals between regions; equalized odds over the labelled calls only."""
    approved = window.approved.astype(int)
    labelled = window.labelled
    truly_approved = (window.label == "approve").astype(int)
    return {
        "demographic_parity_difference": demographic_parity_difference(
            approved, approved, sensitive_features=window.region
        ),
        "disparate_impact_ratio": demographic_parity_ratio(approved, approved, sensitive_features=window.region),
        "equalized_odds_difference": equalized_odds_difference(
            truly_approved[labelled], approved[labelled], sensitive_features=window.region[labelled]
        ),
    }


def test_before_the_change_every_region_is_approved_at_its_rate_and_the_four_fifths_rule_holds(scraped):
    window = scraped.stream.window(0, CHANGE)  # fewer calls than the window holds: all of them
    counts, shares = _expected_groups(window)
    before = scraped.before

    assert before["events"] == counts
    assert before["ratio"] == pytest.approx(shares, rel=TOLERANCE)
    for name, share in before["ratio"].items():
        assert abs(share - RATE_BEFORE[name]) <= _binomial_tolerance(RATE_BEFORE[name], int(counts[name])), name
    expected = _disparities(window)
    for metric in ("demographic_parity_difference", "disparate_impact_ratio"):
        assert before["bias"][metric] == pytest.approx(expected[metric], rel=TOLERANCE), metric
    assert before["bias"]["disparate_impact_ratio"] > 0.8


def test_after_the_change_south_is_approved_less_and_the_four_fifths_rule_flags_it(scraped):
    window = scraped.stream.window(N_CALLS - WINDOW, N_CALLS)  # every call of it came after the change
    counts, shares = _expected_groups(window)
    before, after = scraped.before, scraped.after

    assert after["events"] == counts
    assert after["ratio"] == pytest.approx(shares, rel=TOLERANCE)
    for name, share in after["ratio"].items():
        assert abs(share - RATE_AFTER[name]) <= _binomial_tolerance(RATE_AFTER[name], int(counts[name])), name
    assert after["ratio"]["south"] < before["ratio"]["south"] - 0.25
    for name in ("north", "east"):
        assert abs(after["ratio"][name] - before["ratio"][name]) < 0.1, name
    assert after["bias"] == pytest.approx(_disparities(window), rel=TOLERANCE)
    assert after["bias"]["demographic_parity_difference"] > before["bias"]["demographic_parity_difference"] + 0.25
    assert after["bias"]["disparate_impact_ratio"] < 0.8


def test_accuracy_and_label_coverage_equal_scikit_learn_over_the_labelled_calls_of_the_window(scraped):
    window = scraped.stream.window(N_CALLS - WINDOW, N_CALLS)
    truth, predicted = window.label[window.labelled], window.prediction[window.labelled]
    quality = _by(scraped.prometheus, f'driftwarden_quality{{model="{MODEL}"}}', "metric")

    assert scraped.prometheus.values(f'driftwarden_window_events{{model="{MODEL}"}}') == {(): float(WINDOW)}
    assert quality["label_coverage"] == pytest.approx(np.mean(window.labelled), rel=TOLERANCE)
    assert quality["accuracy"] == pytest.approx(accuracy_score(truth, predicted), rel=TOLERANCE)
    for metric, oracle in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert quality[metric] == pytest.approx(oracle(truth, predicted, pos_label="approve"), rel=TOLERANCE), metric


def test_feedback_naming_a_call_is_joined_in_either_order_and_unknown_ids_stay_pending(scraped):
    stream, prometheus = scraped.stream, scraped.prometheus
    n_labelled = int(stream.labelled.sum())
    delays_s = np.maximum(0.0, stream.feedback_s - stream.call_s)[stream.labelled]  # 0 when the label came first
    selector = f'{{model="{MODEL}"}}'

    assert 0 < np.sum(stream.feedback_s < stream.call_s) < n_labelled  # the stream has both orders
    outcomes = prometheus.values(f"driftwarden_feedback_total{selector}", "result")
    assert outcomes == {("joined",): float(n_labelled), ("expired",): 0.0, ("dropped",): 0.0}
    assert prometheus.values(f"driftwarden_feedback_pending{selector}") == {(): float(N_UNKNOWN)}
    events = prometheus.values(f"driftwarden_events_total{selector}", "type")
    assert events == {("inference",): float(N_CALLS), ("feedback",): float(n_labelled + N_UNKNOWN)}
    assert prometheus.values(f"driftwarden_label_delay_seconds_count{selector}") == {(): float(n_labelled)}
    delay_sum = prometheus.values(f"driftwarden_label_delay_seconds_sum{selector}")[()]
    assert delay_sum == pytest.approx(float(delays_s.sum()), rel=TOLERANCE)
    within_a_minute = prometheus.values(f'driftwarden_label_delay_seconds_bucket{{model="{MODEL}",le="60.0"}}')
    assert within_a_minute == {(): float(np.sum(delays_s <= 60))}


def test_the_accuracy_estimate_lies_in_its_band_near_the_realized_accuracy(scraped):
    quality = _by(scraped.prometheus, f'driftwarden_quality{{model="{MODEL}"}}', "metric")
    band = ("estimated_accuracy_lower", "estimated_accuracy", "estimated_accuracy_upper")

    assert set(band) <= set(quality), sorted(quality)
    lower, estimated, upper = (quality[metric] for metric in band)
    assert 0.0 <= lower < estimated < upper <= 1.0
    # The scores are calibrated (a call with score s is right with probability s), so the estimate, fitted on
    # the reference's labelled calls, lands near both the window's mean score and the accuracy its labels give.
    assert abs(estimated - float(np.mean(scraped.stream.score[N_CALLS - WINDOW :]))) < 0.05
    assert abs(estimated - quality["accuracy"]) < 0.08

"""``driftwarden demo``: the whole loop on one machine, in one command.

It starts an embedded Kafka-protocol broker (Tansu), a synthetic LLM traffic
generator that sends through the producer SDK, and the daemon, all on
localhost, and prints what the daemon sees every few seconds. Part-way
through, ``support-bot``'s latency regresses (x2.5) and its errors rise,
``summarizer``'s client stops sending the locale of 60% of its calls (a
data-quality check flags it; drift cannot: the locales still sent keep their
mix), and a few malformed messages go to the topic now and then, to be
counted and dead-lettered. From the start, a canary of ``support-bot``
serves a tenth of its calls, slower and judged worse than the stable
version: the demo prints the comparison's verdict when it is reached. Every
model's calls are priced (the canary at its own output price, so it costs
less per call: the verdict's line says by how much), and the demo prints
what each has spent.
Ctrl-C (or ``--duration``) stops everything cleanly.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monitor.config import parse_config
from monitor.demo.broker import EmbeddedBroker
from monitor.ingest.kafka import KafkaSink, create_topics
from monitor.producer import EventProducer
from monitor.run.daemon import Daemon

__all__ = ["CHAT_FEATURES", "Traffic", "run_demo"]

TOPIC = "llm-events"
DEAD_LETTER_TOPIC = "llm-events-dlq"
RETRAINING_TOPIC = "driftwarden-retraining"
ROLLBACK_TOPIC = "driftwarden-rollback"
REPORT_EVERY_S = 5.0


@dataclass(frozen=True)
class _Model:
    name: str
    median_latency_ms: float
    error_rate: float
    share: float


MODELS = (
    _Model("support-bot", 600.0, 0.01, 0.4),
    _Model("summarizer", 1_500.0, 0.005, 0.25),
    _Model("code-assistant", 2_500.0, 0.02, 0.15),
    _Model("loan-approver", 300.0, 0.005, 0.2),
)
REGIONS = ("north", "south", "east")
#: loan-approver's approval rate by region, before and after its bias sets in (south falls).
APPROVAL_RATES = {False: (0.6, 0.6, 0.6), True: (0.6, 0.2, 0.6)}
TOPICS = ("billing", "login", "shipping", "returns")
#: support-bot's topic mix once it has drifted (uniform before).
DRIFTED_TOPIC_SHARES = (0.1, 0.1, 0.1, 0.7)
#: support-bot's versions: the stable one, and a canary serving a tenth of its calls, slower and less helpful.
STABLE, CANARY = "2026-11", "2026-12-rc1"
CANARY_SHARE, CANARY_SLOWER, CANARY_HELPFUL = 0.1, 1.3, 0.6
#: The model whose locale goes missing after the regression, and how often.
LOCALE_GOES_MISSING = ("summarizer", 0.6)
#: What the demo watches on every model: a chat service's usual features.
CHAT_FEATURES = [
    {"name": "input_tokens", "kind": "numeric"},
    {"name": "output_tokens", "kind": "numeric"},
    {"name": "topic", "kind": "categorical"},
    {"name": "locale", "kind": "categorical", "path": "segment.locale"},
    {"name": "prompt", "kind": "text"},
]
LOCALES = ("en-US", "de-DE", "fr-FR", "ja-JP")


def demo_config(bootstrap_servers: str, port: int, state_dir: str) -> dict:
    """The daemon's config for the demo: one-minute windows evaluated every five seconds against
    each model's first 500 calls."""
    return {
        "kafka": {
            "bootstrap_servers": bootstrap_servers,
            "topics": [TOPIC],
            "group_id": "driftwarden-demo",
            "dead_letter_topic": DEAD_LETTER_TOPIC,
            "max_poll_interval": "10s",
            "session_timeout": "6s",
        },
        "server": {"host": "127.0.0.1", "port": port},
        "state": {"dir": state_dir, "checkpoint_every": "10s"},
        "windows": {"size": 5_000, "duration": "1m", "evaluate_every": "5s", "min_samples": 50},
        "models": [
            {
                "name": "*",
                "features": CHAT_FEATURES,
                "reference": {"warmup": 500},
                "drift": {"false_alarms_per_week": 1},  # alpha follows: about 8e-6 at one evaluation each 5 s
                "quality": {"positive": "approve"},
                "bias": {"attributes": ["segment.region"], "outcome": {"field": "prediction", "positive": "approve"}},
                "slices": {"attributes": ["segment.locale", "segment.region"]},  # figures per locale and region too
                "versions": {"min_samples": 100},  # a verdict from 100 calls a side: the canary's first half minute
                # what the calls cost (the canary has its own output price), against a budget a model of 40 calls
                # a second overruns once its prompts grow
                "pricing": {"currency": "USD", "input": 3, "cache_read": 0.3, "output": 15,
                            "versions": {CANARY: {"output": 12}}, "budget": {"amount": 400, "per": "1h"}},
            }
        ],
        "alerts": {
            "rules": [
                {"name": "DataDrift", "metric": "drift_share", "op": ">", "threshold": 0.2, "actions": ["retrain"]},
                {
                    "name": "Bias",
                    "metric": "bias",
                    "selector": {"metric": "disparate_impact_ratio"},
                    "op": "<",
                    "threshold": 0.7,  # below the four-fifths rule's 0.8: early, small windows are noisy
                    "for": "10s",
                    "actions": ["retrain"],
                },
                # a canary judged worse than its baseline (-1): one rollback request per version
                {"name": "CanaryWorse", "metric": "version_verdict", "op": "<", "threshold": 0,
                 "actions": ["rollback"]},  # fmt: skip
            ]
        },
        "retraining": {"topic": RETRAINING_TOPIC, "cooldown": "1h"},
        "rollback": {"topic": ROLLBACK_TOPIC},
    }


class Traffic:
    """Synthetic calls at ``rate`` a second through the producer SDK.

    At ``regress_at_s`` support-bot regresses: slower, more errors, and its
    traffic drifts (most questions are now about returns, and they carry more input tokens);
    and loan-approver turns biased: it approves far fewer calls from the south region.
    Half of loan-approver's calls get a label right after the call; a tenth of the chat calls
    get a user's rating and an LLM judge's score, both worse once support-bot has regressed.
    """

    def __init__(self, bootstrap_servers: str, rate: float, regress_at_s: float, seed: int = 7, topic: str = TOPIC):
        self.rate = rate
        self.regress_at_s = regress_at_s
        self.producer = EventProducer(bootstrap_servers, topic, send_text=True)
        self._malformed = KafkaSink({"bootstrap_servers": bootstrap_servers}, topic)
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self.regressed = threading.Event()
        self.n_malformed = 0

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.producer.close(timeout_s=3)
        self._malformed.close(timeout_s=3)

    def _run(self) -> None:
        started = time.monotonic()
        shares = np.array([model.share for model in MODELS])
        n_sent = 0
        while not self._stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= self.regress_at_s:
                self.regressed.set()
            due = int(elapsed * self.rate) - n_sent
            for model in self._rng.choice(len(MODELS), size=max(due, 0), p=shares):
                self._call(MODELS[model], n_sent)
                n_sent += 1
                if n_sent % 997 == 0:
                    self._malformed.send(b'{"request_id": "half-written", "timestamp": ')
                    self.n_malformed += 1
            self._stop.wait(0.05)

    def _call(self, model: _Model, number: int) -> None:
        if model.name == "loan-approver":
            self._decide(model, number)
            return
        rng = self._rng
        regressed = model.name == "support-bot" and self.regressed.is_set()
        canary = model.name == "support-bot" and rng.random() < CANARY_SHARE
        slower = (2.5 if regressed else 1.0) * (CANARY_SLOWER if canary else 1.0)
        latency_ms = float(model.median_latency_ms * rng.lognormal(0.0, 0.35) * slower)
        failed = rng.random() < (0.08 if regressed else model.error_rate)
        topic = TOPICS[int(rng.choice(len(TOPICS), p=DRIFTED_TOPIC_SHARES if regressed else None))]
        request_id = f"demo-{number}"
        missing, share = LOCALE_GOES_MISSING
        locale = LOCALES[int(rng.integers(len(LOCALES)))]
        segment = {"locale": locale}
        if model.name == missing and self.regressed.is_set() and rng.random() < share:
            segment = {}  # a client release that no longer sends it
        self.producer.inference(
            request_id=request_id,
            model=model.name,
            model_version=(CANARY if canary else STABLE) if model.name == "support-bot" else None,
            operation="chat",
            latency_ms=round(latency_ms, 1),
            ttft_ms=round(latency_ms * float(rng.uniform(0.1, 0.3)), 1),
            input_tokens=(input_tokens := int(rng.poisson(450 if regressed else 300))),
            cache_read_input_tokens=input_tokens // 2 if number % 3 == 0 else 0,  # a third reuse a cached prefix
            output_tokens=int(rng.poisson(120)),
            finish_reason="stop",
            error="RateLimitError" if failed else None,
            trace_id=hashlib.blake2b(request_id.encode(), digest_size=16).hexdigest(),  # serving code is traced
            prompt=f"A question about {topic}",
            features={"topic": topic},
            segment=segment,
        )
        if rng.random() < 0.1:
            helpful = not failed and rng.random() < (0.5 if regressed else CANARY_HELPFUL if canary else 0.85)
            judge_score = round(float(rng.beta(8, 2) if helpful else rng.beta(2, 5)), 3)
            self.producer.feedback(
                request_id=request_id, model=model.name, rating=1 if helpful else -1, judge_score=judge_score
            )

    def _decide(self, model: _Model, number: int) -> None:
        """A classifier-like call: approve or deny, with a confidence and (often) a label later."""
        rng = self._rng
        region = int(rng.integers(len(REGIONS)))
        approve = rng.random() < APPROVAL_RATES[self.regressed.is_set()][region]
        confidence = float(rng.uniform(0.55, 0.99))
        correct = rng.random() < confidence  # a calibrated model: right as often as it says
        prediction, other = ("approve", "deny") if approve else ("deny", "approve")
        request_id = f"demo-{number}"
        self.producer.inference(
            request_id=request_id,
            model=model.name,
            latency_ms=round(float(model.median_latency_ms * rng.lognormal(0.0, 0.3)), 1),
            prediction=prediction,
            score=round(confidence, 3),
            segment={"region": REGIONS[region]},
        )
        if rng.random() < 0.5:
            self.producer.feedback(request_id=request_id, model=model.name, label=prediction if correct else other)


def run_demo(
    port: int = 9108,
    rate: float = 100.0,
    duration_s: float | None = None,
    regress_at_s: float = 30.0,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run broker, traffic and daemon until ``stop`` is set or ``duration_s`` has passed."""
    stop = stop or threading.Event()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="driftwarden-demo-") as state_dir:
        say(f"broker (Tansu) on {broker.bootstrap_servers}; state in {state_dir}")
        topics = {TOPIC: 3, DEAD_LETTER_TOPIC: 1, RETRAINING_TOPIC: 1, ROLLBACK_TOPIC: 1}
        create_topics({"bootstrap_servers": broker.bootstrap_servers}, topics)
        daemon = Daemon(parse_config(demo_config(broker.bootstrap_servers, port, state_dir)))
        daemon_thread = threading.Thread(target=daemon.run, name="daemon")
        daemon_thread.start()
        traffic = Traffic(broker.bootstrap_servers, rate, regress_at_s).start()
        say(f"metrics at {daemon.metrics_url} (also /healthz, /readyz); {rate:g} calls/s; Ctrl-C stops")
        started = time.monotonic()
        told = False  # that the regression was injected
        first_p95_ms: dict[str, float] = {}
        announced: set[str] = set()  # retraining jobs already printed
        try:
            while not stop.wait(REPORT_EVERY_S):
                if traffic.regressed.is_set() and not told:
                    say(
                        "injected: support-bot latency x2.5, errors 1% -> 8%, its topics and input tokens drift; "
                        "loan-approver approves 20% of the south region instead of 60%; "
                        "summarizer's locale goes missing on 60% of its calls"
                    )
                    told = True
                _report(daemon, time.monotonic() - started, first_p95_ms, traffic.regressed.is_set(), announced, say)
                _report_verdicts(daemon, announced, say)
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    break
        finally:
            say("stopping")
            try:
                traffic.stop()
            finally:
                daemon.stop()
                daemon_thread.join(timeout=30)
    say(f"stopped: {traffic.producer.stats().sent} calls sent, {traffic.n_malformed} malformed messages")


def _report_verdicts(daemon: Daemon, announced: set[str], say: Callable[[str], None]) -> None:
    """Each candidate version's verdict, once, when it is reached: the verdict metrics that decided it, and its cost
    per call against the baseline's (when priced and not a verdict metric); and each rollback request, once, when
    it is published."""
    for name, evaluation in sorted(daemon.pipeline.evaluations.items()):
        versions = evaluation.versions
        if versions is None:
            continue
        kept = daemon.pipeline.states[name].versions
        for version, comparison in versions.comparisons.items():
            key = f"verdict {name} {version} {comparison.verdict}"
            if comparison.verdict == 0 or key in announced:
                continue
            announced.add(key)
            decided = [
                _effect(metric, result.effect, result.lower, result.upper, result.p_value)
                for metric, result in comparison.metrics.items()
                if result.significant and metric in kept.config.verdict_metrics
            ]
            cost = comparison.metrics.get("cost")
            if cost is not None and "cost" not in kept.config.verdict_metrics and not math.isnan(cost.effect):
                decided.append(f"beside it, cost per call {cost.effect:+.2g} {kept.currency} (not a verdict metric)")
            calls = comparison.metrics["error_ratio"]
            say(
                f"  verdict: {name} {version} is {'worse' if comparison.verdict < 0 else 'better'} than "
                f"{versions.baseline} after {calls.n_candidate} of its calls and {calls.n_baseline} of the baseline's: "
                + "; ".join(decided)
            )
    ledger = daemon.alerting.rollback
    for request in reversed(ledger.jobs() if ledger is not None else []):
        key = f"rollback {request.id}"
        if request.status in ("published", "acknowledged") and key not in announced:
            announced.add(key)
            say(f"  published rollback request {request.id[:12]} for {request.model} {request.version} "
                f"({ROLLBACK_TOPIC}): {request.reason}")  # fmt: skip


def _effect(metric: str, effect: float, lower: float, upper: float, p_value: float) -> str:
    """One metric's effect and interval as a person reads it (latency as a ratio)."""
    if metric == "latency":
        return f"latency x{math.exp(effect):.2f} [{math.exp(lower):.2f}, {math.exp(upper):.2f}], p={p_value:.1g}"
    return f"{metric} {effect:+.3g} [{lower:+.3g}, {upper:+.3g}], p={p_value:.1g}"


def _data_quality_lines(name: str, result) -> list[str]:
    """The data-quality checks flagged, each with its share against the reference's."""
    if result is None:
        return []
    return [
        f"  {name:<15} data quality: {feature} {check} {figures.share:.0%} (reference {figures.reference_share:.0%})"
        for feature, check in result.flagged
        for figures in (result.checks[feature][check],)
    ]


def _quality_lines(name: str, result) -> list[str]:
    """Accuracy (realized and estimated) and the four-fifths rule, for models that have them."""
    if result is None or math.isnan(result.quality.accuracy):
        return []
    line = f"  {name:<15} accuracy {result.quality.accuracy:.2f} on {result.quality.label_coverage:.0%} labelled"
    if result.estimate is not None:
        line += (
            f", estimated {result.estimate.estimated:.2f} [{result.estimate.lower:.2f}, {result.estimate.upper:.2f}]"
        )
    lines = [line]
    for attribute, fairness in result.bias.items():
        if fairness.four_fifths_violated:
            rates = ", ".join(f"{group} {figures.outcome_rate:.0%}" for group, figures in fairness.groups.items())
            lines.append(
                f"  {name:<15} biased by {attribute}: disparate impact {fairness.disparate_impact_ratio:.2f} "
                f"< 0.8 (approval {rates})"
            )
    return lines


def _report(
    daemon: Daemon,
    elapsed_s: float,
    first_p95_ms: dict[str, float],
    regressed: bool,
    announced: set[str],
    say: Callable[[str], None],
) -> None:
    """One line per model; a p95 half as high again as the model's first one (from before the
    regression) is pointed out."""
    pipeline = daemon.pipeline
    unready = daemon.ready()
    lines = [f"[{elapsed_s:5.0f} s] {'consuming' if unready is None else f'not consuming yet: {unready}'}"]
    for name, evaluation in sorted(pipeline.evaluations.items()):
        traffic = evaluation.traffic
        if traffic is None:
            lines.append(f"  {name:<15} window {evaluation.window_events} events (below min_samples)")
            continue
        quantiles = dict(traffic.latency_quantiles_ms)
        p95_ms = quantiles[0.95]
        if not regressed:
            first_p95_ms.setdefault(name, p95_ms)
        ratio = p95_ms / first_p95_ms.get(name, p95_ms)
        with pipeline.lock:
            spend = pipeline.states[name].spend
            spent = "" if spend is None else f"  spent {spend.total:8.2f} {spend.currency}"
        lines.append(
            f"  {name:<15} window {evaluation.window_events:5d}  p50 {quantiles[0.5]:6.0f} ms  "
            f"p95 {p95_ms:6.0f} ms  errors {traffic.error_ratio:6.2%}{spent}"
            + (f"  <- p95 {ratio:.1f}x its first window" if ratio >= 1.5 else "")
        )
        drift = evaluation.drift
        if drift is not None and drift.drifted:
            lines.append(f"  {name:<15} drifted from its reference: {', '.join(drift.drifted)}")
        lines += _data_quality_lines(name, evaluation.data_quality)
        lines += _quality_lines(name, evaluation.quality)
    rejected = sum(pipeline.n_invalid.values())
    if rejected:
        lines.append(f"  {rejected} malformed messages counted and sent to {DEAD_LETTER_TOPIC}")
    queue = daemon.alerting.retraining
    for job in reversed(queue.jobs() if queue is not None else []):
        if job.id not in announced:
            announced.add(job.id)
            lines.append(f"  queued retraining job {job.id[:12]} for {job.model} ({RETRAINING_TOPIC}): {job.reason}")
    say("\n".join(lines))

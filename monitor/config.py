"""The daemon's YAML configuration, validated once at start.

Every section is a pydantic model that forbids unknown keys, so a typo is an
error rather than a silently ignored setting. :func:`load_config` turns any
problem into a :class:`ConfigError` whose message names the key path and the
reason, one line per problem.

>>> config = parse_config({"models": [{"name": "support-bot"}]})
>>> config.windows.evaluate_every_ms
30000
>>> parse_config({"windows": {"size": "big"}})
Traceback (most recent call last):
...
monitor.config.ConfigError: windows.size: must be an integer (got 'big')
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from alerts.rules import OPERATORS, Rule, check_template
from detectors.registry import CHANGE_DETECTORS, TWO_SAMPLE_TESTS, methods_for
from monitor.export.metrics import METRICS
from monitor.export.webconfig import WebConfig
from monitor.ingest.events import INFERENCE_FIELDS
from monitor.state.vocabulary import OTHER

__all__ = ["Config", "ConfigError", "load_config", "parse_config", "parse_duration_ms"]

#: Secrets that an environment variable overrides: ``DRIFTWARDEN_KAFKA_<KEY>``.
SECRET_ENV = {
    ("kafka", "sasl_password"): "DRIFTWARDEN_KAFKA_SASL_PASSWORD",
    ("kafka", "ssl_password"): "DRIFTWARDEN_KAFKA_SSL_PASSWORD",
}
#: The webhook's signing secret, likewise.
WEBHOOK_SECRET_ENV = "DRIFTWARDEN_WEBHOOK_SECRET"

#: Inference events a model's warm-up reference holds unless configured otherwise.
DEFAULT_WARMUP = 5_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message says where and why."""


def _installed_for(value: str, choice: str, package: str, module: str) -> str:
    """``value``, unless it is ``choice``, which needs the optional extra of that name to bring ``package``."""
    if value == choice and importlib.util.find_spec(module) is None:
        raise ValueError(f"{choice} needs the {package} package: pip install 'driftwarden[{choice}]'")
    return value


def parse_duration_ms(value: Any) -> int:
    """Parse ``"500ms"``, ``"30s"``, ``"15m"``, ``"6h"``, ``"7d"`` or ``"1w"`` into milliseconds.

    >>> parse_duration_ms("15m")
    900000
    """
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            milliseconds = float(match.group(1)) * _UNIT_MS[match.group(2)]
            if milliseconds >= 1:
                return round(milliseconds)
    raise ValueError(f"must be a positive duration such as '30s', '15m', '6h' or '7d' (got {value!r})")


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
#: YAML's ``true`` is not the number 1.
Integer = Annotated[int, Strict()]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicConfig(_Section):
    """A topic read and how its messages are encoded: driftwarden's JSON events (``json``), or OpenTelemetry
    traces as the Collector's Kafka exporter writes them (its names: ``otlp_proto``, ``otlp_json``; see
    :mod:`monitor.ingest.otlp`). A bare name in ``kafka.topics`` is a topic of JSON events."""

    name: str = Field(min_length=1)
    encoding: Literal["json", "otlp_proto", "otlp_json"] = "json"


def _topic(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


Topic = Annotated[TopicConfig, BeforeValidator(_topic)]


class KafkaConfig(_Section):
    """Where events come from. Client settings keep Kafka's own names and defaults (durations as '45s').

    ``max_poll_records`` is also the pipeline's batch size: 2,000 by default, larger than Kafka's 500 so that the
    costs of a batch (a few dozen numpy calls a model) spread over many events, and small enough that a batch's
    events (about 1 kB each, decoded) stay in the cache between their parse and their read (10,000 measured about
    a tenth slower on bench/hot_path.py's events). ``auto_offset_reset`` applies only
    when the group has no committed offset and no checkpoint covers a partition. ``client`` picks the
    consumer: kafka-python (the default) or confluent-kafka (librdkafka, the ``confluent`` extra), which
    reads the same settings (:func:`monitor.ingest.confluent.consumer_settings`).
    """

    client: Literal["kafka-python", "confluent"] = "kafka-python"
    bootstrap_servers: str | list[str] = "127.0.0.1:9092"
    topics: list[Topic] = Field(default_factory=lambda: [TopicConfig(name="llm-events")], min_length=1)
    group_id: str = "driftwarden"
    dead_letter_topic: str | None = "llm-events-dlq"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: Integer = Field(2_000, ge=1, le=100_000)
    max_poll_interval_ms: DurationMs = Field(300_000, alias="max_poll_interval")
    session_timeout_ms: DurationMs = Field(45_000, alias="session_timeout")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None

    @field_validator("client")
    @classmethod
    def _client_installed(cls, client: str) -> str:
        return _installed_for(client, "confluent", "confluent-kafka", "confluent_kafka")

    @field_validator("topics")
    @classmethod
    def _topics_once(cls, topics: list[TopicConfig]) -> list[TopicConfig]:
        names = [topic.name for topic in topics]
        if len(set(names)) < len(names):
            raise ValueError(f"names a topic twice: {names}")
        return topics

    @model_validator(mode="after")
    def _dead_letters_elsewhere(self) -> KafkaConfig:
        if self.dead_letter_topic in self.topic_names:
            raise ValueError(
                f"dead_letter_topic {self.dead_letter_topic!r} is a topic read: each dead letter would be read, "
                "rejected and dead-lettered again, forever"
            )
        return self

    @property
    def topic_names(self) -> list[str]:
        return [topic.name for topic in self.topics]


def _web_config(value: Any) -> Any:
    """exporter-toolkit's web configuration, read and checked now (certificates loaded) so that a start fails early."""
    if value is None or isinstance(value, WebConfig):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be the path of a web configuration file (got {value!r})")
    return WebConfig.parse(_read_yaml(Path(value)), Path(value))


class ServerConfig(_Section):
    """The HTTP server of /metrics, /healthz, /readyz and /report.

    ``web_config_file``: TLS and basic auth as every Prometheus exporter takes them (``monitor/export/webconfig.py``).
    ``timeout``: how long a connection may take to send its request or read a chunk of the answer.
    ``max_connections``: open sockets at most; one more closes the one idle longest.
    """

    host: str = "0.0.0.0"
    port: Integer = Field(9108, ge=0, le=65535)
    web_config_file: Annotated[WebConfig | None, BeforeValidator(_web_config)] = None
    timeout_ms: DurationMs = Field(5_000, alias="timeout")
    max_connections: Integer = Field(64, ge=1, le=10_000)


class S3StoreConfig(_Section):
    """An S3-compatible bucket for the state (``state.store: s3``); credentials come from boto3's standard chain.

    ``prefix`` is put before every key as is (end it with ``/`` for a folder); ``endpoint_url`` is for a store
    other than AWS (MinIO, Ceph, R2), ``region`` for AWS's or one that asks for it.
    """

    bucket: str = Field(min_length=1)
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None

    @field_validator("prefix")
    @classmethod
    def _relative_prefix(cls, prefix: str) -> str:
        if prefix.startswith("/"):
            raise ValueError(f"must not start with '/' (got {prefix!r})")
        return prefix

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL (got {url!r})")
        if parts.username is not None or parts.password is not None:  # the value is not echoed: it holds one
            raise ValueError("must not hold credentials: they come from AWS_* variables or the pod's role")
        return url


class StateConfig(_Section):
    """Where checkpoints live, and how often the daemon writes one (and then commits its offsets).

    ``store``: ``local`` keeps the state in ``dir`` (one replica: a pod's directory cannot follow a partition to
    another pod); ``s3`` in the bucket of ``s3``, which every replica of the group reaches. ``dir`` holds the
    local files either way.
    """

    dir: Path = Path("./driftwarden-state")
    checkpoint_every_ms: DurationMs = Field(30_000, alias="checkpoint_every")
    store: Literal["local", "s3"] = "local"
    s3: S3StoreConfig | None = None

    @field_validator("store")
    @classmethod
    def _store_installed(cls, store: str) -> str:
        return _installed_for(store, "s3", "boto3", "boto3")

    @model_validator(mode="after")
    def _s3_with_its_store(self) -> StateConfig:
        """Settings for the bucket go with ``store: s3``; either without the other is a mistake, not a default."""
        if self.store == "s3" and self.s3 is None:
            raise ValueError("s3.bucket: required when store is s3")
        if self.store != "s3" and self.s3 is not None:
            raise ValueError("s3: set, but store is local (set store: s3 to keep the state in the bucket)")
        return self


class WindowsConfig(_Section):
    """``size`` bounds every window's memory in events; ``duration`` narrows it by event time."""

    size: Integer = Field(10_000, ge=1, le=10_000_000)
    duration_ms: DurationMs | None = Field(None, alias="duration")
    evaluate_every_ms: DurationMs = Field(30_000, alias="evaluate_every")
    min_samples: Integer = Field(200, ge=1)
    #: In ``run``, a model that has seen no event for this long lets its event time follow the wall clock.
    idle_after_ms: DurationMs = Field(120_000, alias="idle_after")

    @property
    def evaluations_per_week(self) -> float:
        return _UNIT_MS["w"] / self.evaluate_every_ms

    @model_validator(mode="after")
    def _reachable_min_samples(self) -> WindowsConfig:
        """A window never holds more than ``size`` events; the default ``min_samples`` shrinks to fit."""
        if self.min_samples > self.size:
            if "min_samples" in self.model_fields_set:
                raise ValueError(
                    f"min_samples ({self.min_samples}) exceeds size ({self.size}): no window would be evaluated"
                )
            object.__setattr__(self, "min_samples", self.size)
        return self


class LimitsConfig(_Section):
    """Bounds that keep memory and Prometheus cardinality finite whatever the traffic.

    ``max_clock_skew``: in ``run``, an event dated further than this ahead of the wall clock is
    rejected (``future_timestamp``), so that one wrong clock cannot move event time.
    """

    max_event_bytes: Integer = Field(1_048_576, ge=256)
    max_models: Integer = Field(100, ge=1)
    max_categories: Integer = Field(1_000, ge=2)
    max_text_chars: Integer = Field(4_096, ge=1)
    max_clock_skew_ms: DurationMs = Field(600_000, alias="max_clock_skew")


FeatureKind = Literal["numeric", "categorical", "text", "embedding"]


#: Top-level inference fields a feature may read; anything else lives under
#: ``features.<name>`` or ``segment.<name>``.
EVENT_FIELDS = tuple(
    name
    for name in INFERENCE_FIELDS
    if name not in ("type", "request_id", "response_id", "timestamp", "model", "features", "segment")
)


class FeatureConfig(_Section):
    """One monitored column of a model's window.

    ``path`` says where the value is: a top-level event field (the default when
    ``name`` is one), ``features.<key>`` (the default otherwise) or ``segment.<key>``.
    An ``embedding`` feature needs its dimension ``dim``, so that its ring is preallocated.
    ``method`` overrides the model's drift method for this feature's kind.
    """

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
    kind: FeatureKind
    path: str = ""
    dim: Integer | None = Field(None, ge=1, le=65_536)
    method: str | None = None

    @model_validator(mode="after")
    def _resolve_path(self) -> FeatureConfig:
        if not self.path:
            default = self.name if self.name in EVENT_FIELDS else f"features.{self.name}"
            object.__setattr__(self, "path", default)
        _check_path(self.path)
        if (self.kind == "embedding") != (self.dim is not None):
            raise ValueError("'dim' is required for kind 'embedding' and only for it")
        return self

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str | None, info: ValidationInfo) -> str | None:
        if method is not None and "kind" in info.data:
            _check_method(method, info.data["kind"])
        return method


class ReferenceConfig(_Section):
    """The fixed sample windows are compared with: the model's first ``warmup`` inference events, or a
    JSONL ``file`` of reference events (the model's own events in it; see ``driftwarden reference build``)."""

    warmup: Integer | None = Field(None, ge=1, le=1_000_000)
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        if self.warmup is not None and self.file is not None:
            raise ValueError("give either 'warmup' or 'file', not both")
        if self.file is None and self.warmup is None:
            object.__setattr__(self, "warmup", DEFAULT_WARMUP)
        return self


#: The least ``drift.alpha``: split across a model's features and groups it stays far from underflow.
MIN_ALPHA = 1e-9


class DriftConfig(_Section):
    """How a model's features are tested against its reference on every evaluation.

    A method per feature kind (``auto`` follows Evidently's choice by kind and
    reference size; text features are tested through their numeric descriptors),
    distance thresholds by method, and the false-alarm policy of the p-value
    tests: ``alpha`` after ``correction`` across the model's features, or
    ``false_alarms_per_week`` from which alpha follows (see :mod:`monitor.evaluate.drift`).
    ``change_detector`` watches the latency p50/p95 and error ratio of blocks of ``windows.min_samples``
    events (see :mod:`monitor.state.changes`), calibrated on each signal's own spread: the first
    ``change_warmup`` blocks estimate it, ``change_arl`` is the average number of blocks between false
    changes of a signal that does not change, and ``change_shift`` the step, in standard deviations of
    the signal, that ``page_hinkley`` and ``cusum`` detect fastest. ``page_hinkley`` and ``cusum`` keep their
    stated false-change rate and catch a step about three times sooner than ``adwin`` (README, "Change
    detectors"); ``adwin`` stays the default, since the detector shapes each model's saved state and a new
    default would reset every model on upgrade.
    """

    numeric: str = "auto"
    categorical: str = "auto"
    text: str = "auto"
    embedding: str = "classifier"
    thresholds: dict[str, float] = Field(default_factory=dict)
    alpha: float = Field(0.05, ge=MIN_ALPHA, lt=1.0)
    false_alarms_per_week: float | None = Field(None, ge=0.001)  # one in 20 years: alpha stays >= ~1e-9
    correction: Literal["none", "bonferroni", "bh"] = "bh"
    change_detector: str | None = "adwin"
    change_arl: float = Field(10_000.0, ge=10.0)
    change_shift: float = Field(1.0, gt=0.0, le=10.0)
    change_warmup: Integer = Field(30, ge=5, le=10_000)

    @field_validator("numeric", "categorical", "text", "embedding")
    @classmethod
    def _known_method(cls, method: str, info: ValidationInfo) -> str:
        assert info.field_name is not None  # a field validator always knows its field
        _check_method(method, info.field_name)
        return method

    @field_validator("change_detector")
    @classmethod
    def _known_change_detector(cls, method: str | None) -> str | None:
        if method is not None and method not in CHANGE_DETECTORS:
            raise ValueError(f"unknown change_detector {method!r}; valid: {', '.join(CHANGE_DETECTORS)} or null")
        return method

    @model_validator(mode="after")
    def _consistent_policy(self) -> DriftConfig:
        for method, threshold in self.thresholds.items():
            test = TWO_SAMPLE_TESTS.get(method)
            if test is None or test.has_p_value:
                distances = sorted(name for name, test in TWO_SAMPLE_TESTS.items() if not test.has_p_value)
                raise ValueError(
                    f"thresholds: {method!r} is not a distance method ({', '.join(distances)}); "
                    "p-value tests use 'alpha'"
                )
            if not threshold > 0:
                raise ValueError(f"thresholds.{method}: must be > 0 (got {threshold!r})")
        if self.false_alarms_per_week is not None:
            if "alpha" in self.model_fields_set:
                raise ValueError("give either 'alpha' or 'false_alarms_per_week', not both")
            if self.correction == "none":
                raise ValueError("'false_alarms_per_week' needs correction 'bh' or 'bonferroni'")
        return self


class QualityConfig(_Section):
    """Feedback and quality proxies of a model.

    Feedback joins its inference event within ``label_ttl`` (event time), at
    most ``max_pending`` waiting at once per model (each admitted by ``"*"``
    has its own table: see ``monitor.state.memory``). ``positive`` is the class whose
    precision, recall and F1 are reported; ``numeric: true`` reads predictions
    and labels as numbers (MAE, RMSE). ``json_response: true``: the model must
    answer JSON, and the share of responses that parse is reported.
    ``accuracy_estimate`` calibrates ``score`` on the reference's labelled
    rows (isotonic or platt; null: off) to estimate accuracy without labels.

    The label store keeps what a late label needs of each of the model's last
    ``max_labelled_calls`` calls (0: none; see ``monitor.state.labels``), so
    that labels join calls that have left the window; realized performance is
    reported on the cohort of its calls of the last ``cohort`` of event time
    whose labels have arrived.
    """

    label_ttl_ms: DurationMs = Field(7 * _UNIT_MS["d"], alias="label_ttl")
    max_pending: Integer = Field(1_000, ge=1, le=10_000_000)
    max_labelled_calls: Integer = Field(20_000, ge=0, le=100_000_000)
    cohort_ms: DurationMs = Field(_UNIT_MS["d"], alias="cohort")
    positive: str | None = None
    numeric: bool = False
    json_response: bool = False
    accuracy_estimate: Literal["isotonic", "platt"] | None = "isotonic"

    @model_validator(mode="after")
    def _classes_or_numbers(self) -> QualityConfig:
        if self.numeric and self.positive is not None:
            raise ValueError("a numeric model has no 'positive' class")
        return self


class OutcomeConfig(_Section):
    """The outcome whose rate is compared across groups: ``field`` (a path, as a feature's) equals ``positive``."""

    field: str = "prediction"
    positive: str

    @field_validator("field")
    @classmethod
    def _known_field(cls, field: str) -> str:
        return _check_path(field)


class BiasConfig(_Section):
    """Fairness per segment attribute: outcome rates per group and the disparities between groups.

    Groups with fewer than ``min_group_size`` events are reported as
    insufficient; only the ``max_groups`` largest keep their name as a label.
    """

    attributes: list[str] = Field(default_factory=list)
    outcome: OutcomeConfig | None = None
    min_group_size: Integer = Field(30, ge=1)
    max_groups: Integer = Field(20, ge=1, le=1_000)

    @field_validator("attributes")
    @classmethod
    def _segment_attributes(cls, attributes: list[str]) -> list[str]:
        return _check_attributes("attribute", attributes)

    @model_validator(mode="after")
    def _outcome_for_attributes(self) -> BiasConfig:
        if self.attributes and self.outcome is None:
            raise ValueError("'outcome' is required when 'attributes' are given")
        return self


class SliceConfig(_Section):
    """Attributes by whose groups drift share and realized quality are reported too, beside the model's own.

    An attribute's groups are chosen on the reference: the ``max_groups``
    largest with at least ``min_group_size`` rows there keep their name; the
    other values, and those the reference never saw, pool into ``"__other__"``.
    A group is scored when the window holds at least ``min_group_size`` of its rows.
    """

    attributes: list[str] = Field(default_factory=list, max_length=10)
    min_group_size: Integer = Field(30, ge=1)
    max_groups: Integer = Field(20, ge=1, le=100)

    @field_validator("attributes")
    @classmethod
    def _segment_attributes(cls, attributes: list[str]) -> list[str]:
        return _check_attributes("slice attribute", attributes)


#: The metrics on which a version is compared with its baseline, each with the direction that is worse (None: compared,
#: never a verdict metric). A model is compared on ``cost`` (per call, in its currency) only if it has ``pricing``.
VERSION_METRICS = {
    "latency": "higher", "error_ratio": "higher", "feedback_positive_ratio": "lower", "judge_score": "lower",
    "accuracy": "lower", "absolute_error": "higher", "content_filter_ratio": "higher", "input_tokens": None,
    "output_tokens": None, "cost": "higher",
}  # fmt: skip
#: The verdict metrics a config may add to the default ones: a version that costs less is not a better model.
OPT_IN_VERDICT_METRICS = ("cost",)


class VersionsConfig(_Section):
    """How a model's versions (``model_version``) are kept apart and compared: canaries, A/B tests, rollouts.

    A model keeps at most ``max_live`` versions by name; a new one takes the place of the least recently seen
    (never the configured ``baseline``) once that one has been silent for ``retire_after`` (event time, at least
    a minute: codes are never given twice), else it folds into ``"__other__"``, as does a version of that name.
    The ``baseline`` is the named version, or by default the one with the most calls in the window (another takes
    over once it has twice the baseline's calls there, so a 50/50 test keeps one baseline). Every other
    version is compared with it on the calls both made since it went live, by an anytime-valid test
    (``detectors.sequential``): ``verdict_metrics`` (by default each metric with a worse direction but ``cost``,
    which a model with ``pricing`` may add: higher is worse) share ``alpha`` (Bonferroni), and no verdict comes
    before ``min_samples`` calls on each side. ``prior_scale`` is the test's mixture scale: about the effect, in
    standard deviations of the metric, that it is tuned to find soonest. ``promote_reference: true``: when a new
    baseline takes over from another (a rollout completed), a warm-up reference is learned again from the new
    baseline's calls (source ``promoted``).
    """

    max_live: Integer = Field(4, ge=1, le=50)
    baseline: str | None = Field(None, min_length=1, max_length=256)
    retire_after_ms: DurationMs = Field(_UNIT_MS["h"], alias="retire_after", ge=_UNIT_MS["m"])
    alpha: float = Field(0.05, ge=MIN_ALPHA, lt=1.0)
    min_samples: Integer = Field(500, ge=10)
    prior_scale: float = Field(1.0, gt=0.0, le=1_000.0)
    promote_reference: bool = False
    verdict_metrics: list[str] = Field(
        default_factory=lambda: [
            name for name, worse in VERSION_METRICS.items() if worse is not None and name not in OPT_IN_VERDICT_METRICS
        ]
    )

    @field_validator("verdict_metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str]) -> list[str]:
        for metric in metrics:
            if VERSION_METRICS.get(metric) is None:
                valid = ", ".join(name for name, worse in VERSION_METRICS.items() if worse is not None)
                what = "is compared but never a verdict metric" if metric in VERSION_METRICS else "is no verdict metric"
                cost = "cost: named only, by a model with pricing; higher is worse"
                raise ValueError(f"{metric!r} {what}; valid: {valid} ({cost})")
        _require_unique("verdict metric", metrics)
        return metrics

    @field_validator("baseline")
    @classmethod
    def _not_the_fold(cls, baseline: str | None) -> str | None:
        if baseline == OTHER:
            raise ValueError(f"{OTHER!r} is where the versions past max_live fold, never a version")
        return baseline


#: The highest price per million tokens (and budget) a config may give: far above any model's, and low enough that
#: a model's whole spend (at most 2**63 tokens of each kind) stays a finite float.
MAX_PRICE = 10**9
#: A price per million tokens, or an amount of money: exact as written (``0.3`` is three tenths, not a float).
Money = Annotated[Decimal, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]


class VersionPriceConfig(_Section):
    """A version's own prices per million tokens; a price it leaves out is the model's."""

    input: Money | None = None
    output: Money | None = None
    cache_read: Money | None = None

    @model_validator(mode="after")
    def _some_price(self) -> VersionPriceConfig:
        if not self.model_fields_set:
            raise ValueError("a version's prices must give at least one of input, output, cache_read")
        return self


class BudgetConfig(_Section):
    """What a model may spend per span of time, in its currency (the shipped alert compares the spend rate)."""

    amount: Money = Field(gt=0)
    per_ms: DurationMs = Field(_UNIT_MS["d"], alias="per")

    @property
    def per_second(self) -> float:
        """The budget as spend per second (what the exported budget and the burn-rate rule compare with)."""
        return float(self.amount * 1000 / self.per_ms)


class PricingConfig(_Section):
    """What a model's calls cost: prices per million tokens in one ``currency`` (an ISO 4217 code).

    ``input`` prices the input tokens not read from a cache, ``cache_read`` those read from one (default: the
    input price), ``output`` the output tokens. ``input_includes_cache_read`` (default true, as OpenTelemetry's
    ``gen_ai.usage.input_tokens`` and OpenAI's ``prompt_tokens``) says whether ``input_tokens`` counts the cache
    reads too; false for Anthropic's API, whose ``input_tokens`` leaves them out. ``versions`` gives a
    ``model_version`` prices of its own (by the name it is sent as, whether it is live or folded).
    """

    currency: str
    input: Money
    output: Money
    cache_read: Money | None = None
    input_includes_cache_read: bool = True
    versions: dict[str, VersionPriceConfig] = Field(default_factory=dict, max_length=100)
    budget: BudgetConfig | None = None

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, currency: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"must be a three-letter ISO 4217 code such as USD or EUR (got {currency!r})")
        return currency

    @field_validator("versions")
    @classmethod
    def _named_versions(cls, versions: dict[str, VersionPriceConfig]) -> dict[str, VersionPriceConfig]:
        for version in versions:
            if version == OTHER or not 1 <= len(version) <= 256:
                raise ValueError(f"{version!r} is not a version's name (1 to 256 characters, never {OTHER!r})")
        return versions

    def prices(self, version: str | None = None) -> tuple[Decimal, Decimal, Decimal]:
        """The prices per million tokens of input not read from a cache, of cache reads and of output that
        ``version`` pays (None: the model's own). A price the version leaves out is the model's; a cache-read price
        that neither gives is the version's input price.

        >>> pricing = PricingConfig(currency="USD", input=3, output=15, versions={"rc1": {"input": 2}})
        >>> [str(price) for price in pricing.prices("rc1")], [str(price) for price in pricing.prices("v1")]
        (['2', '2', '15'], ['3', '3', '15'])
        """
        override = self.versions.get(version) if version is not None else None
        if override is None:
            override = VersionPriceConfig.model_construct()  # (every price the model's)
        input_price = self.input if override.input is None else override.input
        cache_read = override.cache_read if override.cache_read is not None else self.cache_read
        return (
            input_price,
            input_price if cache_read is None else cache_read,
            self.output if override.output is None else override.output,
        )


def _check_attributes(what: str, attributes: list[str]) -> list[str]:
    """Raise unless each of ``attributes`` is a valid path, named once."""
    for attribute in attributes:
        _check_path(attribute)
    _require_unique(what, attributes)
    return attributes


def _check_path(path: str) -> str:
    """Raise unless ``path`` names a top-level event field, ``features.<key>`` or ``segment.<key>``."""
    head, _, key = path.partition(".")
    if not (path in EVENT_FIELDS or (head in ("features", "segment") and key)):
        raise ValueError(
            f"path {path!r} must be 'features.<key>', 'segment.<key>' or one of "
            f"the event fields {', '.join(EVENT_FIELDS)}"
        )
    return path


def _check_method(method: str, kind: str) -> None:
    """Raise naming the valid methods when ``method`` cannot test a feature of ``kind``."""
    valid = methods_for("numeric" if kind == "text" else kind)  # text drifts through its numeric descriptors
    if method not in valid:
        raise ValueError(f"unknown {kind} drift method {method!r}; valid: {', '.join(valid)}")


class ModelConfig(_Section):
    """A monitored model; the name ``"*"`` tracks every model seen, each on its own."""

    name: str = Field(min_length=1, max_length=256)
    features: list[FeatureConfig] = Field(default_factory=list)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    bias: BiasConfig = Field(default_factory=BiasConfig)
    slices: SliceConfig = Field(default_factory=SliceConfig)
    versions: VersionsConfig = Field(default_factory=VersionsConfig)
    pricing: PricingConfig | None = None

    @model_validator(mode="after")
    def _unique_features(self) -> ModelConfig:
        _require_unique("feature", [feature.name for feature in self.features])
        return self

    @model_validator(mode="after")
    def _cost_needs_pricing(self) -> ModelConfig:
        if "cost" in self.versions.verdict_metrics and self.pricing is None:
            raise ValueError("versions.verdict_metrics names cost, which only a model with a pricing section has")
        return self


Action = Literal["alertmanager", "webhook", "log", "retrain", "rollback"]  # where an alert rule sends its alerts


class RuleConfig(_Section):
    """An alert rule (see :mod:`alerts.rules`): data, never code.

    ``metric`` is an exported series (the ``driftwarden_`` prefix may be left
    out), ``selector`` matches its labels exactly, ``annotations`` are
    templates with ``{name}`` fields: the series' labels, ``value``,
    ``threshold``, ``metric``, and per model ``drifted_features``,
    ``window_events``, ``reference_events``, ``drift_share``, ``report_url``.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    metric: str
    selector: dict[str, str] = Field(default_factory=dict)
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    resolve_threshold: float | None = None
    for_ms: DurationMs | Literal[0] = Field(0, alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=lambda: list[Action](["log"]))

    @field_validator("metric")
    @classmethod
    def _exported_metric(cls, metric: str) -> str:
        metric = metric if metric.startswith("driftwarden_") else f"driftwarden_{metric}"
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; exported: {', '.join(METRICS)}"
            raise ValueError(f"{metric!r} is not a metric the daemon exports{hint}")
        return metric

    @field_validator("labels")
    @classmethod
    def _alertmanager_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for name, value in labels.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name.startswith("__"):
                raise ValueError(f"label name {name!r}: must be letters, digits and _, not starting with a digit or __")
            if not value:
                raise ValueError(f"label {name!r}: empty (Alertmanager reads an empty value as no label: leave it out)")
        return labels

    @field_validator("annotations")
    @classmethod
    def _plain_templates(cls, annotations: dict[str, str]) -> dict[str, str]:
        for template in annotations.values():
            check_template(template)
        return annotations

    @model_validator(mode="after")
    def _consistent(self) -> RuleConfig:
        unknown = sorted(set(self.selector) - set(METRICS[self.metric]))
        if unknown:
            raise ValueError(
                f"selector label(s) {', '.join(unknown)} not on {self.metric} "
                f"(its labels: {', '.join(METRICS[self.metric]) or 'none'})"
            )
        if self.resolve_threshold is not None:
            if self.op in ("==", "!="):
                raise ValueError(f"'resolve_threshold' needs an ordering comparison, not {self.op!r}")
            if OPERATORS[self.op](self.resolve_threshold, self.threshold) and self.resolve_threshold != self.threshold:
                raise ValueError(
                    f"resolve_threshold ({self.resolve_threshold}) must lie on the resolved side of "
                    f"threshold ({self.threshold}) for {self.op!r}"
                )
        return self

    def rule(self) -> Rule:
        """The rule engine's form of this rule."""
        return Rule(
            name=self.name,
            metric=self.metric,
            op=self.op,
            threshold=self.threshold,
            selector=dict(self.selector),
            resolve_threshold=self.resolve_threshold,
            for_ms=self.for_ms,
            severity=self.severity,
            labels=dict(self.labels),
            annotations=dict(self.annotations) or _DEFAULT_ANNOTATIONS,
            actions=tuple(self.actions),
        )


#: Annotations of a rule that sets none: what fired, and for a model what drifted and against what.
_DEFAULT_ANNOTATIONS = {
    "summary": "{alertname} on {model}: {metric} is {value:.3g} (threshold {threshold:.3g})",
    "description": "window {window_events} events, reference {reference_events} events; "
    "drifted features: {drifted_features}",
    "report": "{report_url}",
}


class AlertmanagerConfig(_Section):
    """``resolve_hold``: least time between a firing alert reaching Alertmanager and its resolve (a little
    above the route's ``group_wait``), so that an alert that fired and resolved during an outage still pages."""

    url: str = Field(pattern=r"^https?://")
    timeout_ms: DurationMs = Field(5_000, alias="timeout")
    resolve_hold_ms: DurationMs | Literal[0] = Field(35_000, alias="resolve_hold")


class WebhookConfig(_Section):
    """A JSON POST per delivery; with a ``secret`` (or DRIFTWARDEN_WEBHOOK_SECRET) a timestamp and the body
    are signed (``X-Driftwarden-Timestamp``, ``X-Driftwarden-Signature: sha256=<HMAC>``)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    timeout_ms: DurationMs = Field(5_000, alias="timeout")


class SinksConfig(_Section):
    alertmanager: AlertmanagerConfig | None = None
    webhook: WebhookConfig | None = None


class AlertsConfig(_Section):
    """Rules, where their alerts go, and the daemon's own URL for links (``generatorURL``, reports)."""

    external_url: str | None = Field(None, pattern=r"^https?://")
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    rules: list[RuleConfig] = Field(default_factory=list)
    outbox_size: Integer = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _actions_have_sinks(self) -> AlertsConfig:
        _require_unique("rule", [rule.name for rule in self.rules])
        for index, rule in enumerate(self.rules):
            for action in rule.actions:
                if action in ("alertmanager", "webhook") and getattr(self.sinks, action) is None:
                    raise ValueError(f"rules[{index}].actions: {action!r} needs alerts.sinks.{action}")
            labels = METRICS[rule.metric]
            if "rollback" in rule.actions and "version" not in labels:
                raise ValueError(
                    f"rules[{index}].actions: 'rollback' rolls back the version of a series, and {rule.metric} has"
                    f" no version label (its labels: {', '.join(labels) or 'none'}); use a driftwarden_version_*"
                    " metric such as version_verdict"
                )
        return self


class RetrainingConfig(_Section):
    """Retraining jobs: published to ``topic`` keyed by model, optionally POSTed to ``trigger_url``;
    at most one job per model per ``cooldown``."""

    topic: str | None = "driftwarden-retraining"
    trigger_url: str | None = Field(None, pattern=r"^https?://")
    cooldown_ms: DurationMs = Field(6 * _UNIT_MS["h"], alias="cooldown")


class RollbackConfig(_Section):
    """Rollback requests: published to ``topic`` keyed by model, optionally POSTed to ``trigger_url``;
    at most one per model and version per ``cooldown``.

    The default cooldown, a day, makes one request per bad version in practice: a rollback acts within
    minutes, after which the version falls silent, retires (``versions.retire_after``) and its rules resolve.
    A version still live and still worse a day on (the request was lost, refused or ignored) is asked for
    again; a restart inside the cooldown asks for nothing (the ledger holds the request and its id).
    """

    topic: str | None = "driftwarden-rollback"
    trigger_url: str | None = Field(None, pattern=r"^https?://")
    cooldown_ms: DurationMs = Field(24 * _UNIT_MS["h"], alias="cooldown")


class Config(_Section):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig(name="*")], min_length=1)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        _require_unique("model", [model.name for model in models])
        return models

    @model_validator(mode="after")
    def _reachable_false_alarm_rate(self) -> Config:
        """A false-alarm budget above one per evaluation would need an alpha of 1 or more."""
        per_week = self.windows.evaluations_per_week
        for index, model in enumerate(self.models):
            wanted = model.drift.false_alarms_per_week
            if wanted is not None and wanted >= per_week:
                raise ValueError(
                    f"models[{index}].drift.false_alarms_per_week: must be below the {per_week:.0f} "
                    f"evaluations a week that windows.evaluate_every gives (got {wanted!r})"
                )
        return self

    def model_config_for(self, name: str) -> ModelConfig | None:
        """The config that governs model ``name``: its own entry, else ``"*"``, else None."""
        wildcard = None
        for model in self.models:
            if model.name == name:
                return model
            if model.name == "*":
                wildcard = model
        return wildcard


def _require_unique(kind: str, names: list[str]) -> None:
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"{kind} names must be unique (repeated: {', '.join(duplicated)})")


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    """Read, override secrets from the environment, and validate a YAML config file."""
    path = Path(path)
    data = _read_yaml(path)
    try:
        return parse_config(data if data is not None else {}, environ)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _read_yaml(path: Path) -> Any:
    """A YAML file's content; a ConfigError naming the file if it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 (byte {error.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not last-one-wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key, which SafeLoader reports itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_config(data: Any, environ: dict[str, str] | None = None) -> Config:
    """Validate already-parsed YAML; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of sections (got {type(data).__name__})")
    data = _with_secrets(data, os.environ if environ is None else environ)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(problem) for problem in error.errors())) from None


def _with_secrets(data: dict, environ: Mapping[str, str]) -> dict:
    data = dict(data)
    for (section, key), variable in SECRET_ENV.items():
        values = data.get(section)
        if variable in environ and (values is None or isinstance(values, dict)):
            data[section] = {**(values or {}), key: environ[variable]}
    alerts: Any = data.get("alerts")  # a section of the wrong type is left for validation to report
    sinks: Any = alerts.get("sinks") if isinstance(alerts, dict) else None
    webhook = sinks.get("webhook") if isinstance(sinks, dict) else None
    if WEBHOOK_SECRET_ENV in environ and isinstance(webhook, dict):
        sinks = {**sinks, "webhook": {**webhook, "secret": environ[WEBHOOK_SECRET_ENV]}}
        data["alerts"] = {**alerts, "sinks": sinks}
    return data


#: pydantic error types -> the reason in our words ({given} is the bad value, others come from its context).
_REASONS = {
    "missing": "required key is missing",
    "int_type": "must be an integer (got {given!r})",
    "int_parsing": "must be an integer (got {given!r})",
    "int_from_float": "must be an integer (got {given!r})",
    "float_type": "must be a number (got {given!r})",
    "float_parsing": "must be a number (got {given!r})",
    "decimal_type": "must be a number (got {given!r})",
    "decimal_parsing": "must be a number (got {given!r})",
    "finite_number": "must be a finite number (got {given!r})",
    "string_type": "must be a string (got {given!r})",
    "bool_type": "must be true or false (got {given!r})",
    "bool_parsing": "must be true or false (got {given!r})",
    "list_type": "must be a list (got {given!r})",
    "dict_type": "must be a mapping (got {given!r})",
    "model_type": "must be a mapping (got {given!r})",
    "literal_error": "must be one of {expected} (got {given!r})",
    "greater_than": "must be > {gt} (got {given!r})",
    "less_than": "must be < {lt} (got {given!r})",
    "greater_than_equal": "must be >= {ge} (got {given!r})",
    "less_than_equal": "must be <= {le} (got {given!r})",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "must match {pattern} (got {given!r})",
}


def _describe(problem: ErrorDetails) -> str:
    """One line for a pydantic error: the key path and the reason, with the value unless it may hold a secret."""
    location = _key_path(problem["loc"])
    kind = problem["type"]
    context = problem.get("ctx", {})
    annotation = _annotation_at(problem["loc"])
    given = problem.get("input")
    # A secret, or what was given for a section holding secrets, unless a mapping (it is judged key by key)
    secret = _holds_secret(annotation, sections=False) or (not isinstance(given, dict) and _holds_secret(annotation))
    if secret:
        given = _Hidden(given)
    if kind == "extra_forbidden":
        reason = "unknown key" + _suggestion(problem["loc"])
    elif kind in _REASONS:
        reason = _REASONS[kind].format(given=given, **context)
    elif secret:  # pydantic's own message may quote the value
        reason = f"is not valid (got {given!r})"
    elif kind == "value_error":
        reason = str(context["error"])
    else:
        reason = f"{problem['msg'][0].lower()}{problem['msg'][1:]} (got {given!r})"
    return f"{location}: {reason}" if location else reason


class _Hidden:
    """A value that may be a secret, in an error message: only its type is shown."""

    def __init__(self, value: Any):
        self.type_name = type(value).__name__

    def __repr__(self) -> str:
        return f"a value of type {self.type_name}, not shown"


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _is_union_member(part):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _is_union_member(part: Any) -> bool:
    """pydantic's name for the member of a union (or a validator) in an error's location, not a key."""
    return str(part).startswith(("function-", "literal["))


def _annotation_at(loc: tuple) -> Any:
    """The type of the config key at ``loc``, or of the deepest key on its way that is not a section
    (a mapping or a scalar); None for a key that is not in the schema."""
    annotation: Any = Config
    for part in loc:
        if isinstance(part, int) or _is_union_member(part):
            continue
        section = _model_type(annotation)
        if section is None:
            break
        field = next(
            (field for name, field in section.model_fields.items() if part in (name, field.alias)), None
        )  # fmt: skip
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _holds_secret(annotation: Any, sections: bool = True) -> bool:
    """Whether a value of this type is a secret (a ``SecretStr``) or, with ``sections``, a section holding one."""
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sections and any(_holds_secret(field.annotation) for field in annotation.model_fields.values())
    return any(_holds_secret(argument, sections) for argument in getattr(annotation, "__args__", ()))


def _suggestion(loc: tuple) -> str:
    """'(did you mean 'duration'?)' for a misspelt key, found among its section's keys."""
    section = _model_type(_annotation_at(loc[:-1]))
    if section is None:
        return ""
    known = [field.alias or name for name, field in section.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(sorted(known))})"


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_type(argument)
        if found is not None:
            return found
    return None

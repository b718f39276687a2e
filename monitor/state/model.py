"""Per-model state: each model's window, traffic counters and category vocabularies.

:class:`ModelState` turns a batch of validated events of one model into
column arrays and appends them to its :class:`~monitor.state.windows.Window`;
:class:`ModelStates` finds (or creates, for ``"*"``) the state of each model,
folding models past ``limits.max_models`` into one :data:`OTHER` state so that
memory and label cardinality stay bounded.

>>> from monitor.config import parse_config
>>> config = parse_config({"models": [{"name": "*", "features": [
...     {"name": "locale", "kind": "categorical", "path": "segment.locale"}]}]})
>>> states = ModelStates(config)
>>> states.ingest("bot", [Event(type="inference", timestamp_ms=1.0, latency_ms=120.0, segment={"locale": "de"})])
>>> states["bot"].window.view()["feature.locale"]
array([1], dtype=int32)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Collection, Iterator
from itertools import repeat
from operator import eq
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from monitor.config import Config, FeatureConfig, ModelConfig
from monitor.ingest import Partition
from monitor.ingest.events import Event, packed_floats, read_columns, read_field, unset_as_none
from monitor.state.changes import ChangeWatch
from monitor.state.columns import (
    CONTENT_FILTER,
    COST,
    FAILED,
    FEEDBACK_COLUMNS,
    FINISH_REASON,
    ID_COLUMNS,
    INPUT_TOKENS,
    JSON_VALID,
    LATENCY_MS,
    MAX_FINISH_REASONS,
    OUTCOME,
    OUTPUT_TOKENS,
    PREDICTION,
    REQUEST_ID,
    RESPONSE_ID,
    SCORE,
    TIMESTAMP_MS,
    VERSION,
    Columns,
    text_descriptors,
)
from monitor.state.feedback import FeedbackJoin, feedback_values, join_key, join_keys
from monitor.state.histogram import MAX_COUNT, Histogram
from monitor.state.labels import LabelStore
from monitor.state.reference import Reference, read_reference_file
from monitor.state.spend import Spend
from monitor.state.versions import Versions, VersionsRead
from monitor.state.vocabulary import MAX_VALUE_CHARS, MISSING, OTHER, Vocabulary
from monitor.state.windows import Window

__all__ = ["LATENCY_BUCKETS_MS", "TTFT_BUCKETS_MS", "ModelState", "ModelStates"]

log = logging.getLogger(__name__)

#: Upper bounds of the request latency histogram: LLM calls take 50 ms to minutes.
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000)
#: Upper bounds of the time-to-first-token histogram.
TTFT_BUCKETS_MS = (25, 50, 100, 200, 300, 500, 750, 1_000, 2_000, 3_000, 5_000, 10_000)


_NUMERIC_TYPES = frozenset((float, int, bool, type(None), UnsetType))
_CATEGORY_TYPES = frozenset((str, type(None)))
_TEXT_TYPES = frozenset((str,))
_ABSENT = frozenset((None, UNSET))
_ABSENT_TYPES: frozenset = frozenset((type(None), UnsetType))
#: The fields every model reads of its inference events.
_FIELDS_READ = (
    "timestamp_ms", "latency_ms", "ttft_ms", "error", "score", "finish_reason", "prediction", *ID_COLUMNS,
    "input_tokens", "output_tokens", "model_version", "trace_id",
)  # fmt: skip
#: The field a model with pricing reads as well.
_CACHE_READ = "cache_read_input_tokens"


class ModelState:
    """Everything kept for one model between evaluations.

    ``n_events`` grows by one per event; ``n_tokens`` adds each event's counts (each at most 2**53, the
    decoder's bound) and saturates at :data:`~monitor.state.histogram.MAX_COUNT`, so that a checkpoint can
    always store it.
    """

    def __init__(self, name: str, model: ModelConfig, config: Config, reference_events: list[Event] | None = None):
        self.name = name
        self.model = model
        self.features = model.features
        self.max_text_chars = config.limits.max_text_chars
        self.vocabularies = {
            feature.name: Vocabulary(config.limits.max_categories)
            for feature in model.features
            if feature.kind == "categorical"
        }
        self.columns = Columns(model)
        self._paths = _paths_read(model)
        self._path_parts = tuple((head, key or None) for head, _, key in (path.partition(".") for path in self._paths))
        #: Predictions and labels (as codes unless numeric), and each bias or slice attribute's groups.
        self.categories = {PREDICTION: Vocabulary(config.limits.max_categories)}
        #: Finish reasons as window codes (apart from :attr:`categories`, which the fingerprint reads: a model
        #: saved before they were kept restores as it was).
        self.finish_reasons = Vocabulary(MAX_FINISH_REASONS)
        for attribute in Columns.grouped(model):
            self.categories[attribute] = Vocabulary(config.limits.max_categories)
        self.window = Window(config.windows.size, self.columns.layout)
        #: What its calls cost (None without ``pricing``: no cost is known, none is exported; set before the
        #: reference, whose file's calls are windowed as the window's are).
        self.spend = None if model.pricing is None else Spend(model.pricing)
        self._reference_events = reference_events
        self.reference = self._new_reference()
        self.latency = Histogram(LATENCY_BUCKETS_MS)
        self.ttft = Histogram(TTFT_BUCKETS_MS)
        self.n_events = {"inference": 0, "feedback": 0}
        self.n_tokens = {"input": 0, "output": 0}
        #: The model's event time: the latest timestamp it has seen (or an idle watermark; see monitor.pipeline).
        self.watermark_ms = -math.inf
        #: The (topic, partition) its first event came from: its state is saved and moves with that partition.
        self.home: Partition | None = None
        drift = model.drift
        self.changes = ChangeWatch(
            drift.change_detector, config.windows.min_samples, drift.change_arl, drift.change_shift, drift.change_warmup
        )
        #: What late labels need of the model's recent calls (None with ``quality.max_labelled_calls: 0``).
        self.labels = self._new_label_store()
        #: Its versions, and each candidate's comparison with the baseline.
        currency = None if model.pricing is None else model.pricing.currency
        self.versions = Versions(model.versions, model.quality.numeric, currency)
        #: The version a promoted reference takes its calls from, and the id of the last promotion asked for
        #: with ``driftwarden reference promote`` that was applied (see :meth:`monitor.run.checkpoint.
        #: PartitionCheckpoints.request_promotion`).
        self.promoted_version: str | None = None
        self.promotion_id: str | None = None
        warmup = 0 if reference_events is not None else _warmup(model)
        self.join = self._new_join(warmup)

    def ingest(self, events: list[Event]) -> None:
        """Count a batch of this model's events, window its inference events and join its feedback."""
        inference, feedback = events, []
        if "feedback" in read_field(events, "type"):
            inference = [event for event in events if event.type == "inference"]
            feedback = [event for event in events if event.type == "feedback"]
        self.n_events["feedback"] += len(feedback)
        latest_ms = self._ingest_inference(inference) if inference else -math.inf
        if feedback:
            read_label = self._read_label
            self.join.add_feedback(
                [
                    (join_key(event.request_id or event.response_id), event.timestamp_ms, values)  # type: ignore[arg-type]
                    for event in feedback
                    if (values := feedback_values(event, read_label))
                ],
                self.window,
                self.reference.rows,
            )
            latest_ms = max(latest_ms, *read_field(feedback, "timestamp_ms"))
        self.join.expire(latest_ms)
        self.watermark_ms = max(self.watermark_ms, latest_ms)

    def _ingest_inference(self, inference: list[Event]) -> float:
        """Window a batch of inference events, count them and index them for feedback; their latest time."""
        self.n_events["inference"] += len(inference)
        read = self._read(inference)
        n_tokens = self.n_tokens
        for name, field in (("input", "input_tokens"), ("output", "output_tokens")):
            n_tokens[name] = min(n_tokens[name] + sum(filter(None, read[field])), MAX_COUNT)
        batch = self._batch(inference, read)
        first_row = self.window.n_appended
        batch[VERSION] = self.versions.encode(read["model_version"], batch[TIMESTAMP_MS], first_row)
        if len(self.versions.live) > 1:  # only comparisons read finish reasons: a model of one version pays nothing
            batch[FINISH_REASON] = self._encode_finish_reasons(read["finish_reason"])
        if self.spend is not None:
            cache_read = _floats(read[_CACHE_READ])
            batch[COST] = self.spend.add(batch[INPUT_TOKENS], batch[OUTPUT_TOKENS], cache_read, read["model_version"])
        ttft = _floats(read["ttft_ms"])
        self.latency.observe(batch[LATENCY_MS])
        self.ttft.observe(ttft)
        trace_ids = read["trace_id"]
        if trace_ids.count(UNSET) != len(trace_ids):  # calls with traces: each bucket links to its latest one
            self.latency.exemplify(batch[LATENCY_MS], trace_ids, batch[TIMESTAMP_MS])
            self.ttft.exemplify(ttft, trace_ids, batch[TIMESTAMP_MS])
        self.join.forget(self.window, len(inference))
        self.versions.settle(self.window, batch)
        self.window.append(batch)
        if self.labels is not None:
            self.labels.append(batch)
        self.changes.observe(batch[LATENCY_MS], batch[FAILED])
        if self._reference_events is None:  # a warm-up reference takes the first events
            self._offer_reference(batch)
        self.join.add_inference(batch, first_row, self.window, self.reference.rows)
        return float(batch[TIMESTAMP_MS].max())

    def _offer_reference(self, batch: dict[str, np.ndarray]) -> None:
        """Offer a batch to the warm-up reference; a promoted one takes only its version's calls, and tells the
        join their ids (its rows are not the window's first ones)."""
        reference = self.reference
        if reference.source != "promoted":
            reference.offer(batch)
            return
        if reference.complete or self.promoted_version not in self.versions.live:
            return
        taken = batch[VERSION] == self.versions.code(self.promoted_version)
        first_row, room = len(reference), reference.capacity - len(reference)
        kept = {name: values[taken][:room] for name, values in batch.items()}
        reference.offer(kept)
        self.join.index_reference(kept[REQUEST_ID].tolist(), kept[RESPONSE_ID].tolist(), first_row)

    def read_versions(self, view: dict[str, np.ndarray]) -> VersionsRead:
        """What an evaluation of the versions reads (:meth:`Versions.read <monitor.state.versions.Versions.read>`).

        With ``versions.promote_reference`` and a warm-up reference, a new baseline that takes over from
        another starts a new reference (source ``promoted``): the new baseline's next calls, as many as
        ``reference.warmup``. Drift is not evaluated until it is complete.
        """
        before = self.versions.baseline
        read = self.versions.read(self.window, view)
        if self.model.versions.promote_reference and before is not None and read.baseline not in (None, before):
            log.info(
                "model %s: version %s took over from %s", self.name, read.baseline, before,
                extra={"model": self.name, "version": read.baseline},
            )  # fmt: skip
            self.promote_reference(read.baseline)
        return read

    def promote_reference(self, version: str | None) -> bool:
        """Start a new warm-up reference from ``version``'s next calls (``reference.warmup`` of them; None: the
        baseline's), source ``promoted``; whether it did: a live version and a warm-up reference are needed (a
        reference file is the user's to change)."""
        version = self.versions.baseline if version is None else version
        context = {"model": self.name, "version": version}
        if self._reference_events is not None or version not in self.versions.live:
            why = "its reference is a file" if self._reference_events is not None else "not a live version"
            log.warning("model %s: no reference promoted from version %s (%s)", self.name, version, why, extra=context)
            return False
        message = "model %s: its reference is promoted from the next calls of version %s"
        log.info(message, self.name, version, extra=context)
        self.reference = Reference(_warmup(self.model), self.columns.layout, "promoted", self._coded_columns())
        self.promoted_version = version
        self.join.forget_reference()
        return True

    def _read(self, inference: list[Event]) -> dict[str, list]:
        """The fields (and feature entries) of a batch that the model reads, by path: all in one pass."""
        return dict(zip(self._paths, read_columns(inference, self._path_parts)))

    def _batch(self, inference: list[Event], read: dict[str, list] | None = None) -> dict[str, np.ndarray]:
        """The window's columns for a batch of inference events (``read``: its fields read by :meth:`_read`)."""
        read = self._read(inference) if read is None else read
        batch = {
            TIMESTAMP_MS: _floats(read["timestamp_ms"]),
            LATENCY_MS: _floats(read["latency_ms"]),
            FAILED: _given(read["error"]),
            VERSION: np.zeros(len(inference), np.int32),  # (coded by the versions, for the window only)
            INPUT_TOKENS: _floats(read["input_tokens"]),
            OUTPUT_TOKENS: _floats(read["output_tokens"]),
        }
        if self.spend is not None:
            batch[COST] = np.full(len(inference), np.nan)  # (billed by the spend, for the window only)
        for feature in self.features:
            batch.update(self._feature_columns(feature, read[feature.path]))
        batch.update(self._quality_columns(inference, read))
        return batch

    def _quality_columns(self, inference: list[Event], read: dict[str, list]) -> dict[str, np.ndarray]:
        """Prediction, score and finish reason of each call, its JSON validity and bias or slice groups if asked for."""
        model = self.model
        n = len(inference)
        predictions = unset_as_none(read["prediction"])
        columns = {
            # fromiter: np.array looks into every None for a nested sequence (5x slower on unsent response ids)
            **{name: np.fromiter(join_keys(unset_as_none(read[name])), object, n) for name in ID_COLUMNS},
            PREDICTION: np.full(n, np.nan) if predictions.count(None) == n else self._encode_predictions(predictions),
            SCORE: _floats(read["score"]),
            CONTENT_FILTER: _equal(read["finish_reason"], "content_filter"),
            FINISH_REASON: np.full(n, MISSING, dtype=np.int32),  # (coded while versions are compared)
            **{name: np.full(n, np.nan) for name in FEEDBACK_COLUMNS},
        }
        if model.quality.json_response:
            columns[JSON_VALID] = np.array([_json_valid(response) for response in read["response"]])
        for attribute in Columns.grouped(model):
            groups = read[attribute]
            columns[Columns.group(attribute)] = self.categories[attribute].encode(
                [value if type(value) is str else _as_category(value) for value in groups]
            )
        outcome = model.bias.outcome
        if outcome is not None:
            columns[OUTCOME] = np.array(
                [
                    math.nan if value is None or value is UNSET else float(_as_category(value) == outcome.positive)
                    for value in read[outcome.field]
                ]  # fmt: skip
            )
        return columns

    def _encode_finish_reasons(self, values: list[Any]) -> np.ndarray:
        """Finish reasons as codes (MISSING where a call has none); one search in C when none has (a model
        that does not send them)."""
        values = unset_as_none(values)  # strings or None: the decoder's type for it
        if values.count(None) == len(values):
            return np.full(len(values), MISSING, dtype=np.int32)
        return self.finish_reasons.encode(values)

    def _encode_predictions(self, predictions: list[Any]) -> np.ndarray:
        """Predictions as window numbers: themselves for a numeric model, else their class codes."""
        if self.model.quality.numeric:
            return np.array([_as_float(value) for value in predictions], dtype=np.float64)
        classes = self.categories[PREDICTION].encode(
            [value if type(value) is str else _as_category(value) for value in predictions]
        )
        codes = classes.astype(np.float64)
        codes[classes <= 0] = math.nan  # missing, or a class past the cap: unknown, not "__other__"
        return codes

    def _read_label(self, value: Any) -> float | str:
        """A feedback label as it waits to join its call: a number for a numeric model, else its class name
        (NaN when it cannot be a class: not a scalar, or too long to take a code)."""
        if self.model.quality.numeric:
            return _as_float(value)
        category = _as_category(value)
        return math.nan if category is None or len(category) > MAX_VALUE_CHARS else category

    def _class_code(self, category: str) -> float:
        """The window number of a class: its code, admitted if there is room; NaN past the cap."""
        code = self.categories[PREDICTION].code(category)
        return math.nan if code == 0 else float(code)  # a class past the cap is unknown, not "__other__"

    def _new_label_store(self) -> LabelStore | None:
        quality = self.model.quality
        if quality.max_labelled_calls == 0:
            return None
        groups = tuple(Columns.group(attribute) for attribute in Columns.grouped(self.model))
        return LabelStore(quality.max_labelled_calls, quality.label_ttl_ms, groups)

    def _new_join(self, reference_size: int) -> FeedbackJoin:
        quality = self.model.quality
        return FeedbackJoin(quality.label_ttl_ms, quality.max_pending, reference_size, self._class_code, self.labels)

    def _new_reference(self) -> Reference:
        """An empty warm-up reference, or the reference file's events of this model."""
        if self._reference_events is None:
            return Reference(_warmup(self.model), self.columns.layout, "warmup", self._coded_columns())
        reference = Reference(len(self._reference_events), self.columns.layout, "file", self._coded_columns())
        if self._reference_events:
            reference.offer(self._batch(self._reference_events))
        return reference

    def _coded_columns(self) -> dict[str, Vocabulary]:
        """The columns that hold codes, each with the vocabulary that gave them."""
        coded = {Columns.feature(name): vocabulary for name, vocabulary in self.vocabularies.items()}
        coded.update((Columns.group(name), self.categories[name]) for name in Columns.grouped(self.model))
        if not self.model.quality.numeric:
            coded[PREDICTION] = self.categories[PREDICTION]
        return coded

    @property
    def fingerprint(self) -> str:
        """A digest of what shapes this model's saved state: the window's size and columns (features, bias
        attributes, quality columns), category limits, the reference, the change detector and the text limit.

        A checkpoint holds it beside each model's state; a model whose fingerprint changed starts afresh
        (:meth:`ModelStates.restore`), while every other model keeps its state.
        """
        return _digest(self._shape())

    @property
    def reference_fingerprint(self) -> str:
        """A digest of what shapes this model's saved warm-up reference: the parts of :attr:`fingerprint` other
        than the window's size and the change detector (the columns, the limits of the vocabularies whose codes
        they hold, the reference config, the text limit the text descriptors were computed under).

        When only those other parts changed, :meth:`ModelStates.restore` keeps the reference.
        """
        shape = self._shape()
        return _digest({part: shape[part] for part in _REFERENCE_PARTS})

    def _shape(self) -> dict:
        """What shapes the saved state, part by part (see :attr:`fingerprint`)."""
        return {
            "size": self.window.capacity,
            "columns": [
                [name, np.dtype(column.dtype).str, list(column.shape), repr(column.missing)]
                for name, column in self.window.columns.items()
                if not column.optional  # added later: checkpoints without it restore (see Column)
            ],
            "vocabularies": {name: vocabulary.limit for name, vocabulary in self.vocabularies.items()},
            "categories": {name: vocabulary.limit for name, vocabulary in self.categories.items()},
            "reference": self.model.reference.model_dump(mode="json"),
            "change_detector": self.model.drift.change_detector,
            "max_text_chars": self.max_text_chars,
        }

    def snapshot(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "reference_fingerprint": self.reference_fingerprint,
            "window": self.window.snapshot(),
            "latency": self.latency.snapshot(),
            "ttft": self.ttft.snapshot(),
            "n_events": self.n_events,
            "n_tokens": self.n_tokens,
            "spend": None if self.spend is None else self.spend.snapshot(),
            "vocabularies": {name: vocabulary.values for name, vocabulary in self.vocabularies.items()},
            "reference": self.reference.snapshot() if self._reference_events is None else None,
            "reference_source": self.reference.source,
            "promoted_version": self.promoted_version,
            "promotion_id": self.promotion_id,
            "changes": self.changes.snapshot(),
            "categories": {name: vocabulary.values for name, vocabulary in self.categories.items()},
            "finish_reasons": self.finish_reasons.values,
            "join": self.join.snapshot(),
            "labels": None if self.labels is None else self.labels.snapshot(),
            "versions": self.versions.snapshot(),
            "watermark_ms": self.watermark_ms,
            "home": None if self.home is None else list(self.home),
        }

    def restore(self, snapshot: dict) -> None:
        self.window.restore(snapshot["window"])
        self.latency.restore(snapshot["latency"])
        self.ttft.restore(snapshot["ttft"])
        self.n_events = dict(snapshot["n_events"])
        self.n_tokens = dict(snapshot["n_tokens"])
        if self.spend is not None and not self.spend.restore(snapshot.get("spend"), self.name):  # absent: before spend
            self.window.clear(COST)  # its calls' costs are in the currency before: unknown in this one
        self.watermark_ms = snapshot["watermark_ms"]
        self.home = _saved_home(snapshot)
        self.changes.restore(snapshot["changes"])
        for name, values in snapshot["vocabularies"].items():
            self.vocabularies[name].restore(values)
        for name, values in snapshot["categories"].items():
            self.categories[name].restore(values)
        self.finish_reasons.restore(snapshot.get("finish_reasons", self.finish_reasons.values))
        self.join.restore(snapshot["join"], self.window)
        if "versions" in snapshot:  # absent before versions were kept: the window's codes are all 0 then
            self.versions.restore(snapshot["versions"])
        if self.labels is not None:
            saved_labels = snapshot.get("labels")
            if saved_labels is not None:
                self.labels.restore(saved_labels)
            else:  # a checkpoint older than the label store: it starts with the calls the window holds
                self.labels.append(self.window.view())
        if self._reference_events is None:
            self.reference.source = snapshot.get("reference_source", "warmup")
            self.promoted_version = snapshot.get("promoted_version")
            self.promotion_id = snapshot.get("promotion_id")
            self.reference.restore(snapshot["reference"])
        else:  # read again under the restored vocabularies, so categories keep the window's codes
            self.reference = self._new_reference()

    def restore_reference(self, snapshot: dict) -> bool:
        """Take back only the warm-up reference of a :meth:`snapshot` taken under the same
        :attr:`reference_fingerprint`, with the vocabularies that give its columns' codes (so that the window,
        which starts afresh, encodes categories as the reference does); whether it did.

        Only a complete warm-up reference is taken: a file reference is read again anyway, and the rows of an
        incomplete one would not line up with the fresh window's for the feedback join (it is learned again).
        The ids of its rows stay known to the join, so labels still join them.
        """
        saved = snapshot["reference"]
        if self._reference_events is not None or saved is None or saved["n_appended"] < self.reference.capacity:
            return False
        for name, values in snapshot["vocabularies"].items():
            self.vocabularies[name].restore(values)
        for name, values in snapshot["categories"].items():
            self.categories[name].restore(values)
        self.reference.restore(saved)
        self.reference.source = snapshot.get("reference_source", "warmup")  # a promoted one stays so
        # no row of the fresh window belongs to the reference, which is complete
        self.join = self._new_join(0)
        self.join.restore_reference_rows(snapshot["join"])
        return True

    def _feature_columns(self, feature: FeatureConfig, values: list[Any]) -> dict[str, np.ndarray]:
        """A feature's window columns, and whether each value had the wrong type for its kind (a value that
        does is windowed as before: a string as a missing number, a number as its category's name)."""
        column, wrong_type = Columns.feature(feature.name), Columns.wrong_type(feature.name)
        if feature.kind == "numeric":
            if _NUMERIC_TYPES.issuperset(map(type, values)):  # numbers and None or unset (NaN) convert in C
                return {column: _floats(values), wrong_type: np.zeros(len(values), np.bool_)}
            return {
                column: np.array([_as_float(value) for value in values], dtype=np.float64),
                wrong_type: _not_of(_NUMERIC_TYPES, values),
            }
        # Values already as the vocabulary or the descriptors take them pass as they are: checked in C, the
        # list each would build costs 1.5 us (categories) and 5 us (texts) more on 72 events (measured).
        if feature.kind == "categorical":
            wrong = np.zeros(len(values), np.bool_)
            if not _CATEGORY_TYPES.issuperset(map(type, values)):
                wrong = _not_of(_CATEGORY_TYPES | _ABSENT_TYPES, values)
                values = [value if type(value) is str else _as_category(value) for value in values]
            return {column: self.vocabularies[feature.name].encode(values), wrong_type: wrong}
        if feature.kind == "text":  # only the descriptors are kept, never the text
            limit = self.max_text_chars
            texts, wrong = values, np.zeros(len(values), np.bool_)
            if not (_TEXT_TYPES.issuperset(map(type, values)) and max(map(len, values), default=0) <= limit):
                texts = [value[:limit] if type(value) is str else None for value in values]
                wrong = _not_of(_TEXT_TYPES | _ABSENT_TYPES, values)
            names = Columns.descriptors(feature)
            described = text_descriptors(feature).describe(texts)
            return {**{names[name]: data for name, data in described.items()}, wrong_type: wrong}
        dim = _dim(feature)
        rows = np.full((len(values), dim), np.nan, dtype=np.float32)
        wrong = np.zeros(len(values), np.bool_)
        for row, value in enumerate(values):
            if type(value) is list and len(value) == dim:
                rows[row] = value
            elif value is not None and value is not UNSET:  # a vector of another length
                wrong[row] = True
        return {column: rows, wrong_type: wrong}


class ModelStates:
    """The states of all monitored models, by name; past ``limits.max_models`` new ones fold into OTHER.

    Each state has a home, the partition its first event came from (:attr:`ModelState.home`): the states of a
    partition's models are saved, restored and forgotten together as the consumer group moves the partition
    (:meth:`snapshot_home`, :meth:`restore_models`, :meth:`forget`). A model whose events keep arriving on
    other partitions too is counted in :attr:`n_split_events` (its producer does not key by model): seen here
    on two partitions, or (:meth:`home_elsewhere`) at home on another replica's partition, as the homes
    recorded in the store say (:attr:`new_homes` are those still to record or check there).
    """

    def __init__(self, config: Config):
        self.config = config
        self._states: dict[str, ModelState] = {}
        self._admitted = Vocabulary(config.limits.max_models)
        self._reference_files = {
            model.reference.file: read_reference_file(model.reference.file, config.limits.max_event_bytes)
            for model in config.models
            if model.reference.file is not None
        }
        self.n_folded_events = 0
        self.n_unmonitored_events = 0
        #: Events of each model that arrived on a partition other than its home, by model.
        self.n_split_events: dict[str, int] = {}
        #: Models given a home here since their homes were last recorded (or checked) in the store.
        self.new_homes: dict[str, Partition] = {}
        self._elsewhere: dict[str, Partition] = {}  # models at home on another replica's partition
        #: Models whose saved state was not restored at start, and why (see :meth:`restore`).
        self.resets: dict[str, str] = {}

    def __getitem__(self, name: str) -> ModelState:
        return self._states[name]

    def __iter__(self) -> Iterator[ModelState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def ingest(self, name: str, events: list[Event]) -> None:
        """Route a batch of one model's events to its state."""
        state = self.state_for(name, len(events))
        if state is not None:
            state.ingest(events)

    def state_for(self, name: str, n_events: int, partition: Partition | None = None) -> ModelState | None:
        """The state that ``n_events`` events of model ``name`` from ``partition`` go to (created if need be,
        at home there), or None if no config entry monitors it; the events are counted as folded,
        unmonitored or split here."""
        state = self._states.get(name) or self._create(name, n_events)
        if state is None:
            self.n_unmonitored_events += n_events
        elif state.name in self._elsewhere:
            self.n_split_events[state.name] += n_events
        elif partition is not None and state.home != partition and state.name != OTHER:
            # The fold of the models past the limit arrives on every partition by nature: it has no home and
            # stays with this replica, like the limit it counts against.
            if state.home is None:  # new, or restored from a checkpoint older than homes
                state.home = self.new_homes[state.name] = partition
            else:
                self._split(state.name, partition, state.home, n_events)
        return state

    def home_elsewhere(self, name: str, home: Partition) -> None:
        """Model ``name`` is at home on ``home``, another replica's partition (the store says so): its events
        here, those counted so far and those to come, are split from it."""
        state = self._states.get(name)
        if state is not None and state.home is not None and name not in self._elsewhere:
            self._elsewhere[name] = home
            self._split(name, state.home, home, sum(state.n_events.values()))

    def _split(self, name: str, partition: Partition, home: Partition, n_events: int) -> None:
        if name not in self.n_split_events:
            log.warning(
                "model %s arrives on %s[%d] as well as on its home %s[%d]: its producer does not key events by "
                "model, so with more than one replica its statistics are split between them",
                name, *partition, *home,
                extra={"model": name, "topic": partition[0], "partition": partition[1]},
            )  # fmt: skip
        self.n_split_events[name] = self.n_split_events.get(name, 0) + n_events

    def snapshot(self, homed_models: bool = True) -> dict:
        """Everything, or without the models that have a home if not ``homed_models`` (see :meth:`snapshot_home`)."""
        return {
            "admitted": self._admitted.values,
            "n_folded_events": self.n_folded_events,
            "n_unmonitored_events": self.n_unmonitored_events,
            "n_split_events": self.n_split_events,
            "models": {
                name: state.snapshot()
                for name, state in self._states.items()
                if homed_models or state.home is None
            },
        }

    def snapshot_home(self, home: Partition | None) -> dict[str, dict]:
        """The snapshots of the models whose home is ``home`` (None: of those that have none yet), by name."""
        return {name: state.snapshot() for name, state in self._states.items() if state.home == home}

    def restore(self, snapshot: dict) -> None:
        """Take back a :meth:`snapshot`, model by model (see :meth:`restore_models`); never raises for one model."""
        self._admitted.restore(snapshot["admitted"])
        self.n_folded_events = snapshot["n_folded_events"]
        self.n_unmonitored_events = snapshot["n_unmonitored_events"]
        self.n_split_events = dict(snapshot.get("n_split_events", {}))  # absent before partitions owned state
        self._states = {}
        self.resets = {}
        self.restore_models(snapshot["models"])

    def restore_models(self, models: dict[str, dict]) -> list[str]:
        """Take back saved model states by name (say, a partition's); the names of those restored.

        A model whose :attr:`ModelState.fingerprint` changed since (its config shapes its state differently)
        or whose saved state does not fit starts afresh, logged and listed in :attr:`resets` with the reason
        (``config_changed``, ``unreadable``); a model no config entry monitors any more is dropped, and so
        is a saved model this process already holds (its events arrived here first: a split model). A model
        reset as ``config_changed`` keeps its complete warm-up reference, and the category vocabularies its
        codes need, if its :attr:`ModelState.reference_fingerprint` did not change (e.g. only ``windows.size``
        or the change detector did): the log says so. Either way a model keeps its home.
        """
        restored = []
        for name, saved in models.items():
            model = self.config.model_config_for(name)
            if model is None:
                log.warning("model %s is no longer monitored: its saved state is dropped", name, extra={"model": name})
                continue
            if name in self._states:
                message = "model %s is already here: its state saved elsewhere is dropped"
                log.warning(message, name, extra={"model": name})
                continue
            if model.name == "*" and name != OTHER:
                self._admitted.code(name)  # already admitted where it was saved: it keeps its series
            state = self._states[name] = self._new_state(name, model)
            state.home = _saved_home(saved)
            restored.append(name)
            if state.home is not None:  # checked against the homes recorded in the store, as new models are
                self.new_homes[name] = state.home
            try:
                if saved.get("fingerprint") == state.fingerprint:
                    state.restore(saved)
                    continue
                self.resets[name] = "config_changed"
                if saved.get("reference_fingerprint") == state.reference_fingerprint and state.restore_reference(saved):
                    log.warning(
                        "model %s: its config changed how its window is shaped; kept: its warm-up reference %s and "
                        "its category vocabularies; the rest starts afresh",
                        name,
                        state.reference.id,
                        extra={"model": name},
                    )
                else:
                    message = "model %s: its config changed how its state is shaped; it starts afresh"
                    log.warning(message, name, extra={"model": name})
            except Exception as error:  # noqa: BLE001 - one model's state must never stop the daemon
                self._states[name] = self._new_state(name, model)
                self._states[name].home = state.home
                self.resets[name] = "unreadable"
                log.warning(
                    "model %s: its saved state does not fit (%s); it starts afresh", name, error, extra={"model": name}
                )
        return restored

    def forget(self, homes: Collection[Partition]) -> list[str]:
        """Drop the states whose home is one of ``homes`` (partitions this process no longer owns); their names.
        Their places under ``limits.max_models`` are free again for new models."""
        gone = [name for name, state in self._states.items() if state.home in homes]
        for name in gone:
            del self._states[name]
            self._elsewhere.pop(name, None)
            self.resets.pop(name, None)
        self._admitted.restore([value for value in self._admitted.values if value == OTHER or value not in gone])
        return gone

    def _create(self, name: str, n_events: int) -> ModelState | None:
        model = self.config.model_config_for(name)
        if model is None:
            return None
        if model.name == "*" and self._admitted.code(name) == 0:
            self.n_folded_events += n_events
            name = OTHER
            if name in self._states:
                return self._states[name]
        state = self._states[name] = self._new_state(name, model)
        return state

    def _new_state(self, name: str, model: ModelConfig) -> ModelState:
        file = model.reference.file
        reference_events = None if file is None else self._reference_files[file].get(name, [])
        return ModelState(name, model, self.config, reference_events)


#: The parts of a model's state :attr:`ModelState.reference_fingerprint` digests.
_REFERENCE_PARTS = ("columns", "vocabularies", "categories", "reference", "max_text_chars")


def _digest(parts: dict) -> str:
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:16]


def _saved_home(saved: Any) -> Partition | None:
    """The home partition a model's snapshot names (None in checkpoints from before partitions owned state)."""
    home = saved.get("home") if isinstance(saved, dict) else None
    if isinstance(home, list) and len(home) == 2 and type(home[0]) is str and type(home[1]) is int:
        return (home[0], home[1])
    return None


def _dim(feature: FeatureConfig) -> int:
    assert feature.dim is not None, "the config requires 'dim' for an embedding feature"
    return feature.dim


def _warmup(model: ModelConfig) -> int:
    assert model.reference.warmup is not None, "the config sets a warm-up size wherever no reference file is given"
    return model.reference.warmup


def _paths_read(model: ModelConfig) -> tuple[str, ...]:
    """The paths at which the model's inference events are read (see :meth:`ModelState._read`): a top-level field
    (unset where absent), or ``features.<key>`` and ``segment.<key>`` (None where absent)."""
    paths = [*_FIELDS_READ, *(feature.path for feature in model.features), *Columns.grouped(model)]
    if model.pricing is not None:
        paths.append(_CACHE_READ)
    if model.quality.json_response:
        paths.append("response")
    if model.bias.outcome is not None:
        paths.append(model.bias.outcome.field)
    return tuple(dict.fromkeys(paths))


def _floats(values: list[Any]) -> np.ndarray:
    """Numbers (or None, or unset) as float64, absent ones NaN: packed in C where it was built, else by numpy."""
    packed = packed_floats(values)
    if packed is not None:
        return np.frombuffer(packed, dtype=np.float64)
    if values and values[0] is UNSET and values.count(UNSET) == len(values):  # a field the producer never sends
        return np.full(len(values), np.nan)  # (numpy would look into each value before it raised)
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:  # some values are unset
        return np.array([None if value is UNSET else value for value in values], dtype=np.float64)


def _given(values: list[str | None | UnsetType]) -> np.ndarray:
    """Whether each value (a string, such as an error) is given, neither None nor unset, as booleans."""
    return ~np.fromiter(map(_ABSENT.__contains__, values), np.bool_, len(values))  # one hashed look-up each, in C


def _not_of(types: frozenset, values: list[Any]) -> np.ndarray:
    """Whether each value's type is not one of ``types``, as booleans."""
    return ~np.fromiter(map(types.__contains__, map(type, values)), np.bool_, len(values))


def _equal(values: list[Any], value: str) -> np.ndarray:
    """Whether each value is ``value``, as booleans; one search in C when none is (the usual batch)."""
    if value not in values:
        return np.zeros(len(values), dtype=np.bool_)
    return np.fromiter(map(eq, values, repeat(value)), np.bool_, len(values))


def _json_valid(response: Any) -> float:
    if type(response) is not str:
        return math.nan
    try:
        msgspec.json.decode(response)
    except msgspec.DecodeError:
        return 0.0
    return 1.0


def _as_float(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        return float(value)
    return math.nan


def _as_category(value: Any) -> str | None:
    """A value as a category name; a whole number is the same category whether JSON wrote 1 or 1.0."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is float and value.is_integer():
        return repr(int(value))
    if kind is int or kind is float:
        return repr(value)
    return None

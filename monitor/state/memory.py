"""The most memory the daemon can need under a config: the README's formula, term by term.

Everything that grows with traffic is bounded by the config; this adds the
bounds up at the worst the schema allows: two ids per call, each kept as a
join key of up to 64 characters (:func:`monitor.state.feedback.join_key`), labels
and category values of 256 characters of 4 bytes each (plus the UTF-8 copy
CPython caches in such a string once a checkpoint has encoded it), every
window, reference, pending table and vocabulary full. With a window of ``W``
rows and a reference of ``R`` rows of ``r`` bytes each (:func:`row_bytes`),
per model:

- ``windows``: ``W x (r + ids)``, where ``ids`` is what the join keeps of a
  call's ids (the key strings and their entries in the id index);
- ``references``: ``R x (r + ids)``, and the decoded events of reference
  files (about 4 bytes per byte of the file);
- ``fitted``: ``R x f``, what the drift tests fitted on the reference keep (a
  copy of its numeric columns, text descriptors and embeddings), once more
  per slice attribute (its groups' tests, fitted on their reference rows);
- ``pending``: ``max_pending x (entry + key + label)``;
- ``labels``: the label store, ``max_labelled_calls x (61 + 4 x bias
  attributes)`` (:mod:`monitor.state.labels`: numpy arrays only);
- ``vocabularies`` (one per categorical feature and bias or slice attribute, and the
  classes): ``max_categories x (entry + value)`` each;
- ``models``: a constant, and a little per column its drift tests read and
  per bias group and slice group (histograms, detectors, suites, results,
  metric series and alert rule states);

and for the process: the ``baseline`` (the daemon and its consumer process
at rest, with the SQLite caches of the alert outbox and the job ledger), the
batch ``in_flight`` (fetched, sent to the daemon, decoded; and
the dead-letter producer's buffer), and three transients: an ``evaluation``
copies every window at once (and every reference on its first fit), a
``checkpoint`` holds the whole state encoded while it is written, an HTML
``report`` is drawn (pandas and Evidently, which stay imported). They add up
although they do not overlap: the allocator keeps the heap an evaluation
freed for the next one, while a checkpoint's buffer is mapped afresh.

The constants were measured on CPython 3.11 (``bench/memory.py`` fills a
deployment and prints its resident memory against this).

>>> from monitor.config import parse_config
>>> bound = memory_bound(parse_config({}))
>>> bound.n_models, f"{bound.total / 2**30:.2f} GiB"
(101, '2.99 GiB')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from monitor.config import Config, FeatureConfig, ModelConfig
from monitor.evaluate.drift import tested_features
from monitor.state.columns import MAX_FINISH_REASONS, Columns, text_descriptors
from monitor.state.feedback import MAX_KEY_CHARS
from monitor.state.labels import BYTES_PER_CALL as LABEL_STORE_BYTES_PER_CALL
from monitor.state.labels import BYTES_PER_GROUP as LABEL_STORE_BYTES_PER_GROUP
from monitor.state.labels import COHORT_BYTES_PER_CALL
from monitor.state.labels import INDEX_BYTES_PER_CALL as LABEL_STORE_INDEX_BYTES
from monitor.state.vocabulary import MAX_VALUE_CHARS

__all__ = ["MemoryBound", "memory_bound", "row_bytes"]

MB = 2**20
#: The daemon and its consumer process at rest (proportional set size): interpreter, numpy, scipy,
#: scikit-learn and kafka-python in each, threads.
BASELINE_BYTES = 320 * MB
#: Ids kept per call: the request id and the response id.
IDS_PER_CALL = 2
#: A join key's entry in the id index (dict slot, row number), besides the key string.
INDEX_ENTRY_BYTES = 80
#: Waiting feedback besides its key and label: its record, values, event-time heap entry and table slot.
PENDING_ENTRY_BYTES = 560
#: A vocabulary value besides the string: its code, dict entry and list slot.
VOCABULARY_ENTRY_BYTES = 90
#: Per model (histograms, change detectors, suites, results), and per column its drift tests read or bias or slice
#: group it reports (results, metric series, alert rule states).
MODEL_BYTES, SERIES_BYTES = 64 * 1024, 20 * 1024
#: What kafka-python fetches at most at once (its ``fetch_max_bytes``, which the daemon leaves as it is).
FETCH_MAX_BYTES = 50 * MB
#: A batch in flight, per byte of it: fetched in the child, pickled through the pipe, received, decoded.
IN_FLIGHT_PER_BATCH_BYTE = 4
#: The dead-letter producer's buffer (kafka-python's ``buffer_memory``).
PRODUCER_BUFFER_BYTES = 32 * MB
#: A checkpoint being written, per byte of it: the encoded state, msgspec's buffer growth, an id column's list.
CHECKPOINT_FACTOR = 1.1
#: A reference file's decoded events, per byte of the file.
DECODED_PER_FILE_BYTE = 4
#: Drawing an HTML report: pandas and Evidently imported, and per value of the frames it is drawn from.
REPORT_BYTES, REPORT_PER_VALUE_BYTES = 180 * MB, 32


@dataclass(frozen=True)
class MemoryBound:
    """The bound in bytes, by term (see the module's docstring); :attr:`total` is what the formula gives."""

    n_models: int
    baseline: int
    in_flight: int
    windows: int
    references: int
    fitted: int
    pending: int
    labels: int
    vocabularies: int
    models: int
    evaluation: int
    checkpoint: int
    report: int

    @property
    def kept(self) -> int:
        """What the models' state holds between evaluations."""
        return (
            self.windows + self.references + self.fitted + self.pending + self.labels + self.vocabularies + self.models
        )

    @property
    def total(self) -> int:
        return self.baseline + self.in_flight + self.kept + self.evaluation + self.checkpoint + self.report

    def __str__(self) -> str:
        terms = [field.name for field in fields(self) if field.name != "n_models"]
        listed = ", ".join(f"{name} {getattr(self, name) / MB:,.0f}" for name in terms)
        return f"{self.total / 2**30:.2f} GiB for {self.n_models} models (MiB: {listed})"


def memory_bound(config: Config, key_chars: int = MAX_KEY_CHARS, value_chars: int = MAX_VALUE_CHARS) -> MemoryBound:
    """The most resident memory the daemon needs under ``config``.

    ``key_chars`` is the length of the join keys (ids of at most 64 ASCII characters are kept as they are,
    others as 32-character digests) and ``value_chars`` that of labels and category values (4 bytes a
    character); the defaults are the worst the schema allows.
    """
    key = _string_bytes(49 + key_chars)  # ASCII: 49 bytes of header
    value = _string_bytes(76 + 4 * value_chars + 4 * value_chars + 1)  # 4-byte characters, and their UTF-8
    encoded_key, encoded_value = 3 + key_chars, 3 + 4 * value_chars  # msgpack: a small header and the UTF-8
    size, max_categories = config.windows.size, config.limits.max_categories
    totals = dict.fromkeys(("windows", "references", "fitted", "pending", "labels", "vocabularies", "models"), 0)
    n_models = encoded = evaluation = report = decoded = 0
    for model in config.models:
        count = config.limits.max_models + 1 if model.name == "*" else 1  # "*" admits max_models, then "__other__"
        n_models += count
        if model.reference.file is not None and os.path.exists(model.reference.file):
            decoded += DECODED_PER_FILE_BYTE * os.stat(model.reference.file).st_size
        reference, row, tested = _reference_rows(model), row_bytes(model), tested_features(model)
        ids = IDS_PER_CALL * (key + INDEX_ENTRY_BYTES)
        # predictions, each bias or slice attribute and categorical feature, and the (few) finish reasons
        n_vocabularies = 1 + len(Columns.grouped(model)) + sum(f.kind == "categorical" for f in model.features)
        vocabularies, pending = n_vocabularies * max_categories + MAX_FINISH_REASONS, model.quality.max_pending
        stored, stored_row = model.quality.max_labelled_calls, _label_store_row(model)
        terms = {
            "windows": size * (row + ids),
            "references": reference * (row + ids),
            "fitted": reference
            * (1 + len(model.slices.attributes))  # each slice attribute's groups are fitted on their reference rows
            * sum(_feature_bytes(f) for f in model.features if f.kind != "categorical"),
            "pending": pending * (PENDING_ENTRY_BYTES + key + value),
            "labels": stored * stored_row,
            "vocabularies": vocabularies * (VOCABULARY_ENTRY_BYTES + value),
            "models": MODEL_BYTES + SERIES_BYTES * (len(tested) + model.bias.max_groups * len(model.bias.attributes))
            + SERIES_BYTES * (model.slices.max_groups + 1) * len(model.slices.attributes),
        }
        for name, term in terms.items():
            totals[name] += count * term
        cohort = stored * (COHORT_BYTES_PER_CALL + LABEL_STORE_BYTES_PER_GROUP * len(Columns.grouped(model)))
        evaluation += count * ((size + reference) * row + cohort)
        encoded += count * (
            (size + reference) * (row + IDS_PER_CALL * encoded_key)
            + reference * IDS_PER_CALL * encoded_key  # the reference's id index is saved beside its rows
            + pending * (encoded_key + encoded_value + 40)
            + vocabularies * encoded_value
            + stored * (stored_row - LABEL_STORE_INDEX_BYTES)  # the label store's columns, not its index
        )
        drawn = sum(feature.kind != "embedding" for feature in tested)
        report = max(report, (size + reference) * drawn * REPORT_PER_VALUE_BYTES)  # one report at a time
    batch = min(config.kafka.max_poll_records * config.limits.max_event_bytes, FETCH_MAX_BYTES)
    totals["references"] += decoded  # kept for as long as the daemon runs
    return MemoryBound(
        n_models=n_models,
        baseline=BASELINE_BYTES,
        in_flight=IN_FLIGHT_PER_BATCH_BYTE * batch + PRODUCER_BUFFER_BYTES,
        **totals,
        evaluation=evaluation,
        checkpoint=int(CHECKPOINT_FACTOR * encoded),
        report=REPORT_BYTES + report,
    )


def row_bytes(model: ModelConfig) -> int:
    """The bytes of one window (or reference) row of ``model``: its numpy columns, ids as references."""
    # time, latency, label, rating, judge score, prediction, score; two flags; the codes of the version and the
    # finish reason, input and output tokens (float32)
    fixed = 8 * 7 + 2 + 4 * 4 + 8 * IDS_PER_CALL
    fixed += 8 * model.quality.json_response + 4 * len(Columns.grouped(model)) + 8 * (model.bias.outcome is not None)
    fixed += 8 * (model.pricing is not None)  # each call's cost
    return fixed + sum(_feature_bytes(feature) for feature in model.features)


def _label_store_row(model: ModelConfig) -> int:
    """The bytes the label store keeps per call of ``model``."""
    return LABEL_STORE_BYTES_PER_CALL + LABEL_STORE_BYTES_PER_GROUP * len(Columns.grouped(model))


def _feature_bytes(feature: FeatureConfig) -> int:
    """A feature's values, and 1 for the flag of a value of the wrong type."""
    if feature.kind == "numeric":
        return 8 + 1
    if feature.kind == "categorical":
        return 4 + 1
    if feature.kind == "text":
        return 8 * len(text_descriptors(feature).names) + 1
    return 4 * (feature.dim or 0) + 1


def _string_bytes(n_bytes: int) -> int:
    """An object of ``n_bytes`` as the allocator gives it: rounded up to 16 bytes."""
    return -(-n_bytes // 16) * 16


def _reference_rows(model: ModelConfig) -> int:
    """A warm-up reference's size, or a reference file's line count (an upper bound on one model's events;
    0 for a file that is not there, without which the daemon does not start)."""
    if model.reference.file is None:
        return model.reference.warmup or 0
    if not os.path.exists(model.reference.file):
        return 0
    with open(model.reference.file, "rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(MB), b"")) + 1

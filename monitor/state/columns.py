"""The columns of a model's window: their names and how each is stored, in one place.

Every other module asks here for a column's name: the state that fills the
window, the feedback join, the drift and quality suites that read it, the
report that shows it. A model's :class:`Columns` lays out its window from its
config: the fixed columns of every model, one per feature (a text feature's
numeric descriptors one each) and beside it whether its value had the wrong
type, the feedback and id columns, the quality, bias and slice columns the
config asks for, and each call's version, tokens and finish reason (and cost, with pricing). The names and
their order are what a checkpoint saves (see :attr:`ModelState.fingerprint
<monitor.state.model.ModelState.fingerprint>`), so they never change.

>>> from monitor.config import parse_config
>>> model = parse_config({"models": [{"name": "m", "features": [{"name": "topic", "kind": "categorical"}],
...     "bias": {"attributes": ["segment.tier"], "outcome": {"positive": "approve"}}}]}).models[0]
>>> columns = Columns(model)
>>> columns.feature("topic"), columns.group("segment.tier")
('feature.topic', 'group.segment.tier')
>>> list(columns.layout)[:4]
['timestamp_ms', 'latency_ms', 'failed', 'feature.topic']
>>> list(columns.layout)[-4:]
['version', 'input_tokens', 'output_tokens', 'finish_reason']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.text_descriptors import TextDescriptors
from monitor.config import FeatureConfig, ModelConfig
from monitor.state.vocabulary import MISSING

__all__ = [
    "CONTENT_FILTER",
    "COST",
    "FAILED",
    "FEEDBACK_COLUMNS",
    "FINISH_REASON",
    "ID_COLUMNS",
    "JSON_VALID",
    "JUDGE_SCORE",
    "LABEL",
    "LATENCY_MS",
    "MAX_FINISH_REASONS",
    "OUTCOME",
    "INPUT_TOKENS",
    "OUTPUT_TOKENS",
    "PREDICTION",
    "RATING",
    "REQUEST_ID",
    "RESPONSE_ID",
    "SCORE",
    "TIMESTAMP_MS",
    "VERSION",
    "Column",
    "Columns",
    "text_descriptors",
]

@dataclass(frozen=True)
class Column:
    """How one column is stored: its dtype, the value that marks "missing", its row shape.

    An ``optional`` column is one that checkpoints written before it existed lack: restored from one, it holds
    ``missing``; it is left out of the model's fingerprint and of its reference's id, so that adding it resets
    no state and renames no reference.
    """

    dtype: type | np.dtype
    missing: object = np.nan
    shape: tuple[int, ...] = ()
    optional: bool = False


#: Each call's event time, latency and whether it failed (it named an error).
TIMESTAMP_MS, LATENCY_MS, FAILED = "timestamp_ms", "latency_ms", "failed"
#: What feedback fills (NaN until it arrives); a label is a number or a class code.
LABEL, RATING, JUDGE_SCORE = "label", "rating", "judge_score"
#: Each call's ids (as join keys), by which feedback finds it.
REQUEST_ID, RESPONSE_ID = "request_id", "response_id"
#: The prediction (a number, or a class code), its score, whether a content filter stopped the response, whether
#: the response is valid JSON (if the config asks), and whether the outcome is the positive class (bias only).
PREDICTION, SCORE, CONTENT_FILTER = "prediction", "score", "content_filter"
JSON_VALID, OUTCOME = "json_valid", "outcome"
#: Each call's version (a code of :class:`~monitor.state.versions.Versions`, 0 without one), tokens (float32:
#: exact to 2**24 a call) and finish reason (a code of the model's finish-reason vocabulary): what versions are
#: compared on.
VERSION, FINISH_REASON = "version", "finish_reason"
INPUT_TOKENS, OUTPUT_TOKENS = "input_tokens", "output_tokens"
#: Each call's cost in its model's currency (a model with ``pricing`` only; see :mod:`monitor.state.spend`).
COST = "cost"
#: Finish reasons a model keeps by name (providers have a handful: stop, length, content_filter, tool_calls...);
#: the rest are "__other__".
MAX_FINISH_REASONS = 32

#: The window columns feedback fills, and how they are stored.
FEEDBACK_COLUMNS = {LABEL: Column(np.float64), RATING: Column(np.float64), JUDGE_SCORE: Column(np.float64)}
#: The window columns that hold each call's ids.
ID_COLUMNS = (REQUEST_ID, RESPONSE_ID)

_DESCRIBE_RESPONSE = TextDescriptors()
_DESCRIBE_PROMPT = TextDescriptors(refusals=False)


def text_descriptors(feature: FeatureConfig) -> TextDescriptors:
    """How a text feature is windowed: as numeric descriptors; refusals are looked for in responses only."""
    return _DESCRIBE_RESPONSE if feature.path == "response" else _DESCRIBE_PROMPT


class Columns:
    """The names and storage of one model's window columns, laid out from its config.

    :attr:`layout` maps each column's name to its :class:`Column`, in window order.
    """

    def __init__(self, model: ModelConfig):
        self.model = model
        layout = {TIMESTAMP_MS: Column(np.float64), LATENCY_MS: Column(np.float64), FAILED: Column(np.bool_, False)}
        for feature in model.features:
            layout.update(self._feature_layout(feature))
        layout.update(FEEDBACK_COLUMNS)
        layout.update({name: Column(object, missing=None) for name in ID_COLUMNS})
        layout.update({PREDICTION: Column(np.float64), SCORE: Column(np.float64)})
        layout[CONTENT_FILTER] = Column(np.bool_, missing=False)
        if model.quality.json_response:
            layout[JSON_VALID] = Column(np.float64)
        for attribute in self.grouped(model):
            layout[self.group(attribute)] = Column(np.int32, missing=MISSING)
        if model.bias.outcome is not None:
            layout[OUTCOME] = Column(np.float64)
        layout[VERSION] = Column(np.int32, missing=0, optional=True)
        layout[INPUT_TOKENS] = Column(np.float32, optional=True)
        layout[OUTPUT_TOKENS] = Column(np.float32, optional=True)
        layout[FINISH_REASON] = Column(np.int32, missing=MISSING, optional=True)
        if model.pricing is not None:
            layout[COST] = Column(np.float64, optional=True)
        self.layout = layout

    @staticmethod
    def feature(name: str) -> str:
        """The column of a numeric, categorical or embedding feature."""
        return f"feature.{name}"

    @classmethod
    def wrong_type(cls, name: str) -> str:
        """The column that tells, per call, whether a feature's value had the wrong type for its kind."""
        return f"{cls.feature(name)}.wrong_type"

    @classmethod
    def descriptors(cls, feature: FeatureConfig) -> dict[str, str]:
        """A text feature's columns, by descriptor name."""
        return {name: f"{cls.feature(feature.name)}.{name}" for name in text_descriptors(feature).names}

    @staticmethod
    def group(attribute: str) -> str:
        """The column of a bias or slice attribute's group codes."""
        return f"group.{attribute}"

    @staticmethod
    def grouped(model: ModelConfig) -> list[str]:
        """The attributes whose group codes the window keeps: the bias attributes, then the other slice ones."""
        return list(dict.fromkeys(model.bias.attributes + model.slices.attributes))

    def _feature_layout(self, feature: FeatureConfig) -> dict[str, Column]:
        return {**self._value_layout(feature), self.wrong_type(feature.name): Column(np.bool_, False, optional=True)}

    def _value_layout(self, feature: FeatureConfig) -> dict[str, Column]:
        if feature.kind == "numeric":
            return {self.feature(feature.name): Column(np.float64)}
        if feature.kind == "categorical":
            return {self.feature(feature.name): Column(np.int32, missing=MISSING)}
        if feature.kind == "text":
            return {column: Column(np.float64) for column in self.descriptors(feature).values()}
        assert feature.dim is not None, "the config requires 'dim' for an embedding feature"
        return {self.feature(feature.name): Column(np.float32, shape=(feature.dim,))}

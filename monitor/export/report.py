"""An HTML drift report of a model's current window against its reference, rendered by Evidently.

Meant for the person paged at night: the same features, methods and
(corrected) thresholds as the latest evaluation, with Evidently's
distributions and per-column verdicts to look at. Categorical codes are
shown as their values, text features as their descriptors; embeddings are
left out (Evidently would need one column per dimension). Evidently and
pandas are imported only where a page is drawn.

Category values come from events, so anyone who can produce to the topic
writes into the page. Evidently embeds its data as JSON in a ``<script>``
block without escaping it for HTML (a value ``</script><script>...`` ends
the block and runs), so :func:`render_page` rewrites that JSON with ``<``,
``>`` and ``&`` as ``\\u`` escapes, and hands Plotly's charts the values
HTML-escaped (its labels understand a few tags, links among them). Each
page comes with a Content-Security-Policy that allows exactly its own
scripts, by hash.

Drawing a page costs seconds of CPU. ``driftwarden report`` draws one;
``/report`` goes through :class:`DriftReports`, which draws a page at most
once per model and evaluation, one at a time, in a separate process, and
keeps it for the requests that follow.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.metadata
import importlib.util
import logging
import math
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from monitor.evaluate.drift import tested_features
from monitor.pipeline import Evaluation, Pipeline
from monitor.state.vocabulary import MISSING

__all__ = [
    "LIBRARY_FILE",
    "DriftReports",
    "ReportBusy",
    "ReportFailed",
    "ReportInput",
    "ReportPage",
    "ReportUnavailable",
    "drift_report_html",
    "evidently_library",
    "render_page",
    "report_input",
]

log = logging.getLogger(__name__)

#: Methods that compare categories: a column tested with one is categorical to Evidently, even if
#: it holds numbers with few distinct values (``auto`` tests those as categories, as Evidently does).
#: A categorical feature is categorical whatever its method (``auto`` picks jensenshannon for large samples).
_CATEGORY_METHODS = ("chisquare",)
#: The two lines of Evidently's page that hold its data: ``var metric_<id> = <JSON>;`` (one line each,
#: since JSON text escapes its newlines).
_DATA_LINE = re.compile(r"^(    var (?:additional_graphs_)?metric_[0-9a-f]{32} = )(.*);$", re.MULTILINE)
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
#: Everything else the page needs: MUI's and Plotly's inline styles, the icon font as a data: URL.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; base-uri 'none'; "
_RENDER_IDLE_S = 600.0
#: The drawing process yields the CPU to the consumer when both want it.
_NICENESS = 10
#: Where ``/report/`` serves Evidently's script; named by version, so a browser may keep it.
LIBRARY_FILE = f"evidently-{importlib.metadata.version('evidently')}.js"


class ReportUnavailable(LookupError):
    """No report can be drawn yet for this model; the message says why."""


class ReportBusy(RuntimeError):
    """Another page is being drawn; ask again after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReportFailed(RuntimeError):
    """Drawing this model's page for this evaluation failed (it is not tried again until the next one)."""


@dataclass(frozen=True)
class ReportInput:
    """What a page shows, copied out of the pipeline: label -> values, categories as their (escaped) names."""

    current: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    methods: dict[str, str]
    thresholds: dict[str, float]
    categorical: tuple[str, ...]


@dataclass(frozen=True)
class ReportPage:
    """A page and the Content-Security-Policy it must be served with."""

    html: str
    content_security_policy: str


def report_input(pipeline: Pipeline, model: str, evaluation: Evaluation | None = None) -> ReportInput:
    """The columns of ``model``'s latest (or the given) drift evaluation; the pipeline is locked only to copy."""
    evaluation = evaluation or pipeline.evaluations.get(model)
    drift = evaluation.drift if evaluation is not None else None
    if evaluation is None or drift is None or not drift.features:
        known = ", ".join(sorted(pipeline.evaluations)) or "none yet"
        raise ReportUnavailable(
            f"model {model!r} has no drift evaluation yet (its reference may still be filling; "
            f"evaluated models: {known})"
        )
    with pipeline.lock:
        state = pipeline.states[model]
        tested = [
            feature
            for feature in tested_features(state.model)
            if feature.label in drift.features and feature.kind != "embedding"
        ]
        columns = {feature.label: feature.column for feature in tested}  # label -> window column
        names = tuple(columns.values())
        window = state.window.view(evaluation.evaluated_at_ms, pipeline.config.windows.duration_ms, names)
        reference = state.reference.columns()
        reference = {name: reference[name] for name in names}
        vocabularies = {name: list(vocabulary.values) for name, vocabulary in state.vocabularies.items()}
    return ReportInput(
        current=_named(window, columns, vocabularies),
        reference=_named(reference, columns, vocabularies),
        methods={label: drift.features[label].method for label in columns},
        thresholds={label: drift.features[label].threshold for label in columns},
        categorical=tuple(
            feature.label
            for feature in tested
            if feature.kind == "categorical" or drift.features[feature.label].method in _CATEGORY_METHODS
        ),
    )


def _named(data: dict[str, np.ndarray], columns: dict[str, str], vocabularies: dict[str, list[str]]) -> dict:
    """Columns by label; category codes become their values, HTML-escaped for Plotly's labels."""
    named = {}
    for label, column in columns.items():
        values = data[column]
        if label in vocabularies:
            escaped = [html.escape(value, quote=False) for value in vocabularies[label]]
            names = np.array([*escaped, None], dtype=object)  # MISSING (-1) picks the None
            values = names[np.where(values == MISSING, -1, values)]
        named[label] = values
    return named


def drift_report_html(pipeline: Pipeline, model: str) -> str:
    """The report of ``model``'s latest evaluated drift, as a standalone HTML page (``driftwarden report``)."""
    return render_page(report_input(pipeline, model)).html


def render_page(data: ReportInput, library_url: str | None = None) -> ReportPage:
    """Draw the page with Evidently, escaped for HTML.

    With ``library_url`` the page loads Evidently's 3.5 MB script from there
    (as ``/report`` serves it, so that a cached page is small); without, it
    is standalone, with the policy in a ``<meta>`` tag as well.
    """
    page = _escaped(_evidently_page(data))
    if library_url is None:
        policy = _policy(page, "")
        meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        return ReportPage(page.replace("<head>", f"<head>\n{meta}", 1), policy)
    embedded = f"<script>{evidently_library().decode()}</script>"
    if page.count(embedded) != 1:
        raise RuntimeError("Evidently's page no longer embeds its library as expected")
    page = page.replace(embedded, f'<script src="{html.escape(library_url)}"></script>')
    return ReportPage(page, _policy(page, "'self' ") + "; frame-ancestors 'none'")


def _evidently_page(data: ReportInput) -> str:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[label for label in data.methods if label not in data.categorical],
        categorical_columns=list(data.categorical),
    )
    preset = DataDriftPreset(
        columns=list(data.methods), per_column_method=data.methods, per_column_threshold=data.thresholds
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(pd.DataFrame(data.current), data_definition=definition),
        reference_data=Dataset.from_pandas(pd.DataFrame(data.reference), data_definition=definition),
    )
    return snapshot.get_html_str(as_iframe=False)


def _escaped(page: str) -> str:
    """Evidently's page with its data made inert in HTML: ``<``, ``>``, ``&`` become JSON ``\\u`` escapes.

    Those characters occur in JSON text only inside strings, where the
    escapes mean the same characters to the script. The page fails closed: a
    layout this does not recognise raises rather than being served.
    """
    escaped, n_lines = _DATA_LINE.subn(lambda match: f"{match[1]}{match[2].translate(_SCRIPT_SAFE)};", page)
    if n_lines != 2:
        raise RuntimeError(f"Evidently's page layout changed ({n_lines} data lines): refusing to serve it unescaped")
    return escaped


def _policy(page: str, script_sources: str) -> str:
    """A Content-Security-Policy allowing the page's inline scripts by their SHA-256 and nothing else."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return f"{_POLICY}script-src {script_sources}{hashes}"


@cache
def evidently_library() -> bytes:
    """The script every Evidently page runs (``/report`` serves it beside the pages), read without importing it."""
    spec = importlib.util.find_spec("evidently")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("evidently is not installed", name="evidently")
    return (Path(spec.origin).parent / "nbextension" / "static" / "index.js").read_bytes()


class DriftReports:
    """The ``/report`` pages of a live pipeline, drawn off the consumer's interpreter and kept.

    ``page(model)`` answers the page of the model's latest evaluation,
    drawing it on the first request and keeping it until the next
    evaluation. One page is drawn at a time: a request that would start
    another, or that wants the one being drawn, gets :class:`ReportBusy`
    with the time the drawing should still take. Pages are drawn by
    ``render`` (by default in a child process that stays for 10 minutes
    after its last page, so that drawing holds neither the pipeline's lock
    nor the GIL the consumer needs); a drawing that fails is remembered for
    that evaluation.
    """

    def __init__(self, pipeline: Pipeline, library_url: str = f"report/{LIBRARY_FILE}", render=None):
        self.pipeline = pipeline
        self.library_url = library_url
        self._render = render or RenderProcess()
        self._lock = threading.Lock()
        self._pages: dict[str, tuple[float, ReportPage | ReportFailed]] = {}
        self._drawing: tuple[str, float] | None = None
        self._last_duration_s = 5.0

    def page(self, model: str) -> ReportPage:
        evaluation = self.pipeline.evaluations.get(model)
        evaluated_at_ms = evaluation.evaluated_at_ms if evaluation is not None else math.nan
        with self._lock:
            kept = self._pages.get(model)
            if kept is not None and kept[0] == evaluated_at_ms:
                return _outcome(kept[1])
            if self._drawing is not None:
                remaining_s = self._last_duration_s - (time.monotonic() - self._drawing[1])
                raise ReportBusy(f"the report of {self._drawing[0]!r} is being drawn", max(1, math.ceil(remaining_s)))
            self._drawing = (model, time.monotonic())
        try:
            data = report_input(self.pipeline, model, evaluation)
            try:
                outcome = self._render(data, self.library_url)
            except Exception as error:  # noqa: BLE001 - Evidently can fail on odd data; say so, once
                log.exception("drawing the report of %r failed", model, extra={"model": model})
                outcome = ReportFailed(f"drawing the report of {model!r} failed: {type(error).__name__}: {error}")
            with self._lock:
                self._pages[model] = (evaluated_at_ms, outcome)
                self._last_duration_s = time.monotonic() - self._drawing[1]
        finally:
            with self._lock:
                self._drawing = None
        return _outcome(outcome)

    def close(self) -> None:
        close = getattr(self._render, "close", None)
        if close is not None:
            close()


def _outcome(outcome: ReportPage | ReportFailed) -> ReportPage:
    if isinstance(outcome, ReportFailed):
        raise outcome
    return outcome


class RenderProcess:
    """Calls :func:`render_page` in one spawned child process, started on first use, stopped when idle.

    The child imports pandas and Evidently (about 350 MB) once and
    keeps them for the next page; ``idle_s`` after its last page it exits.
    It runs at a lower CPU priority (nice 10), so that the consumer wins
    when both want the CPU (``bench/report.py``).
    """

    def __init__(self, idle_s: float = _RENDER_IDLE_S):
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._timer: threading.Timer | None = None

    def __call__(self, data: ReportInput, library_url: str | None) -> ReportPage:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(_NICENESS,)
                )
            pool = self._pool
        try:
            return pool.submit(render_page, data, library_url).result()
        except BrokenProcessPool:  # the child died (out of memory?): the next page starts another
            self._stop(pool)
            raise
        finally:
            with self._lock:
                self._timer = threading.Timer(self.idle_s, self._stop, (pool,))
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        with self._lock:
            pool = self._pool
            if self._timer is not None:
                self._timer.cancel()
        if pool is not None:
            self._stop(pool)

    def _stop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=True, cancel_futures=True)

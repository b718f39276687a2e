"""Shared fixtures and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.sources.file import JsonlSource

DATA = Path(__file__).parent / "data"


@pytest.fixture
def golden_records():
    """The golden event file as one batch of records."""
    return [record for batch in JsonlSource(DATA / "golden_events.jsonl").batches() for record in batch]

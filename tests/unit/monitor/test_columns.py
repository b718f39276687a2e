"""One owner of a window's columns: the layout checkpoints hold, and nobody else building names."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.config import parse_config
from monitor.state.columns import Columns
from monitor.state.model import ModelState

_RICH = {
    "models": [
        {
            "name": "m",
            "features": [
                {"name": "a", "kind": "numeric"},
                {"name": "b", "kind": "categorical"},
                {"name": "prompt", "kind": "text"},
                {"name": "response", "kind": "text"},
                {"name": "e", "kind": "embedding", "dim": 3},
            ],
            "quality": {"json_response": True},
            "bias": {"attributes": ["segment.tier", "segment.region"], "outcome": {"positive": "yes"}},
        }
    ]
}


def test_the_layout_is_the_one_checkpoints_were_written_with():
    config = parse_config(_RICH)
    state = ModelState("m", config.models[0], config)
    assert state.fingerprint == "b650d6be97952aba"  # what the code before Columns computed for this config
    assert list(state.window.columns) == list(Columns(config.models[0]).layout)


def test_no_module_but_columns_builds_a_column_name():
    monitor = Path(__file__).resolve().parents[3] / "monitor"
    built = re.compile(r"""f["'](feature|group)\.""")
    offenders = [
        f"{path.relative_to(monitor)}:{number}"
        for path in monitor.rglob("*.py")
        if path.name != "columns.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if built.search(line)
    ]
    assert offenders == []

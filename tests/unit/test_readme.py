"""The README's reference sections, checked against the code they describe.

The reasons table is checked in ``tests/unit/monitor/test_events.py`` and the
metrics table against the metrics specification; here: the configuration
example, the commands table and the OpenTelemetry alias table.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from monitor.cli import _parser
from monitor.config import parse_config
from monitor.ingest.events import ALIASES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _section(title: str) -> str:
    """The text of one ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _table_first_cells(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    cells = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells.append(line.split("|")[1].strip())
    return cells


def test_the_configuration_example_is_a_valid_config_with_every_section():
    block = re.search(r"```yaml\n(kafka:.*?)```", _section("Configuration"), re.S)
    assert block, "the Configuration section opens with the full YAML example"
    settings = yaml.safe_load(block.group(1))
    config = parse_config(settings, environ={})
    assert set(settings) == set(type(config).model_fields), "the example shows every top-level section"


def test_the_commands_table_lists_every_command_of_the_cli():
    subcommands = next(action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction))
    documented = {
        re.match(r"`driftwarden ([a-z-]+)", cell).group(1)
        for cell in _table_first_cells(_section("Commands"), "| command | what it does |")
    }
    assert documented == set(subcommands.choices)


def test_the_alias_table_is_the_decoders_mapping():
    header = "| OpenTelemetry attribute or deprecated alias | v1 field | conversion |"
    cells = _table_first_cells(_section("Events (schema v1)"), header)
    documented = {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}
    assert documented == set(ALIASES)

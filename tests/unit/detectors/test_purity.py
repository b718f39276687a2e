"""The STYLE rule "detectors/ imports numpy, scipy and scikit-learn only", proven two ways."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import detectors

ALLOWED = {"numpy", "scipy", "sklearn", "__future__", "dataclasses", "typing", "math", "collections", "abc",
           "functools", "re", "itertools", "copy", "detectors"}  # fmt: skip
FORBIDDEN_AT_RUNTIME = ("kafka", "prometheus_client", "monitor", "alerts", "orjson", "msgspec", "pydantic", "yaml")

PACKAGE_DIR = Path(detectors.__file__).parent
SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import detectors
names = ["detectors"] + [m.name for m in pkgutil.walk_packages(detectors.__path__, "detectors.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_detector_loads_no_io_or_daemon_module():
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PACKAGE_DIR.parent,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    expected = {"detectors"} | {module.name for module in pkgutil.walk_packages(detectors.__path__, "detectors.")}
    assert set(report["imported"]) == expected
    assert "detectors.traffic" in report["imported"]  # discovery found the modules, not just the package
    roots = {name.partition(".")[0] for name in report["loaded"]}
    assert roots.isdisjoint(FORBIDDEN_AT_RUNTIME), sorted(roots & set(FORBIDDEN_AT_RUNTIME))


def _imported_roots(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level package) of every import; relative imports stay inside ``detectors``."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.extend((node.lineno, alias.name.partition(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.append((node.lineno, "detectors" if node.level else node.module.partition(".")[0]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            roots.append((node.lineno, "__import__()"))  # a dynamic import dodges the rule
    return roots


def test_sources_were_found():
    assert PACKAGE_DIR / "traffic.py" in SOURCES
    assert PACKAGE_DIR / "__init__.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=[str(path.relative_to(PACKAGE_DIR)) for path in SOURCES])
def test_detector_sources_import_only_allowed_packages(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    outside = [f"line {line}: {root}" for line, root in _imported_roots(tree) if root not in ALLOWED]

    assert outside == [], f"{path.name} imports outside {sorted(ALLOWED)}: {outside}"


def test_the_import_check_catches_a_forbidden_import():
    tree = ast.parse("import numpy as np\nfrom prometheus_client import Gauge\nimport logging\n__import__('kafka')\n")

    assert [root for _, root in _imported_roots(tree) if root not in ALLOWED] == [
        "prometheus_client",
        "logging",
        "__import__()",
    ]

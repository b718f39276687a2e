"""The producer SDK is light: serving code that imports it loads the event schema and Kafka's client, nothing more."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import monitor

#: What the daemon needs and serving code must not pay for (numpy too: kafka-python and msgspec do without it).
FORBIDDEN = ("sklearn", "scipy", "pandas", "pydantic", "numpy", "prometheus_client", "evidently", "yaml",
             "detectors", "alerts", "monitor.config")  # fmt: skip

_IMPORT_SDK = """
import json, sys
from monitor.producer import EventProducer
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_producer_loads_no_daemon_dependency():
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORT_SDK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(monitor.__file__).parent.parent,
    )
    assert completed.returncode == 0, completed.stderr
    loaded = set(json.loads(completed.stdout))
    assert {"monitor.producer", "monitor.ingest.events", "kafka", "msgspec"} <= loaded  # it did import the SDK
    heavy = sorted(name for name in FORBIDDEN if name in loaded)
    assert heavy == [], f"importing monitor.producer loads {heavy}"

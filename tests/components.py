"""Real components for integration and end-to-end tests: the daemon as a process, and Prometheus.

Each starts on free loopback ports with its own temp directory and is stopped
by the fixture that made it (see ``tests/conftest.py``). A component that is
not installed skips the test with the reason, except in CI (``CI=true``),
where it fails: CI must prove the real thing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from monitor.sources.embedded_broker import free_port, terminate


def require(found: bool, what: str) -> None:
    """Skip (or, in CI, fail) when a real component the test needs is missing."""
    if not found:
        message = f"{what} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.1) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body; connection errors come back as status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def daemon_config(bootstrap_servers: str, state_dir: Path, topic: str, **sections: dict) -> dict:
    """A config for tests: fast ticks, checkpoints every second, a consumer group that joins in seconds."""
    config = {
        "kafka": {
            "bootstrap_servers": bootstrap_servers,
            "topics": [topic],
            "group_id": f"{topic}-group",
            "dead_letter_topic": f"{topic}-dlq",
            "max_poll_interval": "10s",
            "session_timeout": "6s",
        },
        "server": {"host": "127.0.0.1", "port": free_port()},
        "state": {"dir": str(state_dir), "checkpoint_every": "1s"},
        "windows": {"size": 500, "evaluate_every": "1s", "idle_after": "500ms", "min_samples": 10},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return config


class DaemonProcess:
    """``driftwarden run`` as a child process, as an operator would run it."""

    def __init__(self, config: dict, directory: Path):
        self.config = config
        self.config_path = directory / "driftwarden.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "daemon.log"
        self.port = config["server"]["port"]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, environ: dict[str, str] | None = None) -> DaemonProcess:
        """Start the process without waiting for anything; ``environ`` adds environment variables."""
        command = [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            env = {**os.environ, **(environ or {})}
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def start(self, ready_within_s: float = 30.0) -> DaemonProcess:
        """Launch and wait until ``/readyz`` says it consumes."""
        self.launch()
        wait_for(lambda: self._alive() and http_get(f"{self.url}/readyz")[0] == 200, ready_within_s, "/readyz")
        return self

    def metrics(self) -> bytes:
        status, body = http_get(f"{self.url}/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout_s)

    def children(self) -> list[int]:
        """Process ids whose parent is the daemon (its Kafka consumer process)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the daemon exited with {self.process.returncode}:\n{self.log()}")
        return True

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Prometheus:
    """A real Prometheus scraping ``targets`` every second, queried through its HTTP API."""

    def __init__(
        self, targets: list[str], directory: Path, rule_files: list[Path] = (), scrape_configs: list[dict] = ()
    ):
        """``scrape_configs`` replace the one plain-HTTP job ``driftwarden`` of ``targets``."""
        require(shutil.which("prometheus") is not None, "prometheus (Debian package 'prometheus')")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": list(scrape_configs)
            or [{"job_name": "driftwarden", "static_configs": [{"targets": targets}]}],
        }
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        command = [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={directory / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: http_get(f"{self.url}/-/ready")[0] == 200, 30, "Prometheus to be ready", every_s=0.2)

    def query(self, expression: str) -> list[dict]:
        """The instant vector of ``expression`` as Prometheus' API returns it (``metric`` and ``value``)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        status, body = http_get(url)
        answer = json.loads(body or b"{}")
        assert status == 200 and answer.get("status") == "success", f"{expression}: {status} {body[:500]!r}"
        return answer["data"]["result"]

    def values(self, expression: str, *labels: str) -> dict[tuple[str, ...], float]:
        """``expression``'s samples keyed by the given label values."""
        return {
            tuple(sample["metric"].get(label, "") for label in labels): float(sample["value"][1])
            for sample in self.query(expression)
        }

    def stop(self) -> None:
        terminate(self.process, timeout_s=10)


class Alertmanager:
    """A real Alertmanager (API v2) with a do-nothing receiver; ``stop`` and ``start`` again keep port and data.

    Alertmanager keeps alerts in memory only (its data directory holds
    silences and the notification log), so a restarted one knows only the
    alerts sent to it since. With ``webhook_url`` its receiver notifies that
    URL instead, each alert in a group of its own, resolved ones too.
    """

    def __init__(self, directory: Path, resolve_timeout: str = "5m", webhook_url: str | None = None):
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        require(binary is not None, "Alertmanager (Debian package 'prometheus-alertmanager')")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        route: dict[str, object] = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
        receiver: dict = {"name": "blackhole"}
        if webhook_url is not None:
            route["group_by"] = ["..."]
            receiver = {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        config = {
            "global": {"resolve_timeout": resolve_timeout},
            "route": {"receiver": receiver["name"], **route},
            "receivers": [receiver],
        }
        self.config_path = directory / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "alertmanager.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> Alertmanager:
        """Launch on this instance's port and data directory and wait for ``/-/ready``."""
        command = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.directory / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"Alertmanager exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            return http_get(f"{self.url}/-/ready")[0] == 200

        wait_for(ready, 30, "Alertmanager to be ready", every_s=0.1)
        return self

    def alerts(self, **filters: str) -> list[dict]:
        """``GET /api/v2/alerts`` (active, unresolved alerts; ``filters`` as query parameters)."""
        query = f"?{urllib.parse.urlencode(filters)}" if filters else ""
        status, body = http_get(f"{self.url}/api/v2/alerts{query}")
        assert status == 200, f"GET /api/v2/alerts answered {status}: {body[:500]!r}"
        return json.loads(body)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout_s=10)

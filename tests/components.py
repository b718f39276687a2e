"""Real components for integration and end-to-end tests: the daemon as a process, and Prometheus.

Each starts on free loopback ports with its own temp directory and is stopped
by the fixture that made it (see ``tests/conftest.py``). A component that is
not installed skips the test with the reason, except in CI (``CI=true``),
where it fails: CI must prove the real thing.
"""

from __future__ import annotations

import errno
import http.server
import importlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
from prometheus_client.parser import text_string_to_metric_families

from monitor.demo.broker import free_port, terminate


def require(found: bool, what: str) -> None:
    """Skip (or, in CI, fail) when a real component the test needs is missing."""
    if not found:
        message = f"{what} is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def required_module(name: str, what: str) -> ModuleType:
    """A module a test file needs, imported at its top: where it is not installed the file skips with the reason,
    in CI (``CI=true``) it fails to import."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{what} is not installed here")


def c_extension(name: str) -> ModuleType:
    """One of the hot path's C extensions (setup.py): built wherever CI runs, where its absence is a failure;
    elsewhere a test of it skips where it was built without a C compiler."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason="built without a C compiler")


def wait_for(
    condition: Callable[[], object],
    timeout_s: float,
    what: str,
    every_s: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test with ``what`` on timeout (and
    ``on_timeout()``, say a daemon's log, to tell why)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{on_timeout()}" if on_timeout is not None else ""
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(every_s)


def http_get(url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body; connection errors come back as status 0."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout_s) as response:
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

    def __init__(self, config: dict, directory: Path, options: Sequence[str] = ()):
        self.config = config
        self.options = list(options)  # after ``run --config FILE``
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
        command = [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config_path), *self.options]
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
        self,
        targets: list[str],
        directory: Path,
        rule_files: list[Path] = (),
        scrape_configs: list[dict] = (),
        features: tuple[str, ...] = (),
    ):
        """``scrape_configs`` replace the one plain-HTTP job ``driftwarden`` of ``targets``; ``features`` are
        Prometheus' feature flags (``exemplar-storage``)."""
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
            *(f"--enable-feature={feature}" for feature in features),
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

    def exemplars(self, expression: str) -> list[dict]:
        """The exemplars of ``expression``'s series stored so far, each series' ``seriesLabels`` and ``exemplars``."""
        query = urllib.parse.urlencode({"query": expression, "start": 0, "end": time.time() + 3600})
        status, body = http_get(f"{self.url}/api/v1/query_exemplars?{query}")
        answer = json.loads(body or b"{}")
        assert status == 200 and answer.get("status") == "success", f"{expression}: {status} {body[:500]!r}"
        return answer["data"]

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


# Real parts for the robustness tests (tests/e2e/test_hostile.py and test_faults.py): a Tansu broker whose
# storage outlives it, a broker that refuses one client's writes, a state disk that fills up, a webhook receiver.


def n_counted(metrics: bytes | str) -> int:
    """Messages the daemon has accounted for: valid events (monitored or not) plus rejected ones."""
    text = metrics.decode() if isinstance(metrics, bytes) else metrics
    families = ("driftwarden_events", "driftwarden_events_invalid", "driftwarden_events_unmonitored")
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name in families
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )


#: What only ``run`` exports: its build, and the process collector's series (its CPU, memory, descriptors).
RUN_PROCESS = (
    "driftwarden_build_info",
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
)
#: Samples that say when an evaluation ran rather than what it found (a run's model that has gone quiet
#: follows the wall clock, a replay's does not), rejections, and how ``run`` itself fares (backlog,
#: checkpoints, dead-letter deliveries, its process and build), which a replay has no notion of.
NOT_STATISTICS = (
    "driftwarden_last_evaluation_timestamp_seconds",
    "driftwarden_reference_age_seconds",
    "driftwarden_events_invalid_total",
    "driftwarden_consumer_lag",
    "driftwarden_checkpoints_total",
    "driftwarden_dead_letters_failed_total",
    *RUN_PROCESS,
)


def statistics(metrics: bytes | str, leave_out: tuple[str, ...] = NOT_STATISTICS) -> dict[tuple, float]:
    """Every sample of an exposition by name and sorted labels, except those of the ``leave_out`` samples."""
    text = metrics.decode() if isinstance(metrics, bytes) else metrics
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name not in leave_out
    }


def differences(actual: dict[tuple, float], expected: dict[tuple, float], limit: int = 40) -> str:
    """The samples whose values differ, one per line as ``name{labels}: (actual, expected)``; empty if none."""
    keys = sorted(key for key in actual.keys() | expected.keys() if actual.get(key) != expected.get(key))
    return "\n".join(f"{name}{dict(labels)}: {(actual.get((name, labels)), expected.get((name, labels)))}"
                     for name, labels in keys[:limit])


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 20.0) -> list:
    """Every message on ``topic`` (all partitions, first to last), read without joining a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(partition) < end for partition, end in ends.items()):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s:g} s reading {topic} up to {ends}")
            for batch in consumer.poll(timeout_ms=500, max_records=5_000).values():
                records.extend(batch)
        return sorted(records, key=lambda record: (record.partition, record.offset))
    finally:
        consumer.close(autocommit=False)


def committed_offset(bootstrap_servers: str, group: str, topic: str, partition: int = 0) -> int | None:
    """The group's committed offset, read without joining the group (None if nothing is committed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close(autocommit=False)


class S3Server:
    """moto's S3 server on loopback with one bucket: storage that a Tansu broker's restart keeps.

    ``environ`` holds the variables Tansu's object store reads (endpoint, plain HTTP, dummy credentials).
    moto keeps its buckets in one store per process, shared by every server it starts, so each server
    gets a bucket of its own: a broker must not find the topics and offsets of an earlier test's.
    """

    def __init__(self, bucket: str | None = None):
        bucket = bucket or f"tansu-{uuid.uuid4().hex[:12]}"
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            require(False, "moto[server] (an S3 server for a broker whose data survives a restart)")
        import boto3

        self.port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environ = {
            "AWS_ACCESS_KEY_ID": "driftwarden",
            "AWS_SECRET_ACCESS_KEY": "driftwarden",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
        }
        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="driftwarden",
            aws_secret_access_key="driftwarden",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=bucket)
        self.bucket = bucket
        self.storage_engine = f"s3://{bucket}/"

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        """Serve again on the same port after :meth:`stop` (an outage ends): the bucket keeps its objects."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()


class TansuBroker:
    """A Tansu broker on a fixed port that ``stop`` and ``start`` keep, with a chosen storage engine.

    ``advertised_port`` (default: the listening port) is the address the broker hands to clients in its
    metadata, so a proxy in front of it sees every connection. With ``memory://`` storage (the default) a
    restart loses every topic and offset; with :class:`S3Server`'s it keeps them.
    """

    def __init__(
        self,
        storage_engine: str = "memory://tansu/",
        environ: dict[str, str] | None = None,
        port: int | None = None,
        advertised_port: int | None = None,
        log_path: Path | None = None,
    ):
        from monitor.demo.broker import tansu_binary

        try:
            self.binary = tansu_binary()
        except FileNotFoundError as error:
            require(False, f"the embedded broker ({error})")
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.bootstrap_servers = f"127.0.0.1:{self.advertised_port}"
        self.storage_engine = storage_engine
        self.environ = environ or {}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> TansuBroker:
        command = [
            str(self.binary),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            "--storage-engine",
            self.storage_engine,
        ]
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **self.environ}
        )

        def listening() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"Tansu exited with {self.process.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_for(listening, timeout_s, f"Tansu to listen on port {self.port}", every_s=0.05)
        return self

    def stop(self) -> None:
        """Kill the broker at once, as a crash or a lost node would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


#: Kafka's TOPIC_AUTHORIZATION_FAILED: what a broker whose ACLs deny a client's writes answers (not retriable).
TOPIC_AUTHORIZATION_FAILED = 29


class RefusingKafkaProxy:
    """A Kafka-protocol proxy on loopback that can refuse the writes of one client, as a broker's ACLs do.

    Every request passes through to ``upstream_port`` unchanged, except that while :meth:`refuse` names a
    client id, that client's produce requests are not forwarded: the proxy answers them itself with
    TOPIC_AUTHORIZATION_FAILED for every partition (encoded with kafka-python's own protocol classes, for the
    version the client used). Tansu has no ACLs; a real cluster answers exactly this to a principal without
    WRITE on the topic. Start the broker with ``advertised_port=proxy.port`` so that clients come back here
    after reading metadata.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.refused_client: str | None = None
        self.n_refused = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="kafka-proxy").start()

    def refuse(self, client_id: str | None) -> None:
        """Refuse the produce requests of ``client_id`` from now on (None: let everything through)."""
        self.refused_client = client_id

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        n_in_flight = [0]  # forwarded requests whose response has not come back yet
        written = threading.Condition()

        def responses() -> None:
            try:
                while True:
                    frame = _read_frame(upstream)
                    with written:
                        client.sendall(struct.pack(">i", len(frame)) + frame)
                        n_in_flight[0] -= 1
                        written.notify_all()
            except (OSError, EOFError):
                pass
            finally:
                client.close()

        threading.Thread(target=responses, daemon=True).start()
        try:
            while True:
                frame = _read_frame(client)
                api_key, api_version = struct.unpack(">hh", frame[:4])
                if api_key == ProduceRequest.API_KEY and self.refused_client is not None:
                    request = ProduceRequest.decode(frame, version=api_version, header=True)
                    if request.header.client_id == self.refused_client and request.acks != 0:
                        answer = _refusal(request, api_version)
                        with written:  # responses go back in request order
                            written.wait_for(lambda: n_in_flight[0] == 0)
                            client.sendall(answer)
                        with self._lock:
                            self.n_refused += 1
                        continue
                with written:
                    n_in_flight[0] += 1
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except (OSError, EOFError):
            pass
        finally:
            upstream.close()
            client.close()


def _read_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _refusal(request: ProduceRequest, api_version: int) -> bytes:
    """A framed ProduceResponse refusing every partition of ``request``."""
    response_class = ProduceResponse[api_version]
    topic_class = response_class.TopicProduceResponse
    partition_class = topic_class.PartitionProduceResponse
    response = response_class(
        responses=[
            topic_class(
                name=topic.name,
                partition_responses=[
                    partition_class(index=partition.index, error_code=TOPIC_AUTHORIZATION_FAILED, base_offset=-1)
                    for partition in topic.partition_data
                ],
            )
            for topic in request.topic_data
        ],
        throttle_time_ms=0,
    )
    response.with_header(correlation_id=request.header.correlation_id)
    return bytes(response.encode(header=True, framed=True))


class Tmpfs:
    """A small tmpfs mounted at ``directory``, writable by all (as root, or through ``sudo -n``; without either, or
    without CAP_SYS_ADMIN in a container, the test skips, or fails in CI)."""

    def __init__(self, directory: Path, size_bytes: int):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
        mounted = subprocess.run(
            [*self._as_root, "mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=1777", "tmpfs", str(directory)],
            capture_output=True,
            text=True,
        )
        require(mounted.returncode == 0, f"a tmpfs mount for a state disk that fills up ({mounted.stderr.strip()})")
        self._filler = directory / ".filler"

    def fill(self) -> int:
        """Take every free byte with a filler file; returns how many it took."""
        written = 0
        with self._filler.open("ab") as filler:
            chunk = b"\0" * 65_536
            try:
                while True:
                    written += filler.write(chunk)
                    filler.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
        return written

    def free(self) -> None:
        """Give the space back."""
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run([*self._as_root, "umount", "-l", str(self.directory)], check=False, capture_output=True)


class WebhookReceiver:
    """An HTTP endpoint that keeps every alert POSTed to it (driftwarden's webhook body: ``{"alerts": [...]}``)."""

    def __init__(self):
        received = self.alerts = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *arguments: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

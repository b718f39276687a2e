"""Shared fixtures and helpers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from monitor.ingest.file import JsonlSource

DATA = Path(__file__).parent / "data"


@pytest.fixture
def golden_records():
    """The golden event file as one batch of records."""
    return [record for batch in JsonlSource(DATA / "golden_events.jsonl").batches() for record in batch]


#: The consumer clients of ``kafka.client``: the tests of the Kafka source and of the daemon on Kafka run with each.
KAFKA_CLIENTS = ["kafka-python", "confluent"]

#: For the slowest stories (``@pytest.mark.parametrize("kafka_client", DEFAULT_CLIENT_FIRST, indirect=True)``):
#: the default client in every run, confluent only in the soak run (``python3 -m pytest -m soak``).
DEFAULT_CLIENT_FIRST = ["kafka-python", pytest.param("confluent", marks=pytest.mark.soak)]


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request) -> str:
    """The ``kafka.client`` a test runs with; a test that takes this fixture runs once per client."""
    return request.param


@pytest.fixture(scope="session")
def kafka_broker():
    """One real Kafka-protocol broker (Tansu) for the session; tests keep apart by topic and group names."""
    from monitor.demo.broker import EmbeddedBroker, tansu_binary
    from tests.components import require

    try:
        tansu_binary()
    except FileNotFoundError as error:
        require(False, f"the embedded broker ({error})")
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def new_topic(kafka_broker, request):
    """Create a fresh topic (and its dead-letter topic) named after the test: ``new_topic(partitions=1)``."""
    from monitor.ingest.kafka import create_topics

    names = []

    def create(partitions: int = 1) -> str:
        name = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
        create_topics({"bootstrap_servers": kafka_broker.bootstrap_servers}, {name: partitions, f"{name}-dlq": 1})
        names.append(name)
        return name

    return create


@pytest.fixture
def start_daemon(tmp_path):
    """Start ``driftwarden run`` processes from config dicts; all are killed at the end of the test."""
    from tests.components import DaemonProcess

    daemons = []

    def start(config: dict, ready_within_s: float = 30.0) -> DaemonProcess:
        directory = tmp_path / f"daemon-{len(daemons)}"
        directory.mkdir()
        daemon = DaemonProcess(config, directory)
        daemons.append(daemon)
        return daemon.start(ready_within_s)

    yield start
    for daemon in daemons:
        daemon.close()


@pytest.fixture
def start_prometheus(tmp_path):
    """Start a real Prometheus scraping the given ``host:port`` targets; stopped at the end of the test."""
    from tests.components import Prometheus

    servers = []

    def start(
        targets: list[str], rule_files: list[Path] = (), scrape_configs: list[dict] = (), features: tuple[str, ...] = ()
    ) -> Prometheus:
        directory = tmp_path / f"prometheus-{len(servers)}"
        directory.mkdir()
        servers.append(Prometheus(targets, directory, rule_files, scrape_configs, features))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_alertmanager(tmp_path):
    """Start a real Alertmanager with a do-nothing receiver; stopped at the end of the test."""
    from tests.components import Alertmanager

    servers = []

    def start(resolve_timeout: str = "5m") -> Alertmanager:
        directory = tmp_path / f"alertmanager-{len(servers)}"
        directory.mkdir()
        servers.append(Alertmanager(directory, resolve_timeout))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback with a bucket of its own, for the session; tests keep apart by key prefix."""
    from tests.components import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_credentials(s3_server, monkeypatch):
    """The server's dummy credentials in the standard AWS variables, where boto3's credential chain finds them."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, s3_server.environ[name])
    return s3_server

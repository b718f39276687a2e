"""The HTTP server of /metrics: bounded connections and threads, timeouts, headers, TLS and basic auth.

Real sockets on loopback, real TLS (Python's ssl client against a CA made for
the test); the handler is the daemon's own MetricsServer over a small pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import socket
import ssl
import threading
import time

import bcrypt
import pytest

from monitor.config import parse_config
from monitor.export import server as server_module
from monitor.export.collectors import MetricsServer, build_registry
from monitor.export.webconfig import WebConfig
from monitor.pipeline import Pipeline
from tests.certificates import make_certificates

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def serve(golden_records):
    """Start MetricsServers over a pipeline holding the golden events; all are stopped at the end."""
    pipeline = Pipeline(parse_config({"windows": {"size": 4, "min_samples": 1}}))
    pipeline.apply(golden_records)
    servers = []

    def start(**options) -> MetricsServer:
        servers.append(MetricsServer(build_registry(pipeline), **options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _request(port: int, path: str, headers: dict | None = None, context: ssl.SSLContext | None = None):
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _half_sent(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line that ends the head
    return client


def test_two_hundred_half_sent_requests_hold_no_threads_and_a_scrape_still_gets_through(serve):
    server = serve()
    threads_before = threading.active_count()
    clients = [_half_sent(server.port) for _ in range(200)]
    try:
        time.sleep(0.3)  # let the server accept them all
        started = time.monotonic()
        status, _, body = _request(server.port, "/metrics")
        elapsed_s = time.monotonic() - started
        threads_during = threading.active_count()
    finally:
        for client in clients:
            client.close()
    assert status == 200 and b"driftwarden_events_total" in body
    assert elapsed_s < 1.0
    assert threads_during - threads_before <= 5  # the event loop's thread and the workers, not one per socket


def test_a_half_sent_request_is_closed_after_the_timeout(serve):
    server = serve(timeout_s=0.5)
    client = _half_sent(server.port)
    started = time.monotonic()
    assert client.recv(100) == b""  # closed by the server
    assert 0.4 < time.monotonic() - started < 3
    client.close()


def test_beyond_max_connections_the_longest_idle_one_is_closed(serve):
    server = serve(max_connections=4)
    clients = [_half_sent(server.port) for _ in range(4)]
    time.sleep(0.2)
    assert _request(server.port, "/healthz")[0] == 200
    clients[0].settimeout(2)
    assert clients[0].recv(100) == b""  # the oldest made room
    for client in clients:
        client.close()


def test_a_client_that_does_not_read_its_answer_is_dropped(serve):
    server = serve(timeout_s=0.5)
    client = socket.create_connection(("127.0.0.1", server.port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)  # pipelined, never read
    time.sleep(2)
    assert _request(server.port, "/healthz")[0] == 200
    client.close()


def test_every_answer_says_nosniff_and_keep_alive_serves_several_requests(serve):
    server = serve()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for path, status in (("/metrics", 200), ("/healthz", 200), ("/readyz", 200), ("/nope", 404)):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == status
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    connection.close()


def test_metrics_are_gzipped_when_the_scraper_asks(serve):
    server = serve()
    status, headers, body = _request(server.port, "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"driftwarden_events_total" in gzip.decompress(body)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
)
def test_requests_that_are_not_served_get_a_status_and_a_close(serve, raw, status):
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(raw)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in answer and b"X-Content-Type-Options: nosniff" in answer


def test_stopping_ends_a_connection_that_is_closing(serve, monkeypatch):
    """A connection closing (its answer still going out to a slow client) is stopped with the others. It was
    left out, and the loop closed under it: in CI, a coroutine of its close was reported as never awaited."""
    closing, cancelled = threading.Event(), threading.Event()

    async def stalled_close(writer, timeout_s: float) -> None:  # as with a client that reads nothing
        writer.close()
        closing.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(server_module, "_close", stalled_close)
    server = serve()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(b"GARBAGE\r\n\r\n")
        assert closing.wait(5)
        server.stop()
    assert cancelled.is_set()


# --- TLS and basic auth --------------------------------------------------------------------------------------------


def _web(tmp_path, certificates, **tls) -> WebConfig:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    tls_config = {"cert_file": str(certificates.server_cert), "key_file": str(certificates.server_key), **tls}
    return WebConfig.parse({"tls_server_config": tls_config, "basic_auth_users": {"prometheus": hashed}},
                           tmp_path / "web.yml")  # fmt: skip


def _client(certificates, with_certificate: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates.ca))
    if with_certificate:
        context.load_cert_chain(certificates.client_cert, certificates.client_key)
    return context


def _authorization(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_over_tls_with_basic_auth_a_verifying_client_scrapes_and_a_wrong_password_gets_401(
    serve, tmp_path, certificates
):
    server = serve(web=_web(tmp_path, certificates))
    context = _client(certificates)

    status, _, body = _request(server.port, "/metrics", _authorization("prometheus", PASSWORD), context)
    assert status == 200 and b"driftwarden_events_total" in body
    status, headers, _ = _request(server.port, "/metrics", _authorization("prometheus", "wrong"), context)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert _request(server.port, "/metrics", {}, context)[0] == 401
    assert _request(server.port, "/report?model=m", {}, context)[0] == 401
    # Kubernetes probes carry no password; they learn nothing but "ok".
    assert _request(server.port, "/healthz", {}, context)[:1] == (200,)
    assert _request(server.port, "/readyz", {}, context)[:1] == (200,)


def test_over_tls_a_plain_http_client_or_a_client_that_does_not_trust_the_ca_gets_nothing(
    serve, tmp_path, certificates
):
    server = serve(web=_web(tmp_path, certificates))
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _request(server.port, "/healthz")
    with pytest.raises(ssl.SSLCertVerificationError):
        _request(server.port, "/healthz", context=ssl.create_default_context())
    assert _request(server.port, "/healthz", context=_client(certificates))[0] == 200  # still serving


def test_a_tls_client_that_never_finishes_its_handshake_is_dropped(serve, tmp_path, certificates):
    server = serve(web=_web(tmp_path, certificates), timeout_s=0.5)
    client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    client.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello
    started = time.monotonic()
    assert client.recv(100) == b""
    assert time.monotonic() - started < 3
    client.close()


def test_required_client_certificates_are_checked_against_the_client_ca(serve, tmp_path, certificates):
    web = _web(tmp_path, certificates, client_auth_type="RequireAndVerifyClientCert",
               client_ca_file=str(certificates.ca))  # fmt: skip
    server = serve(web=web)
    status, _, _ = _request(server.port, "/metrics", _authorization("prometheus", PASSWORD),
                            _client(certificates, with_certificate=True))  # fmt: skip
    assert status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _request(server.port, "/metrics", _authorization("prometheus", PASSWORD), _client(certificates))

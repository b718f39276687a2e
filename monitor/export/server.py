"""A small HTTP/1.1 server for ``/metrics`` and its neighbours: bounded, with timeouts, TLS and basic auth.

The standard library's servers give every connection a thread from the
moment it is accepted: 200 clients that send half a request and wait held
200 threads for ever. Here one event-loop thread owns every socket. A
connection costs a few kilobytes until its request head has arrived whole,
and is closed when that takes longer than ``timeout_s`` (as is a keep-alive
connection idle that long, a TLS handshake that slow, and a client that
stops reading its response for that long). Only complete requests reach
the handler, on a fixed pool of ``workers`` threads. At most
``max_connections`` sockets are open, handshakes included: one more closes
the connection that has waited longest for a request (the newcomer if
every connection is being served), so idle sockets can never lock out a
scrape.

GET and HEAD only, no request bodies; every response carries
``X-Content-Type-Options: nosniff``. With a :class:`~monitor.export.webconfig.WebConfig`
the socket speaks TLS and every path but ``public_paths`` needs basic
authentication (401 with ``WWW-Authenticate`` otherwise).

>>> import urllib.request
>>> server = HttpServer(lambda request: Response(200, f"hello {request.path}".encode())).start()
>>> with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/there", timeout=5) as answer:
...     answer.read(), answer.headers["X-Content-Type-Options"]
(b'hello /there', 'nosniff')
>>> server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

from monitor.export.webconfig import WebConfig

__all__ = ["HttpServer", "Request", "Response"]

log = logging.getLogger(__name__)

#: The longest request head (request line and headers) accepted; browsers send about 1 KB.
MAX_HEAD_BYTES = 16 * 1024
_CHUNK_BYTES = 64 * 1024
_AUTHENTICATE = ("WWW-Authenticate", 'Basic realm="driftwarden", charset="UTF-8"')


@dataclass(frozen=True)
class Request:
    """A parsed request head: ``headers`` has lower-case names; ``query`` as :func:`urllib.parse.parse_qs` gives."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    keep_alive: bool = True


@dataclass(frozen=True)
class Response:
    """What the handler answers; the server adds Content-Length, Connection and nosniff."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[str, str]) -> Response:
        return cls(status, text.encode(), headers=headers)


@dataclass
class _Connection:
    """A connection's task and since when it has been waiting for a request (None while one is served)."""

    task: asyncio.Task = field(init=False)
    idle_since: float | None = field(default_factory=time.monotonic)


class HttpServer:
    """Serves ``handler(request) -> Response`` on ``host:port`` in a background thread.

    The socket is bound at construction (``port=0`` picks a free one, read
    from :attr:`port`); :meth:`start` serves, :meth:`stop` closes every
    connection and waits for the thread.
    """

    def __init__(
        self,
        handler: Callable[[Request], Response],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        web: WebConfig | None = None,
        timeout_s: float = 5.0,
        max_connections: int = 64,
        workers: int = 4,
        public_paths: frozenset[str] = frozenset(),
    ):
        self.handler = handler
        self.web = web
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.public_paths = public_paths
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        self._socket = socket.create_server(address, family=family, backlog=128)
        self._socket.setblocking(False)
        self.port = self._socket.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http-worker")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet)
        self._connections: dict[int, _Connection] = {}
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    def start(self) -> HttpServer:
        self._main = self._loop.create_task(self._accept())
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._main.cancel)
            self._thread.join(timeout=5)
        self._socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._main)
        for connection in list(self._connections.values()):
            connection.task.cancel()
        pending = [connection.task for connection in self._connections.values()]
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=2))
        self._loop.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(self._socket)
            except OSError as error:  # out of file descriptors, for instance: let some close
                log.warning("cannot accept a connection: %s", error)
                await asyncio.sleep(0.1)
                continue
            if len(self._connections) >= self.max_connections and not self._evict_idlest():
                client.close()
                continue
            connection = _Connection()
            self._connections[id(connection)] = connection
            connection.task = loop.create_task(self._serve(client, connection))

    def _evict_idlest(self) -> bool:
        """Close the connection that has waited longest for a request; False when all are being served."""
        idle = [(connection.idle_since, key) for key, connection in self._connections.items() if connection.idle_since]
        if not idle:
            return False
        idlest = self._connections[min(idle)[1]]
        idlest.idle_since = None  # not chosen twice before its task has run
        idlest.task.cancel()
        return True

    async def _serve(self, client: socket.socket, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        writer = None
        cancelled = False
        try:
            reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            tls = self.web.tls if self.web is not None else None
            transport, _ = await asyncio.wait_for(
                loop.connect_accepted_socket(
                    lambda: protocol, client, ssl=tls, ssl_handshake_timeout=self.timeout_s if tls else None
                ),
                self.timeout_s,
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            keep_alive = True
            while keep_alive:
                connection.idle_since = time.monotonic()
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
                except asyncio.LimitOverrunError:
                    head = None
                connection.idle_since = None
                request = _parse(head)
                if isinstance(request, Response):  # refused as it is: answer and close
                    await self._write(writer, request, False, False)
                    break
                response = await loop.run_in_executor(self._pool, self._respond, request)
                keep_alive = request.keep_alive and (response.status < 400 or response.status in (401, 404, 503))
                await self._write(writer, response, request.method == "HEAD", keep_alive)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # a client that left, stalled or spoke no TLS: nothing to answer
        except asyncio.CancelledError:  # evicted, or the server stops
            cancelled = True
            raise
        finally:
            try:
                if writer is None:
                    client.close()
                elif cancelled:
                    writer.transport.abort()
                else:
                    await _close(writer, self.timeout_s)
            finally:  # only now: a connection that is closing still holds its socket, and stopping waits for it
                self._connections.pop(id(connection), None)

    def _respond(self, request: Request) -> Response:
        auth = self.web.auth if self.web is not None else None
        if auth is not None and request.path not in self.public_paths:
            if not auth.check(request.headers.get("authorization")):
                return Response.text(401, "401 Unauthorized\n", _AUTHENTICATE)
        try:
            return self.handler(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return Response.text(500, "500 Internal Server Error\n")

    async def _write(self, writer: asyncio.StreamWriter, response: Response, head_only: bool, keep_alive: bool) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "X-Content-Type-Options: nosniff",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        body = b"" if head_only else memoryview(response.body)
        for start in range(0, len(body), _CHUNK_BYTES):  # the timeout is on progress, not on the whole body
            writer.write(body[start : start + _CHUNK_BYTES])
            await asyncio.wait_for(writer.drain(), self.timeout_s)
        await asyncio.wait_for(writer.drain(), self.timeout_s)


def _parse(head: bytes | None) -> Request | Response:
    """The request, or the error response for a head that is too long, malformed or asks for what is not served."""
    if head is None:
        return Response.text(431, "431 request head too long\n")
    request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[1].startswith("/") or not parts[2].startswith("HTTP/1."):
        return Response.text(400, "400 Bad Request\n")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return Response.text(400, "400 Bad Request\n")
        name = name.lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        return Response.text(413, "413 no request bodies here\n")
    if method not in ("GET", "HEAD"):
        return Response.text(405, "405 GET or HEAD only\n", ("Allow", "GET, HEAD"))
    url = urlsplit(target)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return Request(method, unquote(url.path), parse_qs(url.query), headers, keep_alive)


async def _close(writer: asyncio.StreamWriter, timeout_s: float) -> None:
    """Close after what is buffered has gone out (TLS: with close_notify), or abort if the client stalls."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout_s)
    except (TimeoutError, OSError):
        writer.transport.abort()


def _quiet(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Failed TLS handshakes and resets are what hostile or broken clients do: not worth an error line each."""
    log.debug("http: %s", context.get("message"), exc_info=context.get("exception"))

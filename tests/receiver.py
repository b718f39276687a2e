"""A real HTTP receiver on loopback for the tests of notification delivery (webhook, Alertmanager API, triggers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Receiver"]


class Receiver:
    """A real HTTP server on loopback recording each POST; answers with queued statuses, then 200.

    A 3xx answer carries ``Location: /moved``, where a GET (recorded in ``gets``) is answered 200.
    """

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.gets: list[str] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/moved?token=from-the-redirect")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                receiver.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def posts(self) -> list[tuple[str, object]]:
        """Each POST's path and parsed JSON body, in arrival order."""
        return [(path, json.loads(body)) for path, _, body in self.requests]

